/* accept.c: taking connections in (accept.h). */
#include "server/accept.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/clock.h"
#include "server/conn.h"

#define ACCEPTS_PER_WAKEUP 64 /* fairness between accepting and serving */
#define EMFILE_RETRY_MS 100   /* accept retry after running out of fds */
/* A connection must have waited this long for its request before it may be
 * dropped to admit another: a fresh one is usually just between its connect
 * and its write, and dropping it would turn a burst into refused calls. */
#define EVICT_MIN_AGE_US 100000

/* --- pausing and making room -------------------------------------------- */

static void pause_accepting(ackrpc_server *s, unsigned retry_ms) {
  if (s->accepting) {
    event_del(s->accept_ev);
    s->accepting = 0;
  }
  if (retry_ms) {
    struct timeval tv = akr_tv_us((uint64_t)retry_ms * 1000u);
    evtimer_add(s->resume_timer, &tv);
  }
}

/* How long until the oldest pending connection may be dropped: 0 if it
 * may be now, UINT64_MAX if there is none. */
static uint64_t evictable_in_us(const ackrpc_server *s) {
  if (!s->pend_head) return UINT64_MAX;
  uint64_t age = akr_now_us() - s->pend_head->pending_since_us;
  return age >= EVICT_MIN_AGE_US ? 0 : EVICT_MIN_AGE_US - age;
}

static void resume_accepting(ackrpc_server *s) {
  if (s->accepting || s->lst.fd < 0 || s->stopping || s->closed || !s->accept_ev ||
      (s->n_conns >= s->opt.max_connections && evictable_in_us(s) != 0))
    return;
  event_add(s->accept_ev, NULL);
  s->accepting = 1;
}

/* Drops a connection that waits for its request to admit another. It was
 * never dispatched, so for its client the call was not delivered. */
static void evict(ackrpc_server *s, akr_conn *c, const char *why) {
  akr_event(s, AKR_EV_EVICTED, ACKRPC_LOG_INFO,
            "peer_uid=%u peer_pid=%d error=\"incomplete request dropped: %s\"",
            (unsigned)c->peer.uid, (int)c->peer.pid, why);
  akr_conn_answer(c, ACKRPC_RESOURCE_EXHAUSTED,
                  "server busy: incomplete request dropped", 1);
  akr_conn_close(c);
}

static void evict_oldest_pending(ackrpc_server *s, const char *why) {
  if (s->pend_head) evict(s, s->pend_head, why);
}

/* Under pressure: drops the oldest pending connection if it has waited
 * long enough (returns 1); otherwise stops accepting until it has, or until
 * a connection closes, and returns 0. */
static int make_room(ackrpc_server *s) {
  uint64_t wait = evictable_in_us(s);
  if (wait == 0) {
    evict_oldest_pending(s, "too many connections");
    return 1;
  }
  pause_accepting(s, wait == UINT64_MAX ? 0 : (unsigned)(wait / 1000) + 1);
  return 0;
}

/* --- accepting ----------------------------------------------------------- */

/* --- connections per uid ------------------------------------------------ */

/* The connection of `u` other than `except` that has waited longest for
 * its request; NULL if none waits. */
static akr_conn *uid_oldest_pending(ackrpc_server *s, const akr_uid_rec *u,
                                    const akr_conn *except) {
  if (!u->pending) return NULL;
  for (akr_conn *c = s->pend_head; c; c = c->pend_next)
    if (c->uacct == u && c != except) return c;
  return NULL;
}

/* Counts the connection against its peer's uid. At the uid's limit, the
 * uid's own connection that has waited longest for its request is dropped
 * to admit this one, whatever its age: within a uid, an idle or trickling
 * connection loses to a new one, so a uid's idle connections (even ones
 * it keeps reopening) cannot lock out its working clients, whose requests
 * are complete as soon as they are read. One side of the uid loses either
 * way; the waiting one is the likelier attacker. -1 if every connection of
 * the uid is busy with a call: this one is refused. */
static int uid_enter(ackrpc_server *s, akr_conn *c) {
  akr_uid_rec *u = akr_uid_get(s, c->peer.uid);
  if (!u) return -1;
  akr_conn *old = NULL;
  if (u->conns >= s->opt.max_connections_per_uid &&
      !(old = uid_oldest_pending(s, u, c))) {
    akr_uid_put(s, u);
    return -1;
  }
  u->conns++; /* first: dropping `old` must not free the record */
  u->pending += c->pending;
  c->uacct = u;
  if (old) evict(s, old, "another connection of its uid");
  return 0;
}

/* --- accepting ----------------------------------------------------------- */

