/* client.c: blocking and asynchronous calls.
 *
 * A call: connect, write the request frame, shutdown(SHUT_WR), read the
 * reply frame. The line between "not delivered" and "delivered, no ack" is
 * the last byte of the request frame: the server dispatches a request as soon
 * as its frame is complete, so until send() has taken every byte the server
 * cannot have acted, and after it the client cannot know.
 *
 * The blocking call needs no event loop: a non-blocking socket and poll()
 * bound every wait by the call's deadline. The asynchronous call does the
 * same steps from libevent callbacks on the caller's base.
 *
 * A blocking call sends a large frame in pieces (sendmsg): its large byte
 * strings go out from the caller's request, which cannot change before the
 * call returns. Asynchronous calls copy the whole frame: their request may
 * change as soon as the call has started.
 *
 * Retries (ackrpc_retry_policy, docs/DELIVERY.md) wrap one attempt: the
 * blocking calls in call_with_retries(), the asynchronous one by going back
 * to its first step after a timer. Every attempt reuses the first one's
 * call id, which is what makes retrying "delivered, no ack" safe.
 */
#include "ackrpc/client.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/retry.h"
#include "core/rng.h"
#include "platform/address.h"
#include "core/clock.h"
#include "mem/arena.h"
#include "wire/depth.h"
#include "wire/encode.h"
#include "wire/frame.h"
#include "wire/head.h"
#include "wire/names.h"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_REPLY (4u << 20)
#define STACK_FRAME 4096 /* requests and replies up to this size use no malloc */
#define IOV_FRAME_MIN (64u << 10) /* blocking calls send larger frames in pieces */
#define REPLY_HEAD_BUDGET (256u << 10)
#define REPLY_HEAD_ROOM 1024u /* on the stack, the start of that budget */
#define BUSY_RETRY_MIN_US 500
#define BUSY_RETRY_MAX_US 50000

/* Where call ids come from: 64 random bits, then a counter. Unique across
 * clients and restarts without a system call per call. */
typedef struct id_source {
  uint8_t prefix[8];
  atomic_uint_least64_t next;
  akr_rng rng; /* the prefix, and the backoff's jitter */
} id_source;

typedef akr_retry_rules retry_rules;

struct ackrpc_client {
  akr_address addr;
  uint32_t timeout_ms;
  size_t max_reply;
  id_source ids;
  retry_rules retry;
  /* the session pool (pool_max 0: none) */
  unsigned pool_max, n_idle;
  ackrpc_session *idle;
  pthread_mutex_t pool_mu;
};

struct ackrpc_session {
  akr_address addr;
  uint32_t timeout_ms;
  size_t max_reply;
  id_source ids;
  retry_rules retry; /* the client's when opened; none for pooled ones */
  int fd;            /* -1: not connected */
  ackrpc_session *next_idle;
};

static void id_source_init(id_source *ids, const void *salt) {
  akr_rng_init(&ids->rng, salt);
  uint64_t prefix = akr_rng_next(&ids->rng);
  memcpy(ids->prefix, &prefix, sizeof ids->prefix);
  atomic_init(&ids->next, 1);
}

static ackrpc_status retry_rules_make(const ackrpc_retry_policy *p, retry_rules *ret) {
  return akr_retry_rules_make(p, ret);
}

static int retryable(const retry_rules *rules, ackrpc_status st) {
  return akr_retryable(rules->retry_on, st);
}

static uint64_t backoff_us(const retry_rules *rules, unsigned attempt, id_source *ids) {
  return akr_backoff_us(rules->initial_ms, rules->max_ms, attempt, &ids->rng);
}

static void id_source_take(id_source *ids, uint8_t out[16]) {
  uint64_t n = atomic_fetch_add_explicit(&ids->next, 1, memory_order_relaxed);
  memcpy(out, ids->prefix, 8);
  for (int i = 0; i < 8; i++)
    out[8 + i] = (uint8_t)(n >> (56 - 8 * i));
}

ackrpc_status ackrpc_client_new(const ackrpc_client_options *options,
                                ackrpc_client **ret_client) {
  if (!options || !ret_client || !options->address) return ACKRPC_E_INVAL;
  akr_address addr;
  ackrpc_status st = akr_address_parse(options->address, &addr);
  if (st != ACKRPC_OK) return st;
  ackrpc_client *c = calloc(1, sizeof *c);
  if (!c) return ACKRPC_E_NOMEM;
  c->addr = addr;
  c->timeout_ms = options->timeout_ms ? options->timeout_ms : DEFAULT_TIMEOUT_MS;
  c->max_reply = options->max_reply_size ? options->max_reply_size : DEFAULT_MAX_REPLY;
  if (retry_rules_make(options->retry, &c->retry) != ACKRPC_OK) {
    free(c);
    return ACKRPC_E_INVAL;
  }
  id_source_init(&c->ids, c);
  c->pool_max = options->pool_size;
  pthread_mutex_init(&c->pool_mu, NULL);
  *ret_client = c;
  return ACKRPC_OK;
}

ackrpc_client *ackrpc_client_free(ackrpc_client *client) {
  if (!client) return NULL;
  while (client->idle) {
    ackrpc_session *s = client->idle;
    client->idle = s->next_idle;
    ackrpc_session_close(s);
  }
  pthread_mutex_destroy(&client->pool_mu);
  free(client);
  return NULL;
}

void ackrpc_result_clear(ackrpc_result *r) {
  if (!r) return;
  free(r->message);
  if (r->reply) protobuf_c_message_free_unpacked(r->reply, NULL);
  free(r->reply_bytes);
  memset(r, 0, sizeof *r);
}

/* --- shared steps ------------------------------------------------------ */

