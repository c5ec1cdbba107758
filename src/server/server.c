/* server.c: the ackrpc server on a libevent loop.
 *
 * The I/O path follows the plain epoll loop, not libevent's bufferevents
 * (../shared/peers/RESULTS.md: bufferevents cost ~35%): plain events, a
 * read straight after accept (the request is usually there already), the
 * reply written directly, and events armed only when a read or a write would
 * block. A one-shot call costs accept4, getsockopt(SO_PEERCRED), read, write,
 * read (EOF) and close.
 *
 * A connection and the call it is serving are one object (ackrpc_call): a
 * connection serves its calls one at a time, so the object is reused for
 * each frame of a session. Its lifetime is counted: one reference while the
 * connection is open (the loop's), one while a handler holds the call. A
 * handler may answer from another thread after the loop has given up on the
 * call (deadline, shutdown, ackrpc_server_free); the object lives until
 * both are gone. Whoever first sets `answered` answers the call.
 *
 * Not here: framing (frame.c), addresses and the socket file (address.c).
 */
#include "ackrpc/server.h"

#include <errno.h>
#include <grp.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ackrpc/wire.pb-c.h"
#include "platform/address.h"
#include "core/clock.h"
#include "mem/arena.h"
#include "wire/depth.h"
#include "wire/encode.h"
#include "wire/frame.h"
#include "wire/head.h"
#include "wire/names.h"
#include "server/reply_cache.h"
#include "server/server_internal.h"
#include "server/stats.h"

#define DEFAULT_MAX_REQUEST (4u << 20)
#define DEFAULT_READ_TIMEOUT_MS 10000
#define DEFAULT_HANDLER_TIMEOUT_MS 60000
#define DEFAULT_MAX_CONNECTIONS 1024
#define DEFAULT_DRAIN_TIMEOUT_MS 5000
#define DEFAULT_SOCKET_MODE 0600
#define DEFAULT_BACKLOG 1024
#define DEFAULT_MAX_DEPTH 100
#define DEFAULT_MAX_PER_UID 256
#define DEFAULT_MAX_PENDING 256
#define DEADLINE_GRACE_US 5000 /* past a client's deadline, see conn_dispatch */
/* A connection must have waited this long for its request before it may be
 * dropped to admit another: a fresh one is usually just between its connect
 * and its write, and dropping it would turn a burst into refused calls. */
#define EVICT_MIN_AGE_US 100000
/* The reply cache (docs/DELIVERY.md): ~1 MiB for small acks at the default
 * count; the age covers a client's whole retry window at the default
 * deadlines (client 30 s, handler 60 s) several times over. */
#define DEFAULT_CACHE_ENTRIES 4096
#define DEFAULT_CACHE_AGE_MS 300000
#define DEFAULT_CACHE_BYTES (16u << 20)

#define ACCEPTS_PER_WAKEUP 64 /* fairness between accepting and serving */
#define EMFILE_RETRY_MS 100   /* accept retry after running out of fds */
#define INITIAL_BUFFER 4096
#define KEEP_BUFFER (64u << 10) /* pooled connections keep buffers this small */
/* Large input buffers and decode chunks freed by calls are kept for the next
 * large call (spare.h), up to twice the largest request, and unmapped after
 * an interval in which no call asked for one. */
#define SPARE_BUDGET(max_request) (2 * (size_t)(max_request) + 2 * AKR_SPARE_MIN)
#define SPARE_IDLE_MS 1000
#define POOL_MAX 256
/* Decoding a request may allocate this much (protobuf-c can need ~30x the
 * wire size for pathological input); beyond it: RESOURCE_EXHAUSTED. */
#define DECODE_BUDGET(frame_len) (16 * (size_t)(frame_len) + (64u << 10))

/* A policy, copied and with group names resolved to gids. */
typedef struct policy {
  int same_uid;
  uid_t *uids;
  size_t n_uids;
  gid_t *gids;
  size_t n_gids;
} policy;

typedef struct method_entry {
  ackrpc_method m; /* m.name is owned (strdup) */
  ackrpc_handler_fn fn;
  void *user;
  policy *policy;
  unsigned depth;          /* static nesting of the request type; AKR_DEPTH_UNBOUNDED */
  unsigned seq;            /* order of registration */
  akr_method_stats *stats; /* owned; stays put when the table grows */
} method_entry;

typedef struct uid_count {
  uid_t uid;
  unsigned n;
} uid_count;

typedef struct cleanup {
  void (*fn)(void *);
  void *data;
} cleanup;

enum conn_state {
  ST_READING,  /* reading the next frame (or EOF) */
  ST_HANDLING, /* a handler holds the call */
  ST_WRITING,  /* the reply is partly written; waiting for EV_WRITE */
  ST_WAITING,  /* a repeated call id waits for the first call's answer */
  ST_DONE,     /* close at the next chance */
};

struct ackrpc_call {
  ackrpc_server *server;
  int fd;
  enum conn_state state;
  struct event io; /* read or write interest, per `watching` */
  struct event timer;
  short watching;
  ackrpc_peer peer;
  /* input: bytes [in_off, in_len) of `in` are unread frames */
  uint8_t *in;
  size_t in_off, in_len, in_cap; /* from malloc below AKR_SPARE_MIN, else a
                                  * block of the spare store (spare.h) */
  int eof;
  int drained;               /* the last read left the socket empty */
  int head_done;             /* the current frame's head is decoded and admitted */
  uint64_t read_deadline_us; /* 0: not started */
  unsigned calls_done;
  /* the call being served */
  akr_arena arena;
  akr_request req;
  const method_entry *method;
  ProtobufCMessage *request;
  size_t frame_len;
  uint64_t deadline_us;
  int close_after_write;
  atomic_int answered; /* the call has been answered (or is being) */
  atomic_int held;     /* the handler has not replied yet */
  atomic_int refs;
  /* output: bytes [out_off, out_len) of `out` are still to write */
  uint8_t *out;
  size_t out_off, out_len, out_cap;
  ackrpc_call *prev, *next;           /* open connections, or the pool */
  ackrpc_call *pend_prev, *pend_next; /* connections waiting for a frame */
  int pending;
  uint64_t pending_since_us;
  int uid_counted;
  ackrpc_call *done_next; /* replies queued from other threads */
  /* The reply cache (reply_cache.h): the in-flight entry this call owns, or
   * (ST_WAITING) the entry it waits on; rc_ready is set when its answer is
   * in `out` (1) or when there is none (2). `late` is an answer that came
   * after the loop gave up on the call, kept for the cache. */
  akr_rc_entry *rc_entry;
  akr_rc_waiter rc_wait;
  int rc_ready;
  int reply_ok;
  uint8_t *late;
  /* Replies to pipelined frames answered inline, sent together with the
   * last one in a single send() (loop-owned, unlike `out`): bytes
   * [batch_off, batch_len) always go out before `out`, so order is kept. */
  uint8_t *batch;
  size_t batch_off, batch_len, batch_cap;
  int corked; /* another complete frame follows the one being served */
  size_t late_len;
  /* Statistics (stats.h): the method the current frame was admitted for
   * (NULL: nothing to count), when the request was complete (0: never
   * dispatched) and the status of the reply in `out`. */
  const method_entry *stat_m;
  uint64_t t_start_us;
  uint32_t reply_status;
};

struct ackrpc_server {
  ackrpc_server_options opt;
  char *address_text;
  akr_address addr;
  struct event_base *base;
  int own_base;
  akr_listener lst; /* the listening socket and the path lock */
  struct event *accept_ev;
  int accepting;
  struct event *resume_timer;
  int wake_fd;
  struct event *wake_ev;
  struct event *drain_timer;
  akr_spare spare;           /* large buffers kept for the next large call */
  struct event *spare_timer; /* unmaps them once unasked for */
  method_entry *methods;     /* open addressing, `method_cap` a power of two */
  size_t n_methods, method_cap;
  policy *policy; /* server-wide, checked at accept */
  uid_t euid;
  cleanup *cleanups;
  size_t n_cleanups;
  ackrpc_call *conns;
  size_t n_conns;
  /* Connections whose next request is not complete, oldest first: under
   * pressure the oldest is dropped to admit a new one, so idle or trickling
   * peers cannot starve real calls. */
  ackrpc_call *pend_head, *pend_tail;
  size_t n_pending;
  uid_count *uids; /* open connections per peer uid */
  size_t n_uids, uids_cap;
  ackrpc_call *pool;
  size_t n_pool;
  int stopping, finished;
  atomic_int stop_requested;
  atomic_int refs;    /* the owner's, plus one per live call object */
  pthread_mutex_t mu; /* guards done_head/done_tail and closed */
  ackrpc_call *done_head, *done_tail;
  int closed;
  akr_reply_cache *cache; /* NULL: no reply cache (the default) */
  unsigned method_seq;
  uint64_t created_us;
  /* Services recorded for reflection, in order; builtin[i] marks the
   * server's own. */
  const ackrpc_service **services;
  unsigned char *svc_builtin;
  size_t n_services;
  int inherited;   /* the listening socket came from systemd */
  int handed_over; /* the listening socket went to a successor */
  akr_ctl ctl;     /* the handover control socket (takeover.c) */
  struct event *ctl_ev;
};

/* The call whose handler is running on this thread, if any: a reply from
 * inside the handler is written at once; any other goes through the queue. */
static _Thread_local ackrpc_call *tl_in_handler;

