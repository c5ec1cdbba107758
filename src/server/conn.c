/* conn.c: connections (conn.h). */
#include "server/conn.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "server/call.h"
#include "server/tap.h"
#include "wire/encode.h"

#define INITIAL_BUFFER 4096
#define KEEP_BUFFER (64u << 10) /* pooled connections keep buffers this small */
#define POOL_MAX 256
#define SPARE_IDLE_MS 1000

static void on_io(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);

/* --- the pending list and events --------------------------------------- */

static void pending_add(akr_conn *c) {
  ackrpc_server *s = c->server;
  if (c->pending) return;
  c->pending = 1;
  c->pending_since_us = akr_now_us();
  c->pend_next = NULL;
  c->pend_prev = s->pend_tail;
  if (s->pend_tail)
    s->pend_tail->pend_next = c;
  else
    s->pend_head = c;
  s->pend_tail = c;
  s->n_pending++;
  if (c->uacct) c->uacct->pending++;
}

static void pending_remove(akr_conn *c) {
  ackrpc_server *s = c->server;
  if (!c->pending) return;
  c->pending = 0;
  if (c->pend_prev)
    c->pend_prev->pend_next = c->pend_next;
  else
    s->pend_head = c->pend_next;
  if (c->pend_next)
    c->pend_next->pend_prev = c->pend_prev;
  else
    s->pend_tail = c->pend_prev;
  c->pend_prev = c->pend_next = NULL;
  s->n_pending--;
  if (c->uacct) c->uacct->pending--;
}

/* Sets the event interest: 0, EV_READ or EV_WRITE. */
static void watch(akr_conn *c, short what) {
  if (c->watching == what) return;
  if (c->watching) event_del(&c->io);
  c->watching = what;
  if (!what) return;
  event_assign(&c->io, c->server->base, c->fd, what | EV_PERSIST, on_io, c);
  event_add(&c->io, NULL);
}

static void set_timer(akr_conn *c, uint64_t deadline_us) {
  struct timeval tv = akr_tv_until(deadline_us);
  evtimer_add(&c->timer, &tv);
}

/* --- buffers ----------------------------------------------------------- */

/* Frees the input buffer: a block goes back to `spare` (NULL: unmapped). */
static void in_free(akr_conn *c, akr_spare *spare) {
  if (c->in_cap >= AKR_SPARE_MIN)
    akr_spare_put(spare, c->in, c->in_cap);
  else
    free(c->in);
  c->in = NULL;
  c->in_cap = c->in_off = c->in_len = 0;
}

static void on_spare_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ackrpc_server *s = arg;
  if (akr_spare_idle(&s->spare)) akr_conn_spare_watch(s);
}

void akr_conn_spare_watch(ackrpc_server *s) {
  if (!s->spare_timer) s->spare_timer = evtimer_new(s->base, on_spare_timer, s);
  if (s->spare_timer && s->spare.n && !evtimer_pending(s->spare_timer, NULL)) {
    struct timeval tv = akr_tv_us(SPARE_IDLE_MS * 1000u);
    evtimer_add(s->spare_timer, &tv);
  }
}

/* Makes room for `want` bytes from in_off: compacts, then grows (a large
 * buffer is a block, likely the pages of the last large call's buffer). */
static int in_room(akr_conn *c, size_t want) {
  size_t avail = c->in_len - c->in_off;
  if (c->in_off && c->in_off + want > c->in_cap) {
    memmove(c->in, c->in + c->in_off, avail);
    c->in_off = 0;
    c->in_len = avail;
  }
  if (want <= c->in_cap) return 0;
  size_t cap = want < INITIAL_BUFFER ? INITIAL_BUFFER : want;
  /* From a session's second call on, room for a few frames of this size:
   * a pipelining client's frames then come in a few per read, not one. */
  if (c->calls_done && cap < KEEP_BUFFER / 4) cap *= 4;
  if (cap < AKR_SPARE_MIN) {
    uint8_t *p = realloc(c->in, cap);
    if (!p) return -1;
    c->in = p;
    c->in_cap = cap;
    return 0;
  }
  uint8_t *p = akr_spare_get(&c->server->spare, cap, &cap);
  if (!p) return -1;
  if (avail) memcpy(p, c->in + c->in_off, avail);
  in_free(c, &c->server->spare);
  c->in = p;
  c->in_cap = cap;
  c->in_len = avail;
  return 0;
}

