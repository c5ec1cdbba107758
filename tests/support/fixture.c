/* fixture.c: the integration tests' fixture (see fixture.h). State is
 * process-wide because Criterion gives every test its own process; setup
 * resets it all the same, so --no-fork runs (valgrind, debuggers) work too.
 * Every wait here is bounded in time; threads started here are joined with a
 * bound and, if one does not end, left alone rather than freed under it. */
#include "fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "ackrpc/wire.pb-c.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define FX_HAVE_VALGRIND 1
#endif
#endif

#define FX_MAX_SERVERS 8
#define FX_MAX_CLIENTS 32
#define FX_MAX_FAKES 8
#define FX_MAX_BG 64
#define FX_MAX_BUFS 64
#define FX_MAX_STRS 64
#define FX_MAX_DEFERRED 256
/* Longest a fixture thread may take to notice it should end. */
#define FX_JOIN_MS 10000
/* Longest a fake server's script waits for anything. */
#define FX_FAKE_WAIT_MS 10000

const ackrpc_method fx_echo_method = {
    FX_ECHO, &ackrpc__test__echo_request__descriptor,
    &ackrpc__test__echo_reply__descriptor};
const ackrpc_method fx_strict_method = {
    FX_STRICT, &ackrpc__test__strict__descriptor,
    &ackrpc__test__strict_reply__descriptor};
static const ackrpc_method fx_probe_method = {
    FX_PROBE, &ackrpc__test__echo_request__descriptor,
    &ackrpc__test__echo_reply__descriptor};

struct fx_server {
  ackrpc_server *srv; /* first: handlers get &fs->srv as `user` */
  pthread_t thr;
  int running; /* thread started, not joined */
  int stuck;   /* join timed out: never free */
  ackrpc_status run_status;
  atomic_int run_done;
  uint32_t drain_ms;
  char address[256];
  ackrpc_client *probe;
};

struct fx_bg_call {
  pthread_t thr;
  int joined;
  ackrpc_client *client;
  Ackrpc__Test__EchoRequest *request;
  ackrpc_call_options opts;
  ackrpc_result result;
  ackrpc_status status;
  atomic_int done;
};

struct fx_fake {
  int lfd;
  char path[PATH_MAX];
  fx_fake_mode mode;
  uint8_t *reply;
  size_t reply_len;
  pthread_t thr;
  int has_thr;
  int joined;
  uint8_t *got;
  size_t got_len, got_cap;
  int eof;
  atomic_int quit;
};

/* A call the echo handler answers now, later or when told. */
struct fx_pending {
  ackrpc_call *call;
  Ackrpc__Test__EchoReply reply;
  char *text, *method, *meta, *message;
  uint8_t call_id[ACKRPC_MAX_CALL_ID];
  uint32_t status;
  uint32_t tag;
  uint32_t delay_ms;
};

static struct {
  int active, finished;
  char dir[128];
  char sock[160];
  int fd_baseline;
  unsigned abstract_seq;
  char *strs[FX_MAX_STRS];
  size_t n_strs;
  fx_server *servers[FX_MAX_SERVERS];
  size_t n_servers;
  ackrpc_client *clients[FX_MAX_CLIENTS];
  size_t n_clients;
  fx_fake *fakes[FX_MAX_FAKES];
  size_t n_fakes;
  fx_bg_call *bgs[FX_MAX_BG];
  size_t n_bgs;
  void *bufs[FX_MAX_BUFS];
  size_t n_bufs;
} g;

/* Shared with handler and helper threads. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint g_handler_calls;
static atomic_int g_reply_rc[FX_MAX_TAGS];
static struct fx_pending *g_held[FX_MAX_HELD];
static size_t g_n_held;
static pthread_t g_deferred[FX_MAX_DEFERRED];
static size_t g_n_deferred;

static void cleanup(int check);
static void remove_dir(void);
static int join_bounded(pthread_t thr, uint32_t ms);

/* ------------------------------------------------------------------------ */
/* Suites */

void fx_setup(void) {
  memset(&g, 0, sizeof g);
  atomic_store(&g_handler_calls, 0);
  for (size_t i = 0; i < FX_MAX_TAGS; i++) atomic_store(&g_reply_rc[i], -1);
  pthread_mutex_lock(&g_mu);
  memset(g_held, 0, sizeof g_held);
  g_n_held = 0;
  g_n_deferred = 0;
  pthread_mutex_unlock(&g_mu);

  const char *tmp = getenv("TMPDIR");
  /* sun_path holds 108 bytes: keep the directory short. */
  if (!tmp || !*tmp || strlen(tmp) > 48) tmp = "/tmp";
  snprintf(g.dir, sizeof g.dir, "%s/ackrpc-it-XXXXXX", tmp);
  cr_assert_not_null(mkdtemp(g.dir), "mkdtemp(%s): %s", g.dir, strerror(errno));
  snprintf(g.sock, sizeof g.sock, "%s/s.sock", g.dir);
  g.active = 1;
  g.fd_baseline = fx_fd_count();
}

void fx_teardown(void) {
  if (!g.active) return;
  if (!g.finished) cleanup(0);
  remove_dir();
  for (size_t i = 0; i < g.n_strs; i++) free(g.strs[i]);
  g.n_strs = 0;
  g.active = 0;
}