/* Sets a local status with an explanation (printf-style) in the result. */
static ackrpc_status fail(ackrpc_result *r, ackrpc_status st, int err, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
static ackrpc_status fail(ackrpc_result *r, ackrpc_status st, int err, const char *fmt,
                          ...) {
  r->status = st;
  r->sys_errno = err;
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (err) {
    char eb[128];
    size_t used = strlen(buf);
    snprintf(buf + used, sizeof buf - used, ": %s", strerror_r(err, eb, sizeof eb));
  }
  free(r->message);
  r->message = strdup(buf);
  return st;
}

/* The request frame, encoded once per call: bytes[0..len), or, if n_iov is
 * not 0, the pieces iov[0..n_iov) (len bytes in all) whose copied parts are
 * in `bytes` and whose large byte strings are in the caller's request. */
typedef struct request_frame {
  uint8_t *bytes;
  size_t len;
  size_t n_iov;
  struct iovec iov[AKR_IOV_MAX];
  uint8_t stack[STACK_FRAME];
} request_frame;

static void free_request(request_frame *f);

static ackrpc_status encode_request_raw(id_source *ids, const char *method_name,
                                        const uint8_t *raw, size_t raw_len,
                                        const ProtobufCMessage *request,
                                        const ackrpc_call_options *opt,
                                        uint32_t timeout_ms, int in_place,
                                        request_frame *f, ackrpc_result *r);

static ackrpc_status encode_request(id_source *ids, const ackrpc_method *method,
                                    const ProtobufCMessage *request,
                                    const ackrpc_call_options *opt, uint32_t timeout_ms,
                                    int in_place, request_frame *f, ackrpc_result *r) {
  return encode_request_raw(ids, method->name, NULL, 0, request, opt, timeout_ms,
                            in_place, f, r);
}

/* Sets the call id (the caller's or a new one, in r) and describes the
 * request frame in *spec; its size in *ret_len. */
static ackrpc_status request_spec(id_source *ids, const char *method_name,
                                  const uint8_t *raw, size_t raw_len,
                                  const ProtobufCMessage *request,
                                  const ackrpc_call_options *opt, uint32_t timeout_ms,
                                  akr_request_spec *spec, size_t *ret_len,
                                  ackrpc_result *r) {
  if (opt && opt->call_id) {
    if (opt->call_id_len == 0 || opt->call_id_len > ACKRPC_MAX_CALL_ID)
      return fail(r, ACKRPC_E_INVAL, 0, "call id must be 1 to %d bytes",
                  ACKRPC_MAX_CALL_ID);
    memcpy(r->call_id, opt->call_id, opt->call_id_len);
    r->call_id_len = opt->call_id_len;
  } else {
    id_source_take(ids, r->call_id);
    r->call_id_len = 16;
  }
  *spec = (akr_request_spec){
      .method = method_name,
      .timeout_us = (uint64_t)timeout_ms * 1000u,
      .call_id = r->call_id,
      .call_id_len = r->call_id_len,
      .metadata = opt ? opt->metadata : NULL,
      .n_metadata = opt ? opt->metadata_count : 0,
      .body = request,
      .raw_body = raw,
      .raw_body_len = raw_len,
  };
  *ret_len = akr_request_size(spec);
  if (*ret_len == 0)
    return fail(r, ACKRPC_E_INVAL, 0,
                "request breaks a protocol limit (method name, metadata, or size)");
  return ACKRPC_OK;
}

/* Encodes the request frame. With `in_place` (a blocking call: the request
 * stays unchanged until the call returns) a large frame is encoded as pieces
 * that leave its large byte strings where they are: copying them into one
 * buffer was most of a large call's CPU. */
static ackrpc_status encode_request_raw(id_source *ids, const char *method_name,
                                        const uint8_t *raw, size_t raw_len,
                                        const ProtobufCMessage *request,
                                        const ackrpc_call_options *opt,
                                        uint32_t timeout_ms, int in_place,
                                        request_frame *f, ackrpc_result *r) {
  akr_request_spec spec;
  size_t n;
  ackrpc_status st = request_spec(ids, method_name, raw, raw_len, request, opt,
                                  timeout_ms, &spec, &n, r);
  if (st != ACKRPC_OK) return st;
  f->n_iov = 0;
  if (in_place && n >= IOV_FRAME_MIN) {
    size_t need;
    f->bytes = f->stack;
    f->len = akr_request_encode_iov(&spec, f->stack, sizeof f->stack, f->iov,
                                    AKR_IOV_MAX, &f->n_iov, &need);
    if (!f->len && need) {
      f->bytes = malloc(need);
      if (!f->bytes) return fail(r, ACKRPC_E_NOMEM, ENOMEM, "request of %zu bytes", n);
      f->len = akr_request_encode_iov(&spec, f->bytes, need, f->iov, AKR_IOV_MAX,
                                      &f->n_iov, &need);
    }
    if (f->len) return ACKRPC_OK;
    free_request(f); /* mostly small fields: one buffer after all */
  }
  f->bytes = n <= sizeof f->stack ? f->stack : malloc(n);
  if (!f->bytes) return fail(r, ACKRPC_E_NOMEM, ENOMEM, "request of %zu bytes", n);
  f->len = akr_request_encode(&spec, f->bytes);
  return ACKRPC_OK;
}

static void free_request(request_frame *f) {
  if (f->bytes != f->stack) free(f->bytes);
  f->bytes = NULL;
}

/* A method fully described, and a request (if any) of its request type. */
static int call_args_ok(const ackrpc_method *method, const ProtobufCMessage *request) {
  return method && method->name && method->request && method->reply &&
         (!request || request->descriptor == method->request);
}

/* A reply buffer that grows to the frame's announced size. */
typedef struct reply_buf {
  uint8_t *bytes;
  size_t len, cap;
  uint8_t stack[1024];
} reply_buf;

static void reply_buf_init(reply_buf *b) {
  b->bytes = b->stack;
  b->len = 0;
  b->cap = sizeof b->stack;
}

static void reply_buf_free(reply_buf *b) {
  if (b->bytes != b->stack) free(b->bytes);
  b->bytes = NULL;
}

enum reply_progress { REPLY_MORE, REPLY_DONE };

static void decode_reply_frame(const akr_frame *f,
                               const ProtobufCMessageDescriptor *desc,
                               ackrpc_result *r);

/* Looks at the bytes received so far. REPLY_DONE with r->status set (the
 * server's status, or E_BAD_REPLY), or REPLY_MORE with *ret_need the size
 * the buffer must reach. */
static enum reply_progress parse_reply(const reply_buf *b, size_t max_reply,
                                       const ProtobufCMessageDescriptor *desc,
                                       ackrpc_result *r, size_t *ret_need) {
  akr_frame f;
  akr_frame_error fe =
      akr_frame_scan(b->bytes, b->len, AKR_FRAME_REPLY, max_reply, &f, ret_need);
  if (fe == AKR_FRAME_INCOMPLETE) return REPLY_MORE;
  if (fe != AKR_FRAME_OK) {
    fail(r, ACKRPC_E_BAD_REPLY, 0, "reply: %s", akr_frame_error_text(fe));
    return REPLY_DONE;
  }
  decode_reply_frame(&f, desc, r);
  return REPLY_DONE;
}

/* Fills r from a complete reply frame: the server's status and message,
 * and the decoded reply; or E_BAD_REPLY. */
static void decode_reply_frame(const akr_frame *fp,
                               const ProtobufCMessageDescriptor *desc,
                               ackrpc_result *r) {
  akr_frame f = *fp;
  akr_frame_error fe;
  /* A reply head (a status and a short message) fits on the stack; a long
   * message spills into allocated chunks. */
  _Alignas(max_align_t) uint8_t room[REPLY_HEAD_ROOM];
  akr_arena arena;
  akr_arena_init_on(&arena, REPLY_HEAD_BUDGET, room, sizeof room);
  akr_reply reply;
  fe = akr_reply_decode(&f, &arena, &reply);
  if (fe != AKR_FRAME_OK) {
    akr_arena_release(&arena);
    fail(r, ACKRPC_E_BAD_REPLY, 0, "reply: %s", akr_frame_error_text(fe));
    return;
  }
  r->status = (ackrpc_status)reply.status;
  r->sys_errno = 0;
  free(r->message);
  r->message = reply.message[0] ? strdup(reply.message) : NULL;
  akr_arena_release(&arena);
  if (!desc) {
    /* A raw call: the body as sent, whatever the status. */
    if (reply.body_len) {
      r->reply_bytes = malloc(reply.body_len);
      if (r->reply_bytes) {
        memcpy(r->reply_bytes, reply.body, reply.body_len);
        r->reply_bytes_len = reply.body_len;
      } else {
        fail(r, ACKRPC_E_BAD_REPLY, ENOMEM, "no memory for the reply body");
      }
    }
    return;
  }
  /* An OK reply always yields a message (an empty body is the default
   * message); an error reply yields one only if it sent a body. */
  if (reply.status == ACKRPC_OK || reply.body_len) {
    r->reply = protobuf_c_message_unpack(desc, NULL, reply.body_len, reply.body);
    if (!r->reply && reply.status == ACKRPC_OK)
      fail(r, ACKRPC_E_BAD_REPLY, 0, "reply body does not decode as %s", desc->name);
  }
}

/* Makes room for `need` bytes (or one more byte, to read into). */
static int reply_buf_reserve(reply_buf *b, size_t need) {
  size_t want = need > b->len ? need : b->len + 1;
  if (want <= b->cap) return 0;
  uint8_t *p = b->bytes == b->stack ? malloc(want) : realloc(b->bytes, want);
  if (!p) return -1;
  if (b->bytes == b->stack) memcpy(p, b->stack, b->len);
  b->bytes = p;
  b->cap = want;
  return 0;
}

/* Reads what the socket has. Returns 1 when the reply is complete (status
 * set), 0 if it would block, or a final local status through r (returns 1). */
static int receive(int fd, reply_buf *b, size_t max_reply,
                   const ProtobufCMessageDescriptor *desc, ackrpc_result *r) {
  for (;;) {
    size_t need = AKR_PREFIX_LEN;
    if (b->len && parse_reply(b, max_reply, desc, r, &need) == REPLY_DONE) return 1;
    if (reply_buf_reserve(b, need) != 0) {
      fail(r, ACKRPC_E_BAD_REPLY, ENOMEM, "reply buffer");
      return 1;
    }
    ssize_t n = read(fd, b->bytes + b->len, b->cap - b->len);
    if (n > 0) {
      b->len += (size_t)n;
      continue;
    }
    if (n == 0) {
      fail(r, ACKRPC_E_NO_ACK, 0, "the server closed the connection %s",
           b->len ? "in the middle of its reply" : "without replying");
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    fail(r, ACKRPC_E_NO_ACK, errno, "reading the reply");
    return 1;
  }
}

/* Sending failed: a server that refuses a request early (too large, bad
 * prefix) answers and closes before reading the rest. If its reply is
 * already here, that is the outcome; otherwise the request was not
 * delivered. */
static ackrpc_status send_failed(int fd, int err, size_t max_reply,
                                 const ProtobufCMessageDescriptor *desc,
                                 ackrpc_result *r) {
  reply_buf b;
  reply_buf_init(&b);
  ackrpc_result probe = {0};
  int done = receive(fd, &b, max_reply, desc, &probe);
  reply_buf_free(&b);
  if (done && ackrpc_status_outcome(probe.status) == ACKRPC_OUTCOME_ACKED &&
      probe.status != ACKRPC_OK) {
    memcpy(probe.call_id, r->call_id, sizeof r->call_id);
    probe.call_id_len = r->call_id_len;
    ackrpc_result_clear(r);
    *r = probe;
    return r->status;
  }
  ackrpc_result_clear(&probe);
  return fail(r, ACKRPC_E_SEND, err, "sending the request");
}

static ackrpc_status connect_failed(const akr_address *addr, int err,
                                    ackrpc_result *r) {
  const char *where = addr->abstract ? "abstract socket" : addr->path;
  if (err == EAGAIN)
    return fail(r, ACKRPC_E_BUSY, err, "connecting to %s: queue full", where);
  return fail(r, ACKRPC_E_CONNECT, err, "connecting to %s", where);
}

/* --- blocking ---------------------------------------------------------- */

/* Waits for `events` until the deadline. 1: ready, 0: deadline, -1: error. */
static int wait_fd(int fd, short events, uint64_t deadline_us) {
  for (;;) {
    uint64_t now = akr_now_us();
    if (now >= deadline_us) return 0;
    uint64_t left_ms = (deadline_us - now + 999) / 1000;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, left_ms > INT32_MAX ? INT32_MAX : (int)left_ms);
    if (n > 0) return 1;
    if (n < 0 && errno != EINTR) return -1;
    /* 0 or EINTR: re-check the deadline (poll may wake early) */
  }
}

static int blocking_connect(const akr_address *addr, uint64_t deadline_us,
                            int *ret_fd) {
  uint64_t backoff = BUSY_RETRY_MIN_US;
  for (;;) {
    if (akr_connect(addr, ret_fd) == 0) return 0;
    /* EAGAIN: the server's listen queue is full. Nothing was sent, so
     * retrying until the deadline is safe. */
    if (errno != EAGAIN) return -1;
    uint64_t now = akr_now_us();
    if (now + backoff >= deadline_us) {
      errno = EAGAIN;
      return -1;
    }
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)backoff * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    backoff = backoff * 2 > BUSY_RETRY_MAX_US ? BUSY_RETRY_MAX_US : backoff * 2;
  }
}