/* Reads once, making room for `need` bytes of the current frame (or at
 * least one byte, to see EOF). 1 on data or EOF, 0 if the read would
 * block, -1 on error. */
static int fill(akr_conn *c, size_t need) {
  size_t avail = c->in_len - c->in_off;
  if (in_room(c, need > avail ? need : avail + 1) != 0) return -1;
  akr_acct_conn_input(c);
  for (;;) {
    size_t room = c->in_cap - c->in_len;
    ssize_t n = akr_fd_read(c->fd, c->in + c->in_len, room,
                            c->server->opt.max_fds_per_call, &c->fdq, c->rx);
    if (n > 0) {
      c->in_len += (size_t)n;
      c->rx += (uint64_t)n;
      c->drained = (size_t)n < room;
      return 1;
    }
    if (n == 0) {
      c->eof = 1;
      return 1;
    }
    if (errno == EINTR) continue;
    c->drained = 1;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  }
}

/* A connection with nothing buffered that waits for its peer holds no
 * buffer: 1,000 idle connections then cost the server their objects only,
 * not 8 KiB each. Buffers come back on the next read. */
static void shed(akr_conn *c) {
  if (c->in_len != c->in_off) return;
  in_free(c, &c->server->spare);
  akr_acct_conn_input(c);
  akr_conn_spare_watch(c->server);
}

/* Room for `n` more bytes of output: where to write them, or NULL if out
 * of memory. */
static uint8_t *out_reserve(akr_conn *c, size_t n) {
  if (c->out_len + n > c->out_cap) {
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + n)
      cap *= 2;
    uint8_t *p = realloc(c->out, cap);
    if (!p) return NULL;
    c->out = p;
    c->out_cap = cap;
  }
  return c->out + c->out_len;
}

static int out_append(akr_conn *c, const uint8_t *bytes, size_t n) {
  uint8_t *p = out_reserve(c, n);
  if (!p) return -1;
  memcpy(p, bytes, n);
  c->out_len += n;
  return 0;
}

/* --- writing ----------------------------------------------------------- */

static const char *status_text(uint32_t status) {
  return ackrpc_status_name((ackrpc_status)status);
}

/* The reply in c->rec is written (or the peer left while it was): counts
 * it for its method and, at DEBUG, logs it. No allocation, no lock; the
 * clock is read only if the call was dispatched. */
static void record(akr_conn *c) {
  akr_reply_rec *r = &c->rec;
  if (!r->stats) return;
  int timed = r->t_start_us != 0;
  uint64_t us = timed ? akr_now_us() - r->t_start_us : 0;
  akr_stats_record(r->stats, r->status, r->bytes_in, r->bytes_out, timed, us);
  if (c->server->opt.log_level >= ACKRPC_LOG_DEBUG)
    akr_slog(c->server, ACKRPC_LOG_DEBUG,
             "call method=%s status=%s us=%llu peer_uid=%u peer_pid=%d%s%s%s "
             "bytes_in=%zu bytes_out=%zu",
             r->method, status_text(r->status), (unsigned long long)us,
             (unsigned)c->peer.uid, (int)c->peer.pid,
             r->bridged ? " bridged=1 principal=\"" : "",
             r->bridged ? r->principal : "", r->bridged ? "\"" : "", r->bytes_in,
             r->bytes_out);
  r->stats = NULL;
}

/* What the statistics will count for the reply to the current frame (and,
 * at DEBUG, the principal of its call, if any: NULL for a local answer). */
