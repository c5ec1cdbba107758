/* test_client_identity.c: the client checks who the server is before it
 * sends anything (ackrpc_client_options.server_check, docs/SECURITY.md §3):
 * on every path (one-shot, pooled, session, asynchronous call and session)
 * an untrusted server fails the call with E_SERVER_IDENTITY, no retry
 * policy retries it, and the server receives not one byte. The listeners
 * that play "another user" are real sockets whose listen() a child process
 * called after switching to nobody (fx_listen_as()): as root only; those
 * tests skip otherwise, saying so. */
#include <errno.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "fixture.h"

FX_SUITE(identity);

#define CALLS_PER_PATHS 5 /* connections every_path() makes */

static uid_t nobody_uid(void) {
  struct passwd *pw = getpwnam("nobody");
  return pw ? pw->pw_uid : 65534;
}

static gid_t nobody_gid(void) {
  struct passwd *pw = getpwnam("nobody");
  return pw ? pw->pw_gid : 65534;
}

/* A uid that is neither ours nor root. */
static uid_t other_uid(void) {
  return geteuid() == 4242 ? 4243 : 4242;
}

typedef struct done_rec {
  int done;
  ackrpc_status status;
  unsigned attempts;
} done_rec;

static void on_done(ackrpc_result *r, void *user) {
  done_rec *d = user;
  d->done = 1;
  d->status = r->status;
  d->attempts = r->attempts;
}

/* Runs `base` until d->done, at most ~5 s. */
static void loop_until(struct event_base *base, const done_rec *d) {
  for (int i = 0; i < 500 && !d->done; i++) {
    struct timeval tv = {0, 10000};
    event_base_loopexit(base, &tv);
    event_base_loop(base, 0);
  }
  cr_assert(d->done, "the asynchronous call did not complete");
}

/* Calls the server at co->address once on every path, each on a new
 * connection, and asserts each ends with `want`. A retry policy that would
 * retry anything retryable shows that `want` is not retried. */
static void every_path(const ackrpc_client_options *co_in, ackrpc_status want) {
  static const ackrpc_status retry_on[] = {ACKRPC_UNAVAILABLE};
  ackrpc_retry_policy retry = {.max_attempts = 3,
                               .initial_backoff_ms = 1,
                               .retry_on = retry_on,
                               .n_retry_on = 1};
  ackrpc_client_options co = *co_in;
  co.retry = &retry;
  if (!co.timeout_ms) co.timeout_ms = 2000;
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "for the server only";

  /* One-shot. */
  ackrpc_client *c = fx_client_opts(&co);
  ackrpc_result r = {0};
  cr_assert_eq(fx_echo(c, &req, NULL, &r), want, "one-shot: %s (%s)",
               ackrpc_status_name(r.status), r.message ? r.message : "");
  cr_assert_eq(r.attempts, 1, "not retried");
  cr_assert_eq(ackrpc_status_outcome(r.status), ACKRPC_OUTCOME_NOT_DELIVERED);
  cr_assert(r.message && strstr(r.message, "uid"), "the message names the uid: %s",
            r.message ? r.message : "(none)");
  ackrpc_result_clear(&r);

  /* Pooled. */
  co.pool_size = 2;
  ackrpc_client *pooled = fx_client_opts(&co);
  co.pool_size = 0;
  cr_assert_eq(fx_echo(pooled, &req, NULL, &r), want, "pooled: %s",
               ackrpc_status_name(r.status));
  cr_assert_eq(r.attempts, 1);
  ackrpc_result_clear(&r);

  /* A session. */
  ackrpc_session *s = NULL;
  cr_assert_eq(ackrpc_session_open(c, 0, &s), want, "session");
  cr_assert_null(s);

  /* Asynchronous: a call, and a call on an asynchronous session. */
  struct event_base *base = event_base_new();
  cr_assert_not_null(base);
  done_rec d = {0};
  cr_assert_eq(
      ackrpc_client_call_async(c, base, &fx_echo_method, &req.base, NULL, on_done, &d),
      ACKRPC_OK);
  loop_until(base, &d);
  cr_assert_eq(d.status, want, "async: %s", ackrpc_status_name(d.status));
  cr_assert_eq(d.attempts, 1);
  ackrpc_async_session *as = NULL;
  cr_assert_eq(ackrpc_async_session_open(c, base, &as), ACKRPC_OK);
  d = (done_rec){0};
  cr_assert_eq(
      ackrpc_async_session_call(as, &fx_echo_method, &req.base, NULL, on_done, &d),
      ACKRPC_OK);
  loop_until(base, &d);
  cr_assert_eq(d.status, want, "async session: %s", ackrpc_status_name(d.status));
  ackrpc_async_session_close(as);
  event_base_loop(base, EVLOOP_NONBLOCK);
  event_base_free(base);
}

/* Asserts that `lfd` was connected to CALLS_PER_PATHS times and received
 * nothing, then closes it and removes `path`. */
static void assert_nothing_received(int lfd, const char *path) {
  size_t bytes = 99;
  size_t conns = fx_listener_drain(lfd, &bytes);
  cr_assert_eq(conns, CALLS_PER_PATHS, "every path connected once (%zu)", conns);
  cr_assert_eq(bytes, 0, "the untrusted server received %zu bytes", bytes);
  close(lfd);
  if (path[0] != '@') unlink(path);
}

FX_TEST(identity, explicit_uid_refuses_another_server_on_every_path_sending_nothing) {
  int lfd = fx_listen_as(fx_sock(), geteuid(), getegid());
  cr_assert_geq(lfd, 0);
  ackrpc_client_options co = {.address = fx_sock(),
                              .timeout_ms = 2000,
                              .server_check = ACKRPC_SERVER_CHECK_UID,
                              .server_uid = other_uid()};
  every_path(&co, ACKRPC_E_SERVER_IDENTITY);
  assert_nothing_received(lfd, fx_sock());
}