void akr_accept_serve(ackrpc_server *s, int fd) {
  akr_conn *c = akr_conn_start(s, fd);
  if (!c) return;
  /* The policy first: a refused peer must not make room by dropping a
   * connection of its uid. */
  if (!akr_policy_allows(s->policy, s->euid, &c->peer, c->fd)) {
    akr_event(s, AKR_EV_REFUSED, ACKRPC_LOG_INFO,
              "peer_uid=%u peer_pid=%d by=server_policy", (unsigned)c->peer.uid,
              (int)c->peer.pid);
    akr_conn_answer(c, ACKRPC_PERMISSION_DENIED, "not allowed to use this server", 1);
  } else if (uid_enter(s, c) != 0) {
    akr_event(s, AKR_EV_UID_LIMIT, ACKRPC_LOG_WARNING,
              "peer_uid=%u peer_pid=%d limit=%u "
              "error=\"too many connections from this uid\"",
              (unsigned)c->peer.uid, (int)c->peer.pid, s->opt.max_connections_per_uid);
    akr_conn_answer(c, ACKRPC_RESOURCE_EXHAUSTED, "too many connections from this uid",
                    1);
  } else if (s->bridges) {
    /* Once per connection: its calls are bridged or local for good. */
    c->bridge = akr_policy_allows(s->bridges, s->euid, &c->peer, c->fd);
  }
  akr_conn_resume(c);
}

/* Accepts up to `max` queued connections. */
static void accept_some(ackrpc_server *s, int max) {
  int made_room = 0; /* a connection was dropped for a descriptor */
  for (int i = 0; i < max; i++) {
    if (s->n_conns >= s->opt.max_connections && !make_room(s)) return;
    int fd = accept4(s->lst.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      /* Out of descriptors: a connection that waits for its request makes
       * room for one that may bring a request now. */
      if ((errno == EMFILE || errno == ENFILE) && !made_room &&
          evictable_in_us(s) == 0) {
        evict_oldest_pending(s, "out of descriptors");
        made_room = 1; /* once: if that did not help, pause */
        continue;
      }
      /* Out of descriptors or memory: libevent would call us again at once
       * and spin. Stop watching; retry on a timer or when a connection
       * closes. */
      akr_event(s, AKR_EV_ACCEPT_FAILED, ACKRPC_LOG_WARNING,
                "error=\"%s\" action=pause ms=%d", strerror(errno), EMFILE_RETRY_MS);
      pause_accepting(s, EMFILE_RETRY_MS);
      return;
    }
    made_room = 0;
    akr_accept_serve(s, fd);
    if (s->n_pending > s->opt.max_pending && !make_room(s)) return;
  }
}

static void on_accept(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  accept_some(arg, ACCEPTS_PER_WAKEUP);
}

/* Fires when accepting was paused: out of descriptors, or waiting for the
 * oldest pending connection to be old enough to drop. */
static void on_resume_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ackrpc_server *s = arg;
  while (s->n_pending > s->opt.max_pending && evictable_in_us(s) == 0)
    evict_oldest_pending(s, "too many connections");
  if (s->n_pending > s->opt.max_pending) {
    make_room(s); /* still too young: wait some more */
    return;
  }
  resume_accepting(s);
}

ackrpc_status akr_accept_start(ackrpc_server *s) {
  s->resume_timer = evtimer_new(s->base, on_resume_timer, s);
  s->accept_ev = event_new(s->base, s->lst.fd, EV_READ | EV_PERSIST, on_accept, s);
  if (!s->resume_timer || !s->accept_ev) return ACKRPC_E_NOMEM;
  resume_accepting(s);
  return ACKRPC_OK;
}

void akr_accept_drain_queue(ackrpc_server *s) {
  if (s->lst.fd >= 0 && s->accept_ev) accept_some(s, INT32_MAX);
  akr_accept_stop(s);
}

void akr_accept_stop(ackrpc_server *s) {
  if (s->accepting) event_del(s->accept_ev);
  s->accepting = 0;
  if (s->resume_timer) evtimer_del(s->resume_timer);
}

void akr_accept_closed(akr_conn *c) {
  ackrpc_server *s = c->server;
  akr_uid_rec *u = c->uacct;
  c->uacct = NULL;
  if (u) {
    u->conns--;
    akr_uid_put(s, u);
  }
  resume_accepting(s);
}

void akr_accept_free(ackrpc_server *s) {
  if (s->accept_ev) event_free(s->accept_ev);
  if (s->resume_timer) event_free(s->resume_timer);
  s->accept_ev = s->resume_timer = NULL;
}
