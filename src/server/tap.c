/* tap.c: the capture tap (tap.h): listeners, and the pcapng records the
 * server writes to them.
 *
 * A listener is the connection that called ackrpc.reflection.Capture/Watch
 * (builtin.c): once its OK reply is out, the connection object lets go of
 * the socket (a duplicate descriptor stays here) and the socket carries a
 * pcapng stream: a Section Header Block, one Interface Description Block of link
 * type LINKTYPE_USER0 (147), then one Enhanced Packet Block per request and
 * per reply. The packet data of each is an ackrpc capture record
 * (docs/CAPTURE.md, tools/wireshark/ackrpc.lua):
 *
 *   offset size  field (big-endian)
 *   0      1     version (1)
 *   1      1     kind: 1 request, 2 reply (the frame types)
 *   2      2     flags: 1 body redacted, 2 body left out, 4 body truncated
 *   4      4     peer uid
 *   8      4     peer gid
 *   12     4     peer pid
 *   16     4     status (replies; 0 for requests)
 *   20     4     records this listener lost before this one (in all)
 *   24     2     method name length M
 *   26     1     call id length C
 *   27     1     0
 *   28     2     message length T (replies)
 *   30     2     0
 *   32     M+C+T method, call id, message; then the body to the end
 *
 * Not here: leaving out sensitive fields (redact.c). */
#include "server/tap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ackrpc/reflection.pb-c.h"
#include "ackrpc/wire.pb-c.h"
#include "server/redact.h"

#define MAX_LISTENERS 4
/* A listener's unsent records, at most; beyond, records are lost. */
#define LISTENER_BUFFER (4u << 20)
/* Bytes of a body kept in a record (more: truncated, flag 4). */
#define SNAP_BODY (256u << 10)
#define RECORD_HEAD 32
#define LINKTYPE_USER0 147

enum { FLAG_REDACTED = 1, FLAG_OMITTED = 2, FLAG_TRUNCATED = 4 };

typedef struct listener {
  int fd;
  struct event *wev, *rev;
  uint8_t *buf;
  size_t off, len, cap;
  uint64_t lost;
} listener;

struct akr_tap {
  listener l[MAX_LISTENERS];
  size_t n;
};

/* --- listeners --------------------------------------------------------- */

static void drop_listener(ackrpc_server *s, size_t i) {
  akr_tap *t = s->tap;
  listener *l = &t->l[i];
  event_free(l->wev);
  event_free(l->rev);
  close(l->fd);
  free(l->buf);
  t->l[i] = t->l[--t->n];
  if (t->n == 0) {
    free(t);
    s->tap = NULL; /* the call path is back to one test of a NULL */
  }
}

static size_t index_of(ackrpc_server *s, const listener *l) {
  return (size_t)(l - s->tap->l);
}

/* Writes what the socket takes. 0, or -1 if the listener is gone. */
static int flush(listener *l) {
  while (l->off < l->len) {
    ssize_t n =
        send(l->fd, l->buf + l->off, l->len - l->off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      l->off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return -1;
  }
  l->off = l->len = 0;
  return 0;
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ackrpc_server *s = arg;
  for (size_t i = 0; s->tap && i < s->tap->n; i++) {
    listener *l = &s->tap->l[i];
    if (l->fd != fd) continue;
    if (flush(l) != 0)
      drop_listener(s, i);
    else if (l->len > l->off)
      event_add(l->wev, NULL);
    return;
  }
}

/* The listener sends nothing after its request: anything readable is its
 * end (EOF, an error) or bytes to discard. */
static void on_readable(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  ackrpc_server *s = arg;
  uint8_t scratch[256];
  ssize_t n = recv(fd, scratch, sizeof scratch, MSG_DONTWAIT);
  if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) return;
  for (size_t i = 0; s->tap && i < s->tap->n; i++)
    if (s->tap->l[i].fd == fd) {
      drop_listener(s, i);
      return;
    }
}

/* Room for n more bytes in the listener's buffer; NULL: the record is
 * lost (over LISTENER_BUFFER, or out of memory). */
static uint8_t *reserve(listener *l, size_t n) {
  if (l->off && l->off == l->len) l->off = l->len = 0;
  if (l->len - l->off + n > LISTENER_BUFFER) return NULL;
  if (l->len + n > l->cap && l->off) {
    memmove(l->buf, l->buf + l->off, l->len - l->off);
    l->len -= l->off;
    l->off = 0;
  }
  if (l->len + n > l->cap) {
    size_t cap = l->cap ? l->cap : 16384;
    while (cap < l->len + n)
      cap *= 2;
    uint8_t *b = realloc(l->buf, cap);
    if (!b) return NULL;
    l->buf = b;
    l->cap = cap;
  }
  return l->buf + l->len;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* pcapng blocks are in the writer's byte order (the Section Header's
 * byte-order magic says which). */
static void host32(uint8_t *p, uint32_t v) {
  memcpy(p, &v, 4);
}