/* After a send of `n` bytes (0 or -1) at `off` of a `len`-byte frame: 1 to
 * send again (interrupted, or writable again before the deadline); 0 with
 * the call's status in *ret (not delivered, or the server's early answer). */
static int send_again(int fd, ssize_t n, size_t off, size_t len, uint64_t deadline,
                      size_t max_reply, const ProtobufCMessageDescriptor *desc,
                      ackrpc_result *r, ackrpc_status *ret) {
  if (n < 0 && errno == EINTR) return 1;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    int w = wait_fd(fd, POLLOUT, deadline);
    if (w > 0) return 1;
    *ret = w == 0 ? fail(r, ACKRPC_E_SEND_TIMEOUT, 0, "%zu of %zu bytes sent", off, len)
                  : fail(r, ACKRPC_E_SEND, errno, "waiting to send");
    return 0;
  }
  *ret = send_failed(fd, errno, max_reply, desc, r);
  return 0;
}

/* send_frame() for a frame in pieces: sendmsg() from where they are. */
static ackrpc_status send_pieces(int fd, const request_frame *f, uint64_t deadline,
                                 size_t max_reply,
                                 const ProtobufCMessageDescriptor *desc,
                                 ackrpc_result *r) {
  /* The pieces not sent yet: iov[first..n_iov). A copy of the frame's, which
   * a session may send again on a new connection. */
  struct iovec iov[AKR_IOV_MAX];
  size_t n_iov = f->n_iov, first = 0, off = 0;
  memcpy(iov, f->iov, n_iov * sizeof *iov);
  ackrpc_status st = ACKRPC_OK;
  while (off < f->len) {
    struct msghdr m = {.msg_iov = iov + first, .msg_iovlen = n_iov - first};
    ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (n <= 0) {
      if (!send_again(fd, n, off, f->len, deadline, max_reply, desc, r, &st)) return st;
      continue;
    }
    off += (size_t)n;
    /* Step over the pieces sent, then into the one sent in part. */
    size_t left = (size_t)n;
    while (left && left >= iov[first].iov_len)
      left -= iov[first++].iov_len;
    if (left) {
      iov[first].iov_base = (uint8_t *)iov[first].iov_base + left;
      iov[first].iov_len -= left;
    }
  }
  return ACKRPC_OK;
}

/* Sends the whole frame. Returns OK once every byte is sent (delivered);
 * otherwise the call's status (not delivered, or the server's early answer)
 * is in r. */
static ackrpc_status send_frame(int fd, const request_frame *f, uint64_t deadline,
                                size_t max_reply,
                                const ProtobufCMessageDescriptor *desc,
                                ackrpc_result *r) {
  if (f->n_iov) return send_pieces(fd, f, deadline, max_reply, desc, r);
  ackrpc_status st = ACKRPC_OK;
  size_t off = 0;
  while (off < f->len) {
    ssize_t n = send(fd, f->bytes + off, f->len - off, MSG_NOSIGNAL);
    if (n > 0)
      off += (size_t)n;
    else if (!send_again(fd, n, off, f->len, deadline, max_reply, desc, r, &st))
      return st;
  }
  return ACKRPC_OK;
}

