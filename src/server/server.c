/* server.c: the server's life cycle (include/ackrpc/server.h): options and
 * defaults, the socket (bound, inherited or handed over), the loop's
 * events, registration, stopping and draining, and freeing.
 *
 * Not here: connections (conn.c), calls (call.c, dispatch.c), accepting
 * (accept.c), the registry (registry.c), the socket file (platform/). */
#include "ackrpc/server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/clock.h"
#include "server/accept.h"
#include "server/builtin.h"
#include "server/redact.h"
#include "server/tap.h"
#include "server/call.h"
#include "server/conn.h"
#include "server/dispatch.h"

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
/* The memory account (account.h): one largest request, its decoding (up to
 * 16x, see dispatch.c) and a few calls left behind, per connection. */
#define DEFAULT_MEMORY_PER_CONN(max_request)                                           \
  ((max_request) > SIZE_MAX / 20 ? SIZE_MAX : 20 * (size_t)(max_request))
#define DEFAULT_MEMORY_PER_UID ((size_t)256 << 20)
#define DEFAULT_MEMORY ((size_t)1 << 30)
#define DEFAULT_CALLS_PER_CONN 16
#define DEFAULT_CALLS_PER_UID 1024
#define DEFAULT_FDS_PER_CALL 16
/* Reply bodies go in a memfd only when asked: a fresh memfd per reply was
 * slower than the socket at every size measured (docs/PERFORMANCE.md). */
#define DEFAULT_MEMFD_THRESHOLD SIZE_MAX
/* The reply cache (docs/DELIVERY.md): ~1 MiB for small acks at the default
 * count; the age covers a client's whole retry window at the default
 * deadlines (client 30 s, handler 60 s) several times over. */
#define DEFAULT_CACHE_ENTRIES 4096
#define DEFAULT_CACHE_AGE_MS 300000
#define DEFAULT_CACHE_BYTES (16u << 20)
/* Large input buffers and decode chunks freed by calls are kept for the next
 * large call (spare.h), up to twice the largest request. */
#define SPARE_BUDGET(max_request) (2 * (size_t)(max_request) + 2 * AKR_SPARE_MIN)

static void on_conn_closed(akr_conn *c);

static const akr_conn_hooks conn_hooks = {
    .admit = akr_dispatch_admit,
    .dispatch = akr_dispatch_frame,
    .expired = akr_dispatch_expired,
    .closed = on_conn_closed,
};

/* --- stopping ---------------------------------------------------------- */

static void handover_end(ackrpc_server *s);

static void close_listener(ackrpc_server *s) {
  if (s->ctl_ev) event_del(s->ctl_ev);
  handover_end(s);
  akr_ctl_close(&s->ctl);
  if (s->lst.fd < 0 && s->lst.lock_fd < 0 && s->lst.dir_fd < 0) return;
  akr_accept_stop(s);
  /* A socket systemd passed, or one handed to a successor, is not ours to
   * remove: only our descriptors go. */
  if (s->inherited || s->handed_over)
    akr_unlisten_keep(&s->lst);
  else
    akr_unlisten(&s->lst);
}

static void finish(ackrpc_server *s) {
  s->finished = 1;
  akr_tap_free(s); /* the listeners see the end of the stream */
  evtimer_del(s->drain_timer);
  event_del(s->wake_ev);
  if (s->own_base) event_base_loopbreak(s->base);
}

static void check_drained(ackrpc_server *s) {
  if (s->stopping && !s->finished && s->n_conns == 0) finish(s);
}

static void on_conn_closed(akr_conn *c) {
  akr_accept_closed(c);
  check_drained(c->server);
}

static void begin_stop(ackrpc_server *s) {
  s->stopping = 1;
  akr_slog(s, ACKRPC_LOG_INFO, "event=stopping address=%s connections=%zu",
           s->address_text, s->n_conns);
  /* Connections already in the kernel's queue have sent their requests (or
   * are sending them): serve them rather than reset them. */
  akr_accept_drain_queue(s);
  close_listener(s);
  for (akr_conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (c->state == AKR_CONN_READING) akr_conn_resume(c); /* ends idle sessions */
  }
  struct timeval tv = akr_tv_us((uint64_t)s->opt.drain_timeout_ms * 1000u);
  evtimer_add(s->drain_timer, &tv);
  check_drained(s);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ackrpc_server *s = arg;
  akr_slog(s, ACKRPC_LOG_WARNING,
           "event=drain_timeout address=%s connections=%zu error=\"drain time over: "
           "calls in flight answered UNAVAILABLE\"",
           s->address_text, s->n_conns);
  for (akr_conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    akr_dispatch_shutdown(c);
    akr_conn_close(c);
  }
  check_drained(s);
}

