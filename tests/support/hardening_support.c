/* hardening_support.c: see hardening_support.h. State is process-wide, like
 * the fixture's: Criterion runs each test in its own process. */
#include "hardening_support.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ackrpc/wire.pb-c.h"

#define HS_MAX_CHILDREN 64
#define HS_MAX_SERVERS 8
#define HS_JOIN_MS 10000

const ackrpc_method hs_nest_method = {HS_NEST, &ackrpc__hardening__node__descriptor,
                                      &ackrpc__hardening__count__descriptor};
const ackrpc_method hs_fill_method = {HS_FILL, &ackrpc__hardening__bag__descriptor,
                                      &ackrpc__hardening__count__descriptor};
const ackrpc_method hs_conns_method = {HS_CONNS, &ackrpc__hardening__empty__descriptor,
                                       &ackrpc__hardening__count__descriptor};

struct hs_server {
  ackrpc_server *srv; /* first: handlers get &hs->srv as `user` */
  pthread_t thr;
  int running;
  int stuck;
  uint32_t drain_ms;
  ackrpc_status run_status;
};

static struct {
  pid_t children[HS_MAX_CHILDREN];
  size_t n_children;
  hs_server *servers[HS_MAX_SERVERS];
  size_t n_servers;
} h;

static atomic_uint hs_calls;

/* ------------------------------------------------------------------------ */
/* Suites */

static void kill_children(void) {
  for (size_t i = 0; i < h.n_children; i++)
    if (h.children[i] > 0) hs_kill(h.children[i]);
  h.n_children = 0;
}

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

/* Stops every in-process server; returns how many did not stop cleanly. */
static int stop_servers(void) {
  int bad = 0;
  for (size_t i = 0; i < h.n_servers; i++) {
    hs_server *hs = h.servers[i];
    if (!hs || hs->stuck) continue;
    if (hs->running) {
      ackrpc_server_stop(hs->srv);
      if (join_bounded(hs->thr, hs->drain_ms + HS_JOIN_MS) != 0) {
        hs->stuck = 1; /* never free a server its thread still runs */
        bad++;
        continue;
      }
      hs->running = 0;
      if (hs->run_status != ACKRPC_OK) bad++;
    }
    hs->srv = ackrpc_server_free(hs->srv);
    free(hs);
    h.servers[i] = NULL;
  }
  h.n_servers = 0;
  return bad;
}

void hs_setup(void) {
  memset(&h, 0, sizeof h);
  atomic_store(&hs_calls, 0);
  fx_setup();
}

void hs_teardown(void) {
  kill_children();
  stop_servers();
  fx_teardown();
}

void hs_finish(void) {
  size_t left = 0;
  for (size_t i = 0; i < h.n_children; i++)
    if (h.children[i] > 0) left++;
  kill_children();
  int bad = stop_servers();
  cr_assert_eq(bad, 0, "%d in-process server(s) did not stop cleanly", bad);
  cr_assert_eq(left, 0, "%zu child process(es) were still running at the end", left);
}

/* ------------------------------------------------------------------------ */
/* Environment */

int hs_asan(void) {
#if defined(__SANITIZE_ADDRESS__)
  return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return 1;
#else
  return 0;
#endif
#else
  return 0;
#endif
}

int hs_slow(void) { return hs_asan() || fx_valgrind(); }

void hs_raise_nofile(rlim_t want) {
  struct rlimit rl;
  cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur >= want) return;
  if (rl.rlim_max < want && rl.rlim_max != RLIM_INFINITY) {
    rl.rlim_max = want; /* works as root */
  }
  rl.rlim_cur = want;
  cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0, "cannot raise RLIMIT_NOFILE to %lu: %s",
               (unsigned long)want, strerror(errno));
}

/* ------------------------------------------------------------------------ */
/* /proc */

