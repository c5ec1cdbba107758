/* test_client_failures.c: the same failure gives the same status on every
 * client path. Four ways a call can fail (a malformed reply, a reply over
 * the client's limit, a server killed in the middle of its reply, a refused
 * connection), each on the five paths: a blocking one-shot call, a pooled
 * call, a session call, an asynchronous call and an asynchronous session
 * call. The misbehaving servers are real processes (forked), and the one
 * killed mid-reply is killed with a real SIGKILL. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "fixture.h"

FX_SUITE(client_failures);

typedef enum misbehave { MALFORMED, OVERSIZED, KILLED } misbehave;

#define MAX_REPLY 4096 /* the clients' max_reply_size */

/* Reads exactly n bytes (the child's blocking socket); 0 or -1. */
static int read_n(int fd, uint8_t *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r > 0)
      got += (size_t)r;
    else if (r < 0 && errno == EINTR)
      continue;
    else
      return -1;
  }
  return 0;
}

/* Reads one request frame (by its prefix's lengths): 0, or -1. */
static int read_frame(int fd) {
  uint8_t prefix[12], buf[4096];
  if (read_n(fd, prefix, sizeof prefix) != 0) return -1;
  size_t left = ((size_t)prefix[4] | (size_t)prefix[5] << 8 | (size_t)prefix[6] << 16 |
                 (size_t)prefix[7] << 24) +
                ((size_t)prefix[8] | (size_t)prefix[9] << 8 | (size_t)prefix[10] << 16 |
                 (size_t)prefix[11] << 24);
  while (left) {
    size_t n = left < sizeof buf ? left : sizeof buf;
    if (read_n(fd, buf, n) != 0) return -1;
    left -= n;
  }
  return 0;
}

/* The child: answers each request frame the way `m` says. Never returns. */
static void misbehave_child(int lfd, misbehave m) {
  uint8_t *ok = NULL;
  size_t ok_len = fx_frame_reply(&ok, ACKRPC_OK, NULL, NULL);
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) _exit(1);
    while (read_frame(fd) == 0) {
      if (m == MALFORMED) {
        static const char junk[] = "this is not an ackrpc frame at all";
        if (write(fd, junk, sizeof junk) < 0) break;
      } else if (m == OVERSIZED) {
        uint8_t prefix[12];
        fx_frame_prefix(prefix, 2, 0, 8u << 20); /* an 8 MiB body announced */
        if (write(fd, prefix, sizeof prefix) < 0) break;
      } else {
        if (write(fd, ok, ok_len / 2) < 0) break; /* half a reply, then die */
        kill(getpid(), SIGKILL);
      }
    }
    close(fd);
  }
}

/* A misbehaving server process listening on `path` (bound before the fork,
 * so it is ready when this returns). */
static pid_t misbehave_start(const char *path, misbehave m) {
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(lfd, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(lfd, 16), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) misbehave_child(lfd, m);
  close(lfd);
  return pid;
}

static void misbehave_stop(pid_t pid, const char *path) {
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  unlink(path);
}

/* --- the five paths ------------------------------------------------------ */

enum path { ONE_SHOT, POOLED, SESSION, ASYNC, ASYNC_SESSION, N_PATHS };
static const char *const path_names[N_PATHS] = {"one-shot", "pooled", "session",
                                                "async", "async session"};

typedef struct async_done {
  struct event_base *base;
  int done;
  ackrpc_status status;
} async_done;

static void on_done(ackrpc_result *r, void *user) {
  async_done *d = user;
  d->done++;
  d->status = r->status;
  event_base_loopexit(d->base, NULL);
}

static ackrpc_status run_async(ackrpc_client *c, int session,
                               const Ackrpc__Test__EchoRequest *req) {
  async_done d = {.base = event_base_new()};
  cr_assert_not_null(d.base);
  ackrpc_async_session *as = NULL;
  if (session) {
    cr_assert_eq(ackrpc_async_session_open(c, d.base, &as), ACKRPC_OK);
    cr_assert_eq(
        ackrpc_async_session_call(as, &fx_echo_method, &req->base, NULL, on_done, &d),
        ACKRPC_OK);
  } else {
    cr_assert_eq(ackrpc_client_call_async(c, d.base, &fx_echo_method, &req->base, NULL,
                                          on_done, &d),
                 ACKRPC_OK);
  }
  struct timeval limit = {10, 0};
  event_base_loopexit(d.base, &limit);
  event_base_dispatch(d.base);
  cr_assert_eq(d.done, 1, "the callback ran %d times", d.done);
  if (as) {
    ackrpc_async_session_close(as);
    event_base_loop(d.base, EVLOOP_NONBLOCK); /* lets it free itself */
  }
  event_base_free(d.base);
  return d.status;
}

/* One call on `path` to `address`: its status. */
static ackrpc_status call_on(enum path p, const char *address) {
  ackrpc_client_options o = {.address = address,
                             .timeout_ms = 5000,
                             .max_reply_size = MAX_REPLY,
                             .pool_size = p == POOLED ? 2 : 0};
  ackrpc_client *c = fx_client_opts(&o);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "the same failure, the same status";
  ackrpc_status st;
  if (p == SESSION) {
    ackrpc_session *s = NULL;
    st = ackrpc_session_open(c, 0, &s);
    if (st == ACKRPC_OK)
      st = ackrpc_session_call(s, &fx_echo_method, &req.base, NULL, NULL);
    ackrpc_session_close(s);
  } else if (p == ASYNC || p == ASYNC_SESSION) {
    st = run_async(c, p == ASYNC_SESSION, &req);
  } else {
    st = ackrpc_client_call(c, &fx_echo_method, &req.base, NULL, NULL);
  }
  return st;
}

static void on_every_path(misbehave m, ackrpc_status want) {
  for (int p = 0; p < N_PATHS; p++) {
    char name[32];
    snprintf(name, sizeof name, "m%d.sock", p);
    const char *path = fx_path(name);
    pid_t pid = misbehave_start(path, m);
    ackrpc_status st = call_on((enum path)p, path);
    misbehave_stop(pid, path);
    cr_expect_eq(st, want, "%s: %s, expected %s", path_names[p], ackrpc_status_name(st),
                 ackrpc_status_name(want));
  }
}

FX_TEST(client_failures, malformed_reply_is_bad_reply_everywhere) {
  on_every_path(MALFORMED, ACKRPC_E_BAD_REPLY);
}

FX_TEST(client_failures, oversized_reply_is_bad_reply_everywhere) {
  on_every_path(OVERSIZED, ACKRPC_E_BAD_REPLY);
}

FX_TEST(client_failures, server_killed_mid_reply_is_no_ack_everywhere) {
  on_every_path(KILLED, ACKRPC_E_NO_ACK);
}

FX_TEST(client_failures, refused_connection_is_not_delivered_everywhere) {
  for (int p = 0; p < N_PATHS; p++) {
    /* Bound, then closed without listening: connect() is refused. */
    const char *path = fx_path("refused.sock");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    ackrpc_status st = call_on((enum path)p, path);
    unlink(path);
    cr_expect_eq(st, ACKRPC_E_CONNECT, "%s: %s, expected E_CONNECT", path_names[p],
                 ackrpc_status_name(st));
  }
}