/* Waits for one reply frame. Returns the call's status (also in r). */
static ackrpc_status await_reply(int fd, uint64_t deadline, uint32_t timeout_ms,
                                 size_t max_reply,
                                 const ProtobufCMessageDescriptor *desc,
                                 ackrpc_result *r) {
  ackrpc_status st;
  reply_buf b;
  reply_buf_init(&b);
  for (;;) {
    int w = wait_fd(fd, POLLIN, deadline);
    if (w == 0) {
      st = fail(r, ACKRPC_E_ACK_TIMEOUT, 0, "no reply within %u ms", timeout_ms);
      break;
    }
    if (w < 0) {
      st = fail(r, ACKRPC_E_NO_ACK, errno, "waiting for the reply");
      break;
    }
    if (receive(fd, &b, max_reply, desc, r)) {
      st = r->status;
      break;
    }
  }
  reply_buf_free(&b);
  return st;
}

/* A one-shot call: connect, send the frame, half-close, read the reply.
 * Either `request` (a message) or raw/raw_len (serialized bytes) is the
 * body; `desc` decodes the reply (NULL: keep its bytes). The call waits
 * `wait_ms` if nonzero (an attempt's limit) rather than its timeout. */
static ackrpc_status one_shot(ackrpc_client *client, const char *method_name,
                              const uint8_t *raw, size_t raw_len,
                              const ProtobufCMessage *request,
                              const ProtobufCMessageDescriptor *desc,
                              const ackrpc_call_options *options, uint32_t wait_ms,
                              ackrpc_result *r) {
  uint32_t timeout_ms =
      options && options->timeout_ms ? options->timeout_ms : client->timeout_ms;
  if (wait_ms && wait_ms < timeout_ms) timeout_ms = wait_ms;
  uint64_t deadline = akr_now_us() + (uint64_t)timeout_ms * 1000u;
  request_frame f;
  ackrpc_status st = encode_request_raw(
      &client->ids, method_name, raw, raw_len, request, options,
      options && options->timeout_ms ? options->timeout_ms : client->timeout_ms, 1, &f,
      r);
  if (st != ACKRPC_OK) return st;
  int fd;
  if (blocking_connect(&client->addr, deadline, &fd) != 0) {
    st = connect_failed(&client->addr, errno, r);
    free_request(&f);
    return st;
  }
  st = send_frame(fd, &f, deadline, client->max_reply, desc, r);
  free_request(&f);
  if (st == ACKRPC_OK) {
    /* Delivered. The half-close tells the server no frame follows. */
    shutdown(fd, SHUT_WR);
    st = await_reply(fd, deadline, timeout_ms, client->max_reply, desc, r);
  }
  close(fd);
  return st;
}

/* --- retries of blocking calls ----------------------------------------- */

/* One attempt of a blocking call with these options (call id and timeout
 * set by the caller), waiting at most wait_ms (0: its timeout) for the
 * ack. */
typedef ackrpc_status (*attempt_fn)(void *ctx, const ackrpc_call_options *o,
                                    uint32_t wait_ms, ackrpc_result *r);

/* What an attempt needs: one of the blocking calls' arguments. */
typedef struct attempt_args {
  ackrpc_client *client;
  ackrpc_session *session;
  const char *method_name;
  const ackrpc_method *method;
  const ProtobufCMessage *request;
  const uint8_t *raw;
  size_t raw_len;
} attempt_args;