FX_TEST(identity, matching_uid_default_and_no_check_reach_a_real_server) {
  fx_server *fs = fx_server_start(&(ackrpc_server_options){.address = fx_sock()});
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "hi";
  const ackrpc_client_options opts[] = {
      {.address = fx_sock(),
       .server_check = ACKRPC_SERVER_CHECK_UID,
       .server_uid = geteuid()},
      {.address = fx_sock()},
      {.address = fx_sock(), .server_check = ACKRPC_SERVER_CHECK_NONE},
  };
  for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
    ackrpc_client *c = fx_client_opts(&opts[i]);
    ackrpc_result r = {0};
    cr_assert_eq(fx_echo(c, &req, NULL, &r), ACKRPC_OK, "%zu: %s", i,
                 r.message ? r.message : "");
    ackrpc_result_clear(&r);
  }
  fx_server_stop(fs);
}

FX_TEST(identity, unknown_server_check_is_einval) {
  ackrpc_client *c = NULL;
  ackrpc_client_options co = {.address = fx_sock(), .server_check = 7};
  cr_assert_eq(ackrpc_client_new(&co, &c), ACKRPC_E_INVAL);
  cr_assert_null(c);
}

/* Skips the rest of a test that needs another user. */
#define NEEDS_ROOT()                                                                   \
  do {                                                                                 \
    if (geteuid() != 0) {                                                              \
      cr_log_warn("skipped: a listener of another user needs root");                   \
      return;                                                                          \
    }                                                                                  \
  } while (0)

FX_TEST(identity, default_refuses_another_user_in_our_directory_and_abstract_names) {
  NEEDS_ROOT();
  /* fx_dir() is ours, 0700: the impostor is nobody. */
  int lfd = fx_listen_as(fx_sock(), nobody_uid(), nobody_gid());
  cr_assert_geq(lfd, 0);
  ackrpc_client_options co = {.address = fx_sock(), .timeout_ms = 2000};
  every_path(&co, ACKRPC_E_SERVER_IDENTITY);
  assert_nothing_received(lfd, fx_sock());

  const char *name = fx_abstract();
  lfd = fx_listen_as(name, nobody_uid(), nobody_gid());
  cr_assert_geq(lfd, 0);
  co.address = name;
  every_path(&co, ACKRPC_E_SERVER_IDENTITY);
  assert_nothing_received(lfd, name);
}

/* One blocking call with a short deadline to a listener that never answers:
 * returns the bytes it received (the request, if the client trusted it). */
static size_t bytes_sent_to(int lfd, const ackrpc_client_options *co_in) {
  ackrpc_client_options co = *co_in;
  co.timeout_ms = 300;
  ackrpc_client *c = fx_client_opts(&co);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "for the server only";
  ackrpc_result r = {0};
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  cr_assert_neq(st, ACKRPC_E_SERVER_IDENTITY, "%s", r.message ? r.message : "");
  ackrpc_result_clear(&r);
  size_t bytes = 0;
  cr_assert_eq(fx_listener_drain(lfd, &bytes), 1);
  return bytes;
}

FX_TEST(identity, trusted_servers_of_another_user_receive_the_request) {
  NEEDS_ROOT();
  /* Named explicitly. */
  int lfd = fx_listen_as(fx_sock(), nobody_uid(), nobody_gid());
  cr_assert_geq(lfd, 0);
  ackrpc_client_options co = {.address = fx_sock(),
                              .server_check = ACKRPC_SERVER_CHECK_UID,
                              .server_uid = nobody_uid()};
  cr_assert_gt(bytes_sent_to(lfd, &co), 0);
  co.server_check = ACKRPC_SERVER_CHECK_NONE;
  cr_assert_gt(bytes_sent_to(lfd, &co), 0);
  close(lfd);
  unlink(fx_sock());

  /* The owner of the socket's directory. */
  const char *dir = fx_path("nobodys");
  cr_assert_eq(mkdir(dir, 0700), 0);
  cr_assert_eq(chown(dir, nobody_uid(), nobody_gid()), 0);
  const char *sock = fx_path("nobodys/s.sock");
  lfd = fx_listen_as(sock, nobody_uid(), nobody_gid());
  cr_assert_geq(lfd, 0);
  co = (ackrpc_client_options){.address = sock};
  cr_assert_gt(bytes_sent_to(lfd, &co), 0, "the directory's owner is trusted");
  close(lfd);
  unlink(sock);

  /* A sticky directory (like /tmp): the owner of the socket file. */
  dir = fx_path("sticky");
  cr_assert_eq(mkdir(dir, 0700), 0);
  cr_assert_eq(chmod(dir, 01777), 0);
  sock = fx_path("sticky/s.sock");
  lfd = fx_listen_as(sock, nobody_uid(), nobody_gid());
  cr_assert_geq(lfd, 0);
  co.address = sock;
  every_path(&co, ACKRPC_E_SERVER_IDENTITY); /* the file is root's */
  size_t bytes = 99;
  cr_assert_eq(fx_listener_drain(lfd, &bytes), CALLS_PER_PATHS);
  cr_assert_eq(bytes, 0);
  cr_assert_eq(lchown(sock, nobody_uid(), nobody_gid()), 0);
  cr_assert_gt(bytes_sent_to(lfd, &co), 0, "the socket file's owner is trusted");
  close(lfd);
  unlink(sock);
}
