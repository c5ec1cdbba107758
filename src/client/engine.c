/* engine.c: the client's protocol engine (engine.h): the queue of calls,
 * the bytes out and in, and what every way of failing means. No I/O.
 *
 * The line between "not delivered" and "delivered, no ack" is the last byte
 * of a request frame: the server dispatches a request as soon as its frame
 * is complete, so until every byte is sent the server cannot have acted,
 * and after it the client cannot know. The queue keeps that line: calls
 * before `cursor` are fully sent, the cursor is being sent, the calls after
 * it have not started. */
#include "client/engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/result.h"

#define BUSY_RETRY_MIN_US 500
#define BUSY_RETRY_MAX_US 50000
#define KEPT_INPUT 4096 /* a kept link reads several replies at a time */

void akr_link_init(akr_link *l, const akr_link_conf *conf, akr_link_mode mode,
                   uint8_t *buffer, size_t buffer_len) {
  memset(l, 0, sizeof *l);
  l->conf = conf;
  l->mode = mode;
  l->fd = -1;
  l->in = l->in_own = buffer;
  l->in_cap = l->in_own_cap = buffer ? buffer_len : 0;
  l->in_reserve = mode == AKR_LINK_ONE_SHOT ? 0 : KEPT_INPUT;
}

void akr_link_free(akr_link *l) {
  akr_fdq_clear(&l->fdq);
  if (l->in != l->in_own) free(l->in);
  l->in = l->in_own;
  l->in_cap = l->in_own_cap;
  l->in_off = l->in_len = 0;
}

/* --- the queue ------------------------------------------------------------ */

static void done_add(akr_link *l, akr_ccall *c) {
  if (c->on_done) return;
  c->on_done = 1;
  c->next_done = NULL;
  if (l->done_tail)
    l->done_tail->next_done = c;
  else
    l->done_head = c;
  l->done_tail = c;
}

static void complete(akr_link *l, akr_ccall *c) {
  c->completed = 1;
  done_add(l, c);
}

/* Takes `c` (whose predecessor is `prev`, NULL for the head) out of the
 * queue and hands it back to its owner. */
static void unlink_call(akr_link *l, akr_ccall *prev, akr_ccall *c) {
  if (prev)
    prev->next = c->next;
  else
    l->head = c->next;
  if (l->tail == c) l->tail = prev;
  if (l->cursor == c) {
    l->cursor = c->next;
    l->cursor_off = 0;
  }
  c->next = NULL;
  c->released = 1;
  done_add(l, c);
}

void akr_link_push(akr_link *l, akr_ccall *c) {
  c->next = NULL;
  c->sent = c->completed = c->released = c->resent = c->on_done = c->memfd_read = 0;
  c->reported = 0;
  if (l->tail)
    l->tail->next = c;
  else
    l->head = c;
  l->tail = c;
  if (!l->cursor) {
    l->cursor = c;
    l->cursor_off = 0;
  }
}

int akr_link_busy(const akr_link *l) {
  for (const akr_ccall *c = l->head; c; c = c->next)
    if (!c->completed) return 1;
  return 0;
}

akr_ccall *akr_link_pop(akr_link *l) {
  akr_ccall *list = l->done_head;
  l->done_head = l->done_tail = NULL;
  for (akr_ccall *c = list; c; c = c->next_done)
    c->on_done = 0;
  return list;
}

/* Fails every call not started (the whole queue when not connected):
 * connecting failed. */
static void fail_unstarted(akr_link *l, ackrpc_status st, int err, const char *why) {
  while (l->head && !l->head->sent) {
    akr_ccall *c = l->head;
    if (!c->completed) akr_result_fail(c->result, st, err, "%s", why);
    complete(l, c);
    unlink_call(l, NULL, c);
  }
}

/* --- deadlines -------------------------------------------------------- */

static void drop(akr_link *l, const char *why) {
  if (l->fd >= 0 && !l->drop_why) l->drop_why = why;
}