static void sleep_us(uint64_t us) {
  struct timespec ts = {.tv_sec = (time_t)(us / 1000000u),
                        .tv_nsec = (long)(us % 1000000u) * 1000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Runs `fn` until an attempt succeeds, fails for good, the attempts run out
 * or the call's deadline would pass; every attempt with the first one's
 * call id. The per-call policy, if any, replaces `rules`. */
static ackrpc_status call_with_retries(id_source *ids, uint32_t default_timeout_ms,
                                       const retry_rules *rules,
                                       const ackrpc_call_options *options,
                                       attempt_fn fn, void *ctx, ackrpc_result *r) {
  retry_rules own;
  if (options && options->retry) {
    if (retry_rules_make(options->retry, &own) != ACKRPC_OK)
      return fail(r, ACKRPC_E_INVAL, 0,
                  "the retry policy lists a status that is not a canonical code 1..16");
    rules = &own;
  }
  if (rules->max_attempts <= 1) {
    r->attempts = 1;
    return fn(ctx, options, 0, r);
  }
  uint32_t timeout_ms =
      options && options->timeout_ms ? options->timeout_ms : default_timeout_ms;
  uint64_t deadline = akr_now_us() + (uint64_t)timeout_ms * 1000u;
  ackrpc_call_options o = options ? *options : (ackrpc_call_options){0};
  uint8_t id[16];
  if (!o.call_id) {
    id_source_take(ids, id);
    o.call_id = id;
    o.call_id_len = sizeof id;
  }
  for (unsigned attempt = 1;; attempt++) {
    /* The request carries what is left of the call's deadline, so the
     * server keeps working on an attempt the client stops waiting for, and
     * a retry joins it (same call id); the attempt waits attempt_ms. */
    uint64_t now = akr_now_us();
    uint64_t left_ms = now < deadline ? (deadline - now) / 1000u : 0;
    if (left_ms == 0) left_ms = 1;
    o.timeout_ms = (uint32_t)left_ms;
    if (attempt > 1) ackrpc_result_clear(r);
    ackrpc_status st = fn(ctx, &o, rules->attempt_ms, r);
    r->attempts = attempt;
    if (attempt >= rules->max_attempts || !retryable(rules, st)) return st;
    uint64_t wait = backoff_us(rules, attempt, ids);
    /* No attempt starts with less than a millisecond left. */
    if (akr_now_us() + wait + 1000u >= deadline) return st;
    sleep_us(wait);
  }
}

/* A blocking entry point's answer to a bad argument: E_INVAL, with `why` in
 * ret_result (if any). */
static ackrpc_status refuse(ackrpc_result *ret_result, const char *why) {
  if (!ret_result) return ACKRPC_E_INVAL;
  memset(ret_result, 0, sizeof *ret_result);
  return fail(ret_result, ACKRPC_E_INVAL, 0, "%s", why);
}

/* The rest of a blocking entry point: the attempts, their result in
 * ret_result or in a local one cleared before returning. */
static ackrpc_status blocking_call(id_source *ids, uint32_t default_timeout_ms,
                                   const retry_rules *rules,
                                   const ackrpc_call_options *options, attempt_fn fn,
                                   attempt_args *a, ackrpc_result *ret_result) {
  ackrpc_result local = {0};
  ackrpc_result *r = ret_result ? ret_result : &local;
  memset(r, 0, sizeof *r);
  ackrpc_status st =
      call_with_retries(ids, default_timeout_ms, rules, options, fn, a, r);
  if (!ret_result) ackrpc_result_clear(&local);
  return st;
}

static ackrpc_status raw_attempt(void *ctx, const ackrpc_call_options *o,
                                 uint32_t wait_ms, ackrpc_result *r) {
  attempt_args *a = ctx;
  return one_shot(a->client, a->method_name, a->raw, a->raw_len, NULL, NULL, o, wait_ms,
                  r);
}

ackrpc_status ackrpc_client_call_raw(ackrpc_client *client, const char *method,
                                     const uint8_t *body, size_t body_len,
                                     const ackrpc_call_options *options,
                                     ackrpc_result *ret_result) {
  attempt_args a = {
      .client = client, .method_name = method, .raw = body, .raw_len = body_len};
  if (!client || !method || !akr_method_name_valid(method) || (body_len && !body))
    return refuse(ret_result, "missing argument or malformed method name");
  return blocking_call(&client->ids, client->timeout_ms, &client->retry, options,
                       raw_attempt, &a, ret_result);
}

static ackrpc_status pooled_call(ackrpc_client *client, const ackrpc_method *method,
                                 const ProtobufCMessage *request,
                                 const ackrpc_call_options *options, uint32_t wait_ms,
                                 ackrpc_result *r);

static ackrpc_status client_attempt(void *ctx, const ackrpc_call_options *o,
                                    uint32_t wait_ms, ackrpc_result *r) {
  attempt_args *a = ctx;
  if (a->client->pool_max)
    return pooled_call(a->client, a->method, a->request, o, wait_ms, r);
  return one_shot(a->client, a->method->name, NULL, 0, a->request, a->method->reply, o,
                  wait_ms, r);
}

ackrpc_status ackrpc_client_call(ackrpc_client *client, const ackrpc_method *method,
                                 const ProtobufCMessage *request,
                                 const ackrpc_call_options *options,
                                 ackrpc_result *ret_result) {
  attempt_args a = {.client = client, .method = method, .request = request};
  if (!client || !call_args_ok(method, request))
    return refuse(ret_result, "missing or mismatched argument");
  return blocking_call(&client->ids, client->timeout_ms, &client->retry, options,
                       client_attempt, &a, ret_result);
}

/* --- sessions ---------------------------------------------------------- */

ackrpc_status ackrpc_session_open(ackrpc_client *client, uint32_t timeout_ms,
                                  ackrpc_session **ret_session) {
  if (!client || !ret_session) return ACKRPC_E_INVAL;
  ackrpc_session *s = calloc(1, sizeof *s);
  if (!s) return ACKRPC_E_NOMEM;
  s->addr = client->addr;
  s->timeout_ms = client->timeout_ms;
  s->max_reply = client->max_reply;
  s->retry = client->retry;
  id_source_init(&s->ids, s);
  uint64_t deadline =
      akr_now_us() + (uint64_t)(timeout_ms ? timeout_ms : s->timeout_ms) * 1000u;
  if (blocking_connect(&s->addr, deadline, &s->fd) != 0) {
    ackrpc_status st = errno == EAGAIN ? ACKRPC_E_BUSY : ACKRPC_E_CONNECT;
    free(s);
    return st;
  }
  *ret_session = s;
  return ACKRPC_OK;
}

static void session_drop(ackrpc_session *s) {
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
}

/* One call on the session, no retries. */
static ackrpc_status session_once(ackrpc_session *s, const ackrpc_method *method,
                                  const ProtobufCMessage *request,
                                  const ackrpc_call_options *options, uint32_t wait_ms,
                                  ackrpc_result *r) {
  ackrpc_status st;
  uint32_t sent_ms =
      options && options->timeout_ms ? options->timeout_ms : s->timeout_ms;
  uint32_t timeout_ms = wait_ms && wait_ms < sent_ms ? wait_ms : sent_ms;
  uint64_t deadline = akr_now_us() + (uint64_t)timeout_ms * 1000u;
  request_frame f;
  st = encode_request(&s->ids, method, request, options, sent_ms, 1, &f, r);
  if (st != ACKRPC_OK) goto out;
  /* A kept connection the server has since ended (idle timeout, shutdown)
   * is not probed before each call: sending to a closed Unix socket fails
   * at once (EPIPE), nothing was delivered then, and the call is sent again
   * on a new connection. That saves a poll() per call. */
  for (int fresh = s->fd < 0;; fresh = 1) {
    if (s->fd < 0 && blocking_connect(&s->addr, deadline, &s->fd) != 0) {
      st = connect_failed(&s->addr, errno, r);
      s->fd = -1;
      break;
    }
    st = send_frame(s->fd, &f, deadline, s->max_reply, method->reply, r);
    if (fresh || st != ACKRPC_E_SEND) break;
    session_drop(s); /* the server had ended it: reconnect, send again */
    free(r->message);
    r->message = NULL;
  }
  free_request(&f);
  if (s->fd < 0) goto out;
  if (st == ACKRPC_OK)
    st = await_reply(s->fd, deadline, timeout_ms, s->max_reply, method->reply, r);
  /* Only a clean answer leaves the connection at a frame boundary. */
  if (ackrpc_status_outcome(st) != ACKRPC_OUTCOME_ACKED || st == ACKRPC_E_BAD_REPLY)
    session_drop(s);
out:
  return st;
}

static ackrpc_status session_attempt(void *ctx, const ackrpc_call_options *o,
                                     uint32_t wait_ms, ackrpc_result *r) {
  attempt_args *a = ctx;
  return session_once(a->session, a->method, a->request, o, wait_ms, r);
}

ackrpc_status ackrpc_session_call(ackrpc_session *s, const ackrpc_method *method,
                                  const ProtobufCMessage *request,
                                  const ackrpc_call_options *options,
                                  ackrpc_result *ret_result) {
  attempt_args a = {.session = s, .method = method, .request = request};
  if (!s || !call_args_ok(method, request))
    return refuse(ret_result, "missing or mismatched argument");
  return blocking_call(&s->ids, s->timeout_ms, &s->retry, options, session_attempt, &a,
                       ret_result);
}

ackrpc_session *ackrpc_session_close(ackrpc_session *s) {
  if (!s) return NULL;
  if (s->fd >= 0) {
    /* The half-close ends the session; the server closes in turn. There is
     * nothing to wait for: every call on it has had its reply. */
    shutdown(s->fd, SHUT_WR);
    close(s->fd);
  }
  free(s);
  return NULL;
}

/* A call through the client's pool: an idle session, or a new one. */
static ackrpc_status pooled_call(ackrpc_client *client, const ackrpc_method *method,
                                 const ProtobufCMessage *request,
                                 const ackrpc_call_options *options, uint32_t wait_ms,
                                 ackrpc_result *r) {
  pthread_mutex_lock(&client->pool_mu);
  ackrpc_session *s = client->idle;
  if (s) {
    client->idle = s->next_idle;
    client->n_idle--;
  }
  pthread_mutex_unlock(&client->pool_mu);
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) return fail(r, ACKRPC_E_NOMEM, ENOMEM, "session");
    s->addr = client->addr;
    s->timeout_ms = client->timeout_ms;
    s->max_reply = client->max_reply;
    id_source_init(&s->ids, s);
    s->fd = -1; /* connects in the call, within its deadline */
  }
  ackrpc_status st = session_once(s, method, request, options, wait_ms, r);
  if (s->fd >= 0) {
    pthread_mutex_lock(&client->pool_mu);
    if (client->n_idle < client->pool_max) {
      s->next_idle = client->idle;
      client->idle = s;
      client->n_idle++;
      s = NULL;
    }
    pthread_mutex_unlock(&client->pool_mu);
  }
  ackrpc_session_close(s);
  return st;
}

/* --- asynchronous ------------------------------------------------------ */

enum async_phase { A_CONNECT, A_SEND, A_RECEIVE, A_DONE };

typedef struct async_call {
  struct event ev;
  struct event_base *base;
  akr_address addr;
  size_t max_reply;
  const ProtobufCMessageDescriptor *reply_desc;
  int fd;
  enum async_phase phase;
  uint64_t deadline_us; /* this attempt's */
  uint64_t backoff_us;
  uint32_t timeout_ms;
  /* retries: the whole call's deadline, the attempt count, the policy, and
   * the jitter's random state (the client may be gone by then) */
  uint64_t call_deadline_us;
  unsigned attempt;
  retry_rules rules;
  akr_rng rng;
  uint8_t *out;
  size_t out_len, out_off;
  reply_buf in;
  ackrpc_result result;
  ackrpc_done_fn done;            /* or, for a stub: */
  ackrpc_stub_adapter_fn adapter; /* adapter(result, typed, user) */
  ackrpc_stub_fn typed;
  void *user;
} async_call;