static void on_wake(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  ackrpc_server *s = arg;
  uint64_t n;
  ssize_t r = read(fd, &n, sizeof n);
  (void)r;
  akr_dispatch_wake(s);
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

/* --- handing the socket over ---------------------------------------- */

#define HANDOVER_STEP_MS 3000 /* a successor that says nothing this long is dropped */

static void handover_end(ackrpc_server *s) {
  if (s->ctl_peer_ev) event_del(s->ctl_peer_ev);
  akr_ctl_peer_close(&s->ctl_peer);
}

/* A successor's exchange: it said something, or stalled. Never blocks: a
 * stalled or dead successor cannot stall the calls. */
static void on_ctl_peer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  ackrpc_server *s = arg;
  const char *why = "the successor stalled";
  akr_ctl_step_result r =
      what & EV_TIMEOUT ? AKR_CTL_FAILED : akr_ctl_step(&s->ctl_peer, &s->lst, &why);
  if (r == AKR_CTL_MORE) return;
  if (r == AKR_CTL_FAILED) {
    handover_end(s);
    akr_slog(s, ACKRPC_LOG_WARNING, "event=handover_refused address=%s reason=\"%s\"",
             s->address_text, why);
    return;
  }
  /* Give up the control socket before the successor is told we are done
   * (the end of its connection), so that it can create its own. */
  event_del(s->ctl_ev);
  akr_ctl_close(&s->ctl);
  handover_end(s);
  akr_slog(s, ACKRPC_LOG_INFO, "event=handed_over address=%s connections=%zu",
           s->address_text, s->n_conns);
  s->handed_over = 1;
  begin_stop(s);
}

/* A successor connects to the control socket. */
static void on_ctl(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ackrpc_server *s = arg;
  akr_ctl_peer p;
  const char *why = "a handover is already in progress";
  int r = s->stopping ? 0 : akr_ctl_accept(&s->ctl, &p, &why);
  if (r > 0 && s->ctl_peer.fd >= 0) {
    akr_ctl_peer_close(&p);
    r = -1;
  }
  if (r < 0)
    akr_slog(s, ACKRPC_LOG_WARNING, "event=handover_refused address=%s reason=\"%s\"",
             s->address_text, why);
  if (r <= 0) return;
  s->ctl_peer = p;
  struct timeval tv = akr_tv_us((uint64_t)HANDOVER_STEP_MS * 1000u);
  event_assign(s->ctl_peer_ev, s->base, p.fd, EV_READ | EV_PERSIST, on_ctl_peer, s);
  event_add(s->ctl_peer_ev, &tv);
}

/* Offers the listening socket to a successor on the control socket. */
static ackrpc_status handover_offer(ackrpc_server *s) {
  ackrpc_status st = akr_ctl_listen(&s->addr, &s->ctl);
  if (st != ACKRPC_OK) return st;
  s->ctl_ev = event_new(s->base, s->ctl.fd, EV_READ | EV_PERSIST, on_ctl, s);
  s->ctl_peer_ev = event_new(s->base, -1, 0, on_ctl_peer, s);
  if (!s->ctl_ev || !s->ctl_peer_ev) return ACKRPC_E_NOMEM;
  event_add(s->ctl_ev, NULL);
  return ACKRPC_OK;
}

/* --- creating ---------------------------------------------------------- */