static void rec_start(akr_conn *c, uint32_t status, size_t bytes_out,
                      const ackrpc_call *call) {
  const akr_method_entry *m = c->stat_m;
  akr_reply_rec *r = &c->rec;
  r->stats = m ? m->stats : NULL;
  r->method = m ? m->m.name : NULL;
  r->status = status;
  r->bytes_in = c->frame_len;
  r->bytes_out = bytes_out;
  r->t_start_us = c->t_start_us;
  r->bridged = c->bridge;
  r->principal[0] = '\0';
  if (c->bridge && call && call->principal &&
      c->server->opt.log_level >= ACKRPC_LOG_DEBUG)
    snprintf(r->principal, sizeof r->principal, "%s", call->principal);
  c->stat_m = NULL;
  c->t_start_us = 0;
}

/* The frame is answered: get ready for the next one. */
static void next_frame(akr_conn *c) {
  if (!c->in_released) c->in_off += c->frame_len;
  c->in_released = 0;
  c->frame_len = 0;
  c->head_done = 0;
  c->calls_done++;
  c->read_deadline_us = 0;
  c->state = AKR_CONN_READING;
  if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
  pending_add(c);
}

/* The reply is on its way: count it, then close or read the next frame. */
static void written(akr_conn *c) {
  evtimer_del(&c->timer);
  record(c);
  if (c->close_after_write)
    c->state = AKR_CONN_DONE;
  else
    next_frame(c);
}

/* Sends buf[*off, len). 1 once all is sent; 0 if it has to wait (WRITING,
 * watching EV_WRITE) or the peer is gone (DONE). */
static int send_bytes(akr_conn *c, const uint8_t *buf, size_t *off, size_t len,
                      const akr_fd_batch *fds) {
  while (*off < len) {
    /* A reply's descriptors go with its first byte, in a send of its own
     * bytes (docs/PROTOCOL.md §2.5). */
    struct iovec iov = {.iov_base = (void *)(buf + *off), .iov_len = len - *off};
    ssize_t n =
        fds && fds->n && *off == 0
            ? akr_fd_send(c->fd, &iov, 1, fds->fds, fds->n, MSG_NOSIGNAL | MSG_DONTWAIT)
            : send(c->fd, buf + *off, len - *off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      *off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (c->state != AKR_CONN_WRITING) {
        c->state = AKR_CONN_WRITING;
        set_timer(c, akr_now_us() + (uint64_t)c->server->opt.read_timeout_ms * 1000u);
      }
      watch(c, EV_WRITE);
      return 0;
    }
    c->state = AKR_CONN_DONE; /* the peer is gone */
    record(c);
    return 0;
  }
  return 1;
}

/* Writes the queued bytes, then what is left of wcall's reply, then moves
 * the connection on. */
static void write_out(akr_conn *c) {
  if (c->out_len > c->out_off) {
    if (!send_bytes(c, c->out, &c->out_off, c->out_len, NULL)) return;
    c->out_off = c->out_len = 0;
  }
  if (c->wcall) {
    if (!send_bytes(c, c->wcall->out, &c->wcall_off, c->wcall->out_len,
                    &c->wcall->reply_fds))
      return;
    akr_call_unref(c->wcall, 1);
    c->wcall = NULL;
  }
  written(c);
}

void akr_conn_answer(akr_conn *c, ackrpc_status status, const char *message,
                     int then_close) {
  pending_remove(c);
  c->close_after_write = then_close;
  akr_reply_spec spec = {.status = (uint32_t)status, .message = message};
  size_t n = akr_reply_size(&spec);
  uint8_t *p = out_reserve(c, n);
  if (!p) {
    c->state = AKR_CONN_DONE;
    return;
  }
  c->out_len += akr_reply_encode(&spec, p);
  rec_start(c, (uint32_t)status, n, NULL);
  write_out(c);
}