static void async_step(async_call *a);

static void async_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  async_call *a = arg;
  if (what & EV_TIMEOUT && a->phase != A_DONE && a->phase != A_CONNECT &&
      akr_now_us() >= a->deadline_us) {
    if (a->phase == A_SEND)
      fail(&a->result, ACKRPC_E_SEND_TIMEOUT, 0, "%zu of %zu bytes sent", a->out_off,
           a->out_len);
    else
      fail(&a->result, ACKRPC_E_ACK_TIMEOUT, 0, "no reply within %u ms", a->timeout_ms);
    a->phase = A_DONE;
  }
  async_step(a);
}

/* Re-arms the one event for `what` on the socket (or a pure timer when fd is
 * -1), with the deadline or `delay_us` as timeout. */
static void async_wait(async_call *a, int fd, short what, uint64_t delay_us) {
  event_del(&a->ev);
  event_assign(&a->ev, a->base, fd, what, async_cb, a);
  struct timeval tv = delay_us ? akr_tv_us(delay_us) : akr_tv_until(a->deadline_us);
  event_add(&a->ev, &tv);
}

static void async_finish(async_call *a) {
  event_del(&a->ev);
  if (a->fd >= 0) close(a->fd);
  a->fd = -1;
  free(a->out);
  a->out = NULL;
  reply_buf_free(&a->in);
  if (a->adapter)
    a->adapter(&a->result, a->typed, a->user);
  else
    a->done(&a->result, a->user);
  ackrpc_result_clear(&a->result);
  free(a);
}

/* After a failed attempt: starts the next one after its backoff (on a
 * timer) if the policy allows and the call's deadline leaves time; 0 if the
 * call ends here. The same frame is sent again: the same call id. */
static int async_retry(async_call *a) {
  a->result.attempts = a->attempt;
  if (a->attempt >= a->rules.max_attempts || !retryable(&a->rules, a->result.status))
    return 0;
  uint64_t wait =
      akr_backoff_us(a->rules.initial_ms, a->rules.max_ms, a->attempt, &a->rng);
  uint64_t start = akr_now_us() + wait;
  if (start + 1000u >= a->call_deadline_us) return 0;
  event_del(&a->ev);
  if (a->fd >= 0) close(a->fd);
  a->fd = -1;
  a->out_off = 0;
  reply_buf_free(&a->in);
  reply_buf_init(&a->in);
  uint8_t id[ACKRPC_MAX_CALL_ID];
  size_t id_len = a->result.call_id_len;
  memcpy(id, a->result.call_id, id_len);
  ackrpc_result_clear(&a->result);
  memcpy(a->result.call_id, id, id_len);
  a->result.call_id_len = id_len;
  a->attempt++;
  a->phase = A_CONNECT;
  a->backoff_us = BUSY_RETRY_MIN_US;
  a->deadline_us = a->call_deadline_us;
  if (a->rules.attempt_ms &&
      start + (uint64_t)a->rules.attempt_ms * 1000u < a->deadline_us)
    a->deadline_us = start + (uint64_t)a->rules.attempt_ms * 1000u;
  async_wait(a, -1, 0, wait);
  return 1;
}

/* Advances the call as far as it can go without blocking. */
static void async_step(async_call *a) {
  for (;;) {
    switch (a->phase) {
    case A_CONNECT: {
      if (akr_connect(&a->addr, &a->fd) == 0) {
        a->phase = A_SEND;
        break;
      }
      int err = errno;
      if (err == EAGAIN && akr_now_us() + a->backoff_us < a->deadline_us) {
        async_wait(a, -1, 0, a->backoff_us); /* queue full: retry later */
        a->backoff_us = a->backoff_us * 2 > BUSY_RETRY_MAX_US ? BUSY_RETRY_MAX_US
                                                              : a->backoff_us * 2;
        return;
      }
      connect_failed(&a->addr, err, &a->result);
      a->phase = A_DONE;
      break;
    }
    case A_SEND: {
      ssize_t n =
          send(a->fd, a->out + a->out_off, a->out_len - a->out_off, MSG_NOSIGNAL);
      if (n > 0) {
        a->out_off += (size_t)n;
        if (a->out_off == a->out_len) {
          shutdown(a->fd, SHUT_WR);
          a->phase = A_RECEIVE;
          async_wait(a, a->fd, EV_READ, 0);
          return;
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        async_wait(a, a->fd, EV_WRITE, 0);
        return;
      }
      send_failed(a->fd, errno, a->max_reply, a->reply_desc, &a->result);
      a->phase = A_DONE;
      break;
    }
    case A_RECEIVE:
      if (!receive(a->fd, &a->in, a->max_reply, a->reply_desc, &a->result)) {
        async_wait(a, a->fd, EV_READ, 0);
        return;
      }
      a->phase = A_DONE;
      break;
    case A_DONE:
      if (!async_retry(a)) async_finish(a);
      return;
    }
  }
}

static ackrpc_status async_start(ackrpc_client *client, struct event_base *base,
                                 const ackrpc_method *method,
                                 const ProtobufCMessage *request,
                                 const ackrpc_call_options *options,
                                 ackrpc_done_fn done, ackrpc_stub_adapter_fn adapter,
                                 ackrpc_stub_fn typed, void *user) {
  if (!client || !call_args_ok(method, request) || !base ||
      (!done && !(adapter && typed)))
    return ACKRPC_E_INVAL;
  async_call *a = calloc(1, sizeof *a);
  if (!a) return ACKRPC_E_NOMEM;
  a->rules = client->retry;
  if (options && options->retry &&
      retry_rules_make(options->retry, &a->rules) != ACKRPC_OK) {
    free(a);
    return ACKRPC_E_INVAL;
  }
  a->timeout_ms =
      options && options->timeout_ms ? options->timeout_ms : client->timeout_ms;
  a->call_deadline_us = akr_now_us() + (uint64_t)a->timeout_ms * 1000u;
  a->attempt = 1;
  akr_rng_seed(&a->rng, akr_rng_next(&client->ids.rng));
  request_frame f;
  ackrpc_status st = encode_request(&client->ids, method, request, options,
                                    a->timeout_ms, 0, &f, &a->result);
  if (st != ACKRPC_OK) {
    ackrpc_result_clear(&a->result);
    free(a);
    return st;
  }
  if (f.bytes == f.stack) {
    a->out = malloc(f.len);
    if (!a->out) {
      ackrpc_result_clear(&a->result);
      free(a);
      return ACKRPC_E_NOMEM;
    }
    memcpy(a->out, f.stack, f.len);
  } else {
    a->out = f.bytes; /* take the heap buffer */
  }
  a->out_len = f.len;
  a->base = base;
  a->addr = client->addr;
  a->max_reply = client->max_reply;
  a->reply_desc = method->reply;
  a->fd = -1;
  a->phase = A_CONNECT;
  /* Every attempt sends this frame, with the whole call's timeout (as the
   * blocking calls do); an attempt waits attempt_ms at most. */
  a->deadline_us = a->call_deadline_us;
  if (a->rules.max_attempts > 1 && a->rules.attempt_ms &&
      a->rules.attempt_ms < a->timeout_ms)
    a->deadline_us = akr_now_us() + (uint64_t)a->rules.attempt_ms * 1000u;
  a->backoff_us = BUSY_RETRY_MIN_US;
  a->done = done;
  a->adapter = adapter;
  a->typed = typed;
  a->user = user;
  reply_buf_init(&a->in);
  /* Start from the loop, so `done` never runs inside this function. */
  event_assign(&a->ev, base, -1, 0, async_cb, a);
  event_active(&a->ev, EV_TIMEOUT, 0);
  return ACKRPC_OK;
}

ackrpc_status ackrpc_client_call_async(ackrpc_client *client, struct event_base *base,
                                       const ackrpc_method *method,
                                       const ProtobufCMessage *request,
                                       const ackrpc_call_options *options,
                                       ackrpc_done_fn done, void *user) {
  if (!done) return ACKRPC_E_INVAL;
  return async_start(client, base, method, request, options, done, NULL, NULL, user);
}

ackrpc_status ackrpc_stub_call_async(ackrpc_client *client, struct event_base *base,
                                     const ackrpc_method *method,
                                     const ProtobufCMessage *request,
                                     const ackrpc_call_options *options,
                                     ackrpc_stub_adapter_fn adapter,
                                     ackrpc_stub_fn done, void *user) {
  if (!adapter || !done) return ACKRPC_E_INVAL;
  return async_start(client, base, method, request, options, NULL, adapter, done, user);
}

ackrpc_status ackrpc_stub_call(ackrpc_client *client, const ackrpc_method *method,
                               const ProtobufCMessage *request,
                               ProtobufCMessage **ret_reply,
                               const ackrpc_call_options *options,
                               ackrpc_result *ret_result) {
  ackrpc_result local = {0};
  ackrpc_result *r = ret_result ? ret_result : &local;
  ackrpc_status st = ackrpc_client_call(client, method, request, options, r);
  if (st == ACKRPC_OK && ret_reply) {
    *ret_reply = r->reply;
    r->reply = NULL;
  }
  if (!ret_result) ackrpc_result_clear(&local);
  return st;
}

/* --- asynchronous sessions --------------------------------------------- */

/* One call in the pipeline, in the order its frame was queued. */
typedef struct pending {
  struct pending *next;
  ackrpc_done_fn done;
  void *user;
  const ProtobufCMessageDescriptor *reply_desc;
  uint64_t deadline_us;
  uint32_t timeout_ms;
  uint64_t end; /* its frame is fully sent once `sent` reaches this */
  int finished; /* `done` already ran (deadline): discard its reply */
  ackrpc_result result;
} pending;

struct ackrpc_async_session {
  struct event_base *base;
  akr_address addr;
  size_t max_reply;
  uint32_t timeout_ms;
  id_source ids;
  int fd; /* -1: not connected */
  short watching;
  struct event io, timer, kick;
  uint64_t retry_at_us, backoff_us; /* busy connect: not before retry_at_us */
  /* output: bytes [out_off, out_len) are queued, not yet sent */
  uint8_t *out;
  size_t out_off, out_len, out_cap;
  uint64_t queued, sent; /* bytes queued and sent on this connection */
  /* input: bytes [in_off, in_len) are received, not yet parsed */
  uint8_t *in;
  size_t in_off, in_len, in_cap;
  pending *head, *tail;
  int closing, running;
};

static void as_run(ackrpc_async_session *s);

static void as_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  as_run(arg);
}