void akr_link_tick(akr_link *l, uint64_t now) {
  akr_ccall *prev = NULL, *c = l->head;
  while (c) {
    akr_ccall *next = c->next;
    if (c->completed || c->deadline_us > now) {
      prev = c;
      c = next;
      continue;
    }
    if (c->sent) {
      akr_result_fail(c->result, ACKRPC_E_ACK_TIMEOUT, 0, "no reply within %u ms",
                      c->timeout_ms);
      complete(l, c);
      /* A pipeline keeps it in line, so its late reply is recognised. */
      if (l->mode != AKR_LINK_PIPELINE) drop(l, "a call's deadline passed");
      prev = c;
    } else if (c == l->cursor && l->cursor_off > 0) {
      akr_result_fail(c->result, ACKRPC_E_SEND_TIMEOUT, 0, "%zu of %zu bytes sent",
                      l->cursor_off, c->len);
      complete(l, c);
      /* Half a frame cannot be taken back out of the stream. */
      drop(l, "a call's deadline passed while it was being sent");
      prev = c;
    } else {
      akr_result_fail(c->result, ACKRPC_E_SEND_TIMEOUT, 0, "0 of %zu bytes sent",
                      c->len);
      complete(l, c);
      unlink_call(l, prev, c);
    }
    c = next;
  }
}

/* --- what to wait for ------------------------------------------------- */

akr_wait akr_link_wait(const akr_link *l, uint64_t now, int *ret_events,
                       uint64_t *ret_until_us) {
  uint64_t until = UINT64_MAX;
  for (const akr_ccall *c = l->head; c; c = c->next)
    if (!c->completed && c->deadline_us < until) until = c->deadline_us;
  *ret_events = 0;
  *ret_until_us = until;
  if (until == UINT64_MAX) return AKR_WAIT_NONE;
  if (l->fd < 0) {
    if (now >= l->busy_until_us) return AKR_WAIT_CONNECT;
    *ret_until_us = l->busy_until_us;
    return AKR_WAIT_TIMER;
  }
  if (akr_link_wants_read(l)) *ret_events |= AKR_EV_READ;
  if (l->cursor && !l->broken) *ret_events |= AKR_EV_WRITE;
  return AKR_WAIT_IO;
}

/* --- connecting ------------------------------------------------------- */

int akr_link_wants_owner(const akr_link *l, const akr_peer *p) {
  return l->conf->server_check == ACKRPC_SERVER_CHECK_DEFAULT &&
         !l->conf->addr.abstract && p->cred_errno == 0 && p->uid != 0 &&
         p->uid != p->self;
}

/* Whether the link trusts the server `p` describes (the rule is written
 * in client.h, at ackrpc_server_check). If not, *ret_err and `why` say
 * why. */
static int trusted(const akr_link *l, const akr_peer *p, int *ret_err, char *why,
                   size_t len) {
  const akr_link_conf *c = l->conf;
  *ret_err = 0;
  if (c->server_check == ACKRPC_SERVER_CHECK_NONE) return 1;
  if (p->cred_errno) {
    *ret_err = p->cred_errno;
    snprintf(why, len, "the server's credentials are unknown (SO_PEERCRED)");
    return 0;
  }
  if (c->server_check == ACKRPC_SERVER_CHECK_UID) {
    if (p->uid == c->server_uid) return 1;
    snprintf(why, len, "the server runs as uid %u, not uid %u (server_uid)",
             (unsigned)p->uid, (unsigned)c->server_uid);
    return 0;
  }
  if (p->uid == 0 || p->uid == p->self) return 1;
  if (c->addr.abstract) {
    snprintf(why, len,
             "the server at an abstract address runs as uid %u; trusted: root and "
             "uid %u (set server_uid)",
             (unsigned)p->uid, (unsigned)p->self);
    return 0;
  }
  if (p->owner_errno == 0 && p->uid == p->owner) return 1;
  if (p->owner_errno) {
    *ret_err = p->owner_errno;
    snprintf(why, len,
             "the server runs as uid %u; trusted: root and uid %u (%s's directory "
             "could not be examined)",
             (unsigned)p->uid, (unsigned)p->self, c->addr.path);
    return 0;
  }
  snprintf(
      why, len,
      "the server runs as uid %u; trusted: root, uid %u and uid %u (owner of %s%s)",
      (unsigned)p->uid, (unsigned)p->self, (unsigned)p->owner,
      p->owner_is_file ? "" : "the directory of ", c->addr.path);
  return 0;
}