/* The options with every default filled in. */
static void set_defaults(ackrpc_server_options *o) {
  if (!o->max_request_size) o->max_request_size = DEFAULT_MAX_REQUEST;
  if (!o->read_timeout_ms) o->read_timeout_ms = DEFAULT_READ_TIMEOUT_MS;
  if (!o->handler_timeout_ms) o->handler_timeout_ms = DEFAULT_HANDLER_TIMEOUT_MS;
  if (!o->max_connections) o->max_connections = DEFAULT_MAX_CONNECTIONS;
  if (!o->drain_timeout_ms) o->drain_timeout_ms = DEFAULT_DRAIN_TIMEOUT_MS;
  if (!o->socket_mode) o->socket_mode = DEFAULT_SOCKET_MODE;
  if (o->backlog <= 0) o->backlog = DEFAULT_BACKLOG;
  if (!o->max_depth) o->max_depth = DEFAULT_MAX_DEPTH;
  if (!o->max_connections_per_uid) o->max_connections_per_uid = DEFAULT_MAX_PER_UID;
  if (!o->max_pending) o->max_pending = DEFAULT_MAX_PENDING;
  if (o->reply_lookup) o->reply_cache = 1; /* repeats join a running first call */
  if (!o->reply_cache_entries) o->reply_cache_entries = DEFAULT_CACHE_ENTRIES;
  if (!o->reply_cache_age_ms) o->reply_cache_age_ms = DEFAULT_CACHE_AGE_MS;
  if (!o->reply_cache_bytes) o->reply_cache_bytes = DEFAULT_CACHE_BYTES;
  if (!o->max_memory_per_connection)
    o->max_memory_per_connection = DEFAULT_MEMORY_PER_CONN(o->max_request_size);
  if (!o->max_memory_per_uid) o->max_memory_per_uid = DEFAULT_MEMORY_PER_UID;
  if (o->max_memory_per_uid < o->max_memory_per_connection)
    o->max_memory_per_uid = o->max_memory_per_connection;
  if (!o->max_memory) o->max_memory = DEFAULT_MEMORY;
  if (o->max_memory < o->max_memory_per_uid) o->max_memory = o->max_memory_per_uid;
  if (!o->max_calls_per_connection)
    o->max_calls_per_connection = DEFAULT_CALLS_PER_CONN;
  if (!o->max_calls_per_uid) o->max_calls_per_uid = DEFAULT_CALLS_PER_UID;
  if (!o->max_fds_per_call) o->max_fds_per_call = DEFAULT_FDS_PER_CALL;
  if (!o->memfd_threshold) o->memfd_threshold = DEFAULT_MEMFD_THRESHOLD;
  if (!o->log) o->log = ackrpc_log_stderr;
  if (!o->log_level) o->log_level = ACKRPC_LOG_WARNING;
}

/* The server object, not yet listening. */
static ackrpc_status server_alloc(const ackrpc_server_options *options,
                                  const akr_address *addr, int inherited,
                                  ackrpc_server **ret) {
  ackrpc_server *s = calloc(1, sizeof *s);
  if (!s) return ACKRPC_E_NOMEM;
  s->opt = *options;
  set_defaults(&s->opt);
  akr_spare_init(&s->spare, SPARE_BUDGET(s->opt.max_request_size));
  s->addr = *addr;
  s->euid = geteuid();
  s->opt.policy = NULL;  /* kept in s->policy */
  s->opt.bridges = NULL; /* kept in s->bridges */
  s->opt.socket_group = NULL;
  s->lst = (akr_listener)AKR_LISTENER_NONE;
  s->ctl.fd = s->ctl_peer.fd = s->wake_fd = -1;
  s->created_us = akr_now_us();
  s->inherited = inherited;
  if (inherited) s->opt.handover = 0;
  s->hooks = &conn_hooks;
  atomic_init(&s->refs, 1);
  atomic_init(&s->stop_requested, 0);
  pthread_mutex_init(&s->mu, NULL);
  s->address_text = strdup(options->address);
  s->opt.address = s->address_text;
  *ret = s;
  if (!s->address_text) return ACKRPC_E_NOMEM;
  /* Both check connections, where no principal is known yet. */
  if (akr_policy_has_principals(options->policy) ||
      akr_policy_has_principals(options->bridges))
    return ACKRPC_E_INVAL;
  ackrpc_status st = akr_policy_copy(options->policy, &s->policy);
  if (st == ACKRPC_OK) st = akr_policy_copy(options->bridges, &s->bridges);
  if (st != ACKRPC_OK) return st;
  if (s->opt.reply_cache) {
    s->cache = akr_rc_new(s->opt.reply_cache_entries, s->opt.reply_cache_bytes,
                          (uint64_t)s->opt.reply_cache_age_ms * 1000u);
    if (!s->cache) return ACKRPC_E_NOMEM;
  }
  return ACKRPC_OK;
}

/* The loop (the caller's or our own) and the server's own events. */
static ackrpc_status loop_setup(ackrpc_server *s, struct event_base *base) {
  s->base = base;
  if (!s->base) {
    s->base = event_base_new();
    if (!s->base) return ACKRPC_E_NOMEM;
    s->own_base = 1;
  }
  s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->wake_fd < 0) return ACKRPC_E_SYSTEM;
  s->wake_ev = event_new(s->base, s->wake_fd, EV_READ | EV_PERSIST, on_wake, s);
  s->drain_timer = evtimer_new(s->base, on_drain_timeout, s);
  if (!s->wake_ev || !s->drain_timer) return ACKRPC_E_NOMEM;
  return ACKRPC_OK;
}