long hs_fd_count(pid_t pid) {
  char p[64];
  if (pid == 0) return fx_fd_count();
  snprintf(p, sizeof p, "/proc/%ld/fd", (long)pid);
  DIR *d = opendir(p);
  if (!d) return -1;
  long n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

long hs_cpu_ticks(pid_t pid) {
  char p[64], buf[2048];
  snprintf(p, sizeof p, "/proc/%ld/stat", pid ? (long)pid : (long)getpid());
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  /* The command name may hold spaces and parentheses: fields start after
   * the last ')'. utime and stime are fields 14 and 15 (1-based). */
  char *s = strrchr(buf, ')');
  if (!s) return -1;
  s++;
  unsigned long utime = 0, stime = 0;
  /* fields 3..13 skipped */
  if (sscanf(s, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) !=
      2)
    return -1;
  return (long)(utime + stime);
}

long hs_status_kb(pid_t pid, const char *field) {
  char p[64], line[256];
  snprintf(p, sizeof p, "/proc/%ld/status", pid ? (long)pid : (long)getpid());
  FILE *f = fopen(p, "re");
  if (!f) return -1;
  long kb = -1;
  size_t fl = strlen(field);
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
      kb = strtol(line + fl + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kb;
}

/* ------------------------------------------------------------------------ */
/* Children */

static void register_child(pid_t pid) {
  if (h.n_children < HS_MAX_CHILDREN) {
    h.children[h.n_children++] = pid;
    return;
  }
  hs_kill(pid);
  cr_assert_fail("too many child processes");
}

static void forget_child(pid_t pid) {
  for (size_t i = 0; i < h.n_children; i++)
    if (h.children[i] == pid) h.children[i] = 0;
}

pid_t hs_fork(hs_child_fn fn, void *arg) {
  pid_t pid = fx_fork();
  if (pid == 0) _exit(fn(arg));
  register_child(pid);
  return pid;
}

pid_t hs_spawn(char *const argv[], const char *log_path) {
  pid_t pid = fx_spawn(argv, log_path);
  register_child(pid);
  return pid;
}

int hs_wait(pid_t pid, uint32_t ms, int *ret_status) {
  uint64_t end = fx_now_us() + (uint64_t)ms * 1000u;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      forget_child(pid);
      if (ret_status) *ret_status = status;
      return 0;
    }
    if (r < 0 && errno != EINTR) {
      forget_child(pid);
      if (ret_status) *ret_status = -1;
      return 0; /* not our child any more */
    }
    if (fx_now_us() >= end) return -1;
    fx_sleep_ms(5);
  }
}

void hs_kill(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  if (hs_wait(pid, 10000, NULL) != 0)
    fprintf(stderr, "hardening: child %ld did not die after SIGKILL\n", (long)pid);
}

int hs_alive(pid_t pid) {
  int status;
  return waitpid(pid, &status, WNOHANG) == 0;
}

/* ------------------------------------------------------------------------ */
/* Handlers of the Hard service */

static void reply_count(ackrpc_call *call, uint64_t n) {
  Ackrpc__Hardening__Count c = ACKRPC__HARDENING__COUNT__INIT;
  c.n = n;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &c.base);
}

static void nest_handler(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)user;
  atomic_fetch_add(&hs_calls, 1);
  const Ackrpc__Hardening__Node *n = (const Ackrpc__Hardening__Node *)request;
  uint64_t depth = 1;
  while (n->child) {
    n = n->child;
    depth++;
  }
  reply_count(call, depth);
}

static void fill_handler(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)user;
  atomic_fetch_add(&hs_calls, 1);
  reply_count(call, ((const Ackrpc__Hardening__Bag *)request)->n_items);
}

static void conns_handler(ackrpc_call *call, const ProtobufCMessage *request,
                          void *user) {
  (void)request;
  ackrpc_server *srv = *(ackrpc_server **)user;
  size_t n = ackrpc_server_connections(srv);
  reply_count(call, n ? n - 1 : 0);
}

unsigned hs_handler_calls(void) { return atomic_load(&hs_calls); }

/* Registers every test method; returns the first failure. */
static ackrpc_status add_methods(ackrpc_server *srv, ackrpc_server **slot) {
  ackrpc_status st;
  if ((st = ackrpc_server_add_method(srv, &fx_echo_method, fx_echo_handler, slot)) ||
      (st = ackrpc_server_add_method(srv, &fx_strict_method, fx_strict_handler, NULL)) ||
      (st = ackrpc_server_add_method(srv, &hs_nest_method, nest_handler, NULL)) ||
      (st = ackrpc_server_add_method(srv, &hs_fill_method, fill_handler, NULL)) ||
      (st = ackrpc_server_add_method(srv, &hs_conns_method, conns_handler, slot)))
    return st;
  return ACKRPC_OK;
}

/* ------------------------------------------------------------------------ */
/* Server processes */

typedef struct proc_args {
  const ackrpc_server_options *options;
  rlim_t nofile;
  int report_fd;
} proc_args;

static _Atomic(ackrpc_server *) g_child_server;

static void child_on_term(int sig) {
  (void)sig;
  ackrpc_server_stop(atomic_load(&g_child_server));
}