static size_t pad4(size_t n) {
  return (n + 3) & ~(size_t)3;
}

/* The Section Header and Interface Description blocks: 28 + 12 and
 * 20 + 12 bytes (each with one 8-byte option and the end of options). */
static size_t stream_header(uint8_t *p) {
  static const uint8_t shb[] = {0x0A, 0x0D, 0x0D, 0x0A};
  memcpy(p, shb, 4);
  host32(p + 4, 44);
  host32(p + 8, 0x1A2B3C4D);
  uint16_t major = 1, minor = 0;
  memcpy(p + 12, &major, 2);
  memcpy(p + 14, &minor, 2);
  memset(p + 16, 0xff, 8);    /* section length: unknown */
  uint16_t code = 4, len = 6; /* shb_userappl */
  memcpy(p + 24, &code, 2);
  memcpy(p + 26, &len, 2);
  memcpy(p + 28, "ackrpc\0\0", 8);
  memset(p + 36, 0, 4); /* opt_endofopt */
  host32(p + 40, 44);
  uint8_t *q = p + 44;
  host32(q, 1);
  host32(q + 4, 36);
  uint16_t linktype = LINKTYPE_USER0, reserved = 0;
  memcpy(q + 8, &linktype, 2);
  memcpy(q + 10, &reserved, 2);
  host32(q + 12, 0); /* snap length: none */
  code = 2;          /* if_name */
  len = 6;
  memcpy(q + 16, &code, 2);
  memcpy(q + 18, &len, 2);
  memcpy(q + 20, "ackrpc\0\0", 8);
  memset(q + 28, 0, 4); /* opt_endofopt */
  host32(q + 32, 36);
  return 44 + 36;
}

/* --- records ----------------------------------------------------------- */

typedef struct record {
  uint8_t kind;
  uint16_t flags;
  const ackrpc_peer *peer;
  uint32_t status;
  const char *method;
  const uint8_t *call_id;
  size_t call_id_len;
  const char *message;
  const uint8_t *body;
  size_t body_len, body_orig;
} record;

/* Appends one Enhanced Packet Block holding `r` to every listener. */
static void emit(ackrpc_server *s, const record *r) {
  akr_tap *t = s->tap;
  size_t m = strlen(r->method), c = r->call_id_len;
  size_t msg = r->message ? strlen(r->message) : 0;
  if (m > 0xffff) m = 0xffff;
  if (c > 0xff) c = 0xff;
  if (msg > 0xffff) msg = 0xffff;
  size_t caplen = RECORD_HEAD + m + c + msg + r->body_len;
  size_t origlen = RECORD_HEAD + m + c + msg + r->body_orig;
  size_t block = 28 + pad4(caplen) + 4;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
  for (size_t i = 0; i < t->n; i++) {
    listener *l = &t->l[i];
    uint8_t *p = reserve(l, block);
    if (!p) {
      l->lost++;
      continue;
    }
    host32(p, 6);
    host32(p + 4, (uint32_t)block);
    host32(p + 8, 0);
    host32(p + 12, (uint32_t)(us >> 32));
    host32(p + 16, (uint32_t)us);
    host32(p + 20, (uint32_t)caplen);
    host32(p + 24, (uint32_t)origlen);
    uint8_t *d = p + 28;
    d[0] = 1;
    d[1] = r->kind;
    put16(d + 2, r->flags);
    put32(d + 4, (uint32_t)r->peer->uid);
    put32(d + 8, (uint32_t)r->peer->gid);
    put32(d + 12, (uint32_t)r->peer->pid);
    put32(d + 16, r->status);
    put32(d + 20, (uint32_t)(l->lost > 0xffffffffu ? 0xffffffffu : l->lost));
    put16(d + 24, (uint16_t)m);
    d[26] = (uint8_t)c;
    d[27] = 0;
    put16(d + 28, (uint16_t)msg);
    put16(d + 30, 0);
    uint8_t *q = d + RECORD_HEAD;
    memcpy(q, r->method, m);
    q += m;
    if (c) memcpy(q, r->call_id, c);
    q += c;
    if (msg) memcpy(q, r->message, msg);
    q += msg;
    if (r->body_len) memcpy(q, r->body, r->body_len);
    memset(d + caplen, 0, pad4(caplen) - caplen);
    host32(p + block - 4, (uint32_t)block);
    l->len += block;
    if (!event_pending(l->wev, EV_WRITE, NULL)) event_add(l->wev, NULL);
  }
}

/* Whether a record is made for `call`: its head named a method, other
 * than Capture/Watch (a listener's own call is not part of its stream). */
static int tapped(const ackrpc_call *call) {
  return call->req.method && strcmp(call->req.method, AKR_TAP_WATCH_METHOD) != 0;
}

/* Fills the body of `r`: without its sensitive fields (then in a copy,
 * returned for the caller to free), cut to SNAP_BODY. Left out for a
 * method the server does not know (nothing to redact by), and when the
 * body cannot be redacted (it does not parse). */