void akr_link_connected(akr_link *l, int fd, const akr_peer *peer) {
  l->fd = fd;
  l->reused = l->shut = l->broken = 0;
  l->broken_errno = 0;
  l->drop_why = NULL;
  l->sent = 0;
  l->busy_until_us = l->busy_backoff_us = 0;
  l->cursor = l->head;
  l->cursor_off = 0;
  /* Before a byte goes out: a server that is not who it should be never
   * sees a request. Every call queued here is unsent, so all fail. */
  char why[384];
  int err;
  if (!trusted(l, peer, &err, why, sizeof why)) {
    fail_unstarted(l, ACKRPC_E_SERVER_IDENTITY, err, why);
    drop(l, "the server is not trusted");
    return;
  }
  /* Empty calls only asked for the connection. */
  while (l->head && l->head->len == 0) {
    akr_ccall *c = l->head;
    c->sent = 1;
    if (!c->completed) c->result->status = ACKRPC_OK;
    complete(l, c);
    unlink_call(l, NULL, c);
  }
}

void akr_link_connect_failed(akr_link *l, int err, uint64_t now) {
  const char *where = l->conf->addr.abstract ? "abstract socket" : l->conf->addr.path;
  char why[160];
  if (err == EAGAIN) {
    /* The server's queue is full. Nothing was sent, so trying again until
     * the earliest deadline is safe. */
    uint64_t b = l->busy_backoff_us ? 2 * l->busy_backoff_us : BUSY_RETRY_MIN_US;
    if (b > BUSY_RETRY_MAX_US) b = BUSY_RETRY_MAX_US;
    int events;
    uint64_t earliest;
    akr_link_wait(l, now, &events, &earliest);
    if (now + b < earliest) {
      l->busy_backoff_us = b;
      l->busy_until_us = now + b;
      return;
    }
    snprintf(why, sizeof why, "connecting to %s: queue full", where);
    l->busy_backoff_us = l->busy_until_us = 0;
    fail_unstarted(l, ACKRPC_E_BUSY, err, why);
    return;
  }
  snprintf(why, sizeof why, "connecting to %s", where);
  l->busy_backoff_us = l->busy_until_us = 0;
  fail_unstarted(l, ACKRPC_E_CONNECT, err, why);
}

/* --- sending ---------------------------------------------------------- */

size_t akr_link_output(const akr_link *l, struct iovec *iov, size_t max,
                       const int **ret_fds, size_t *ret_n_fds) {
  size_t n = 0, skip = l->cursor_off;
  *ret_fds = NULL;
  *ret_n_fds = 0;
  for (const akr_ccall *c = l->cursor; c && n < max && !*ret_n_fds; c = c->next) {
    /* A frame's descriptors ride on a sendmsg() of its own bytes only,
     * from its first one: the reader tells frames apart by that. */
    if (c->n_fds && c != l->cursor) break;
    if (c->n_fds && skip == 0) {
      *ret_fds = c->fds;
      *ret_n_fds = c->n_fds;
    }
    for (size_t i = 0; i < c->n_iov && n < max; i++) {
      size_t len = c->iov[i].iov_len;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      iov[n].iov_base = (uint8_t *)c->iov[i].iov_base + skip;
      iov[n].iov_len = len - skip;
      skip = 0;
      n++;
    }
  }
  return n;
}

void akr_link_wrote(akr_link *l, size_t n) {
  l->sent += n;
  while (n && l->cursor) {
    akr_ccall *c = l->cursor;
    size_t left = c->len - l->cursor_off;
    if (n < left) {
      l->cursor_off += n;
      return;
    }
    n -= left;
    c->sent = 1;
    l->cursor = c->next;
    l->cursor_off = 0;
  }
}

void akr_link_write_failed(akr_link *l, int err) {
  l->broken = 1;
  l->broken_errno = err;
}

/* --- receiving -------------------------------------------------------- */

