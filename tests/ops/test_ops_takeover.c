/* test_ops_takeover.c: zero-downtime restarts (src/platform/handover.c): a server
 * started with `handover` takes the listening socket over from the one
 * running, which stops accepting and drains, while a client keeps calling:
 * no call fails, and none needs a retry (the client has no retry policy).
 * Also: a bad control request leaves the running server serving, and a
 * handover server with no predecessor binds as usual. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ackrpc/reflection.pb-c.h"
#include "fixture.h"

FX_SUITE(ops_takeover);

#define LOOP_MAX_CALLS 200000
#define LOOP_MAX_MS 30000

typedef struct loop {
  const char *address;
  atomic_int stop;
  atomic_uint ok, failed;
  ackrpc_status first_error;
  pthread_t thr;
} loop;

/* Calls Echo back to back, one connection per call, until told to stop
 * (bounded in calls and time). No assertion here: another thread. */
static void *loop_main(void *arg) {
  loop *l = arg;
  ackrpc_client *c = NULL;
  ackrpc_client_options co = {.address = l->address, .timeout_ms = 10000};
  if (ackrpc_client_new(&co, &c) != ACKRPC_OK) {
    atomic_fetch_add(&l->failed, 1);
    return NULL;
  }
  uint64_t end = fx_now_us() + (uint64_t)LOOP_MAX_MS * 1000u;
  for (unsigned i = 0;
       i < LOOP_MAX_CALLS && !atomic_load(&l->stop) && fx_now_us() < end; i++) {
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    req.text = "through the restart";
    ackrpc_result res = {0};
    ackrpc_status st = fx_echo(c, &req, NULL, &res);
    ackrpc_result_clear(&res);
    if (st == ACKRPC_OK) {
      atomic_fetch_add(&l->ok, 1);
    } else {
      if (!atomic_load(&l->failed)) l->first_error = st;
      atomic_fetch_add(&l->failed, 1);
    }
  }
  ackrpc_client_free(c);
  return NULL;
}

static void wait_calls(loop *l, unsigned more) {
  unsigned target = atomic_load(&l->ok) + more;
  uint64_t end = fx_now_us() + 10 * fx_slack_us();
  while (atomic_load(&l->ok) < target && fx_now_us() < end)
    fx_sleep_ms(1);
  cr_assert_geq(atomic_load(&l->ok), target, "the call loop stalled");
}

static uint64_t echo_calls_on(const char *address) {
  static const ackrpc_method m_stats = {"ackrpc.reflection.Stats/Get",
                                        &ackrpc__reflection__stats_request__descriptor,
                                        &ackrpc__reflection__stats_reply__descriptor};
  ackrpc_client *c = fx_client(address, 5000);
  Ackrpc__Reflection__StatsRequest req = ACKRPC__REFLECTION__STATS_REQUEST__INIT;
  ackrpc_result res = {0};
  cr_assert_eq(ackrpc_client_call(c, &m_stats, &req.base, NULL, &res), ACKRPC_OK);
  const Ackrpc__Reflection__StatsReply *r =
      (const Ackrpc__Reflection__StatsReply *)res.reply;
  uint64_t n = 0;
  for (size_t i = 0; i < r->n_methods; i++)
    if (strcmp(r->methods[i]->method, FX_ECHO) == 0) n = r->methods[i]->calls;
  ackrpc_result_clear(&res);
  return n;
}

static void restart_under_load(const char *address) {
  ackrpc_server_options o = {
      .address = address, .handover = 1, .drain_timeout_ms = 5000};
  fx_server *a = fx_server_start(&o);
  loop l = {.address = address};
  cr_assert_eq(pthread_create(&l.thr, NULL, loop_main, &l), 0);
  wait_calls(&l, 50);

  /* B takes over from A: A's ackrpc_server_run() returns once drained. */
  fx_server *b = fx_server_start(&o);
  cr_assert_eq(fx_server_join(a, 5000 + (uint32_t)(fx_slack_us() / 1000)), ACKRPC_OK);
  fx_server_free(a);
  wait_calls(&l, 50);
  /* And C from B: the control socket moved on with the listening one. */
  fx_server *c = fx_server_start(&o);
  cr_assert_eq(fx_server_join(b, 5000 + (uint32_t)(fx_slack_us() / 1000)), ACKRPC_OK);
  fx_server_free(b);
  wait_calls(&l, 50);
  atomic_store(&l.stop, 1);
  pthread_join(l.thr, NULL);
  cr_assert_eq(atomic_load(&l.failed), 0, "%u call(s) failed, the first with %s",
               atomic_load(&l.failed), ackrpc_status_name(l.first_error));
  cr_assert_geq(atomic_load(&l.ok), 150);
  cr_assert_gt(echo_calls_on(address), 0, "the last server served calls");
  fx_server_stop(c);
}