static void as_kick(ackrpc_async_session *s) {
  if (!event_pending(&s->kick, EV_TIMEOUT, NULL)) event_active(&s->kick, EV_TIMEOUT, 0);
}

ackrpc_status ackrpc_async_session_open(ackrpc_client *client, struct event_base *base,
                                        ackrpc_async_session **ret_session) {
  if (!client || !base || !ret_session) return ACKRPC_E_INVAL;
  ackrpc_async_session *s = calloc(1, sizeof *s);
  if (!s) return ACKRPC_E_NOMEM;
  s->in = malloc(4096);
  if (!s->in) {
    free(s);
    return ACKRPC_E_NOMEM;
  }
  s->in_cap = 4096;
  s->base = base;
  s->addr = client->addr;
  s->max_reply = client->max_reply;
  s->timeout_ms = client->timeout_ms;
  id_source_init(&s->ids, s);
  s->fd = -1;
  event_assign(&s->io, base, -1, 0, as_cb, s);
  evtimer_assign(&s->timer, base, as_cb, s);
  evtimer_assign(&s->kick, base, as_cb, s);
  *ret_session = s;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_async_session_call(ackrpc_async_session *s,
                                        const ackrpc_method *method,
                                        const ProtobufCMessage *request,
                                        const ackrpc_call_options *options,
                                        ackrpc_done_fn done, void *user) {
  if (!s || !done || !call_args_ok(method, request)) return ACKRPC_E_INVAL;
  if (s->closing) return ACKRPC_E_STATE;
  pending *p = calloc(1, sizeof *p);
  if (!p) return ACKRPC_E_NOMEM;
  p->timeout_ms = options && options->timeout_ms ? options->timeout_ms : s->timeout_ms;
  /* Encoded straight into the output buffer: the body's one copy. */
  akr_request_spec spec;
  size_t n;
  ackrpc_status st = request_spec(&s->ids, method->name, NULL, 0, request, options,
                                  p->timeout_ms, &spec, &n, &p->result);
  if (st == ACKRPC_OK && s->out_off && s->out_len + n > s->out_cap) {
    /* Reclaim what is already sent before growing: with frames about the
     * size of the socket buffer a send pass rarely drains everything, and
     * the buffer would otherwise grow (and be copied) without bound. */
    memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
    s->out_len -= s->out_off;
    s->out_off = 0;
  }
  if (st == ACKRPC_OK && s->out_len + n > s->out_cap) {
    size_t cap = s->out_cap ? s->out_cap : 4096;
    while (cap < s->out_len + n)
      cap *= 2;
    uint8_t *q = realloc(s->out, cap);
    if (q) {
      s->out = q;
      s->out_cap = cap;
    } else {
      st = ACKRPC_E_NOMEM;
    }
  }
  if (st != ACKRPC_OK) {
    ackrpc_result_clear(&p->result);
    free(p);
    return st;
  }
  s->out_len += akr_request_encode(&spec, s->out + s->out_len);
  s->queued += n;
  p->end = s->queued;
  p->result.attempts = 1;
  p->done = done;
  p->user = user;
  p->reply_desc = method->reply;
  p->deadline_us = akr_now_us() + (uint64_t)p->timeout_ms * 1000u;
  if (s->tail)
    s->tail->next = p;
  else
    s->head = p;
  s->tail = p;
  as_kick(s); /* the work happens on the loop: `done` never runs in here */
  return ACKRPC_OK;
}

void ackrpc_async_session_close(ackrpc_async_session *s) {
  if (!s) return;
  s->closing = 1;
  as_kick(s);
}

static void as_watch(ackrpc_async_session *s, short what) {
  if (s->watching == what) return;
  event_del(&s->io);
  s->watching = what;
  if (!what) return;
  event_assign(&s->io, s->base, s->fd, what | EV_PERSIST, as_cb, s);
  event_add(&s->io, NULL);
}

static void as_finish(pending *p) {
  if (!p->finished) p->done(&p->result, p->user);
  ackrpc_result_clear(&p->result);
  free(p);
}

/* Ends the connection and completes every queued call: those whose frame
 * was fully sent with E_NO_ACK (outcome unknown), the others with `unsent`
 * (not delivered). The queued bytes go with them, so nothing reported "not
 * delivered" is sent later. The list is detached first: calls that the
 * callbacks queue start afresh on a new connection. */
static void as_fail_all(ackrpc_async_session *s, ackrpc_status unsent, int err,
                        const char *why) {
  pending *list = s->head;
  s->head = s->tail = NULL;
  uint64_t sent = s->fd >= 0 ? s->sent : 0;
  for (pending *p = list; p; p = p->next) {
    if (p->finished) continue;
    if (p->end <= sent)
      fail(&p->result, ACKRPC_E_NO_ACK, err, "%s, after the request was sent", why);
    else
      fail(&p->result, unsent, err, "%s", why);
  }
  as_watch(s, 0);
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  s->out_off = s->out_len = 0;
  s->in_off = s->in_len = 0;
  s->queued = s->sent = 0;
  while (list) {
    pending *next = list->next;
    as_finish(list);
    list = next;
  }
}

/* Completes calls whose deadline passed; returns the earliest deadline left
 * (0 if none). A call sent but unanswered stays in the pipeline, finished,
 * so its late reply is recognised and dropped. A call not fully sent cannot
 * be taken back out of the byte stream: the connection is dropped instead.
 * Returns -1 (as UINT64_MAX) if it failed the session. */
static uint64_t as_deadlines(ackrpc_async_session *s) {
  uint64_t now = akr_now_us(), next = 0;
  for (pending *p = s->head; p; p = p->next) {
    if (p->finished) continue;
    if (p->deadline_us > now) {
      if (!next || p->deadline_us < next) next = p->deadline_us;
      continue;
    }
    if (s->fd >= 0 && p->end <= s->sent) {
      fail(&p->result, ACKRPC_E_ACK_TIMEOUT, 0, "no reply within %u ms", p->timeout_ms);
      p->finished = 1;
      p->done(&p->result, p->user);
      ackrpc_result_clear(&p->result);
    } else {
      as_fail_all(s, ACKRPC_E_SEND_TIMEOUT, 0,
                  "the deadline passed before it was sent");
      return UINT64_MAX;
    }
  }
  return next;
}

/* Connects if calls are waiting. 0: connected (or nothing to do yet). */
static void as_connect(ackrpc_async_session *s) {
  uint64_t now = akr_now_us();
  if (s->fd >= 0 || !s->head || now < s->retry_at_us) return;
  if (akr_connect(&s->addr, &s->fd) == 0) {
    s->backoff_us = s->retry_at_us = 0;
    s->watching = 0;
    return;
  }
  int err = errno;
  s->fd = -1;
  const char *where = s->addr.abstract ? "abstract socket" : s->addr.path;
  char why[160];
  if (err == EAGAIN) {
    /* The server's queue is full: nothing was sent, so retry until the
     * earliest deadline. */
    s->backoff_us = s->backoff_us ? 2 * s->backoff_us : BUSY_RETRY_MIN_US;
    if (s->backoff_us > BUSY_RETRY_MAX_US) s->backoff_us = BUSY_RETRY_MAX_US;
    s->retry_at_us = now + s->backoff_us;
    for (pending *p = s->head; p; p = p->next) {
      if (!p->finished && p->deadline_us > s->retry_at_us) continue;
      snprintf(why, sizeof why, "connecting to %s: queue full", where);
      s->backoff_us = s->retry_at_us = 0;
      as_fail_all(s, ACKRPC_E_BUSY, err, why);
      return;
    }
    return;
  }
  snprintf(why, sizeof why, "connecting to %s", where);
  as_fail_all(s, ACKRPC_E_CONNECT, err, why);
}

/* Sends what is queued; -1 if that failed the session. */
static int as_send(ackrpc_async_session *s) {
  while (s->out_off < s->out_len) {
    ssize_t n = send(s->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      s->out_off += (size_t)n;
      s->sent += (uint64_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    as_fail_all(s, ACKRPC_E_SEND, errno, "sending the request");
    return -1;
  }
  s->out_off = s->out_len = 0;
  return 0;
}

/* Reads and hands out every complete reply; -1 if the connection ended or
 * broke (the session was failed). */
static int as_receive(ackrpc_async_session *s) {
  for (;;) {
    size_t need = AKR_PREFIX_LEN;
    while (s->head) {
      akr_frame f;
      akr_frame_error fe = akr_frame_scan(s->in + s->in_off, s->in_len - s->in_off,
                                          AKR_FRAME_REPLY, s->max_reply, &f, &need);
      if (fe == AKR_FRAME_INCOMPLETE) break;
      if (fe != AKR_FRAME_OK) {
        char why[96];
        snprintf(why, sizeof why, "malformed reply: %s", akr_frame_error_text(fe));
        as_fail_all(s, ACKRPC_E_SEND, 0, why);
        return -1;
      }
      pending *p = s->head;
      s->head = p->next;
      if (!s->head) s->tail = NULL;
      if (!p->finished) decode_reply_frame(&f, p->reply_desc, &p->result);
      s->in_off += f.frame_len;
      as_finish(p); /* may queue calls or close: re-checked by the caller */
      if (s->fd < 0) return -1;
    }
    if (!s->head) return 0;
    /* Room for the frame being read (its size is known once its prefix is
     * in), plus a byte so that read() can report EOF. */
    size_t avail = s->in_len - s->in_off;
    if (s->in_off && s->in_off + need + 1 > s->in_cap) {
      memmove(s->in, s->in + s->in_off, avail);
      s->in_off = 0;
      s->in_len = avail;
    }
    if (need + 1 > s->in_cap) {
      uint8_t *q = realloc(s->in, need + 4096);
      if (!q) {
        as_fail_all(s, ACKRPC_E_SEND, ENOMEM, "no memory for the reply");
        return -1;
      }
      s->in = q;
      s->in_cap = need + 4096;
    }
    ssize_t n = read(s->fd, s->in + s->in_len, s->in_cap - s->in_len);
    if (n > 0) {
      s->in_len += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    as_fail_all(s, ACKRPC_E_SEND, n == 0 ? 0 : errno,
                n == 0 ? "the server closed the session" : "reading replies");
    return -1;
  }
}

/* Drives the session as far as it goes without blocking. Callbacks run in
 * here and may queue calls or close the session; a nested run (from a
 * callback's ackrpc_async_session_call()) only kicks the loop, and only the
 * outermost run frees a closed session. */
static void as_run(ackrpc_async_session *s) {
  if (s->running) {
    as_kick(s);
    return;
  }
  s->running = 1;
  uint64_t next = 0;
  for (int round = 0; round < 16; round++) {
    next = as_deadlines(s);
    if (next == UINT64_MAX) continue;
    as_connect(s);
    if (s->fd < 0) break;
    if (as_send(s) != 0 || as_receive(s) != 0) continue;
    break;
  }
  if (s->fd >= 0)
    as_watch(s, s->head ? (short)(s->out_len ? EV_READ | EV_WRITE : EV_READ) : 0);
  uint64_t wake = next == UINT64_MAX ? 0 : next;
  if (s->fd < 0 && s->retry_at_us && (!wake || s->retry_at_us < wake))
    wake = s->retry_at_us;
  if (wake) {
    struct timeval tv = akr_tv_until(wake);
    evtimer_add(&s->timer, &tv);
  } else {
    evtimer_del(&s->timer);
  }
  s->running = 0;
  /* Closed, and nothing left but calls already completed by their deadline
   * (whose late replies would only be dropped): free it now. */
  int live = 0;
  for (pending *p = s->head; p && !live; p = p->next)
    live = !p->finished;
  if (s->closing && !live) {
    while (s->head) {
      pending *p = s->head;
      s->head = p->next;
      as_finish(p);
    }
    event_del(&s->io);
    event_del(&s->timer);
    event_del(&s->kick);
    if (s->fd >= 0) {
      shutdown(s->fd, SHUT_WR);
      close(s->fd);
    }
    free(s->out);
    free(s->in);
    free(s);
  }
}