static void conn_resume(ackrpc_call *c);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void conn_close(ackrpc_call *c);
static void conn_unref(ackrpc_call *c, int on_loop);
static void conn_write(ackrpc_call *c);
static void server_unref(ackrpc_server *s);
static void on_io(evutil_socket_t fd, short what, void *arg);
static void resume_accepting(ackrpc_server *s);
static void evict_oldest_pending(ackrpc_server *s);
static void check_drained(ackrpc_server *s);
static void begin_stop(ackrpc_server *s);
static void cache_finish(ackrpc_call *c, const uint8_t *frame, size_t len);
static void conn_record(ackrpc_call *c);

static void slog(ackrpc_server *s, ackrpc_log_level level, const char *fmt, ...) {
  if (level > s->opt.log_level) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  s->opt.log(s->opt.log_user, level, line);
}

/* --- policies ---------------------------------------------------------- */

static void policy_free(policy *p) {
  if (!p) return;
  free(p->uids);
  free(p->gids);
  free(p);
}

static ackrpc_status resolve_group(const char *name, gid_t *ret_gid) {
  char buf[4096];
  struct group gr, *found = NULL;
  if (getgrnam_r(name, &gr, buf, sizeof buf, &found) != 0 || !found)
    return ACKRPC_E_NOT_FOUND;
  *ret_gid = found->gr_gid;
  return ACKRPC_OK;
}

/* Copies a policy; NULL or an empty one gives NULL (admit everyone). */
static ackrpc_status policy_copy(const ackrpc_policy *in, policy **ret) {
  *ret = NULL;
  if (!in || (!in->same_uid && !in->n_uids && !in->n_gids && !in->n_group_names))
    return ACKRPC_OK;
  if ((in->n_uids && !in->uids) || (in->n_gids && !in->gids) ||
      (in->n_group_names && !in->group_names))
    return ACKRPC_E_INVAL;
  policy *p = calloc(1, sizeof *p);
  if (!p) return ACKRPC_E_NOMEM;
  p->same_uid = in->same_uid;
  if (in->n_uids) {
    p->uids = malloc(in->n_uids * sizeof *p->uids);
    if (!p->uids) goto nomem;
    memcpy(p->uids, in->uids, in->n_uids * sizeof *p->uids);
    p->n_uids = in->n_uids;
  }
  size_t ng = in->n_gids + in->n_group_names;
  if (ng) {
    p->gids = malloc(ng * sizeof *p->gids);
    if (!p->gids) goto nomem;
    if (in->n_gids) memcpy(p->gids, in->gids, in->n_gids * sizeof *p->gids);
    p->n_gids = in->n_gids;
    for (size_t i = 0; i < in->n_group_names; i++) {
      if (!in->group_names[i] ||
          resolve_group(in->group_names[i], &p->gids[p->n_gids]) != ACKRPC_OK) {
        policy_free(p);
        return ACKRPC_E_NOT_FOUND;
      }
      p->n_gids++;
    }
  }
  *ret = p;
  return ACKRPC_OK;
nomem:
  policy_free(p);
  return ACKRPC_E_NOMEM;
}

static int gid_listed(const policy *p, gid_t g) {
  for (size_t i = 0; i < p->n_gids; i++)
    if (p->gids[i] == g) return 1;
  return 0;
}

/* Whether the peer on `c` passes `p`. Supplementary groups are asked of the
 * kernel only when a group rule needs them. */
static int policy_allows(const policy *p, uid_t euid, const ackrpc_call *c) {
  if (!p) return 1;
  if (p->same_uid && c->peer.uid == euid) return 1;
  for (size_t i = 0; i < p->n_uids; i++)
    if (p->uids[i] == c->peer.uid) return 1;
  if (!p->n_gids) return 0;
  if (gid_listed(p, c->peer.gid)) return 1;
  gid_t groups[256];
  socklen_t len = sizeof groups;
  if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0) return 0;
  for (size_t i = 0; i < len / sizeof *groups; i++)
    if (gid_listed(p, groups[i])) return 1;
  return 0;
}

/* --- methods ----------------------------------------------------------- */

static uint64_t name_hash(const char *name) {
  uint64_t h = 1469598103934665603u; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
    h ^= *p;
    h *= 1099511628211u;
  }
  return h;
}

static method_entry *method_slot(method_entry *table, size_t cap, const char *name) {
  size_t i = (size_t)name_hash(name) & (cap - 1);
  while (table[i].m.name && strcmp(table[i].m.name, name) != 0)
    i = (i + 1) & (cap - 1);
  return &table[i];
}

static const method_entry *find_method(const ackrpc_server *s, const char *name) {
  if (!s->method_cap) return NULL;
  const method_entry *e = method_slot(s->methods, s->method_cap, name);
  return e->m.name ? e : NULL;
}