/* The listening socket: systemd's, a predecessor's, or a new one. A refusal
 * with a reason (which directory is unsafe, why a handover failed) is logged:
 * the status alone cannot say which directory. */
static ackrpc_status listen_setup(ackrpc_server *s, int inherited_fd, gid_t group) {
  if (s->inherited) {
    s->lst.fd = inherited_fd;
    return ACKRPC_OK;
  }
  char why[AKR_WHY_MAX] = "";
  ackrpc_status st = ACKRPC_E_NOT_FOUND;
  if (s->opt.handover) {
    st = akr_takeover(&s->addr, &s->lst, why);
    if (st == ACKRPC_OK)
      akr_slog(s, ACKRPC_LOG_INFO, "event=took_over address=%s", s->address_text);
  }
  if (st == ACKRPC_E_NOT_FOUND)
    st = akr_listen(&s->addr, s->opt.socket_mode, group, s->opt.backlog, &s->lst, why);
  if (st != ACKRPC_OK && why[0])
    akr_slog(s, ACKRPC_LOG_ERROR,
             "event=listen_refused address=%s status=%s reason=\"%s\"", s->address_text,
             ackrpc_status_name(st), why);
  if (st == ACKRPC_OK && s->opt.handover) st = handover_offer(s);
  return st;
}

/* The address to serve: parsed, or the one of the socket systemd passed. */
static ackrpc_status address_setup(const char *text, akr_address *addr,
                                   int *ret_inherited_fd) {
  *ret_inherited_fd = -1;
  if (strncmp(text, AKR_SYSTEMD_PREFIX, strlen(AKR_SYSTEMD_PREFIX)) != 0)
    return akr_address_parse(text, addr);
  ackrpc_status st = akr_inherit(text + strlen(AKR_SYSTEMD_PREFIX), ret_inherited_fd);
  if (st != ACKRPC_OK) return st;
  memset(addr, 0, sizeof *addr);
  addr->len = sizeof addr->sa;
  if (getsockname(*ret_inherited_fd, (struct sockaddr *)&addr->sa, &addr->len) != 0) {
    close(*ret_inherited_fd);
    return ACKRPC_E_SYSTEM;
  }
  addr->abstract = addr->len > offsetof(struct sockaddr_un, sun_path) &&
                   addr->sa.sun_path[0] == '\0';
  return ACKRPC_OK;
}