unsigned akr_link_max_fds(const akr_link *l) {
  unsigned m = 0;
  for (const akr_ccall *c = l->head; c; c = c->next)
    if (c->max_reply_fds > m) m = c->max_reply_fds;
  return m + (l->conf->memfd_replies ? 1 : 0); /* a reply's body memfd */
}

/* Room for `want` bytes from in_off: compacts, then grows (to the heap). */
static int input_room(akr_link *l, size_t want) {
  size_t avail = l->in_len - l->in_off;
  if (l->in_off && l->in_off + want > l->in_cap) {
    memmove(l->in, l->in + l->in_off, avail);
    l->in_off = 0;
    l->in_len = avail;
  }
  if (want <= l->in_cap) return 0;
  size_t cap = want + l->in_reserve;
  uint8_t *p = l->in == l->in_own ? malloc(cap) : realloc(l->in, cap);
  if (!p) return -1;
  if (l->in == l->in_own && avail) memcpy(p, l->in + l->in_off, avail);
  if (l->in == l->in_own) {
    l->in_len = avail;
    l->in_off = 0;
  }
  l->in = p;
  l->in_cap = cap;
  return 0;
}

int akr_link_input(akr_link *l, uint8_t **ret_buf, size_t *ret_room) {
  size_t avail = l->in_len - l->in_off, need = AKR_PREFIX_LEN;
  if (avail >= AKR_PREFIX_LEN) {
    akr_frame f;
    if (akr_frame_scan(l->in + l->in_off, avail, AKR_FRAME_REPLY, l->conf->max_reply,
                       &f, &need) != AKR_FRAME_INCOMPLETE)
      need = avail;
  }
  size_t want = need > avail ? need : avail + 1; /* +1: room to see EOF */
  if (input_room(l, want) != 0) {
    for (akr_ccall *c = l->head; c; c = c->next)
      if (c->sent && !c->completed) {
        akr_result_fail(c->result, ACKRPC_E_BAD_REPLY, ENOMEM,
                        "no memory for the reply");
        complete(l, c);
      }
    drop(l, "no memory for a reply");
    return -1;
  }
  *ret_buf = l->in + l->in_len;
  *ret_room = l->in_cap - l->in_len;
  return 0;
}

/* A reply came for the call being sent: the server answered before the
 * request was complete (it refused it early, and closes). */
static void early_reply(akr_link *l, akr_ccall *c, const akr_frame *f,
                        akr_fd_batch *fds) {
  ackrpc_result probe = {0};
  c->memfd_read = (unsigned char)akr_result_from_reply(
      &probe, f, c->reply_desc, l->conf->max_depth, fds, c->max_reply_fds,
      l->conf->memfd_replies, l->conf->max_reply);
  if (ackrpc_status_outcome(probe.status) == ACKRPC_OUTCOME_ACKED &&
      probe.status != ACKRPC_OK) {
    memcpy(probe.call_id, c->result->call_id, sizeof probe.call_id);
    probe.call_id_len = c->result->call_id_len;
    probe.attempts = c->result->attempts;
    ackrpc_result_clear(c->result);
    *c->result = probe;
  } else {
    ackrpc_result_clear(&probe);
    akr_result_fail(c->result, ACKRPC_E_BAD_REPLY, 0,
                    "reply: an answer before the request was complete");
  }
  complete(l, c);
  drop(l, "the server answered a request before it was complete");
}

/* Matches the complete reply frame at the read position to the oldest call.
 * Returns 0 to go on, -1 to stop (the stream is over). */
static int take_reply(akr_link *l, const akr_frame *f) {
  akr_ccall *c = l->head;
  uint64_t s = l->rx - (l->in_len - l->in_off);
  akr_fd_batch fds;
  akr_fdq_claim(&l->fdq, s, s + f->frame_len, &fds);
  if (akr_fdq_misplaced(&l->fdq, s, s + f->frame_len)) fds.ctrunc = 1;
  l->in_off += f->frame_len;
  if (!c->sent) {
    if (!c->completed) early_reply(l, c, f, &fds);
    akr_fd_batch_close(&fds);
    return -1;
  }
  if (!c->completed) {
    c->memfd_read = (unsigned char)akr_result_from_reply(
        c->result, f, c->reply_desc, l->conf->max_depth, &fds, c->max_reply_fds,
        l->conf->memfd_replies, l->conf->max_reply);
    complete(l, c);
  }
  akr_fd_batch_close(&fds);
  l->reused = 1;
  unlink_call(l, NULL, c);
  return 0;
}