void fx_finish(void) {
  cleanup(1);
  g.finished = 1;

  DIR *d = opendir(g.dir);
  cr_assert_not_null(d, "opendir(%s)", g.dir);
  char leftover[512] = "";
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", g.dir, e->d_name);
    if (lstat(p, &st) == 0 && S_ISSOCK(st.st_mode)) {
      strncat(leftover, e->d_name, sizeof leftover - strlen(leftover) - 2);
      strcat(leftover, " ");
    }
  }
  closedir(d);
  cr_assert_str_empty(leftover, "socket files left behind in %s: %s", g.dir,
                      leftover);
  int fds = fx_fd_count();
  cr_assert_eq(fds, g.fd_baseline, "fd leak: %d open fds at the end, %d at setup",
               fds, g.fd_baseline);
}

/* Ends everything the test started. With `check`, failures are assertions;
 * without (teardown after a failed test), they are only reported. */
static void cleanup(int check) {
  /* Parked calls first: a server draining waits for them. */
  for (size_t i = 0; i < FX_MAX_HELD; i++) fx_held_reply(i, ACKRPC_CANCELLED, "test over");

  for (size_t i = 0; i < g.n_bgs; i++) {
    fx_bg_call *bg = g.bgs[i];
    if (!bg->joined) {
      if (join_bounded(bg->thr, FX_JOIN_MS + 60000) != 0) {
        fprintf(stderr, "fixture: a background call did not return\n");
        if (check) cr_assert_fail("a background call did not return");
        continue;
      }
      bg->joined = 1;
    }
    ackrpc_result_clear(&bg->result);
    if (bg->request) ackrpc__test__echo_request__free_unpacked(bg->request, NULL);
    free(bg);
  }
  g.n_bgs = 0;

  fx_deferred_join();

  for (size_t i = 0; i < g.n_servers; i++) {
    fx_server *fs = g.servers[i];
    if (!fs) continue;
    if (fs->stuck) continue;
    if (fs->running) {
      ackrpc_server_stop(fs->srv);
      uint32_t ms = fs->drain_ms + FX_JOIN_MS;
      if (join_bounded(fs->thr, ms) != 0) {
        fs->stuck = 1;
        fprintf(stderr, "fixture: ackrpc_server_run() did not return within %u ms of "
                        "ackrpc_server_stop()\n", ms);
        if (check) cr_assert_fail("ackrpc_server_run() did not return after stop");
        continue;
      }
      fs->running = 0;
      if (check)
        cr_assert_eq(fs->run_status, ACKRPC_OK, "ackrpc_server_run() returned %s",
                     ackrpc_status_name(fs->run_status));
    }
    fs->srv = ackrpc_server_free(fs->srv);
    free(fs);
    g.servers[i] = NULL;
  }
  g.n_servers = 0;

  for (size_t i = 0; i < g.n_fakes; i++) {
    fx_fake *f = g.fakes[i];
    if (!f) continue;
    if (!f->joined) fx_fake_join(f, NULL, NULL);
    if (!f->joined) continue; /* stuck: leave it */
    free(f->got);
    free(f->reply);
    free(f);
    g.fakes[i] = NULL;
  }
  g.n_fakes = 0;

  for (size_t i = 0; i < g.n_clients; i++) g.clients[i] = ackrpc_client_free(g.clients[i]);
  g.n_clients = 0;
  for (size_t i = 0; i < g.n_bufs; i++) free(g.bufs[i]);
  g.n_bufs = 0;
}

static void remove_dir(void) {
  DIR *d = opendir(g.dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char p[512];
      snprintf(p, sizeof p, "%s/%s", g.dir, e->d_name);
      if (unlink(p) != 0) rmdir(p);
    }
    closedir(d);
  }
  rmdir(g.dir);
}

/* ------------------------------------------------------------------------ */
/* Environment */

const char *fx_dir(void) { return g.dir; }
const char *fx_sock(void) { return g.sock; }

static const char *keep_str(char *s) {
  cr_assert_not_null(s);
  cr_assert_lt(g.n_strs, FX_MAX_STRS, "fixture: too many strings");
  g.strs[g.n_strs++] = s;
  return s;
}

const char *fx_path(const char *name) {
  char *s = NULL;
  cr_assert_geq(asprintf(&s, "%s/%s", g.dir, name), 0);
  return keep_str(s);
}

const char *fx_abstract(void) {
  char *s = NULL;
  cr_assert_geq(asprintf(&s, "@ackrpc-test-%ld-%u-%llu", (long)getpid(),
                         g.abstract_seq++, (unsigned long long)fx_now_us()),
                0);
  return keep_str(s);
}