static int server_proc_main(void *arg) {
  proc_args *a = arg;
  signal(SIGPIPE, SIG_DFL); /* the library must never raise it */
  if (a->nofile) {
    struct rlimit rl = {a->nofile, a->nofile};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      int32_t st = ACKRPC_E_SYSTEM;
      ssize_t w = write(a->report_fd, &st, sizeof st);
      (void)w;
      return 3;
    }
  }
  static ackrpc_server *srv;
  int32_t st = (int32_t)ackrpc_server_new(a->options, &srv);
  if (st == ACKRPC_OK) st = (int32_t)add_methods(srv, &srv);
  if (st == ACKRPC_OK) {
    atomic_store(&g_child_server, srv);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = child_on_term;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &term, NULL);
  }
  ssize_t w = write(a->report_fd, &st, sizeof st);
  (void)w;
  close(a->report_fd);
  if (st != ACKRPC_OK) {
    if (srv) ackrpc_server_free(srv);
    return 2;
  }
  ackrpc_status rs = ackrpc_server_run(srv);
  signal(SIGTERM, SIG_IGN);
  atomic_store(&g_child_server, NULL);
  ackrpc_server_free(srv);
  return rs == ACKRPC_OK ? 0 : 1;
}

pid_t hs_server_proc(const ackrpc_server_options *options, rlim_t nofile,
                     ackrpc_status *ret_status) {
  int p[2];
  cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
  proc_args a = {.options = options, .nofile = nofile, .report_fd = p[1]};
  pid_t pid = hs_fork(server_proc_main, &a);
  close(p[1]);
  int32_t st = -1;
  struct pollfd pf = {p[0], POLLIN, 0};
  int r;
  do {
    r = poll(&pf, 1, 10000);
  } while (r < 0 && errno == EINTR);
  ssize_t n = r > 0 ? read(p[0], &st, sizeof st) : -1;
  close(p[0]);
  if (n != (ssize_t)sizeof st) {
    hs_kill(pid);
    cr_assert_fail("the server process did not report its start within 10 s");
  }
  *ret_status = (ackrpc_status)st;
  if (st != ACKRPC_OK) {
    int ws;
    if (hs_wait(pid, 10000, &ws) != 0) hs_kill(pid);
  }
  return pid;
}

int hs_server_proc_stop(pid_t pid, uint32_t ms) {
  kill(pid, SIGTERM);
  int ws = 0;
  if (hs_wait(pid, ms, &ws) != 0) {
    hs_kill(pid);
    cr_assert_fail("the server process did not exit within %u ms of SIGTERM", ms);
  }
  return ws;
}

/* ------------------------------------------------------------------------ */
/* In-process servers */

static void *server_main(void *arg) {
  hs_server *hs = arg;
  hs->run_status = ackrpc_server_run(hs->srv);
  return NULL;
}

hs_server *hs_server_start(const ackrpc_server_options *options) {
  cr_assert_lt(h.n_servers, HS_MAX_SERVERS);
  hs_server *hs = calloc(1, sizeof *hs);
  cr_assert_not_null(hs);
  ackrpc_status st = ackrpc_server_new(options, &hs->srv);
  if (st != ACKRPC_OK) free(hs);
  cr_assert_eq(st, ACKRPC_OK, "ackrpc_server_new: %s", ackrpc_status_name(st));
  h.servers[h.n_servers++] = hs;
  hs->drain_ms = options->drain_timeout_ms ? options->drain_timeout_ms : 5000;
  cr_assert_eq(add_methods(hs->srv, &hs->srv), ACKRPC_OK);
  cr_assert_eq(pthread_create(&hs->thr, NULL, server_main, hs), 0);
  hs->running = 1;
  return hs;
}

void hs_server_stop(hs_server *hs) {
  ackrpc_server_stop(hs->srv);
  if (join_bounded(hs->thr, hs->drain_ms + HS_JOIN_MS) != 0) {
    hs->stuck = 1;
    cr_assert_fail("ackrpc_server_run() did not return after stop");
  }
  hs->running = 0;
  cr_assert_eq(hs->run_status, ACKRPC_OK, "ackrpc_server_run: %s",
               ackrpc_status_name(hs->run_status));
  for (size_t i = 0; i < h.n_servers; i++)
    if (h.servers[i] == hs) h.servers[i] = NULL;
  hs->srv = ackrpc_server_free(hs->srv);
  free(hs);
}

size_t hs_server_conns(const char *address) {
  ackrpc_client_options co = {.address = address, .timeout_ms = 10000};
  ackrpc_client *c = NULL;
  cr_assert_eq(ackrpc_client_new(&co, &c), ACKRPC_OK);
  Ackrpc__Hardening__Empty e = ACKRPC__HARDENING__EMPTY__INIT;
  ackrpc_result r = {0};
  ackrpc_status st = ackrpc_client_call(c, &hs_conns_method, &e.base, NULL, &r);
  uint64_t n = r.reply ? ((Ackrpc__Hardening__Count *)r.reply)->n : 0;
  ackrpc_result_clear(&r);
  ackrpc_client_free(c);
  cr_assert_eq(st, ACKRPC_OK, "Conns call: %s", ackrpc_status_name(st));
  return (size_t)n;
}

/* ------------------------------------------------------------------------ */
/* Frames */