ackrpc_status ackrpc_server_add_method(ackrpc_server *s, const ackrpc_method *method,
                                       ackrpc_handler_fn handler, void *user) {
  if (!s || !method || !handler || !method->name || !method->request ||
      !method->reply || !akr_method_name_valid(method->name))
    return ACKRPC_E_INVAL;
  if (find_method(s, method->name)) return ACKRPC_E_EXISTS;
  if (2 * (s->n_methods + 1) > s->method_cap) {
    size_t cap = s->method_cap ? 2 * s->method_cap : 16;
    method_entry *t = calloc(cap, sizeof *t);
    if (!t) return ACKRPC_E_NOMEM;
    for (size_t i = 0; i < s->method_cap; i++)
      if (s->methods[i].m.name)
        *method_slot(t, cap, s->methods[i].m.name) = s->methods[i];
    free(s->methods);
    s->methods = t;
    s->method_cap = cap;
  }
  char *name = strdup(method->name);
  akr_method_stats *stats = calloc(1, sizeof *stats);
  if (!name || !stats) {
    free(name);
    free(stats);
    return ACKRPC_E_NOMEM;
  }
  method_entry *e = method_slot(s->methods, s->method_cap, name);
  e->m = *method;
  e->m.name = name;
  e->fn = handler;
  e->user = user;
  e->policy = NULL;
  e->depth = akr_message_depth(method->request);
  e->seq = s->method_seq++;
  e->stats = stats;
  s->n_methods++;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_server_add_service_info(ackrpc_server *s,
                                             const ackrpc_service *service) {
  return akr_server_add_service(s, service, 0);
}

ackrpc_status akr_server_add_service(ackrpc_server *s, const ackrpc_service *svc,
                                     int builtin) {
  if (!s || !svc || !svc->name || !*svc->name || (svc->n_methods && !svc->methods) ||
      (svc->n_files && !svc->files))
    return ACKRPC_E_INVAL;
  for (size_t i = 0; i < svc->n_methods; i++)
    if (!svc->methods[i].name || !svc->methods[i].request || !svc->methods[i].reply)
      return ACKRPC_E_INVAL;
  for (size_t i = 0; i < svc->n_files; i++)
    if (!svc->files[i].name || (svc->files[i].len && !svc->files[i].data))
      return ACKRPC_E_INVAL;
  for (size_t i = 0; i < s->n_services; i++)
    if (strcmp(s->services[i]->name, svc->name) == 0) return ACKRPC_E_EXISTS;
  const ackrpc_service **t = realloc(s->services, (s->n_services + 1) * sizeof *t);
  if (!t) return ACKRPC_E_NOMEM;
  s->services = t;
  unsigned char *b = realloc(s->svc_builtin, s->n_services + 1);
  if (!b) return ACKRPC_E_NOMEM;
  s->svc_builtin = b;
  t[s->n_services] = svc;
  b[s->n_services] = (unsigned char)(builtin != 0);
  s->n_services++;
  return ACKRPC_OK;
}

size_t akr_server_services(const ackrpc_server *s, const ackrpc_service *const **ret,
                           const unsigned char **ret_builtin) {
  *ret = s->services;
  *ret_builtin = s->svc_builtin;
  return s->n_services;
}

void akr_server_foreach_method(const ackrpc_server *s,
                               void (*fn)(void *user, const ackrpc_method *m,
                                          unsigned seq),
                               void *user) {
  for (size_t i = 0; i < s->method_cap; i++)
    if (s->methods[i].m.name) fn(user, &s->methods[i].m, s->methods[i].seq);
}

int akr_server_serving(const ackrpc_server *s) {
  return !s->stopping && !s->handed_over && !atomic_load(&s->stop_requested);
}

size_t akr_server_spare_bytes(const ackrpc_server *s) {
  return s->spare.bytes;
}

uint64_t akr_server_uptime_us(const ackrpc_server *s) {
  return akr_now_us() - s->created_us;
}

_Static_assert(sizeof(((ackrpc_method_stats *)0)->by_status) / sizeof(uint64_t) ==
                   AKR_STATUS_CODES,
               "ackrpc_method_stats.by_status has one counter per canonical code");

static int compare_stats(const void *a, const void *b) {
  return strcmp(((const ackrpc_method_stats *)a)->method,
                ((const ackrpc_method_stats *)b)->method);
}

size_t ackrpc_server_stats(const ackrpc_server *s, ackrpc_method_stats *out,
                           size_t cap) {
  if (!s) return 0;
  if (!out) cap = 0;
  /* Sorted by name: gather all, sort, copy; without room for all, sort a
   * temporary copy. */
  ackrpc_method_stats *all = cap >= s->n_methods ? out : NULL;
  if (cap && !all) {
    all = malloc(s->n_methods * sizeof *all);
    if (!all) return 0;
  }
  if (!all) return s->n_methods;
  size_t n = 0;
  for (size_t i = 0; i < s->method_cap; i++) {
    const method_entry *e = &s->methods[i];
    if (!e->m.name) continue;
    const akr_method_stats *st = e->stats;
    ackrpc_method_stats *o = &all[n++];
    memset(o, 0, sizeof *o);
    o->method = e->m.name;
    o->calls = st->calls;
    o->errors = st->calls - st->by_status[0];
    memcpy(o->by_status, st->by_status, sizeof o->by_status);
    o->bytes_in = st->bytes_in;
    o->bytes_out = st->bytes_out;
    o->p50_us = akr_stats_percentile(st, 0.50);
    o->p90_us = akr_stats_percentile(st, 0.90);
    o->p99_us = akr_stats_percentile(st, 0.99);
    o->p999_us = akr_stats_percentile(st, 0.999);
    o->max_us = st->max_us;
  }
  qsort(all, n, sizeof *all, compare_stats);
  if (all != out) {
    memcpy(out, all, cap * sizeof *out);
    free(all);
  }
  return n;
}

ackrpc_status ackrpc_server_set_method_policy(ackrpc_server *s, const char *method,
                                              const ackrpc_policy *p) {
  if (!s || !method) return ACKRPC_E_INVAL;
  method_entry *e = (method_entry *)find_method(s, method);
  if (!e) return ACKRPC_E_NOT_FOUND;
  policy *copy;
  ackrpc_status st = policy_copy(p, &copy);
  if (st != ACKRPC_OK) return st;
  policy_free(e->policy);
  e->policy = copy;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_server_add_cleanup(ackrpc_server *s, void (*fn)(void *),
                                        void *data) {
  if (!s || !fn) return ACKRPC_E_INVAL;
  cleanup *t = realloc(s->cleanups, (s->n_cleanups + 1) * sizeof *t);
  if (!t) return ACKRPC_E_NOMEM;
  s->cleanups = t;
  t[s->n_cleanups++] = (cleanup){fn, data};
  return ACKRPC_OK;
}

/* --- connection objects ------------------------------------------------ */

static ackrpc_call *conn_get(ackrpc_server *s) {
  ackrpc_call *c = s->pool;
  if (c) {
    s->pool = c->next;
    s->n_pool--;
  } else {
    c = calloc(1, sizeof *c);
    if (!c) return NULL;
    akr_arena_init(&c->arena, 0);
    c->arena.spare = &s->spare;
  }
  c->server = s;
  c->state = ST_READING;
  c->watching = 0;
  c->in_off = c->in_len = 0;
  c->eof = 0;
  c->drained = 0;
  c->pending = 0;
  c->uid_counted = 0;
  c->head_done = 0;
  c->read_deadline_us = 0;
  c->calls_done = 0;
  c->request = NULL;
  c->close_after_write = 0;
  c->out_off = c->out_len = 0;
  c->batch_off = c->batch_len = 0;
  c->corked = 0;
  c->rc_entry = NULL;
  c->rc_wait = (akr_rc_waiter){0};
  c->rc_ready = 0;
  c->stat_m = NULL;
  c->t_start_us = 0;
  atomic_store_explicit(&c->answered, 1, memory_order_relaxed);
  atomic_store_explicit(&c->held, 0, memory_order_relaxed);
  atomic_store_explicit(&c->refs, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  return c;
}

/* Frees the input buffer: a block goes back to `spare` (NULL: unmapped). */
static void conn_in_free(ackrpc_call *c, akr_spare *spare) {
  if (c->in_cap >= AKR_SPARE_MIN)
    akr_spare_put(spare, c->in, c->in_cap);
  else
    free(c->in);
  c->in = NULL;
  c->in_cap = c->in_off = c->in_len = 0;
}

/* Blocks were given back: unmap them if no call asks for one soon. */
static void spare_watch(ackrpc_server *s) {
  if (s->spare.n && !evtimer_pending(s->spare_timer, NULL)) {
    struct timeval tv = akr_tv_us(SPARE_IDLE_MS * 1000u);
    evtimer_add(s->spare_timer, &tv);
  }
}

static void on_spare_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ackrpc_server *s = arg;
  if (akr_spare_idle(&s->spare)) spare_watch(s);
}

static void conn_destroy(ackrpc_call *c, int on_loop) {
  ackrpc_server *s = c->server;
  free(c->late);
  c->late = NULL;
  /* The spare store and pooling are the loop's: only on the loop, and only
   * while the server is alive. */
  akr_spare *spare = on_loop && !s->closed ? &s->spare : NULL;
  c->arena.spare = spare;
  if (spare && s->n_pool < POOL_MAX) {
    if (c->in_cap > KEEP_BUFFER) conn_in_free(c, spare);
    if (c->out_cap > KEEP_BUFFER) {
      free(c->out);
      c->out = NULL;
      c->out_cap = 0;
    }
    if (c->batch_cap > KEEP_BUFFER) {
      free(c->batch);
      c->batch = NULL;
      c->batch_cap = 0;
    }
    akr_arena_reset(&c->arena, 0);
    c->next = s->pool;
    s->pool = c;
    s->n_pool++;
    spare_watch(s);
  } else {
    akr_arena_release(&c->arena);
    conn_in_free(c, spare);
    if (spare) spare_watch(s);
    free(c->out);
    free(c->batch);
    free(c);
  }
  server_unref(s);
}

static void conn_unref(ackrpc_call *c, int on_loop) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
    conn_destroy(c, on_loop);
}

static void pending_add(ackrpc_call *c) {
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
}

static void pending_remove(ackrpc_call *c) {
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
}

/* Counts a connection against its peer's uid; -1 if over the limit. */
static int uid_enter(ackrpc_server *s, uid_t uid) {
  for (size_t i = 0; i < s->n_uids; i++) {
    if (s->uids[i].uid != uid) continue;
    if (s->uids[i].n >= s->opt.max_connections_per_uid) return -1;
    s->uids[i].n++;
    return 0;
  }
  /* The array only grows: a uid whose last connection closed leaves its
   * slot free, and the next connection must not cost an allocation. */
  if (s->n_uids == s->uids_cap) {
    size_t cap = s->uids_cap ? 2 * s->uids_cap : 8;
    uid_count *t = realloc(s->uids, cap * sizeof *t);
    if (!t) return -1;
    s->uids = t;
    s->uids_cap = cap;
  }
  s->uids[s->n_uids++] = (uid_count){uid, 1};
  return 0;
}

static void uid_leave(ackrpc_server *s, uid_t uid) {
  for (size_t i = 0; i < s->n_uids; i++) {
    if (s->uids[i].uid != uid) continue;
    if (--s->uids[i].n == 0) s->uids[i] = s->uids[--s->n_uids];
    return;
  }
}

/* Sets the event interest: 0, EV_READ or EV_WRITE. */
static void conn_watch(ackrpc_call *c, short what) {
  if (c->watching == what) return;
  if (c->watching) event_del(&c->io);
  c->watching = what;
  if (!what) return;
  event_assign(&c->io, c->server->base, c->fd, what | EV_PERSIST, on_io, c);
  event_add(&c->io, NULL);
}

static void conn_set_timer(ackrpc_call *c, uint64_t deadline_us) {
  struct timeval tv = akr_tv_until(deadline_us);
  evtimer_add(&c->timer, &tv);
}

/* --- replies ----------------------------------------------------------- */

/* Encodes a reply frame into c->out. Only the side that won `answered` (or
 * the loop, for errors found before dispatch) calls this. */
static ackrpc_status conn_encode(ackrpc_call *c, uint32_t status, const char *message,
                                 const ProtobufCMessage *body) {
  akr_reply_spec spec = {.status = status, .message = message, .body = body};
  size_t n = akr_reply_size(&spec);
  if (n == 0) {
    spec = (akr_reply_spec){.status = ACKRPC_INTERNAL,
                            .message = "reply larger than the protocol allows"};
    n = akr_reply_size(&spec);
  }
  if (n > c->out_cap) {
    uint8_t *p = realloc(c->out, n);
    if (!p) {
      c->out_len = c->out_off = 0;
      return ACKRPC_E_NOMEM;
    }
    c->out = p;
    c->out_cap = n;
  }
  c->out_len = akr_reply_encode(&spec, c->out);
  c->out_off = 0;
  c->reply_status = spec.status;
  return ACKRPC_OK;
}

/* Answers on the loop without a handler: protocol errors, unknown methods,
 * deadlines, shutdown. */
static void conn_answer_local(ackrpc_call *c, ackrpc_status status, const char *message,
                              int then_close) {
  pending_remove(c);
  c->close_after_write = then_close;
  if (conn_encode(c, (uint32_t)status, message, NULL) != ACKRPC_OK) {
    c->state = ST_DONE;
    return;
  }
  conn_write(c);
}

/* The call on this connection is over: get ready for the next frame. */
static void conn_next_call(ackrpc_call *c) {
  /* The answer is out and nothing holds the request any more: give back
   * what decoding took now, not when the next frame comes (an idle
   * connection would otherwise keep up to its decode budget mapped). */
  akr_arena_reset(&c->arena, 0);
  spare_watch(c->server);
  c->in_off += c->frame_len;
  c->frame_len = 0;
  c->head_done = 0;
  c->request = NULL;
  c->calls_done++;
  c->read_deadline_us = 0;
  c->state = ST_READING;
  if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
  pending_add(c);
}

/* Writes what is left of c->out, then moves the connection on. */
/* Sends buf[*off, len). 1 once all is sent; 0 if it has to wait (the
 * connection is then WRITING, watching EV_WRITE) or the peer is gone (DONE). */
static int conn_send(ackrpc_call *c, const uint8_t *buf, size_t *off, size_t len) {
  while (*off < len) {
    ssize_t n = send(c->fd, buf + *off, len - *off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      *off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (c->state != ST_WRITING) {
        c->state = ST_WRITING;
        conn_set_timer(c,
                       akr_now_us() + (uint64_t)c->server->opt.read_timeout_ms * 1000u);
      }
      conn_watch(c, EV_WRITE);
      return 0;
    }
    c->state = ST_DONE; /* the peer is gone */
    conn_record(c);
    return 0;
  }
  return 1;
}

/* The reply in `out` is on its way: count it, then close or move on to the
 * next frame. */
static void conn_written(ackrpc_call *c) {
  evtimer_del(&c->timer);
  conn_record(c);
  if (c->close_after_write)
    c->state = ST_DONE;
  else
    conn_next_call(c);
}

/* Writes the batched replies, then what is left of `out`, then moves the
 * connection on. */
static void conn_write(ackrpc_call *c) {
  if (c->batch_len) {
    if (!conn_send(c, c->batch, &c->batch_off, c->batch_len)) return;
    c->batch_off = c->batch_len = 0;
  }
  if (!conn_send(c, c->out, &c->out_off, c->out_len)) return;
  conn_written(c);
}

/* Moves the reply in `out` to the batch, to go out with the next one. -1 if
 * out of memory (the caller then writes it now). */
static int conn_batch(ackrpc_call *c) {
  size_t n = c->out_len - c->out_off;
  if (c->batch_len + n > c->batch_cap) {
    size_t cap = c->batch_cap ? c->batch_cap : 4096;
    while (cap < c->batch_len + n)
      cap *= 2;
    uint8_t *p = realloc(c->batch, cap);
    if (!p) return -1;
    c->batch = p;
    c->batch_cap = cap;
  }
  memcpy(c->batch + c->batch_len, c->out + c->out_off, n);
  c->batch_len += n;
  c->out_off = c->out_len; /* counted as written; out_len stays for the stats */
  return 0;
}

static const char *status_text(uint32_t status) {
  const char *n = ackrpc_status_name((ackrpc_status)status);
  return n ? n : "?";
}

/* The reply in `out` is written (or the peer left while it was): counts the
 * call for its method and, at DEBUG, logs it. Loop thread; no allocation,
 * no lock; the clock is read only if the call was dispatched or logging
 * wants it. */
static void conn_record(ackrpc_call *c) {
  const method_entry *m = c->stat_m;
  if (!m) return;
  c->stat_m = NULL;
  ackrpc_server *s = c->server;
  int debug = s->opt.log_level >= ACKRPC_LOG_DEBUG;
  uint64_t us = 0;
  int timed = c->t_start_us != 0;
  if (timed) us = akr_now_us() - c->t_start_us;
  c->t_start_us = 0;
  akr_stats_record(m->stats, c->reply_status, c->frame_len, c->out_len, timed, us);
  if (debug)
    slog(s, ACKRPC_LOG_DEBUG,
         "call method=%s status=%s us=%llu peer_uid=%u peer_pid=%d bytes_in=%zu "
         "bytes_out=%zu",
         m->m.name, status_text(c->reply_status), (unsigned long long)us,
         (unsigned)c->peer.uid, (int)c->peer.pid, c->frame_len, c->out_len);
}

/* The status of an encoded reply frame (ReplyHead field 1; absent: OK). */
static uint32_t frame_status(const uint8_t *frame, size_t len) {
  if (len < AKR_PREFIX_LEN + 2) return 0;
  uint32_t head_len = (uint32_t)frame[4] | (uint32_t)frame[5] << 8 |
                      (uint32_t)frame[6] << 16 | (uint32_t)frame[7] << 24;
  if (head_len < 2 || head_len > len - AKR_PREFIX_LEN || frame[AKR_PREFIX_LEN] != 0x08)
    return 0;
  uint32_t v = 0;
  for (size_t i = 0; i < 5 && i + 1 < head_len; i++) {
    uint8_t b = frame[AKR_PREFIX_LEN + 1 + i];
    v |= (uint32_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) return v;
  }
  return ACKRPC_UNKNOWN;
}

/* Hands a reply encoded on another thread (and the handler's reference) to
 * the loop. -1 if the server is closed: the caller drops the reference. */
static int queue_reply(ackrpc_server *s, ackrpc_call *c) {
  pthread_mutex_lock(&s->mu);
  if (s->closed) {
    pthread_mutex_unlock(&s->mu);
    return -1;
  }
  int was_empty = s->done_head == NULL;
  c->done_next = NULL;
  if (s->done_tail)
    s->done_tail->done_next = c;
  else
    s->done_head = c;
  s->done_tail = c;
  pthread_mutex_unlock(&s->mu);
  if (was_empty) {
    uint64_t one = 1;
    ssize_t w = write(s->wake_fd, &one, sizeof one); /* cannot block: eventfd */
    (void)w;
  }
  return 0;
}

/* Reply cache: the answer of a call that was answered late (the loop gave up
 * first), encoded into c->late for the repeats that wait for it. */
static void encode_late(ackrpc_call *c, uint32_t status, const char *message,
                        const ProtobufCMessage *body) {
  akr_reply_spec spec = {.status = status, .message = message, .body = body};
  size_t n = akr_reply_size(&spec);
  c->late = n ? malloc(n) : NULL;
  c->late_len = c->late ? akr_reply_encode(&spec, c->late) : 0;
}

ackrpc_status ackrpc_call_reply(ackrpc_call *c, ackrpc_status status,
                                const char *message, const ProtobufCMessage *reply) {
  if (!c) return ACKRPC_E_INVAL;
  ackrpc_server *s = c->server;
  int on_loop = tl_in_handler == c;
  /* A second reply would drop the handler's reference twice. Caught here
   * while the object still exists; after that it is use after free. */
  if (!atomic_exchange_explicit(&c->held, 0, memory_order_acq_rel))
    return ACKRPC_E_INVAL;
  ackrpc_status ret = ACKRPC_OK;
  if (!ackrpc_status_is_canonical(status)) {
    ret = ACKRPC_E_INVAL;
    status = ACKRPC_INTERNAL;
    message = "the handler answered a status that is not a canonical code";
    reply = NULL;
  } else if (reply && reply->descriptor != c->method->m.reply) {
    ret = ACKRPC_E_INVAL;
    status = ACKRPC_INTERNAL;
    message = "the handler replied with a message of the wrong type";
    reply = NULL;
  }
  c->reply_ok = status == ACKRPC_OK;
  if (atomic_exchange_explicit(&c->answered, 1, memory_order_acq_rel)) {
    /* The loop answered first. If this call owns a reply-cache entry, the
     * answer still goes to the loop: repeats of its call id wait for it,
     * and an OK is kept for later ones. */
    if (c->rc_entry) {
      encode_late(c, (uint32_t)status, message, reply);
      if (queue_reply(s, c) == 0) return ACKRPC_E_ALREADY_ANSWERED;
    }
    conn_unref(c, on_loop);
    return ACKRPC_E_ALREADY_ANSWERED;
  }
  if (conn_encode(c, (uint32_t)status, message, reply) != ACKRPC_OK) {
    ret = ACKRPC_E_NOMEM;
    c->reply_ok = 0;
    conn_encode(c, ACKRPC_INTERNAL, "out of memory encoding the reply", NULL);
  }
  c->close_after_write = c->out_len == 0;
  if (on_loop) {
    /* Inside the handler, on the loop: write now. The loop's reference
     * keeps the object alive; dispatch carries on once the handler returns. */
    cache_finish(c, c->out, c->out_len);
    /* Pipelined frames: the answer waits for the next one (corked), or
     * joins those waiting, so that all go out in a single send(). */
    if ((c->corked || c->batch_len) && conn_batch(c) == 0) {
      if (c->corked)
        conn_written(c);
      else
        conn_write(c);
    } else {
      conn_write(c);
    }
    conn_unref(c, 1);
    return ret;
  }
  /* Another thread, or later: hand the reply (and this reference) to the
   * loop. */
  if (queue_reply(s, c) != 0) {
    conn_unref(c, 0);
    return ACKRPC_E_ALREADY_ANSWERED;
  }
  return ret;
}

/* --- the reply cache (reply_cache.c; docs/DELIVERY.md) ------------------ */

static ackrpc_call *waiter_call(akr_rc_waiter *w) {
  return (ackrpc_call *)(void *)((char *)w - offsetof(ackrpc_call, rc_wait));
}

/* Copies a whole reply frame into c->out; -1 if out of memory. */
static int conn_set_out(ackrpc_call *c, const uint8_t *frame, size_t len) {
  if (len > c->out_cap) {
    uint8_t *p = realloc(c->out, len);
    if (!p) return -1;
    c->out = p;
    c->out_cap = len;
  }
  memcpy(c->out, frame, len);
  c->out_off = 0;
  c->out_len = len;
  return 0;
}

/* Before a handler runs: a call id already answered OK for this method is
 * answered from the cache; one whose first call is still being handled
 * waits for it (until its own deadline). Returns 1 if the call was taken
 * care of here, 0 if the handler must run (the call then owns a new cache
 * entry, finished by cache_finish() when it is answered). Loop thread. */
static int cache_begin(ackrpc_call *c) {
  ackrpc_server *s = c->server;
  akr_rc_entry *e = NULL;
  const uint8_t *frame = NULL;
  size_t len = 0;
  switch (akr_rc_begin(s->cache, c->req.method, c->req.call_id, c->req.call_id_len,
                       akr_now_us(), &e, &frame, &len)) {
  case AKR_RC_MISS: c->rc_entry = e; return 0;
  case AKR_RC_UNTRACKED: return 0;
  case AKR_RC_HIT:
    if (conn_set_out(c, frame, len) != 0) return 0;
    c->reply_status = ACKRPC_OK; /* only OK answers are kept */
    c->close_after_write = 0;
    conn_write(c);
    return 1;
  case AKR_RC_IN_FLIGHT:
    c->state = ST_WAITING;
    c->rc_ready = 0;
    akr_rc_wait(e, &c->rc_wait);
    conn_set_timer(c, c->deadline_us);
    return 1;
  }
  return 0;
}

/* The call owning a cache entry was answered with `frame` (NULL: no
 * answer could be made): keep an OK, and hand the answer to the repeats
 * waiting for it. They are woken through their timers, so that no other
 * connection runs inside the handler that called this. Loop thread. */
static void cache_finish(ackrpc_call *c, const uint8_t *frame, size_t len) {
  akr_rc_entry *e = c->rc_entry;
  if (!e) return;
  c->rc_entry = NULL;
  akr_rc_waiter *w = akr_rc_finish(c->server->cache, e, c->reply_ok && frame, frame,
                                   len, akr_now_us());
  while (w) {
    akr_rc_waiter *next = w->next;
    ackrpc_call *wc = waiter_call(w);
    wc->rc_ready = frame && conn_set_out(wc, frame, len) == 0 ? 1 : 2;
    if (wc->rc_ready == 1) wc->reply_status = frame_status(frame, len);
    event_active(&wc->timer, EV_TIMEOUT, 0);
    w = next;
  }
}

/* A waiting repeat's timer: its answer arrived, or its deadline passed. */
static void cache_wait_over(ackrpc_call *c) {
  evtimer_del(&c->timer);
  akr_rc_unwait(&c->rc_wait);
  c->state = ST_HANDLING; /* for conn_write's bookkeeping */
  if (c->rc_ready == 1) {
    c->close_after_write = 0;
    conn_write(c);
  } else if (c->rc_ready == 2) {
    conn_answer_local(c, ACKRPC_UNAVAILABLE,
                      "the first call with this call id ended without an answer", 0);
  } else {
    conn_answer_local(c, ACKRPC_DEADLINE_EXCEEDED,
                      "a call with this call id is still being handled", 0);
  }
}

/* --- reading and dispatch --------------------------------------------- */

/* Decodes the head of the frame at the read position and admits it: a
 * known method and a peer its policy allows. Runs as soon as the head is in,
 * before the body is read. If the frame is not complete yet, a refusal ends
 * the connection (its body is never read); otherwise the session goes on
 * after the answer. Returns 1 if admitted, 0 if answered. */
static int conn_check_head(ackrpc_call *c, const akr_frame *f, int complete) {
  ackrpc_server *s = c->server;
  c->frame_len = f->frame_len;
  c->stat_m = NULL;
  c->t_start_us = 0;
  akr_arena_reset(&c->arena, DECODE_BUDGET(f->frame_len));
  akr_frame_error fe = akr_request_decode(f, &c->arena, &c->req);
  if (fe != AKR_FRAME_OK) {
    slog(s, ACKRPC_LOG_INFO, "event=bad_request peer_uid=%u peer_pid=%d error=\"%s\"",
         (unsigned)c->peer.uid, (int)c->peer.pid, akr_frame_error_text(fe));
    conn_answer_local(c, akr_frame_error_status(fe), akr_frame_error_text(fe),
                      !complete);
    return 0;
  }
  const method_entry *m = find_method(s, c->req.method);
  if (!m) {
    char msg[ACKRPC_MAX_METHOD_NAME + 32];
    snprintf(msg, sizeof msg, "unknown method %s", c->req.method);
    conn_answer_local(c, ACKRPC_UNIMPLEMENTED, msg, !complete);
    return 0;
  }
  c->stat_m = m;
  if (!policy_allows(m->policy, s->euid, c)) {
    slog(s, ACKRPC_LOG_INFO,
         "event=refused method=%s peer_uid=%u peer_pid=%d by=policy", c->req.method,
         (unsigned)c->peer.uid, (int)c->peer.pid);
    conn_answer_local(c, ACKRPC_PERMISSION_DENIED, "not allowed to call this method",
                      !complete);
    return 0;
  }
  c->method = m;
  c->head_done = 1;
  return 1;
}

/* Decodes the complete frame's body and hands the call to its handler. */
static void conn_dispatch(ackrpc_call *c, const akr_frame *f) {
  ackrpc_server *s = c->server;
  const method_entry *m = c->method;
  c->t_start_us = akr_now_us(); /* the request is complete */
  pending_remove(c);
  /* The buffer may have moved since the head was checked. */
  c->req.body = f->body;
  c->req.body_len = f->body_len;
  if (m->depth > s->opt.max_depth &&
      akr_check_depth(m->m.request, c->req.body, c->req.body_len, s->opt.max_depth)) {
    char msg[128];
    snprintf(msg, sizeof msg, "request nests deeper than %u levels", s->opt.max_depth);
    conn_answer_local(c, ACKRPC_INVALID_ARGUMENT, msg, 0);
    return;
  }
  c->request = protobuf_c_message_unpack(m->m.request, &c->arena.pc, c->req.body_len,
                                         c->req.body);
  if (!c->request) {
    char msg[512];
    int over = c->arena.refused;
    snprintf(msg, sizeof msg, "request body %s %s",
             over ? "needs more memory to decode than allowed as"
                  : "does not decode as",
             m->m.request->name);
    conn_answer_local(c, over ? ACKRPC_RESOURCE_EXHAUSTED : ACKRPC_INVALID_ARGUMENT,
                      msg, 0);
    return;
  }
  uint64_t budget = (uint64_t)s->opt.handler_timeout_ms * 1000u;
  int client_deadline = c->req.timeout_us && c->req.timeout_us < budget;
  if (client_deadline) budget = c->req.timeout_us;
  c->deadline_us = c->t_start_us + budget;
  if (s->cache && cache_begin(c)) return; /* a repeated call id */

  c->state = ST_HANDLING;
  atomic_store_explicit(&c->answered, 0, memory_order_relaxed);
  atomic_store_explicit(&c->held, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
  tl_in_handler = c;
  m->fn(c, c->request, m->user);
  tl_in_handler = NULL;
  /* Deferred. When the deadline is the client's, the server answers a
   * moment after it: the client has given up by then and reports its own
   * timeout, rather than racing the server's answer. */
  if (c->state == ST_HANDLING)
    conn_set_timer(c, c->deadline_us + (client_deadline ? DEADLINE_GRACE_US : 0));
}

/* Reads once into the input buffer, making room for `need` bytes of the
 * current frame (or at least one byte, to see EOF). Returns 1 on data or
 * EOF, 0 if the read would block, -1 on error. */
static int conn_fill(ackrpc_call *c, size_t need) {
  size_t avail = c->in_len - c->in_off;
  size_t want = need > avail ? need : avail + 1;
  if (c->in_off && c->in_off + want > c->in_cap) {
    memmove(c->in, c->in + c->in_off, avail);
    c->in_off = 0;
    c->in_len = avail;
  }
  if (want > c->in_cap) {
    size_t cap = want < INITIAL_BUFFER ? INITIAL_BUFFER : want;
    /* From a session's second call on, room for a few frames of this size:
     * a pipelining client's frames then come in a few per read, not one. */
    if (c->calls_done && cap < KEEP_BUFFER / 4) cap *= 4;
    if (cap >= AKR_SPARE_MIN) {
      /* A large frame: a block, likely the pages of the last large call's
       * buffer, already faulted in. */
      uint8_t *p = akr_spare_get(&c->server->spare, cap, &cap);
      if (!p) return -1;
      if (avail) memcpy(p, c->in + c->in_off, avail);
      conn_in_free(c, &c->server->spare);
      c->in = p;
      c->in_cap = cap;
      c->in_len = avail;
    } else {
      uint8_t *p = realloc(c->in, cap);
      if (!p) return -1;
      c->in = p;
      c->in_cap = cap;
    }
  }
  for (;;) {
    size_t room = c->in_cap - c->in_len;
    ssize_t n = read(c->fd, c->in + c->in_len, room);
    if (n > 0) {
      c->in_len += (size_t)n;
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
static void conn_shed(ackrpc_call *c) {
  if (c->in_len != c->in_off) return;
  conn_in_free(c, &c->server->spare);
  akr_arena_release(&c->arena);
  spare_watch(c->server);
}

/* The connection's state machine. Called only from the loop's callbacks, never
 * from inside a handler; may close the connection (the caller must not touch
 * it afterwards). */
static void conn_resume(ackrpc_call *c) {
  ackrpc_server *s = c->server;
  for (;;) {
    if (c->state == ST_DONE) {
      conn_close(c);
      return;
    }
    if (c->state != ST_READING) return; /* a handler or a write is pending */
    if (s->stopping && c->calls_done && c->in_off == c->in_len) {
      conn_close(c); /* an idle session: end it at a frame boundary */
      return;
    }
    akr_frame f = {0};
    size_t need = 0;
    size_t avail = c->in_len - c->in_off;
    const uint8_t *at = c->in ? c->in + c->in_off : NULL; /* no buffer while idle */
    akr_frame_error fe = akr_frame_scan(at, avail, AKR_FRAME_REQUEST,
                                        s->opt.max_request_size, &f, &need);
    if ((fe == AKR_FRAME_OK || fe == AKR_FRAME_INCOMPLETE) && f.frame_len &&
        !c->head_done && avail >= AKR_PREFIX_LEN + (size_t)f.head_len) {
      if (!conn_check_head(c, &f, fe == AKR_FRAME_OK)) continue;
    }
    if (fe == AKR_FRAME_OK) {
      /* Pipelined: if another whole frame is already here, an inline answer
       * to this one waits to go out with the next in a single send(). */
      akr_frame next;
      c->corked =
          avail - f.frame_len >= AKR_PREFIX_LEN &&
          akr_frame_scan(at + f.frame_len, avail - f.frame_len, AKR_FRAME_REQUEST,
                         s->opt.max_request_size, &next, NULL) == AKR_FRAME_OK;
      conn_dispatch(c, &f);
      c->corked = 0;
      /* A handler, or the first call with the same id, still has the call:
       * stop reading meanwhile, or level-triggered readiness from pipelined
       * frames would wake the loop again and again. An inline answer leaves
       * the read interest as it was, which in a session saves an epoll_ctl
       * pair per call. */
      if (c->state == ST_HANDLING || c->state == ST_WAITING) {
        conn_watch(c, 0);
        /* Answers batched so far need not wait for this one. What cannot
         * be sent at once stays first in line, before this call's reply. */
        if (c->batch_len) {
          size_t off = c->batch_off;
          while (off < c->batch_len) {
            ssize_t n = send(c->fd, c->batch + off, c->batch_len - off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n <= 0 && !(n < 0 && errno == EINTR)) break;
            if (n > 0) off += (size_t)n;
          }
          c->batch_off = off;
          if (off == c->batch_len) c->batch_off = c->batch_len = 0;
        }
      }
      continue;
    }
    if (fe == AKR_FRAME_INCOMPLETE && c->eof) {
      if (c->in_len == c->in_off) {
        conn_close(c);
        return;
      }
      fe = AKR_FRAME_TRUNCATED; /* never dispatched */
    }
    if (fe != AKR_FRAME_INCOMPLETE) {
      slog(s, ACKRPC_LOG_INFO, "event=bad_request peer_uid=%u peer_pid=%d error=\"%s\"",
           (unsigned)c->peer.uid, (int)c->peer.pid, akr_frame_error_text(fe));
      conn_watch(c, 0);
      conn_answer_local(c, akr_frame_error_status(fe), akr_frame_error_text(fe), 1);
      continue;
    }
    /* In a session, after an answer with nothing buffered: the last read
     * drained the socket, so wait for the loop to report more (it is level-
     * triggered: nothing is missed) rather than read only to get EAGAIN.
     * After a connection's first call it reads on (calls_done is 1 then): a
     * one-shot client's EOF is usually there already. */
    int skip_read = c->drained && c->calls_done > 1 && avail == 0;
    int r = skip_read ? 0 : conn_fill(c, need);
    if (r < 0) {
      c->state = ST_DONE;
      continue;
    }
    if (r == 0) {
      if (!skip_read) conn_shed(c);
      if (!c->read_deadline_us) {
        c->read_deadline_us = akr_now_us() + (uint64_t)s->opt.read_timeout_ms * 1000u;
        conn_set_timer(c, c->read_deadline_us);
      }
      conn_watch(c, EV_READ);
      return;
    }
  }
}

static void on_io(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  ackrpc_call *c = arg;
  if (what & EV_READ) c->drained = 0; /* there is something to read */
  if (c->state == ST_WRITING) conn_write(c);
  conn_resume(c);
}

/* Moves the connection served by `c` to a new object and returns it; `c`
 * keeps only the call (its request, its arena), for the handler that still
 * holds it. NULL if no object could be had (then `c` stays as it is). */
static ackrpc_call *conn_detach(ackrpc_call *c) {
  ackrpc_server *s = c->server;
  ackrpc_call *n = conn_get(s);
  if (!n) return NULL;
  conn_watch(c, 0);
  evtimer_del(&c->timer);
  n->fd = c->fd;
  c->fd = -1;
  n->peer = c->peer;
  /* Swap input buffers: `n` takes the unread frames, `c` the spare buffer
   * (freed with it). */
  uint8_t *in = n->in;
  size_t in_cap = n->in_cap;
  n->in = c->in;
  n->in_cap = c->in_cap;
  n->in_off = c->in_off;
  n->in_len = c->in_len;
  c->in = in;
  c->in_cap = in_cap;
  c->in_off = c->in_len = 0;
  /* Batched answers to earlier frames belong to the connection too. */
  uint8_t *batch = n->batch;
  size_t batch_cap = n->batch_cap;
  n->batch = c->batch;
  n->batch_cap = c->batch_cap;
  n->batch_off = c->batch_off;
  n->batch_len = c->batch_len;
  c->batch = batch;
  c->batch_cap = batch_cap;
  c->batch_off = c->batch_len = 0;
  n->eof = c->eof;
  n->calls_done = c->calls_done;
  n->frame_len = c->frame_len;
  n->uid_counted = c->uid_counted;
  c->uid_counted = 0;
  n->stat_m = c->stat_m;
  n->t_start_us = c->t_start_us;
  c->stat_m = NULL;
  n->state = ST_HANDLING;
  event_assign(&n->io, s->base, n->fd, EV_READ | EV_PERSIST, on_io, n);
  evtimer_assign(&n->timer, s->base, on_timer, n);
  n->prev = c->prev;
  n->next = c->next;
  if (n->prev)
    n->prev->next = n;
  else
    s->conns = n;
  if (n->next) n->next->prev = n;
  c->prev = c->next = NULL;
  c->state = ST_DONE;
  conn_unref(c, 1); /* the loop's reference; the handler's remains */
  return n;
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ackrpc_call *c = arg;
  ackrpc_server *s = c->server;
  switch (c->state) {
  case ST_READING:
    if (c->calls_done && c->in_off == c->in_len) {
      c->state = ST_DONE; /* an idle session: no frame to answer */
      break;
    }
    slog(s, ACKRPC_LOG_INFO, "event=read_timeout peer_uid=%u peer_pid=%d ms=%u",
         (unsigned)c->peer.uid, (int)c->peer.pid, s->opt.read_timeout_ms);
    conn_watch(c, 0);
    conn_answer_local(c, ACKRPC_DEADLINE_EXCEEDED,
                      "request not received within the server's read timeout", 1);
    break;
  case ST_HANDLING: {
    if (atomic_exchange_explicit(&c->answered, 1, memory_order_acq_rel)) return;
    slog(s, ACKRPC_LOG_WARNING,
         "event=handler_deadline method=%s peer_uid=%u peer_pid=%d "
         "error=\"no reply before the deadline\"",
         c->req.method, (unsigned)c->peer.uid, (int)c->peer.pid);
    /* The handler keeps `c` (and the request in its arena) until it
     * replies; the connection moves to a fresh object so that the session,
     * and calls pipelined behind this one, go on. */
    ackrpc_call *n = conn_detach(c);
    if (n) c = n;
    conn_answer_local(c, ACKRPC_DEADLINE_EXCEEDED,
                      "the handler did not answer before the deadline "
                      "(it may still act on the request)",
                      n == NULL);
    break;
  }
  case ST_WAITING: cache_wait_over(c); break;
  case ST_WRITING:
  case ST_DONE: c->state = ST_DONE; break;
  }
  conn_resume(c);
}

static void conn_start(ackrpc_server *s, int fd) {
  ackrpc_call *c = conn_get(s);
  if (c && !c->in) {
    /* Allocated up front: the first read needs it, and pooled connections
     * keep theirs, so most calls allocate nothing here. */
    c->in = malloc(INITIAL_BUFFER);
    c->in_cap = c->in ? INITIAL_BUFFER : 0;
    if (!c->in) {
      conn_destroy(c, 1);
      c = NULL;
    }
  }
  if (!c) {
    close(fd);
    return;
  }
  c->fd = fd;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    c->peer.pid = cred.pid;
    c->peer.uid = cred.uid;
    c->peer.gid = cred.gid;
  } else {
    c->peer.pid = 0;
    c->peer.uid = (uid_t)-1;
    c->peer.gid = (gid_t)-1;
  }
  event_assign(&c->io, s->base, fd, EV_READ | EV_PERSIST, on_io, c);
  evtimer_assign(&c->timer, s->base, on_timer, c);
  c->prev = NULL;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->n_conns++;
  c->uid_counted = uid_enter(s, c->peer.uid) == 0;
  pending_add(c);
  if (!c->uid_counted) {
    slog(s, ACKRPC_LOG_WARNING,
         "event=uid_limit peer_uid=%u peer_pid=%d limit=%u "
         "error=\"too many connections from this uid\"",
         (unsigned)c->peer.uid, (int)c->peer.pid, s->opt.max_connections_per_uid);
    conn_answer_local(c, ACKRPC_RESOURCE_EXHAUSTED,
                      "too many connections from this uid", 1);
  } else if (!policy_allows(s->policy, s->euid, c)) {
    slog(s, ACKRPC_LOG_INFO, "event=refused peer_uid=%u peer_pid=%d by=server_policy",
         (unsigned)c->peer.uid, (int)c->peer.pid);
    conn_answer_local(c, ACKRPC_PERMISSION_DENIED, "not allowed to use this server", 1);
  }
  conn_resume(c);
}

static void conn_close(ackrpc_call *c) {
  ackrpc_server *s = c->server;
  if (c->fd < 0) return;
  conn_watch(c, 0);
  evtimer_del(&c->timer);
  akr_rc_unwait(&c->rc_wait);
  close(c->fd);
  c->fd = -1;
  c->state = ST_DONE;
  pending_remove(c);
  if (c->uid_counted) uid_leave(s, c->peer.uid);
  c->uid_counted = 0;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->n_conns--;
  conn_unref(c, 1);
  resume_accepting(s);
  check_drained(s);
}

/* --- accepting --------------------------------------------------------- */

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
  if (s->accepting || s->lst.fd < 0 || s->stopping || s->closed ||
      (s->n_conns >= s->opt.max_connections && evictable_in_us(s) != 0))
    return;
  event_add(s->accept_ev, NULL);
  s->accepting = 1;
}

/* Drops the connection that has waited longest for its request. It was
 * never dispatched, so for its client the call was not delivered. */
/* Under pressure: drops the oldest pending connection if it has waited
 * long enough (returns 1); otherwise stops accepting until it has, or until
 * a connection closes, and returns 0. */
static int make_room(ackrpc_server *s) {
  uint64_t wait = evictable_in_us(s);
  if (wait == 0) {
    evict_oldest_pending(s);
    return 1;
  }
  pause_accepting(s, wait == UINT64_MAX ? 0 : (unsigned)(wait / 1000) + 1);
  return 0;
}

static void evict_oldest_pending(ackrpc_server *s) {
  ackrpc_call *c = s->pend_head;
  if (!c) return;
  slog(s, ACKRPC_LOG_INFO,
       "event=evicted peer_uid=%u peer_pid=%d "
       "error=\"incomplete request dropped to admit another\"",
       (unsigned)c->peer.uid, (int)c->peer.pid);
  conn_watch(c, 0);
  conn_answer_local(c, ACKRPC_RESOURCE_EXHAUSTED,
                    "server busy: incomplete request dropped", 1);
  conn_close(c);
}

/* Accepts up to `max` queued connections. */
static void accept_some(ackrpc_server *s, int max) {
  for (int i = 0; i < max; i++) {
    if (s->n_conns >= s->opt.max_connections && !make_room(s)) return;
    int fd = accept4(s->lst.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      /* Out of descriptors or memory: libevent would call us again at once
       * and spin. Stop watching; retry on a timer or when a connection
       * closes. */
      slog(s, ACKRPC_LOG_WARNING, "event=accept_failed error=\"%s\" action=pause ms=%d",
           strerror(errno), EMFILE_RETRY_MS);
      pause_accepting(s, EMFILE_RETRY_MS);
      return;
    }
    conn_start(s, fd);
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
    evict_oldest_pending(s);
  if (s->n_pending > s->opt.max_pending) {
    make_room(s); /* still too young: wait some more */
    return;
  }
  resume_accepting(s);
}

/* --- stopping ---------------------------------------------------------- */

static void close_listener(ackrpc_server *s) {
  if (s->ctl_ev) event_del(s->ctl_ev);
  akr_ctl_close(&s->ctl);
  if (s->lst.fd < 0 && s->lst.lock_fd < 0) return;
  if (s->accepting) event_del(s->accept_ev);
  s->accepting = 0;
  evtimer_del(s->resume_timer);
  /* A socket systemd passed, or one handed to a successor, is not ours to
   * remove: only our descriptors go. */
  if (s->inherited || s->handed_over)
    akr_unlisten_keep(&s->lst);
  else
    akr_unlisten(&s->addr, &s->lst);
}

static void finish(ackrpc_server *s) {
  s->finished = 1;
  evtimer_del(s->drain_timer);
  event_del(s->wake_ev);
  if (s->own_base) event_base_loopbreak(s->base);
}

static void check_drained(ackrpc_server *s) {
  if (s->stopping && !s->finished && s->n_conns == 0) finish(s);
}

/* A successor asks for the listening socket (takeover.c). */
static void on_ctl(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ackrpc_server *s = arg;
  const char *why;
  if (s->stopping || !akr_ctl_serve(&s->ctl, &s->lst, &why)) {
    if (!s->stopping && strcmp(why, "no connection") != 0)
      slog(s, ACKRPC_LOG_WARNING, "event=handover_refused address=%s reason=\"%s\"",
           s->address_text, why);
    return;
  }
  slog(s, ACKRPC_LOG_INFO, "event=handed_over address=%s connections=%zu",
       s->address_text, s->n_conns);
  s->handed_over = 1;
  begin_stop(s);
}

static void begin_stop(ackrpc_server *s) {
  s->stopping = 1;
  slog(s, ACKRPC_LOG_INFO, "event=stopping address=%s connections=%zu", s->address_text,
       s->n_conns);
  /* Connections already in the kernel's queue have sent their requests (or
   * are sending them): serve them rather than reset them. */
  if (s->lst.fd >= 0) accept_some(s, INT32_MAX);
  close_listener(s);
  for (ackrpc_call *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (c->state == ST_READING) conn_resume(c); /* ends idle sessions */
  }
  struct timeval tv = akr_tv_us((uint64_t)s->opt.drain_timeout_ms * 1000u);
  evtimer_add(s->drain_timer, &tv);
  check_drained(s);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ackrpc_server *s = arg;
  slog(s, ACKRPC_LOG_WARNING,
       "event=drain_timeout address=%s connections=%zu error=\"drain time over: "
       "calls in flight answered UNAVAILABLE\"",
       s->address_text, s->n_conns);
  for (ackrpc_call *c = s->conns, *next; c; c = next) {
    next = c->next;
    if ((c->state == ST_HANDLING &&
         !atomic_exchange_explicit(&c->answered, 1, memory_order_acq_rel)) ||
        c->state == ST_WAITING) {
      akr_rc_unwait(&c->rc_wait);
      conn_answer_local(c, ACKRPC_UNAVAILABLE, "the server is shutting down", 1);
    }
    conn_close(c);
  }
  check_drained(s);
}

static void on_wake(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  ackrpc_server *s = arg;
  uint64_t n;
  ssize_t r = read(fd, &n, sizeof n);
  (void)r;
  pthread_mutex_lock(&s->mu);
  ackrpc_call *c = s->done_head;
  s->done_head = s->done_tail = NULL;
  pthread_mutex_unlock(&s->mu);
  while (c) {
    ackrpc_call *next = c->done_next;
    if (c->fd >= 0 && c->state == ST_HANDLING) {
      evtimer_del(&c->timer);
      cache_finish(c, c->out, c->out_len);
      conn_write(c);
      conn_unref(c, 1); /* the handler's reference; the loop's remains */
      conn_resume(c);
    } else {
      /* Answered late (after the loop gave up on it): only the repeats
       * waiting in the reply cache get this answer. */
      cache_finish(c, c->late, c->late_len);
      conn_unref(c, 1);
    }
    c = next;
  }
  if (atomic_load(&s->stop_requested) && !s->stopping) begin_stop(s);
}

void ackrpc_server_stop(ackrpc_server *s) {
  if (!s) return;
  /* Only an atomic store and a write(2): safe in a signal handler. */
  atomic_store(&s->stop_requested, 1);
  uint64_t one = 1;
  ssize_t w = write(s->wake_fd, &one, sizeof one);
  (void)w;
}

/* --- life cycle -------------------------------------------------------- */

ackrpc_status ackrpc_server_new(const ackrpc_server_options *options,
                                ackrpc_server **ret_server) {
  if (!options || !ret_server || !options->address) return ACKRPC_E_INVAL;
  akr_address addr;
  const char *sd = options->address;
  int inherit = strncmp(sd, AKR_SYSTEMD_PREFIX, strlen(AKR_SYSTEMD_PREFIX)) == 0;
  int inherited_fd = -1;
  ackrpc_status st;
  if (inherit) {
    st = akr_inherit(sd + strlen(AKR_SYSTEMD_PREFIX), &inherited_fd);
    if (st != ACKRPC_OK) return st;
    memset(&addr, 0, sizeof addr);
    addr.len = sizeof addr.sa;
    if (getsockname(inherited_fd, (struct sockaddr *)&addr.sa, &addr.len) != 0)
      return ACKRPC_E_SYSTEM;
    addr.abstract = addr.len > offsetof(struct sockaddr_un, sun_path) &&
                    addr.sa.sun_path[0] == '\0';
  } else {
    st = akr_address_parse(options->address, &addr);
    if (st != ACKRPC_OK) return st;
  }

  ackrpc_server *s = calloc(1, sizeof *s);
  if (!s) return ACKRPC_E_NOMEM;
  s->opt = *options;
  if (!s->opt.max_request_size) s->opt.max_request_size = DEFAULT_MAX_REQUEST;
  akr_spare_init(&s->spare, SPARE_BUDGET(s->opt.max_request_size));
  if (!s->opt.read_timeout_ms) s->opt.read_timeout_ms = DEFAULT_READ_TIMEOUT_MS;
  if (!s->opt.handler_timeout_ms)
    s->opt.handler_timeout_ms = DEFAULT_HANDLER_TIMEOUT_MS;
  if (!s->opt.max_connections) s->opt.max_connections = DEFAULT_MAX_CONNECTIONS;
  if (!s->opt.drain_timeout_ms) s->opt.drain_timeout_ms = DEFAULT_DRAIN_TIMEOUT_MS;
  if (!s->opt.socket_mode) s->opt.socket_mode = DEFAULT_SOCKET_MODE;
  if (s->opt.backlog <= 0) s->opt.backlog = DEFAULT_BACKLOG;
  if (!s->opt.max_depth) s->opt.max_depth = DEFAULT_MAX_DEPTH;
  if (!s->opt.max_connections_per_uid)
    s->opt.max_connections_per_uid = DEFAULT_MAX_PER_UID;
  if (!s->opt.max_pending) s->opt.max_pending = DEFAULT_MAX_PENDING;
  if (!s->opt.reply_cache_entries) s->opt.reply_cache_entries = DEFAULT_CACHE_ENTRIES;
  if (!s->opt.reply_cache_age_ms) s->opt.reply_cache_age_ms = DEFAULT_CACHE_AGE_MS;
  if (!s->opt.reply_cache_bytes) s->opt.reply_cache_bytes = DEFAULT_CACHE_BYTES;
  if (!s->opt.log) s->opt.log = ackrpc_log_stderr;
  if (!s->opt.log_level) s->opt.log_level = ACKRPC_LOG_WARNING;
  s->addr = addr;
  s->euid = geteuid();
  s->opt.policy = NULL; /* kept in s->policy */
  s->lst.fd = -1;
  s->lst.lock_fd = -1;
  s->ctl.fd = -1;
  s->wake_fd = -1;
  s->created_us = akr_now_us();
  s->inherited = inherit;
  if (inherit) s->opt.handover = 0;
  atomic_init(&s->refs, 1);
  atomic_init(&s->stop_requested, 0);
  pthread_mutex_init(&s->mu, NULL);
  s->address_text = strdup(options->address);
  s->opt.address = s->address_text;
  st = ACKRPC_E_NOMEM;
  if (!s->address_text) goto fail;
  st = policy_copy(options->policy, &s->policy);
  if (st != ACKRPC_OK) goto fail;
  st = ACKRPC_E_NOMEM;
  if (s->opt.reply_cache) {
    s->cache = akr_rc_new(s->opt.reply_cache_entries, s->opt.reply_cache_bytes,
                          (uint64_t)s->opt.reply_cache_age_ms * 1000u);
    if (!s->cache) goto fail;
  }

  s->base = options->base;
  if (!s->base) {
    s->base = event_base_new();
    if (!s->base) goto fail;
    s->own_base = 1;
  }
  s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->wake_fd < 0) {
    st = ACKRPC_E_SYSTEM;
    goto fail;
  }
  s->wake_ev = event_new(s->base, s->wake_fd, EV_READ | EV_PERSIST, on_wake, s);
  s->resume_timer = evtimer_new(s->base, on_resume_timer, s);
  s->drain_timer = evtimer_new(s->base, on_drain_timeout, s);
  s->spare_timer = evtimer_new(s->base, on_spare_timer, s);
  if (!s->wake_ev || !s->resume_timer || !s->drain_timer || !s->spare_timer) goto fail;
  gid_t group = (gid_t)-1;
  if (options->socket_group) {
    st = resolve_group(options->socket_group, &group);
    if (st != ACKRPC_OK) goto fail;
  }
  s->opt.socket_group = NULL;
  if (!s->opt.disable_builtins) {
    st = akr_builtins_register(s);
    if (st != ACKRPC_OK) goto fail;
  }
  if (inherit) {
    s->lst.fd = inherited_fd;
  } else {
    st = ACKRPC_E_NOT_FOUND;
    if (s->opt.handover) {
      st = akr_takeover(&s->addr, &s->lst);
      if (st == ACKRPC_OK)
        slog(s, ACKRPC_LOG_INFO, "event=took_over address=%s", s->address_text);
      else if (st != ACKRPC_E_NOT_FOUND)
        goto fail;
    }
    if (st == ACKRPC_E_NOT_FOUND)
      st = akr_listen(&s->addr, s->opt.socket_mode, group, s->opt.backlog, &s->lst);
    if (st != ACKRPC_OK) goto fail;
    if (s->opt.handover) {
      st = akr_ctl_listen(&s->addr, &s->ctl);
      if (st != ACKRPC_OK) goto fail;
      s->ctl_ev = event_new(s->base, s->ctl.fd, EV_READ | EV_PERSIST, on_ctl, s);
      if (!s->ctl_ev) {
        st = ACKRPC_E_NOMEM;
        goto fail;
      }
      event_add(s->ctl_ev, NULL);
    }
  }
  s->accept_ev = event_new(s->base, s->lst.fd, EV_READ | EV_PERSIST, on_accept, s);
  if (!s->accept_ev) {
    st = ACKRPC_E_NOMEM;
    goto fail;
  }
  event_add(s->wake_ev, NULL);
  resume_accepting(s);
  *ret_server = s;
  return ACKRPC_OK;
fail : {
  int e = errno;
  /* An inherited socket stays systemd's: closing our descriptor is all
   * that close_listener() does with it. */
  ackrpc_server_free(s);
  errno = e;
  return st;
}
}

ackrpc_status ackrpc_server_run(ackrpc_server *s) {
  if (!s) return ACKRPC_E_INVAL;
  if (!s->own_base) return ACKRPC_E_STATE;
  while (!s->finished) {
    int r = event_base_dispatch(s->base);
    if (r < 0) return ACKRPC_E_SYSTEM;
    if (r == 1 && !s->finished) return ACKRPC_E_STATE; /* nothing to wait for */
  }
  return ACKRPC_OK;
}

ackrpc_server *ackrpc_server_free(ackrpc_server *s) {
  if (!s) return NULL;
  close_listener(s);
  /* Calls a handler still holds are marked answered, so its reply is
   * refused; the object outlives the server until then. */
  while (s->conns) {
    ackrpc_call *c = s->conns;
    atomic_store(&c->answered, 1);
    conn_close(c);
  }
  pthread_mutex_lock(&s->mu);
  s->closed = 1;
  ackrpc_call *done = s->done_head;
  s->done_head = s->done_tail = NULL;
  pthread_mutex_unlock(&s->mu);
  while (done) {
    ackrpc_call *next = done->done_next;
    conn_unref(done, 0);
    done = next;
  }
  while (s->pool) {
    ackrpc_call *c = s->pool;
    s->pool = c->next;
    akr_arena_release(&c->arena);
    conn_in_free(c, NULL);
    free(c->out);
    free(c->batch);
    free(c);
  }
  /* Every waiting repeat was closed above; calls a handler still holds
   * keep a pointer to their entry, but their late answers never reach the
   * loop now (closed). */
  akr_rc_free(s->cache);
  s->cache = NULL;
  if (s->accept_ev) event_free(s->accept_ev);
  if (s->ctl_ev) event_free(s->ctl_ev);
  if (s->wake_ev) event_free(s->wake_ev);
  if (s->resume_timer) event_free(s->resume_timer);
  if (s->drain_timer) event_free(s->drain_timer);
  if (s->spare_timer) event_free(s->spare_timer);
  akr_spare_trim(&s->spare);
  if (s->own_base && s->base) event_base_free(s->base);
  s->base = NULL;
  if (s->wake_fd >= 0) close(s->wake_fd);
  s->wake_fd = -1;
  while (s->n_cleanups) {
    cleanup *k = &s->cleanups[--s->n_cleanups];
    k->fn(k->data);
  }
  free(s->cleanups);
  s->cleanups = NULL;
  server_unref(s);
  return NULL;
}

static void server_unref(ackrpc_server *s) {
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
  for (size_t i = 0; i < s->method_cap; i++) {
    free((char *)s->methods[i].m.name);
    free(s->methods[i].stats);
    policy_free(s->methods[i].policy);
  }
  free(s->services);
  free(s->svc_builtin);
  policy_free(s->policy);
  free(s->methods);
  free(s->uids);
  free(s->address_text);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

struct event_base *ackrpc_server_base(const ackrpc_server *s) {
  return s ? s->base : NULL;
}

size_t ackrpc_server_connections(const ackrpc_server *s) {
  return s ? s->n_conns : 0;
}

int akr_server_adopt(ackrpc_server *s, int fd) {
  if (!s || fd < 0 || s->stopping) return -1;
  conn_start(s, fd);
  return 0;
}

/* --- call accessors ---------------------------------------------------- */

const char *ackrpc_call_method(const ackrpc_call *c) {
  return c ? c->req.method : NULL;
}

const ackrpc_peer *ackrpc_call_peer(const ackrpc_call *c) {
  return c ? &c->peer : NULL;
}

const uint8_t *ackrpc_call_id(const ackrpc_call *c, size_t *ret_len) {
  if (!c) return NULL;
  if (ret_len) *ret_len = c->req.call_id_len;
  return c->req.call_id;
}

uint64_t ackrpc_call_deadline_us(const ackrpc_call *c) {
  return c ? c->deadline_us : 0;
}

size_t ackrpc_call_metadata_count(const ackrpc_call *c) {
  return c ? c->req.n_metadata : 0;
}

int ackrpc_call_metadata_at(const ackrpc_call *c, size_t index, const char **ret_key,
                            const uint8_t **ret_value, size_t *ret_value_len) {
  if (!c || index >= c->req.n_metadata) return -1;
  const Ackrpc__Wire__Metadata *m = c->req.metadata[index];
  if (ret_key) *ret_key = m->key;
  if (ret_value) *ret_value = m->value.data;
  if (ret_value_len) *ret_value_len = m->value.len;
  return 0;
}

const uint8_t *ackrpc_call_metadata(const ackrpc_call *c, const char *key,
                                    size_t *ret_len) {
  if (!c || !key) return NULL;
  for (size_t i = 0; i < c->req.n_metadata; i++) {
    const Ackrpc__Wire__Metadata *m = c->req.metadata[i];
    if (strcmp(m->key, key) == 0) {
      if (ret_len) *ret_len = m->value.len;
      /* An empty value decodes as NULL; hand out a valid pointer anyway so
       * "present but empty" differs from "absent". */
      return m->value.data ? m->value.data : (const uint8_t *)"";
    }
  }
  return NULL;
}