FX_TEST(ops_takeover, restart_refuses_no_call_path) {
  restart_under_load(fx_sock());
  struct stat st;
  cr_assert_neq(lstat(fx_path("s.sock.ctl"), &st), 0, "the control socket is removed");
  cr_assert_neq(lstat(fx_path("s.sock.lock"), &st), 0, "the lock file is removed");
}

FX_TEST(ops_takeover, restart_refuses_no_call_abstract) {
  restart_under_load(fx_abstract());
}

FX_TEST(ops_takeover, bad_control_request_changes_nothing) {
  ackrpc_server_options o = {
      .address = fx_sock(), .handover = 1, .log = ackrpc_log_discard};
  fx_server *a = fx_server_start(&o);
  char ctl[512];
  snprintf(ctl, sizeof ctl, "%s.ctl", fx_sock());
  /* Garbage, then a peer that says nothing and leaves. */
  int fd = fx_raw_connect(ctl);
  cr_assert_geq(fd, 0);
  cr_assert_eq(fx_raw_send(fd, "NOTTAKE!", 8), 0);
  size_t got;
  int eof;
  uint8_t *buf = fx_raw_read_all(fd, 5000, &got, &eof);
  (void)buf;
  cr_assert(eof);
  cr_assert_eq(got, 0, "no descriptors, no reply");
  close(fd);
  fd = fx_raw_connect(ctl);
  cr_assert_geq(fd, 0);
  close(fd);
  fx_sleep_ms(50);
  /* Still serving, and still offering the socket: a real successor gets
   * it. */
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result res = {0};
  cr_assert_eq(fx_echo(c, &req, NULL, &res), ACKRPC_OK);
  ackrpc_result_clear(&res);
  fx_server *b = fx_server_start(&o);
  cr_assert_eq(fx_server_join(a, 10000), ACKRPC_OK);
  fx_server_free(a);
  cr_assert_eq(fx_echo(c, &req, NULL, &res), ACKRPC_OK);
  ackrpc_result_clear(&res);
  fx_server_stop(b);
}

/* The handover exchange runs on the server's loop: a successor that asks,
 * gets the descriptors and then never acknowledges must not hold up the
 * calls meanwhile (a blocking exchange stalled the loop for up to 3 s a
 * step, so these calls, each with 1.5 s to live, failed). */
FX_TEST(ops_takeover, stalled_successor_does_not_stall_calls) {
  ackrpc_server_options o = {
      .address = fx_sock(), .handover = 1, .log = ackrpc_log_discard};
  fx_server *a = fx_server_start(&o);
  char ctl[512];
  snprintf(ctl, sizeof ctl, "%s.ctl", fx_sock());
  int fd = fx_raw_connect(ctl);
  cr_assert_geq(fd, 0);
  cr_assert_eq(fx_raw_send(fd, "AKTAKE01", 8), 0);
  int quiet = fx_raw_connect(ctl); /* and one that says nothing at all */
  cr_assert_geq(quiet, 0);
  fx_sleep_ms(50);
  ackrpc_client *c = fx_client(fx_sock(), 1500);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "during a stalled handover";
  for (int i = 0; i < 5; i++) {
    ackrpc_result res = {0};
    ackrpc_status st = fx_echo(c, &req, NULL, &res);
    ackrpc_result_clear(&res);
    cr_assert_eq(st, ACKRPC_OK, "call %d during the stalled handover: %s", i,
                 ackrpc_status_name(st));
  }
  close(fd);
  close(quiet);
  /* The offer still stands: a real successor takes the socket. */
  fx_server *b = fx_server_start(&o);
  cr_assert_eq(fx_server_join(a, 10000), ACKRPC_OK);
  fx_server_free(a);
  ackrpc_result res = {0};
  cr_assert_eq(fx_echo(c, &req, NULL, &res), ACKRPC_OK);
  ackrpc_result_clear(&res);
  fx_server_stop(b);
}

FX_TEST(ops_takeover, without_handover_a_second_server_is_refused) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server *a = fx_server_start(&o);
  ackrpc_server *s = NULL;
  ackrpc_server_options o2 = {
      .address = fx_sock(), .handover = 1, .log = ackrpc_log_discard};
  /* A does not offer its socket: B binds as usual and finds it in use. */
  cr_assert_eq(ackrpc_server_new(&o2, &s), ACKRPC_E_ADDR_IN_USE);
  cr_assert_null(s);
  fx_server_stop(a);
}