ackrpc_status ackrpc_server_new(const ackrpc_server_options *options,
                                ackrpc_server **ret_server) {
  if (!options || !ret_server || !options->address) return ACKRPC_E_INVAL;
  if (options->max_fds_per_call > AKR_FDS_MAX) return ACKRPC_E_INVAL;
  akr_address addr;
  int inherited_fd;
  ackrpc_status st = address_setup(options->address, &addr, &inherited_fd);
  if (st != ACKRPC_OK) return st;
  ackrpc_server *s = NULL;
  st = server_alloc(options, &addr, inherited_fd >= 0, &s);
  if (st != ACKRPC_OK && !s) {
    if (inherited_fd >= 0) close(inherited_fd);
    return st;
  }
  if (st == ACKRPC_OK) st = loop_setup(s, options->base);
  gid_t group = (gid_t)-1;
  if (st == ACKRPC_OK && options->socket_group)
    st = akr_group_resolve(options->socket_group, &group);
  if (st == ACKRPC_OK && !s->opt.disable_builtins) st = akr_builtins_register(s);
  if (st == ACKRPC_OK)
    st = listen_setup(s, inherited_fd, group);
  else if (inherited_fd >= 0)
    close(inherited_fd);
  if (st == ACKRPC_OK) st = akr_accept_start(s);
  if (st != ACKRPC_OK) {
    int e = errno;
    ackrpc_server_free(s);
    errno = e;
    return st;
  }
  event_add(s->wake_ev, NULL);
  *ret_server = s;
  return ACKRPC_OK;
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

/* Hands the replies still queued back to nobody: their calls were marked
 * answered, so only the references go. */
static void drop_queued_replies(ackrpc_server *s) {
  pthread_mutex_lock(&s->mu);
  s->closed = 1;
  ackrpc_call *done = s->done_head;
  s->done_head = s->done_tail = NULL;
  pthread_mutex_unlock(&s->mu);
  while (done) {
    ackrpc_call *next = done->next;
    akr_call_unref(done, 0);
    done = next;
  }
}

static void free_events(ackrpc_server *s) {
  akr_accept_free(s);
  struct event **evs[] = {&s->ctl_ev, &s->ctl_peer_ev, &s->wake_ev, &s->drain_timer,
                          &s->spare_timer};
  for (size_t i = 0; i < sizeof evs / sizeof *evs; i++) {
    if (*evs[i]) event_free(*evs[i]);
    *evs[i] = NULL;
  }
}

ackrpc_server *ackrpc_server_free(ackrpc_server *s) {
  if (!s) return NULL;
  close_listener(s);
  /* Calls a handler still holds are marked answered, so its reply is
   * refused; the call outlives the server until then. */
  while (s->conns) {
    akr_conn *c = s->conns;
    if (c->call) atomic_store(&c->call->answered, 1);
    akr_conn_close(c);
  }
  drop_queued_replies(s);
  akr_tap_free(s);
  akr_conn_pool_free(s);
  akr_call_pool_free(s);
  /* Every waiting repeat was closed above; calls a handler still holds
   * keep a pointer to their entry, but their late answers never reach the
   * loop now (closed). */
  akr_rc_free(s->cache);
  s->cache = NULL;
  free_events(s);
  akr_spare_trim(&s->spare);
  if (s->own_base && s->base) event_base_free(s->base);
  s->base = NULL;
  if (s->wake_fd >= 0) close(s->wake_fd);
  s->wake_fd = -1;
  while (s->n_cleanups) {
    akr_cleanup *k = &s->cleanups[--s->n_cleanups];
    k->fn(k->data);
  }
  free(s->cleanups);
  s->cleanups = NULL;
  akr_redact_free(s->redact);
  s->redact = NULL;
  akr_server_unref(s);
  return NULL;
}

/* --- registration and queries ----------------------------------------- */

ackrpc_status ackrpc_server_add_method(ackrpc_server *s, const ackrpc_method *method,
                                       ackrpc_handler_fn handler, void *user) {
  if (!s) return ACKRPC_E_INVAL;
  return akr_registry_add_method(&s->registry, method, handler, user);
}

ackrpc_status ackrpc_server_set_fallback(ackrpc_server *s, ackrpc_fallback_fn fn,
                                         void *user) {
  if (!s) return ACKRPC_E_INVAL;
  return akr_registry_set_fallback(&s->registry, fn, user);
}

ackrpc_status ackrpc_server_add_service_info(ackrpc_server *s,
                                             const ackrpc_service *service) {
  if (!s) return ACKRPC_E_INVAL;
  return akr_registry_add_service(&s->registry, service, 0);
}

ackrpc_status ackrpc_server_set_method_policy(ackrpc_server *s, const char *method,
                                              const ackrpc_policy *p) {
  if (!s || !method) return ACKRPC_E_INVAL;
  return akr_registry_set_policy(&s->registry, method, p);
}

ackrpc_status ackrpc_server_set_method_fds(ackrpc_server *s, const char *method,
                                           unsigned max_fds) {
  if (s && max_fds == ACKRPC_FDS_SERVER_MAX) max_fds = s->opt.max_fds_per_call;
  if (!s || !method || max_fds > s->opt.max_fds_per_call) return ACKRPC_E_INVAL;
  return akr_registry_set_fds(&s->registry, method, max_fds);
}

ackrpc_status ackrpc_server_set_method_raw(ackrpc_server *s, const char *method,
                                           int raw) {
  if (!s || !method) return ACKRPC_E_INVAL;
  return akr_registry_set_raw(&s->registry, method, raw);
}

ackrpc_status ackrpc_server_add_cleanup(ackrpc_server *s, void (*fn)(void *),
                                        void *data) {
  if (!s || !fn) return ACKRPC_E_INVAL;
  akr_cleanup *t = realloc(s->cleanups, (s->n_cleanups + 1) * sizeof *t);
  if (!t) return ACKRPC_E_NOMEM;
  s->cleanups = t;
  t[s->n_cleanups++] = (akr_cleanup){fn, data};
  return ACKRPC_OK;
}

size_t ackrpc_server_stats(const ackrpc_server *s, ackrpc_method_stats *out,
                           size_t cap) {
  return s ? akr_registry_stats(&s->registry, out, cap) : 0;
}

struct event_base *ackrpc_server_base(const ackrpc_server *s) {
  return s ? s->base : NULL;
}

size_t ackrpc_server_connections(const ackrpc_server *s) {
  return s ? s->n_conns : 0;
}

int akr_server_adopt(ackrpc_server *s, int fd) {
  if (!s || fd < 0 || s->stopping) return -1;
  akr_accept_serve(s, fd);
  return 0;
}