static uint8_t *set_body(ackrpc_server *s, record *r,
                         const ProtobufCMessageDescriptor *type, const uint8_t *body,
                         size_t len) {
  uint8_t *copy = NULL;
  size_t copy_len = 0;
  r->body = body;
  r->body_len = r->body_orig = len;
  int redacted = type ? akr_redact(s->redact, type, body, len, &copy, &copy_len) : -1;
  if (redacted < 0) {
    r->flags |= FLAG_OMITTED;
    r->body_len = r->body_orig = 0;
    return NULL;
  }
  if (redacted) {
    r->flags |= FLAG_REDACTED;
    r->body = copy;
    r->body_len = r->body_orig = copy_len;
  }
  if (r->body_len > SNAP_BODY) {
    r->body_len = SNAP_BODY;
    r->flags |= FLAG_TRUNCATED;
  }
  return copy;
}

void akr_tap_request(ackrpc_server *s, const ackrpc_call *call, const uint8_t *body,
                     size_t body_len) {
  if (!tapped(call)) return;
  record r = {.kind = 1,
              .peer = &call->peer,
              .method = call->req.method,
              .call_id = call->req.call_id,
              .call_id_len = call->req.call_id_len};
  const ProtobufCMessageDescriptor *type =
      call->method ? call->method->m.request : NULL;
  uint8_t *copy = set_body(s, &r, type, body, body_len);
  emit(s, &r);
  free(copy);
}

void akr_tap_answer(ackrpc_server *s, const ackrpc_call *call, uint32_t status,
                    const char *message) {
  if (!tapped(call)) return;
  record r = {.kind = 2,
              .peer = &call->peer,
              .status = status,
              .method = call->req.method,
              .call_id = call->req.call_id,
              .call_id_len = call->req.call_id_len,
              .message = message};
  emit(s, &r);
}

void akr_tap_reply_frame(ackrpc_server *s, const ackrpc_call *call,
                         const uint8_t *frame, size_t len) {
  akr_frame f;
  if (!tapped(call) || len < AKR_PREFIX_LEN ||
      akr_frame_scan(frame, len, AKR_FRAME_REPLY, len, &f, NULL) != AKR_FRAME_OK)
    return;
  Ackrpc__Wire__ReplyHead *head =
      ackrpc__wire__reply_head__unpack(NULL, f.head_len, f.head);
  record r = {.kind = 2,
              .peer = &call->peer,
              .status = head ? head->status : call->reply_status,
              .method = call->req.method,
              .call_id = call->req.call_id,
              .call_id_len = call->req.call_id_len,
              .message = head ? head->message : NULL};
  const ProtobufCMessageDescriptor *type = call->method ? call->method->m.reply : NULL;
  uint8_t *copy = set_body(s, &r, type, f.body, f.body_len);
  emit(s, &r);
  free(copy);
  if (head) ackrpc__wire__reply_head__free_unpacked(head, NULL);
}

/* --- listeners: adding ---------------------------------------------- */

int akr_tap_full(const ackrpc_server *s) {
  return s->tap && s->tap->n == MAX_LISTENERS;
}

/* The listener of `fd`, or NULL. */
static listener *find(ackrpc_server *s, int fd) {
  for (size_t i = 0; s->tap && i < s->tap->n; i++)
    if (s->tap->l[i].fd == fd) return &s->tap->l[i];
  return NULL;
}

int akr_tap_add(ackrpc_server *s, int fd) {
  if (akr_tap_full(s)) return -1;
  if (!s->tap && !(s->tap = calloc(1, sizeof *s->tap))) return -1;
  listener *l = &s->tap->l[s->tap->n];
  memset(l, 0, sizeof *l);
  l->fd = fd;
  l->wev = event_new(s->base, fd, EV_WRITE, on_writable, s);
  l->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, on_readable, s);
  uint8_t *p = l->wev && l->rev ? reserve(l, 128) : NULL;
  if (!p) {
    if (l->wev) event_free(l->wev);
    if (l->rev) event_free(l->rev);
    free(l->buf);
    if (s->tap->n == 0) {
      free(s->tap);
      s->tap = NULL;
    }
    return -1;
  }
  l->len += stream_header(p);
  s->tap->n++;
  return 0;
}

void akr_tap_arm(ackrpc_server *s, int fd) {
  listener *l = find(s, fd);
  if (!l) return;
  event_add(l->rev, NULL);
  event_add(l->wev, NULL);
}

void akr_tap_cancel(ackrpc_server *s, int fd) {
  listener *l = find(s, fd);
  if (l) drop_listener(s, index_of(s, l));
}

void akr_tap_free(ackrpc_server *s) {
  while (s->tap) {
    listener *l = &s->tap->l[s->tap->n - 1];
    (void)flush(l); /* what the socket takes now; the rest is lost */
    drop_listener(s, s->tap->n - 1);
  }
}