void akr_link_read(akr_link *l, size_t n) {
  l->in_len += n;
  l->rx += n;
  while (l->head && !l->drop_why) {
    size_t avail = l->in_len - l->in_off;
    if (avail == 0) break;
    akr_frame f;
    akr_frame_error fe = akr_frame_scan(l->in + l->in_off, avail, AKR_FRAME_REPLY,
                                        l->conf->max_reply, &f, NULL);
    if (fe == AKR_FRAME_INCOMPLETE) break;
    if (fe != AKR_FRAME_OK) {
      akr_ccall *c = l->head;
      if (!c->completed) {
        akr_result_fail(c->result, ACKRPC_E_BAD_REPLY, 0, "reply: %s",
                        akr_frame_error_text(fe));
        complete(l, c);
      }
      drop(l, "a reply was malformed");
      break;
    }
    if (take_reply(l, &f) != 0) break;
  }
  if (l->in_off == l->in_len) l->in_off = l->in_len = 0;
}

/* --- the end of a connection ------------------------------------------ */

/* Settles the call the connection broke under: `partial` if some of its
 * bytes went out. */
static int settle_cursor(akr_link *l, akr_ccall *c, int stale, int partial, int err) {
  if (c->completed) return 0;
  /* Nothing of it reached the server, or the server had ended the
   * connection while it was idle: sending it again on a new connection is
   * safe. Once, so that a server that keeps closing cannot loop us. */
  if ((!partial || stale) && !c->resent) {
    c->resent = 1;
    return 1;
  }
  akr_result_fail(c->result, ACKRPC_E_SEND, err, "sending the request");
  complete(l, c);
  return 0;
}

/* Forgets the connection's state (not the calls queued on it). */
static void connection_reset(akr_link *l) {
  l->fd = -1;
  l->shut = l->broken = l->reused = 0;
  l->broken_errno = 0;
  l->drop_why = NULL;
  l->in_off = l->in_len = 0;
  l->rx = 0;
  akr_fdq_clear(&l->fdq);
}

void akr_link_closed(akr_link *l, int err) {
  if (!l->head) {
    /* A session at rest, or a one-shot link after its reply: nothing to
     * settle. */
    connection_reset(l);
    l->cursor = NULL;
    l->cursor_off = 0;
    l->sent = 0;
    return;
  }
  int e = err ? err : l->broken_errno;
  int write_broke = l->broken_errno != 0; /* read before the reset below */
  /* Nothing was outstanding on a connection that had served calls: the
   * server ended it while it was idle. */
  int stale = l->reused && l->head == l->cursor;
  int partial = l->cursor_off > 0;
  const akr_ccall *cursor = l->cursor; /* unlinking moves l->cursor on */
  const char *why = l->drop_why;
  int mid_reply = l->in_len > l->in_off;
  connection_reset(l);
  akr_ccall *prev = NULL, *c = l->head;
  while (c) {
    akr_ccall *next = c->next;
    int keep = 0;
    if (c->sent) {
      if (!c->completed) {
        if (why)
          akr_result_fail(c->result, ACKRPC_E_NO_ACK, e, "connection dropped (%s)",
                          why);
        else if (err && !write_broke)
          akr_result_fail(c->result, ACKRPC_E_NO_ACK, err, "reading the reply");
        else
          akr_result_fail(
              c->result, ACKRPC_E_NO_ACK, e, "the server closed the connection %s",
              mid_reply ? "in the middle of its reply" : "without replying");
        complete(l, c);
      }
    } else if (c == cursor) {
      keep = settle_cursor(l, c, stale, partial, e);
    } else {
      keep = !c->completed;
    }
    if (keep) {
      c->sent = 0;
      prev = c;
    } else {
      unlink_call(l, prev, c);
    }
    mid_reply = 0;
    c = next;
  }
  l->cursor = l->head;
  l->cursor_off = 0;
  l->sent = 0;
}