uint64_t fx_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void fx_sleep_ms(uint32_t ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int fx_fd_count(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory's own fd */
}

int fx_valgrind(void) {
#ifdef FX_HAVE_VALGRIND
  return RUNNING_ON_VALGRIND ? 1 : 0;
#else
  return 0;
#endif
}

uint64_t fx_slack_us(void) { return fx_valgrind() ? 10000000u : 1000000u; }

static int join_bounded(pthread_t thr, uint32_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return pthread_timedjoin_np(thr, NULL, &ts);
}

/* ------------------------------------------------------------------------ */
/* Handlers */

unsigned fx_handler_calls(void) { return atomic_load(&g_handler_calls); }

int fx_reply_rc(uint32_t tag) {
  if (tag >= FX_MAX_TAGS) return -1;
  return atomic_load(&g_reply_rc[tag]);
}

int fx_reply_rc_wait(uint32_t tag, uint32_t ms) {
  uint64_t end = fx_now_us() + (uint64_t)ms * 1000u;
  int rc;
  while ((rc = fx_reply_rc(tag)) == -1 && fx_now_us() < end) fx_sleep_ms(2);
  return rc;
}

typedef struct strbuf {
  char *s;
  size_t len, cap;
} strbuf;

static void sb_add(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(strbuf *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) abort();
    if (b->s && b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)n;
    char *s = realloc(b->s, cap);
    if (!s) abort();
    b->s = s;
    b->cap = cap;
  }
}

static void sb_hex(strbuf *b, const uint8_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) sb_add(b, "%02x", v[i]);
}

static char *describe_metadata(const ackrpc_call *call,
                               const Ackrpc__Test__EchoRequest *req,
                               uint32_t *ret_count) {
  strbuf b = {0};
  sb_add(&b, "%s", "");
  size_t n = ackrpc_call_metadata_count(call);
  *ret_count = (uint32_t)n;
  for (size_t i = 0; i < n && i < 1000; i++) {
    const char *key = NULL;
    const uint8_t *value = NULL;
    size_t len = 0;
    if (ackrpc_call_metadata_at(call, i, &key, &value, &len) != 0) {
      sb_add(&b, "at(%zu)=-1;", i);
      continue;
    }
    sb_add(&b, "%s=", key ? key : "(null)");
    sb_hex(&b, value, len);
    sb_add(&b, ";");
  }
  for (size_t i = 0; i < req->n_lookup_keys; i++) {
    size_t len = 12345;
    const uint8_t *v = ackrpc_call_metadata(call, req->lookup_keys[i], &len);
    sb_add(&b, "?%s=", req->lookup_keys[i]);
    if (v) sb_hex(&b, v, len);
    else sb_add(&b, "NULL");
    sb_add(&b, ";");
  }
  const char *k = "untouched";
  const uint8_t *v = (const uint8_t *)"x";
  size_t vl = 777;
  int rc = ackrpc_call_metadata_at(call, n, &k, &v, &vl);
  sb_add(&b, "oob=%d%s", rc,
         (strcmp(k, "untouched") == 0 && vl == 777 && v[0] == 'x') ? "" : ",touched");
  return b.s;
}

static ackrpc_status pending_send(struct fx_pending *p, ackrpc_status status,
                                  const char *message) {
  ackrpc_status rc = ackrpc_call_reply(p->call, status, message, &p->reply.base);
  if (p->tag) atomic_store(&g_reply_rc[p->tag], (int)rc);
  free(p->text);
  free(p->method);
  free(p->meta);
  free(p->message);
  free(p);
  return rc;
}

static void *deferred_main(void *arg) {
  struct fx_pending *p = arg;
  fx_sleep_ms(p->delay_ms);
  pending_send(p, (ackrpc_status)p->status, p->message);
  return NULL;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct fx_pending *p = arg;
  pending_send(p, (ackrpc_status)p->status, p->message);
}

void fx_echo_handler(ackrpc_call *call, const ProtobufCMessage *request,
                     void *user) {
  atomic_fetch_add(&g_handler_calls, 1);
  const Ackrpc__Test__EchoRequest *req = (const Ackrpc__Test__EchoRequest *)request;
  struct fx_pending *p = calloc(1, sizeof *p);
  if (!p) abort();
  ackrpc__test__echo_reply__init(&p->reply);
  p->call = call;
  p->text = strdup(req->text ? req->text : "");
  p->reply.text = p->text;
  p->reply.blob_len = (uint32_t)req->blob.len;
  const char *method = ackrpc_call_method(call);
  p->method = strdup(method ? method : "(null)");
  p->reply.method = p->method;
  size_t id_len = 0;
  const uint8_t *id = ackrpc_call_id(call, &id_len);
  if (id_len > sizeof p->call_id) id_len = sizeof p->call_id;
  if (id) memcpy(p->call_id, id, id_len);
  else id_len = 0;
  p->reply.call_id.data = p->call_id;
  p->reply.call_id.len = id_len;
  p->meta = describe_metadata(call, req, &p->reply.metadata_count);
  p->reply.meta = p->meta;
  uint64_t deadline = ackrpc_call_deadline_us(call);
  p->reply.deadline_us = deadline;
  p->reply.remaining_ms = ((int64_t)deadline - (int64_t)fx_now_us()) / 1000;
  const ackrpc_peer *peer = ackrpc_call_peer(call);
  if (peer) {
    p->reply.peer_uid = (uint32_t)peer->uid;
    p->reply.peer_gid = (uint32_t)peer->gid;
    p->reply.peer_pid = (int32_t)peer->pid;
  } else {
    p->reply.peer_pid = -1;
  }
  p->status = req->reply_status;
  if (req->reply_message && *req->reply_message) p->message = strdup(req->reply_message);
  p->tag = req->tag < FX_MAX_TAGS ? req->tag : 0;
  p->delay_ms = req->delay_ms;

  switch (req->mode) {
  case ACKRPC__TEST__ECHO_REQUEST__MODE__DEFER_THREAD: {
    pthread_mutex_lock(&g_mu);
    int ok = g_n_deferred < FX_MAX_DEFERRED &&
             pthread_create(&g_deferred[g_n_deferred], NULL, deferred_main, p) == 0;
    if (ok) g_n_deferred++;
    pthread_mutex_unlock(&g_mu);
    if (!ok) pending_send(p, ACKRPC_INTERNAL, "fixture: cannot start a thread");
    return;
  }
  case ACKRPC__TEST__ECHO_REQUEST__MODE__DEFER_TIMER: {
    ackrpc_server *srv = user ? *(ackrpc_server **)user : NULL;
    struct event_base *base = srv ? ackrpc_server_base(srv) : NULL;
    struct timeval tv = {p->delay_ms / 1000, (long)(p->delay_ms % 1000) * 1000L};
    if (!base || event_base_once(base, -1, EV_TIMEOUT, timer_cb, p, &tv) != 0)
      pending_send(p, ACKRPC_INTERNAL, "fixture: cannot arm a timer");
    return;
  }
  case ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD: {
    pthread_mutex_lock(&g_mu);
    int ok = g_n_held < FX_MAX_HELD;
    if (ok) g_held[g_n_held++] = p;
    pthread_mutex_unlock(&g_mu);
    if (!ok) pending_send(p, ACKRPC_INTERNAL, "fixture: too many held calls");
    return;
  }
  default:
    pending_send(p, (ackrpc_status)p->status, p->message);
    return;
  }
}