void akr_conn_reply(akr_conn *c, ackrpc_call *call) {
  if (c->call == call) c->call = NULL;
  call->conn = NULL;
  pending_remove(c);
  rec_start(c, call->reply_status, call->out_len, call);
  if (c->server->tap) akr_tap_reply_frame(c->server, call, call->out, call->out_len);
  /* No reply could be made (out of memory): the connection ends. */
  c->close_after_write = call->out_len == 0;
  /* Pipelined frames: the answer waits for the next one (corked), or joins
   * those waiting, so that all go out in a single send(). */
  if (!call->reply_fds.n && (c->corked || c->out_len > c->out_off) &&
      out_append(c, call->out, call->out_len) == 0) {
    akr_call_unref(call, 1);
    if (c->corked)
      written(c);
    else
      write_out(c);
    return;
  }
  c->wcall = call;
  c->wcall_off = 0;
  write_out(c);
}

/* A large frame, decoded and alone in the buffer, whose call waits for its
 * handler: the call holds copies of all it needs (protobuf-c copies out of
 * its input), so the buffer goes back to the spare store meanwhile. 256
 * connections waiting on 4 MiB requests then hold their decoded requests,
 * not 1 GiB of frames. */
static void release_input(akr_conn *c) {
  if (c->in_cap < AKR_SPARE_MIN || c->in_len - c->in_off != c->frame_len) return;
  in_free(c, &c->server->spare);
  akr_acct_conn_input(c);
  akr_conn_spare_watch(c->server);
  c->in_released = 1; /* the frame is gone: next_frame() has nothing to skip */
}

void akr_conn_busy(akr_conn *c, uint64_t deadline_us) {
  c->state = AKR_CONN_BUSY;
  pending_remove(c);
  release_input(c);
  set_timer(c, deadline_us);
  /* Level-triggered readiness from pipelined frames would wake the loop
   * again and again: stop reading meanwhile. */
  watch(c, 0);
  /* Answers batched so far need not wait for this call. What cannot be
   * sent at once stays first in line, before this call's reply. */
  size_t off = c->out_off;
  while (off < c->out_len) {
    ssize_t n =
        send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0 && !(n < 0 && errno == EINTR)) break;
    if (n > 0) off += (size_t)n;
  }
  c->out_off = off;
  if (off == c->out_len) c->out_off = c->out_len = 0;
}

void akr_conn_claim_fds(akr_conn *c, akr_fd_batch *ret) {
  akr_fdq_claim(&c->fdq, c->frame_at, c->frame_at + c->frame_len, ret);
}

void akr_conn_part(akr_conn *c) {
  ackrpc_call *call = c->call;
  if (!call) return;
  c->call = NULL;
  call->conn = NULL;
  akr_rc_unwait(&call->rc_wait);
  call->waiting = 0;
  akr_call_unref(call, 1);
}

/* --- reading and the state machine ------------------------------------- */

/* The frame at the read position could not be read whole: answer and end. */
static void refuse_stream(akr_conn *c, akr_frame_error fe) {
  akr_event(c->server, AKR_EV_BAD_REQUEST, ACKRPC_LOG_INFO,
            "peer_uid=%u peer_pid=%d error=\"%s\"", (unsigned)c->peer.uid,
            (int)c->peer.pid, akr_frame_error_text(fe));
  watch(c, 0);
  akr_conn_answer(c, akr_frame_error_status(fe), akr_frame_error_text(fe), 1);
}

/* A complete frame: hand it to the hooks. Pipelined: if another whole
 * frame is already here, an inline answer to this one waits to go out with
 * the next in a single send(). */
static void dispatch_frame(akr_conn *c, const akr_frame *f, const uint8_t *at,
                           size_t avail) {
  ackrpc_server *s = c->server;
  akr_frame next;
  if (akr_fdq_misplaced(&c->fdq, c->frame_at, c->frame_at + f->frame_len)) {
    akr_event(s, AKR_EV_BAD_REQUEST, ACKRPC_LOG_INFO,
              "peer_uid=%u peer_pid=%d error=\"descriptors misplaced\"",
              (unsigned)c->peer.uid, (int)c->peer.pid);
    akr_conn_part(c);
    akr_conn_answer(c, ACKRPC_INVALID_ARGUMENT,
                    "descriptors sent inside a frame, not with its first byte", 0);
    return;
  }
  /* Not past KEEP_BUFFER of answers waiting: a peer that pipelines many
   * small calls and reads nothing cannot grow the output without bound. */
  c->corked = c->out_len - c->out_off < KEEP_BUFFER &&
              avail - f->frame_len >= AKR_PREFIX_LEN &&
              akr_frame_scan(at + f->frame_len, avail - f->frame_len, AKR_FRAME_REQUEST,
                             s->opt.max_request_size, &next, NULL) == AKR_FRAME_OK;
  s->hooks->dispatch(c, f);
  c->corked = 0;
}