static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

size_t hs_frame_raw(uint8_t **ret, const void *head, size_t head_len, const void *body,
                    size_t body_len) {
  uint8_t *out = malloc(12 + head_len + body_len + 1);
  cr_assert_not_null(out);
  out[0] = 0x41;
  out[1] = 0x4B;
  out[2] = 1;
  out[3] = 1;
  put_le32(out + 4, (uint32_t)head_len);
  put_le32(out + 8, (uint32_t)body_len);
  if (head_len) memcpy(out + 12, head, head_len);
  if (body_len) memcpy(out + 12 + head_len, body, body_len);
  *ret = out;
  return 12 + head_len + body_len;
}

uint8_t *hs_pack(const ProtobufCMessage *m, size_t *ret_len) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *b = malloc(n + 1);
  cr_assert_not_null(b);
  protobuf_c_message_pack(m, b);
  *ret_len = n;
  return b;
}

size_t hs_frame(uint8_t **ret, const char *method, uint64_t timeout_us, const void *body,
                size_t body_len) {
  Ackrpc__Wire__RequestHead hd = ACKRPC__WIRE__REQUEST_HEAD__INIT;
  hd.method = (char *)method;
  hd.timeout_us = timeout_us;
  hd.call_id.data = (uint8_t *)"hardening-call";
  hd.call_id.len = 14;
  size_t hl;
  uint8_t *head = hs_pack(&hd.base, &hl);
  size_t n = hs_frame_raw(ret, head, hl, body, body_len);
  free(head);
  return n;
}

/* ------------------------------------------------------------------------ */
/* Raw sockets */

int hs_connect(const char *path) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t n = strlen(path);
  if (n >= sizeof sa.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(sa.sun_path, path, n);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int r;
  do {
    r = connect(fd, (struct sockaddr *)&sa,
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1));
  } while (r != 0 && errno == EINTR);
  if (r != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

int hs_send_all(int fd, const void *buf, size_t len) {
  const uint8_t *p = buf;
  uint64_t end = fx_now_us() + 60000000u;
  while (len) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && fx_now_us() < end) {
      struct pollfd pf = {fd, POLLOUT, 0};
      poll(&pf, 1, 100);
      continue;
    }
    return -1;
  }
  return 0;
}

static uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

size_t hs_parse_reply(const uint8_t *buf, size_t len, hs_reply *out) {
  if (len < 12 || buf[0] != 0x41 || buf[1] != 0x4B || buf[2] != 1 || buf[3] != 2) return 0;
  uint64_t hl = get_le32(buf + 4), bl = get_le32(buf + 8);
  if (12 + hl + bl > len) return 0;
  Ackrpc__Wire__ReplyHead *hd = ackrpc__wire__reply_head__unpack(NULL, hl, buf + 12);
  if (!hd) return 0;
  out->got = 1;
  out->status = hd->status;
  snprintf(out->message, sizeof out->message, "%s", hd->message ? hd->message : "");
  ackrpc__wire__reply_head__free_unpacked(hd, NULL);
  out->body_off = (size_t)(12 + hl);
  out->body_len = (size_t)bl;
  return (size_t)(12 + hl + bl);
}

void hs_read_reply(int fd, uint32_t ms, hs_reply *r) {
  memset(r, 0, sizeof *r);
  size_t cap = 4096;
  r->buf = malloc(cap);
  cr_assert_not_null(r->buf);
  uint64_t end = fx_now_us() + (uint64_t)ms * 1000u;
  for (;;) {
    uint64_t now = fx_now_us();
    if (now >= end) break;
    struct pollfd pf = {fd, POLLIN, 0};
    int pr = poll(&pf, 1, (int)((end - now) / 1000) + 1);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) break;
    if (cap - r->len < 4096) {
      cap *= 2;
      uint8_t *nb = realloc(r->buf, cap);
      cr_assert_not_null(nb);
      r->buf = nb;
    }
    ssize_t n = recv(fd, r->buf + r->len, cap - r->len, MSG_DONTWAIT);
    if (n > 0) {
      r->len += (size_t)n;
      continue;
    }
    if (n == 0 || errno == ECONNRESET || errno == EPIPE) {
      r->closed = 1;
      break;
    }
    if (errno == EINTR || errno == EAGAIN) continue;
    break;
  }
  hs_parse_reply(r->buf, r->len, r);
}

void hs_reply_free(hs_reply *r) {
  free(r->buf);
  r->buf = NULL;
}

/* ------------------------------------------------------------------------ */
/* Numbers */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

uint64_t hs_percentile(uint64_t *v, size_t n, double p) {
  if (!n) return 0;
  qsort(v, n, sizeof *v, cmp_u64);
  return v[(size_t)(p * (double)(n - 1))];
}