void fx_strict_handler(ackrpc_call *call, const ProtobufCMessage *request,
                       void *user) {
  (void)user;
  atomic_fetch_add(&g_handler_calls, 1);
  const Ackrpc__Test__Strict *req = (const Ackrpc__Test__Strict *)request;
  Ackrpc__Test__StrictReply reply = ACKRPC__TEST__STRICT_REPLY__INIT;
  reply.got = req->must;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

static void probe_handler(ackrpc_call *call, const ProtobufCMessage *request,
                          void *user) {
  (void)request;
  ackrpc_server *srv = *(ackrpc_server **)user;
  Ackrpc__Test__EchoReply reply = ACKRPC__TEST__ECHO_REPLY__INIT;
  reply.blob_len = (uint32_t)ackrpc_server_connections(srv);
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

size_t fx_held_wait(size_t n, uint32_t ms) {
  uint64_t end = fx_now_us() + (uint64_t)ms * 1000u;
  for (;;) {
    pthread_mutex_lock(&g_mu);
    size_t have = g_n_held;
    pthread_mutex_unlock(&g_mu);
    if (have >= n || fx_now_us() >= end) return have;
    fx_sleep_ms(2);
  }
}

ackrpc_status fx_held_reply(size_t i, ackrpc_status status, const char *message) {
  if (i >= FX_MAX_HELD) return ACKRPC_E_STATE;
  pthread_mutex_lock(&g_mu);
  struct fx_pending *p = g_held[i];
  g_held[i] = NULL;
  pthread_mutex_unlock(&g_mu);
  if (!p) return ACKRPC_E_STATE;
  return pending_send(p, status, message);
}

void fx_deferred_join(void) {
  for (;;) {
    pthread_mutex_lock(&g_mu);
    if (g_n_deferred == 0) {
      pthread_mutex_unlock(&g_mu);
      return;
    }
    pthread_t t = g_deferred[--g_n_deferred];
    pthread_mutex_unlock(&g_mu);
    /* Each thread sleeps its delay and replies; the tests keep delays short. */
    pthread_join(t, NULL);
  }
}

/* ------------------------------------------------------------------------ */
/* Servers */

static void *server_main(void *arg) {
  fx_server *fs = arg;
  fs->run_status = ackrpc_server_run(fs->srv);
  atomic_store(&fs->run_done, 1);
  return NULL;
}

static fx_server *server_start(const ackrpc_server_options *options, bool own_methods,
                               void (*setup)(ackrpc_server *server, void *user),
                               void *user) {
  cr_assert_lt(g.n_servers, FX_MAX_SERVERS);
  fx_server *fs = calloc(1, sizeof *fs);
  cr_assert_not_null(fs);
  ackrpc_status st = ackrpc_server_new(options, &fs->srv);
  if (st != ACKRPC_OK) free(fs);
  cr_assert_eq(st, ACKRPC_OK, "ackrpc_server_new(%s): %s (errno %d)",
               options->address ? options->address : "(null)",
               ackrpc_status_name(st), errno);
  g.servers[g.n_servers++] = fs;
  fs->drain_ms = options->drain_timeout_ms ? options->drain_timeout_ms : 5000;
  snprintf(fs->address, sizeof fs->address, "%s", options->address);
  if (own_methods) {
    cr_assert_eq(
        ackrpc_server_add_method(fs->srv, &fx_echo_method, fx_echo_handler, &fs->srv),
        ACKRPC_OK);
    cr_assert_eq(
        ackrpc_server_add_method(fs->srv, &fx_strict_method, fx_strict_handler, NULL),
        ACKRPC_OK);
    cr_assert_eq(
        ackrpc_server_add_method(fs->srv, &fx_probe_method, probe_handler, &fs->srv),
        ACKRPC_OK);
  }
  if (setup) setup(fs->srv, user);
  cr_assert_eq(pthread_create(&fs->thr, NULL, server_main, fs), 0);
  fs->running = 1;
  return fs;
}

fx_server *fx_server_start(const ackrpc_server_options *options) {
  return server_start(options, true, NULL, NULL);
}

fx_server *fx_server_start_setup(const ackrpc_server_options *options,
                                 void (*setup)(ackrpc_server *server, void *user),
                                 void *user) {
  return server_start(options, true, setup, user);
}

fx_server *fx_server_start_bare(const ackrpc_server_options *options,
                                void (*setup)(ackrpc_server *server, void *user),
                                void *user) {
  return server_start(options, false, setup, user);
}

ackrpc_server *fx_server_get(const fx_server *fs) { return fs->srv; }

void fx_server_request_stop(fx_server *fs) { ackrpc_server_stop(fs->srv); }

ackrpc_status fx_server_join(fx_server *fs, uint32_t ms) {
  cr_assert(fs->running, "fx_server_join: not running");
  if (join_bounded(fs->thr, ms) != 0) {
    fs->stuck = 1;
    cr_assert_fail("ackrpc_server_run() did not return within %u ms", ms);
  }
  fs->running = 0;
  return fs->run_status;
}

void fx_server_free(fx_server *fs) {
  cr_assert(!fs->running && !fs->stuck, "fx_server_free: still running");
  for (size_t i = 0; i < g.n_servers; i++)
    if (g.servers[i] == fs) g.servers[i] = NULL;
  fs->srv = ackrpc_server_free(fs->srv);
  free(fs);
}

void fx_server_stop(fx_server *fs) {
  fx_server_request_stop(fs);
  ackrpc_status st = fx_server_join(fs, fs->drain_ms + FX_JOIN_MS);
  cr_assert_eq(st, ACKRPC_OK, "ackrpc_server_run() returned %s", ackrpc_status_name(st));
  fx_server_free(fs);
}

size_t fx_server_connections(fx_server *fs) {
  if (!fs->probe) fs->probe = fx_client(fs->address, 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result r = {0};
  ackrpc_status st = ackrpc_client_call(fs->probe, &fx_probe_method, &req.base, NULL, &r);
  cr_assert_eq(st, ACKRPC_OK, "probe call: %s (%s)", ackrpc_status_name(st),
               r.message ? r.message : "");
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
  size_t n = rep->blob_len;
  ackrpc_result_clear(&r);
  cr_assert_geq(n, 1, "the probe's own connection is not counted");
  return n - 1;
}

/* ------------------------------------------------------------------------ */
/* Clients */

ackrpc_client *fx_client_opts(const ackrpc_client_options *options) {
  cr_assert_lt(g.n_clients, FX_MAX_CLIENTS);
  ackrpc_client *c = NULL;
  ackrpc_status st = ackrpc_client_new(options, &c);
  cr_assert_eq(st, ACKRPC_OK, "ackrpc_client_new: %s", ackrpc_status_name(st));
  cr_assert_not_null(c);
  g.clients[g.n_clients++] = c;
  return c;
}

ackrpc_client *fx_client(const char *address, uint32_t timeout_ms) {
  ackrpc_client_options o = {.address = address, .timeout_ms = timeout_ms};
  return fx_client_opts(&o);
}

ackrpc_status fx_echo(ackrpc_client *client, const Ackrpc__Test__EchoRequest *request,
                      const ackrpc_call_options *options, ackrpc_result *result) {
  return ackrpc_client_call(client, &fx_echo_method, &request->base, options, result);
}

const Ackrpc__Test__EchoReply *fx_echo_reply(const ackrpc_result *result) {
  cr_assert_not_null(result->reply, "no reply (status %s, message %s)",
                     ackrpc_status_name(result->status),
                     result->message ? result->message : "(none)");
  cr_assert_eq(result->reply->descriptor, &ackrpc__test__echo_reply__descriptor,
               "the reply is not an EchoReply");
  return (const Ackrpc__Test__EchoReply *)result->reply;
}

static void *bg_main(void *arg) {
  fx_bg_call *bg = arg;
  bg->status = ackrpc_client_call(bg->client, &fx_echo_method, &bg->request->base,
                                  &bg->opts, &bg->result);
  atomic_store(&bg->done, 1);
  return NULL;
}

fx_bg_call *fx_bg_echo(ackrpc_client *client, const Ackrpc__Test__EchoRequest *request,
                       uint32_t timeout_ms) {
  cr_assert_lt(g.n_bgs, FX_MAX_BG);
  fx_bg_call *bg = calloc(1, sizeof *bg);
  cr_assert_not_null(bg);
  size_t n = protobuf_c_message_get_packed_size(&request->base);
  uint8_t *buf = malloc(n ? n : 1);
  cr_assert_not_null(buf);
  protobuf_c_message_pack(&request->base, buf);
  bg->request = ackrpc__test__echo_request__unpack(NULL, n, buf);
  free(buf);
  cr_assert_not_null(bg->request);
  bg->client = client;
  bg->opts.timeout_ms = timeout_ms;
  cr_assert_eq(pthread_create(&bg->thr, NULL, bg_main, bg), 0);
  g.bgs[g.n_bgs++] = bg;
  return bg;
}

int fx_bg_done(const fx_bg_call *bg) { return atomic_load(&bg->done); }

ackrpc_status fx_bg_join(fx_bg_call *bg, uint32_t ms, ackrpc_result **ret) {
  if (!bg->joined) {
    cr_assert_eq(join_bounded(bg->thr, ms), 0, "the call did not return within %u ms", ms);
    bg->joined = 1;
  }
  if (ret) *ret = &bg->result;
  return bg->status;
}

/* ------------------------------------------------------------------------ */
/* Fake servers */

static int fill_sockaddr(const char *address, struct sockaddr_un *sa, socklen_t *len) {
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  size_t n = strlen(address);
  if (address[0] == '@') {
    if (n > sizeof sa->sun_path) return -1;
    memcpy(sa->sun_path + 1, address + 1, n - 1);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  } else {
    if (n >= sizeof sa->sun_path) return -1;
    memcpy(sa->sun_path, address, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  }
  return 0;
}

/* Waits up to `ms` (in slices, watching `quit`) for `events` on fd. Returns
 * poll's revents, 0 on timeout or quit. */
static short fake_wait(fx_fake *f, int fd, short events, uint32_t ms) {
  uint64_t end = fx_now_us() + (uint64_t)ms * 1000u;
  while (!atomic_load(&f->quit) && fx_now_us() < end) {
    struct pollfd p = {fd, events, 0};
    int r = poll(&p, 1, 20);
    if (r > 0) return p.revents;
  }
  return 0;
}

static void fake_read_to_eof(fx_fake *f, int fd) {
  uint64_t end = fx_now_us() + (uint64_t)FX_FAKE_WAIT_MS * 1000u;
  while (fx_now_us() < end) {
    if (!fake_wait(f, fd, POLLIN, FX_FAKE_WAIT_MS)) return;
    if (f->got_cap - f->got_len < 65536) {
      size_t cap = f->got_cap * 2 + 65536;
      uint8_t *p = realloc(f->got, cap);
      if (!p) return;
      f->got = p;
      f->got_cap = cap;
    }
    ssize_t n = read(fd, f->got + f->got_len, f->got_cap - f->got_len);
    if (n > 0) {
      f->got_len += (size_t)n;
    } else if (n == 0) {
      f->eof = 1;
      return;
    } else if (errno != EINTR && errno != EAGAIN) {
      return;
    }
  }
}

/* Waits for the client to close its end (POLLHUP), bounded. */
static void fake_wait_close(fx_fake *f, int fd) {
  uint64_t end = fx_now_us() + (uint64_t)FX_FAKE_WAIT_MS * 1000u;
  while (fx_now_us() < end && !atomic_load(&f->quit)) {
    short ev = fake_wait(f, fd, POLLIN, 50);
    if (ev & (POLLHUP | POLLERR)) return;
    if (f->mode == FX_FAKE_NO_READ) continue;
    if (ev & POLLIN) {
      uint8_t sink[4096];
      ssize_t n = read(fd, sink, sizeof sink);
      if (n < 0 && errno != EINTR && errno != EAGAIN) return;
      if (n == 0) fx_sleep_ms(5); /* our read side is done; wait for HUP */
    }
  }
}

static void *fake_main(void *arg) {
  fx_fake *f = arg;
  if (!(fake_wait(f, f->lfd, POLLIN, FX_FAKE_WAIT_MS) & POLLIN)) return NULL;
  int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return NULL;
  switch (f->mode) {
  case FX_FAKE_CLOSE:
    fake_read_to_eof(f, fd);
    break;
  case FX_FAKE_REPLY:
    fake_read_to_eof(f, fd);
    for (size_t off = 0; off < f->reply_len;) {
      ssize_t n = send(fd, f->reply + off, f->reply_len - off, MSG_NOSIGNAL);
      if (n > 0) off += (size_t)n;
      else if (n < 0 && errno == EINTR) continue;
      else break;
    }
    break;
  case FX_FAKE_HOLD:
    fake_read_to_eof(f, fd);
    fake_wait_close(f, fd);
    break;
  case FX_FAKE_NO_READ:
    fake_wait_close(f, fd);
    break;
  case FX_FAKE_NO_ACCEPT:
    break;
  }
  close(fd);
  return NULL;
}

fx_fake *fx_fake_start(const char *path, fx_fake_mode mode, const void *reply,
                       size_t reply_len, int backlog) {
  cr_assert_lt(g.n_fakes, FX_MAX_FAKES);
  fx_fake *f = calloc(1, sizeof *f);
  cr_assert_not_null(f);
  f->lfd = -1;
  g.fakes[g.n_fakes++] = f;
  f->mode = mode;
  snprintf(f->path, sizeof f->path, "%s", path);
  if (reply_len) {
    f->reply = malloc(reply_len);
    cr_assert_not_null(f->reply);
    memcpy(f->reply, reply, reply_len);
    f->reply_len = reply_len;
  }
  struct sockaddr_un sa;
  socklen_t sl;
  cr_assert_eq(fill_sockaddr(path, &sa, &sl), 0, "fake: bad path %s", path);
  f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(f->lfd, 0);
  cr_assert_eq(bind(f->lfd, (struct sockaddr *)&sa, sl), 0, "fake: bind %s: %s", path,
               strerror(errno));
  cr_assert_eq(listen(f->lfd, backlog), 0);
  if (mode != FX_FAKE_NO_ACCEPT) {
    cr_assert_eq(pthread_create(&f->thr, NULL, fake_main, f), 0);
    f->has_thr = 1;
  }
  return f;
}

const uint8_t *fx_fake_join(fx_fake *f, size_t *ret_len, int *ret_eof) {
  if (!f->joined) {
    atomic_store(&f->quit, 1);
    if (f->has_thr && join_bounded(f->thr, FX_JOIN_MS) != 0) {
      fprintf(stderr, "fixture: a fake server's script did not end\n");
      return NULL;
    }
    if (f->lfd >= 0) close(f->lfd);
    f->lfd = -1;
    if (f->path[0] != '@') unlink(f->path);
    f->joined = 1;
  }
  if (ret_len) *ret_len = f->got_len;
  if (ret_eof) *ret_eof = f->eof;
  return f->got;
}

int fx_fake_fd(const fx_fake *fake) { return fake->lfd; }

/* ------------------------------------------------------------------------ */
/* Frames */

static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

void fx_frame_prefix(uint8_t out[12], uint8_t type, uint32_t head_len, uint32_t body_len) {
  out[0] = 0x41;
  out[1] = 0x4B;
  out[2] = 1;
  out[3] = type;
  put_le32(out + 4, head_len);
  put_le32(out + 8, body_len);
}

static size_t build_frame(uint8_t **ret, uint8_t type, const ProtobufCMessage *head,
                          const ProtobufCMessage *body) {
  size_t hl = protobuf_c_message_get_packed_size(head);
  size_t bl = body ? protobuf_c_message_get_packed_size(body) : 0;
  uint8_t *out = malloc(12 + hl + bl + 1);
  cr_assert_not_null(out);
  fx_frame_prefix(out, type, (uint32_t)hl, (uint32_t)bl);
  protobuf_c_message_pack(head, out + 12);
  if (body) protobuf_c_message_pack(body, out + 12 + hl);
  *ret = out;
  cr_assert_lt(g.n_bufs, FX_MAX_BUFS);
  g.bufs[g.n_bufs++] = out;
  return 12 + hl + bl;
}

size_t fx_frame_reply(uint8_t **ret_frame, uint32_t status, const char *message,
                      const ProtobufCMessage *body) {
  Ackrpc__Wire__ReplyHead h = ACKRPC__WIRE__REPLY_HEAD__INIT;
  h.status = status;
  if (message) h.message = (char *)message;
  return build_frame(ret_frame, 2, &h.base, body);
}

size_t fx_frame_request(uint8_t **ret_frame, const char *method, uint64_t timeout_us,
                        const uint8_t *call_id, size_t call_id_len,
                        const ProtobufCMessage *body) {
  Ackrpc__Wire__RequestHead h = ACKRPC__WIRE__REQUEST_HEAD__INIT;
  h.method = (char *)method;
  h.timeout_us = timeout_us;
  if (!call_id) {
    call_id = (const uint8_t *)"fixture-call-id";
    call_id_len = 15;
  }
  h.call_id.data = (uint8_t *)call_id;
  h.call_id.len = call_id_len;
  return build_frame(ret_frame, 1, &h.base, body);
}

size_t fx_frame_request_fds(uint8_t *out, size_t cap, const char *method, uint32_t fd_count,
                            int body_memfd, const ProtobufCMessage *body) {
  Ackrpc__Wire__RequestHead h = ACKRPC__WIRE__REQUEST_HEAD__INIT;
  h.method = (char *)method;
  h.call_id.data = (uint8_t *)"fixture-call-id";
  h.call_id.len = 15;
  h.fd_count = fd_count;
  h.body_memfd = body_memfd;
  size_t hl = protobuf_c_message_get_packed_size(&h.base);
  size_t bl = body_memfd ? 1 : body ? protobuf_c_message_get_packed_size(body) : 0;
  cr_assert_leq(12 + hl + bl, cap, "a frame of %zu bytes in %zu", 12 + hl + bl, cap);
  fx_frame_prefix(out, 1, (uint32_t)hl, (uint32_t)bl);
  protobuf_c_message_pack(&h.base, out + 12);
  if (body_memfd)
    out[12 + hl] = 0x00;
  else if (body)
    protobuf_c_message_pack(body, out + 12 + hl);
  return 12 + hl + bl;
}

size_t fx_parse_reply(const uint8_t *buf, size_t len, uint32_t *ret_status,
                      char **ret_message, const uint8_t **ret_body,
                      size_t *ret_body_len) {
  if (len < 12 || buf[0] != 0x41 || buf[1] != 0x4B || buf[2] != 1 || buf[3] != 2) return 0;
  uint64_t hl = get_le32(buf + 4), bl = get_le32(buf + 8);
  if (12 + hl + bl > len) return 0;
  Ackrpc__Wire__ReplyHead *h = ackrpc__wire__reply_head__unpack(NULL, hl, buf + 12);
  if (!h) return 0;
  if (ret_status) *ret_status = h->status;
  if (ret_message)
    *ret_message = (h->message && *h->message) ? strdup(h->message) : NULL;
  ackrpc__wire__reply_head__free_unpacked(h, NULL);
  if (ret_body) *ret_body = buf + 12 + hl;
  if (ret_body_len) *ret_body_len = bl;
  return (size_t)(12 + hl + bl);
}

/* ------------------------------------------------------------------------ */
/* Raw sockets */

int fx_raw_connect(const char *address) {
  struct sockaddr_un sa;
  socklen_t sl;
  if (fill_sockaddr(address, &sa, &sl) != 0) return -1;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sa, sl) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

int fx_raw_send(int fd, const void *buf, size_t len) {
  const uint8_t *p = buf;
  while (len) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int fx_raw_send_fds(int fd, const void *buf, size_t len, const int *fds, size_t n_fds) {
  if (!n_fds) return fx_raw_send(fd, buf, len);
  if (!len || n_fds > FX_MAX_SEND_FDS) return -1;
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(FX_MAX_SEND_FDS * sizeof(int))];
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  struct msghdr m = {.msg_iov = &iov,
                     .msg_iovlen = 1,
                     .msg_control = ctl.bytes,
                     .msg_controllen = CMSG_SPACE(n_fds * sizeof(int))};
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
  memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
  ssize_t n;
  do
    n = sendmsg(fd, &m, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n <= 0) return -1;
  /* The descriptors went with the first byte; the rest goes plain. */
  return fx_raw_send(fd, (const uint8_t *)buf + n, len - (size_t)n);
}

uint8_t *fx_raw_read_all(int fd, uint32_t ms, size_t *ret_len, int *ret_eof) {
  size_t cap = 65536, len = 0;
  uint8_t *buf = malloc(cap);
  cr_assert_not_null(buf);
  cr_assert_lt(g.n_bufs, FX_MAX_BUFS);
  g.bufs[g.n_bufs++] = buf;
  size_t slot = g.n_bufs - 1;
  int eof = 0;
  uint64_t end = fx_now_us() + (uint64_t)ms * 1000u;
  while (!eof) {
    uint64_t now = fx_now_us();
    if (now >= end) break;
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, (int)((end - now) / 1000) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (cap - len < 4096) {
      cap *= 2;
      uint8_t *nb = realloc(buf, cap);
      cr_assert_not_null(nb);
      buf = nb;
      g.bufs[slot] = buf;
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n > 0) len += (size_t)n;
    else if (n == 0) eof = 1;
    else if (errno != EINTR && errno != EAGAIN) break;
  }
  *ret_len = len;
  if (ret_eof) *ret_eof = eof;
  return buf;
}

/* ------------------------------------------------------------------------ */
/* Child processes */

pid_t fx_fork(void) {
  fflush(NULL);
  pid_t parent = getpid();
  pid_t pid = fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127); /* the parent died before prctl */
  }
  return pid;
}

pid_t fx_spawn(char *const argv[], const char *log) {
  pid_t pid = fx_fork();
  if (pid == 0) {
    int fd =
        open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
    /* A clean signal state for the program: nothing blocked or ignored. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    execv(argv[0], argv);
    _exit(127);
  }
  return pid;
}

/* ------------------------------------------------------------------------ */
/* Listeners of another user */

int fx_listen_as(const char *address, uid_t uid, gid_t gid) {
  struct sockaddr_un sa;
  socklen_t sl;
  if (fill_sockaddr(address, &sa, &sl) != 0) return -1;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (bind(fd, (struct sockaddr *)&sa, sl) != 0) {
    close(fd);
    return -1;
  }
  int ok;
  if (uid == geteuid()) {
    ok = listen(fd, 64) == 0;
  } else {
    /* The kernel records the credentials of the process that calls
     * listen(): a child that has become `uid` calls it on our socket. */
    pid_t pid = fork();
    if (pid == 0) {
      if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
          setresuid(uid, uid, uid) != 0)
        _exit(2);
      _exit(listen(fd, 64) == 0 ? 0 : 3);
    }
    int status = 0;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ok = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  if (!ok) {
    close(fd);
    if (address[0] != '@') unlink(address);
    return -1;
  }
  return fd;
}

size_t fx_listener_drain(int lfd, size_t *ret_bytes) {
  size_t conns = 0, bytes = 0;
  for (;;) {
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0 && errno == EINTR) continue;
    if (c < 0) break;
    conns++;
    size_t n;
    fx_raw_read_all(c, 2000, &n, NULL);
    bytes += n;
    close(c);
  }
  *ret_bytes = bytes;
  return conns;
}

/* --- the server's counters, through Stats ------------------------------ */

static const ackrpc_method fx_stats_method = {
    "ackrpc.reflection.Stats/Get", &ackrpc__reflection__stats_request__descriptor,
    &ackrpc__reflection__stats_reply__descriptor};

Ackrpc__Reflection__Counters fx_counters(ackrpc_client *c) {
  Ackrpc__Reflection__StatsRequest req = ACKRPC__REFLECTION__STATS_REQUEST__INIT;
  ackrpc_result res = {0};
  cr_assert_eq(ackrpc_client_call(c, &fx_stats_method, &req.base, NULL, &res), ACKRPC_OK);
  const Ackrpc__Reflection__StatsReply *r =
      (const Ackrpc__Reflection__StatsReply *)res.reply;
  cr_assert_not_null(r->counters, "Stats has the counters");
  cr_assert_eq(ackrpc__reflection__counters__descriptor.n_fields,
               sizeof(ackrpc_counters) / sizeof(uint64_t));
  Ackrpc__Reflection__Counters k = *r->counters;
  ackrpc_result_clear(&res);
  return k;
}