/* No complete frame is buffered: reads more, or waits. 1 to go on, 0 to
 * return to the loop. */
static int read_more(akr_conn *c, size_t need, size_t avail) {
  ackrpc_server *s = c->server;
  /* In a session, after an answer with nothing buffered: the last read
   * drained the socket, so wait for the loop to report more (it is level-
   * triggered: nothing is missed) rather than read only to get EAGAIN.
   * After a connection's first call it reads on (calls_done is 1 then): a
   * one-shot client's EOF is usually there already. */
  int skip_read = c->drained && c->calls_done > 1 && avail == 0;
  int r = skip_read ? 0 : fill(c, need);
  if (r < 0) c->state = AKR_CONN_DONE;
  if (r != 0) return 1;
  if (!skip_read) shed(c);
  if (!c->read_deadline_us) {
    c->read_deadline_us = akr_now_us() + (uint64_t)s->opt.read_timeout_ms * 1000u;
    set_timer(c, c->read_deadline_us);
  }
  watch(c, EV_READ);
  return 0;
}

void akr_conn_resume(akr_conn *c) {
  ackrpc_server *s = c->server;
  for (;;) {
    if (c->state == AKR_CONN_DONE) {
      akr_conn_close(c);
      return;
    }
    if (c->state != AKR_CONN_READING) return; /* a handler or a write is pending */
    if (s->stopping && c->calls_done && c->in_off == c->in_len) {
      akr_conn_close(c); /* an idle session: end it at a frame boundary */
      return;
    }
    akr_frame f = {0};
    size_t need = 0, avail = c->in_len - c->in_off;
    const uint8_t *at = c->in ? c->in + c->in_off : NULL; /* no buffer while idle */
    akr_frame_error fe = akr_frame_scan(at, avail, AKR_FRAME_REQUEST,
                                        s->opt.max_request_size, &f, &need);
    if ((fe == AKR_FRAME_OK || fe == AKR_FRAME_INCOMPLETE) && f.frame_len &&
        !c->head_done && avail >= AKR_PREFIX_LEN + (size_t)f.head_len) {
      c->frame_len = f.frame_len;
      c->frame_at = c->rx - (c->in_len - c->in_off);
      if (!s->hooks->admit(c, &f, fe == AKR_FRAME_OK)) continue;
      c->head_done = 1;
    }
    if (fe == AKR_FRAME_OK) {
      dispatch_frame(c, &f, at, avail);
      continue;
    }
    if (fe == AKR_FRAME_INCOMPLETE && c->eof) {
      if (avail == 0) {
        akr_conn_close(c);
        return;
      }
      fe = AKR_FRAME_TRUNCATED; /* never dispatched */
    }
    if (fe != AKR_FRAME_INCOMPLETE) {
      refuse_stream(c, fe);
      continue;
    }
    /* Until the head is admitted, room for the head only: the body's room
     * is granted by admission, within the memory account. */
    if (f.frame_len && !c->head_done && need > AKR_PREFIX_LEN + (size_t)f.head_len)
      need = AKR_PREFIX_LEN + (size_t)f.head_len;
    if (!read_more(c, need, avail)) return;
  }
}

static void on_io(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  akr_conn *c = arg;
  if (what & EV_READ) c->drained = 0; /* there is something to read */
  if (c->state == AKR_CONN_WRITING) write_out(c);
  akr_conn_resume(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  akr_conn *c = arg;
  ackrpc_server *s = c->server;
  switch (c->state) {
  case AKR_CONN_READING:
    if (c->calls_done && c->in_off == c->in_len) {
      c->state = AKR_CONN_DONE; /* an idle session: no frame to answer */
      break;
    }
    akr_event(s, AKR_EV_READ_TIMEOUT, ACKRPC_LOG_INFO, "peer_uid=%u peer_pid=%d ms=%u",
              (unsigned)c->peer.uid, (int)c->peer.pid, s->opt.read_timeout_ms);
    watch(c, 0);
    akr_conn_answer(c, ACKRPC_DEADLINE_EXCEEDED,
                    "request not received within the server's read timeout", 1);
    break;
  case AKR_CONN_BUSY: s->hooks->expired(c); break;
  case AKR_CONN_WRITING:
  case AKR_CONN_DONE: c->state = AKR_CONN_DONE; break;
  }
  akr_conn_resume(c);
}

/* --- life cycle -------------------------------------------------------- */

static akr_conn *conn_get(ackrpc_server *s) {
  akr_conn *c = s->conn_pool;
  if (c) {
    s->conn_pool = c->next;
    s->n_conn_pool--;
  } else {
    c = calloc(1, sizeof *c);
    if (!c) return NULL;
  }
  uint8_t *in = c->in, *out = c->out;
  size_t in_cap = c->in_cap, out_cap = c->out_cap;
  memset(c, 0, offsetof(akr_conn, io));
  c->in = in;
  c->in_cap = in_cap;
  c->out = out;
  c->out_cap = out_cap;
  c->server = s;
  if (!c->in) {
    /* Allocated up front: the first read needs it, and pooled connections
     * keep theirs, so most calls allocate nothing here. */
    c->in = malloc(INITIAL_BUFFER);
    c->in_cap = c->in ? INITIAL_BUFFER : 0;
  }
  return c;
}

static void conn_free(akr_conn *c, akr_spare *spare) {
  in_free(c, spare);
  free(c->out);
  free(c);
}

akr_conn *akr_conn_start(ackrpc_server *s, int fd) {
  akr_conn *c = conn_get(s);
  if (!c || !c->in) {
    if (c) conn_free(c, &s->spare);
    close(fd);
    return NULL;
  }
  c->fd = fd;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
    c->peer = (ackrpc_peer){.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
  else
    c->peer = (ackrpc_peer){.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
  event_assign(&c->io, s->base, fd, EV_READ | EV_PERSIST, on_io, c);
  evtimer_assign(&c->timer, s->base, on_timer, c);
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->n_conns++;
  pending_add(c);
  return c;
}

void akr_conn_close(akr_conn *c) {
  ackrpc_server *s = c->server;
  if (c->fd < 0) return;
  watch(c, 0);
  evtimer_del(&c->timer);
  close(c->fd);
  c->fd = -1;
  akr_fdq_clear(&c->fdq);
  c->state = AKR_CONN_DONE;
  pending_remove(c);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->n_conns--;
  akr_conn_part(c);
  if (c->wcall) akr_call_unref(c->wcall, 1);
  c->wcall = NULL;
  akr_acct_conn_closed(c);
  s->hooks->closed(c);
  if (s->n_conn_pool < POOL_MAX && !s->closed) {
    if (c->in_cap > KEEP_BUFFER) in_free(c, &s->spare);
    if (c->out_cap > KEEP_BUFFER) {
      free(c->out);
      c->out = NULL;
      c->out_cap = 0;
    }
    c->next = s->conn_pool;
    s->conn_pool = c;
    s->n_conn_pool++;
  } else {
    conn_free(c, &s->spare);
  }
  akr_conn_spare_watch(s);
}

void akr_conn_pool_free(ackrpc_server *s) {
  while (s->conn_pool) {
    akr_conn *c = s->conn_pool;
    s->conn_pool = c->next;
    conn_free(c, NULL);
  }
  s->n_conn_pool = 0;
}
