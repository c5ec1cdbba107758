/* test_delivery_retry.c: the client's retry policy (ackrpc_retry_policy,
 * docs/DELIVERY.md), one test per rule: a zeroed policy makes one attempt;
 * "not delivered" is retried; "delivered, no ack" is retried with the same
 * call id; server statuses only where listed; backoff grows and stays
 * inside the call's deadline; a per-call policy replaces the client's;
 * bad policies are refused; the asynchronous call and pooled calls retry
 * too; ackrpc_result.attempts counts the attempts. */
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

FX_SUITE(retry);

static const ackrpc_status RETRY_ON[] = {ACKRPC_UNAVAILABLE, ACKRPC_RESOURCE_EXHAUSTED};

static ackrpc_client *client_with(const char *address, uint32_t timeout_ms,
                                  const ackrpc_retry_policy *p, unsigned pool) {
  ackrpc_client_options o = {
      .address = address, .timeout_ms = timeout_ms, .retry = p, .pool_size = pool};
  return fx_client_opts(&o);
}

/* --- a server whose handler fails its first `fail_n` calls with
 * `fail_status`, then answers OK; it records each call id it saw --- */

typedef struct flaky {
  ackrpc_server *srv;
  pthread_t thread;
  atomic_uint calls;
  unsigned fail_n;
  ackrpc_status fail_status;
  uint8_t ids[16][ACKRPC_MAX_CALL_ID];
  size_t id_lens[16];
} flaky;

static void flaky_handler(ackrpc_call *call, const ProtobufCMessage *request,
                          void *user) {
  (void)request;
  flaky *f = user;
  unsigned n = atomic_fetch_add(&f->calls, 1);
  size_t len = 0;
  const uint8_t *id = ackrpc_call_id(call, &len);
  if (n < 16) {
    memcpy(f->ids[n], id, len);
    f->id_lens[n] = len;
  }
  Ackrpc__Test__EchoReply reply = ACKRPC__TEST__ECHO_REPLY__INIT;
  reply.text = "flaky";
  if (n < f->fail_n)
    ackrpc_call_reply(call, f->fail_status, "flaky says no", NULL);
  else
    ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

static void *flaky_main(void *arg) {
  flaky *f = arg;
  ackrpc_server_run(f->srv);
  return NULL;
}

static void flaky_start(flaky *f, unsigned fail_n, ackrpc_status st) {
  memset(f, 0, sizeof *f);
  f->fail_n = fail_n;
  f->fail_status = st;
  ackrpc_server_options o = {.address = fx_sock(), .log = ackrpc_log_discard};
  cr_assert_eq(ackrpc_server_new(&o, &f->srv), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(f->srv, &fx_echo_method, flaky_handler, f),
               ACKRPC_OK);
  cr_assert_eq(pthread_create(&f->thread, NULL, flaky_main, f), 0);
}

static void flaky_stop(flaky *f) {
  ackrpc_server_stop(f->srv);
  pthread_join(f->thread, NULL);
  f->srv = ackrpc_server_free(f->srv);
}

static ackrpc_status echo(ackrpc_client *c, const ackrpc_call_options *o,
                          ackrpc_result *r) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "hi";
  memset(r, 0, sizeof *r);
  return ackrpc_client_call(c, &fx_echo_method, &req.base, o, r);
}

/* --- the rules ----------------------------------------------------------- */

FX_TEST(retry, zeroed_policy_makes_one_attempt) {
  ackrpc_retry_policy none = {0};
  ackrpc_client *c = client_with(fx_sock(), 2000, &none, 0); /* no server */
  ackrpc_result r;
  cr_assert_eq(echo(c, NULL, &r), ACKRPC_E_CONNECT);
  cr_assert_eq(r.attempts, 1);
  ackrpc_result_clear(&r);
  ackrpc_client *d = fx_client(fx_sock(), 2000); /* no policy at all */
  cr_assert_eq(echo(d, NULL, &r), ACKRPC_E_CONNECT);
  cr_assert_eq(r.attempts, 1);
  ackrpc_result_clear(&r);
}

FX_TEST(retry, not_delivered_is_retried_until_the_attempts_run_out) {
  ackrpc_retry_policy p = {
      .max_attempts = 4, .initial_backoff_ms = 5, .max_backoff_ms = 5};
  ackrpc_client *c = client_with(fx_sock(), 5000, &p, 0);
  ackrpc_result r;
  cr_assert_eq(echo(c, NULL, &r), ACKRPC_E_CONNECT);
  cr_assert_eq(r.attempts, 4);
  ackrpc_result_clear(&r);
}

/* The server starts while the client is retrying "not delivered". */
typedef struct late_start {
  pthread_t t;
  ackrpc_client *c;
  ackrpc_status st;
  ackrpc_result r;
} late_start;

static void *late_call(void *arg) {
  late_start *l = arg;
  l->st = echo(l->c, NULL, &l->r);
  return NULL;
}

FX_TEST(retry, not_delivered_succeeds_once_the_server_is_up) {
  ackrpc_retry_policy p = {
      .max_attempts = 1000, .initial_backoff_ms = 10, .max_backoff_ms = 20};
  late_start l = {.c = client_with(fx_sock(), 10000, &p, 0)};
  cr_assert_eq(pthread_create(&l.t, NULL, late_call, &l), 0);
  fx_sleep_ms(150);
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server_start(&o);
  pthread_join(l.t, NULL);
  cr_assert_eq(l.st, ACKRPC_OK, "got %s", ackrpc_status_name(l.st));
  cr_assert_gt(l.r.attempts, 1);
  cr_assert_eq(fx_handler_calls(), 1);
  ackrpc_result_clear(&l.r);
}

FX_TEST(retry, no_ack_is_retried_with_the_same_call_id) {
  /* Each attempt may wait 150 ms for its ack; the handler holds the first
   * two, so their attempts end E_ACK_TIMEOUT and are tried again. Without a
   * reply cache every attempt reaches the handler: each must carry the
   * first attempt's call id. */
  ackrpc_server_options so = {.address = fx_sock(), .log = ackrpc_log_discard};
  fx_server_start(&so);
  ackrpc_retry_policy p = {
      .max_attempts = 3, .initial_backoff_ms = 5, .attempt_timeout_ms = 150};
  ackrpc_client *c = client_with(fx_sock(), 5000, &p, 0);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  ackrpc_result r = {0};
  ackrpc_status st = ackrpc_client_call(c, &fx_echo_method, &req.base, NULL, &r);
  cr_assert_eq(st, ACKRPC_E_ACK_TIMEOUT, "got %s", ackrpc_status_name(st));
  cr_assert_eq(r.attempts, 3);
  cr_assert_eq(r.call_id_len, 16);
  cr_assert_eq(fx_held_wait(3, 2000), 3, "every attempt reached the handler");
  for (size_t i = 0; i < 3; i++)
    fx_held_reply(i, ACKRPC_OK, NULL);
  cr_assert_eq(fx_handler_calls(), 3);
  ackrpc_result_clear(&r);
}

FX_TEST(retry, no_ack_retry_with_the_reply_cache_acts_once) {
  ackrpc_server_options so = {
      .address = fx_sock(), .reply_cache = 1, .log = ackrpc_log_discard};
  fx_server_start(&so);
  ackrpc_retry_policy p = {.max_attempts = 50,
                           .initial_backoff_ms = 5,
                           .max_backoff_ms = 10,
                           .attempt_timeout_ms = 100};
  ackrpc_client *c = client_with(fx_sock(), 10000, &p, 0);
  fx_bg_call *bg = NULL;
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  req.text = "once";
  bg = fx_bg_echo(c, &req, 10000);
  cr_assert_eq(fx_held_wait(1, 5000), 1);
  fx_sleep_ms(350); /* a few attempts time out and wait on the first */
  /* The requests carry the call's whole deadline: the server still waits
   * for the first call, and the retries wait on it in the reply cache. */
  cr_assert_eq(fx_held_reply(0, ACKRPC_OK, NULL), ACKRPC_OK);
  ackrpc_result *r = NULL;
  ackrpc_status st = fx_bg_join(bg, 5000, &r);
  cr_assert_eq(st, ACKRPC_OK, "got %s", ackrpc_status_name(st));
  cr_assert_gt(r->attempts, 1, "the first attempt was expected to time out");
  cr_assert_eq(fx_handler_calls(), 1, "the handler acted more than once");
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(r);
  cr_assert_eq(rep->call_id.len, r->call_id_len);
  cr_assert_eq(memcmp(rep->call_id.data, r->call_id, r->call_id_len), 0);
}

FX_TEST(retry, server_statuses_only_where_listed) {
  flaky f;
  flaky_start(&f, 2, ACKRPC_UNAVAILABLE);
  ackrpc_retry_policy p = {.max_attempts = 5,
                           .initial_backoff_ms = 5,
                           .retry_on = RETRY_ON,
                           .n_retry_on = 2};
  ackrpc_client *c = client_with(fx_sock(), 5000, &p, 0);
  ackrpc_result r;
  cr_assert_eq(echo(c, NULL, &r), ACKRPC_OK);
  cr_assert_eq(r.attempts, 3);
  cr_assert_eq(atomic_load(&f.calls), 3);
  for (int i = 1; i < 3; i++) {
    cr_assert_eq(f.id_lens[i], f.id_lens[0]);
    cr_assert_eq(memcmp(f.ids[i], f.ids[0], f.id_lens[0]), 0, "attempt %d: new id", i);
  }
  ackrpc_result_clear(&r);
  flaky_stop(&f);

  flaky_start(&f, 2, ACKRPC_INVALID_ARGUMENT); /* not listed: final */
  cr_assert_eq(echo(c, NULL, &r), ACKRPC_INVALID_ARGUMENT);
  cr_assert_eq(r.attempts, 1);
  cr_assert_str_eq(r.message, "flaky says no");
  ackrpc_result_clear(&r);
  flaky_stop(&f);

  flaky_start(&f, 100, ACKRPC_RESOURCE_EXHAUSTED); /* listed, never OK */
  cr_assert_eq(echo(c, NULL, &r), ACKRPC_RESOURCE_EXHAUSTED);
  cr_assert_eq(r.attempts, 5);
  cr_assert_eq(atomic_load(&f.calls), 5);
  ackrpc_result_clear(&r);
  flaky_stop(&f);
}

FX_TEST(retry, caller_call_id_is_kept_for_every_attempt) {
  flaky f;
  flaky_start(&f, 3, ACKRPC_UNAVAILABLE);
  ackrpc_retry_policy p = {.max_attempts = 5,
                           .initial_backoff_ms = 2,
                           .retry_on = RETRY_ON,
                           .n_retry_on = 1};
  ackrpc_client *c = client_with(fx_sock(), 5000, &p, 0);
  ackrpc_call_options o = {.call_id = (const uint8_t *)"my-id", .call_id_len = 5};
  ackrpc_result r;
  cr_assert_eq(echo(c, &o, &r), ACKRPC_OK);
  cr_assert_eq(r.attempts, 4);
  for (int i = 0; i < 4; i++)
    cr_assert(f.id_lens[i] == 5 && memcmp(f.ids[i], "my-id", 5) == 0, "attempt %d", i);
  cr_assert_eq(memcmp(r.call_id, "my-id", 5), 0);
  ackrpc_result_clear(&r);
  flaky_stop(&f);
}

FX_TEST(retry, backoff_grows_with_jitter) {
  /* 4 attempts, no server: backoffs of 40, 80, 160 ms, each jittered into
   * [b/2, b]: between 140 and 280 ms in all. */
  ackrpc_retry_policy p = {
      .max_attempts = 4, .initial_backoff_ms = 40, .max_backoff_ms = 1000};
  ackrpc_client *c = client_with(fx_sock(), 10000, &p, 0);
  ackrpc_result r;
  uint64_t t0 = fx_now_us();
  cr_assert_eq(echo(c, NULL, &r), ACKRPC_E_CONNECT);
  uint64_t dt = fx_now_us() - t0;
  cr_assert_eq(r.attempts, 4);
  cr_assert_geq(dt, 140000, "slept %llu us", (unsigned long long)dt);
  cr_assert_leq(dt, 280000 + fx_slack_us(), "slept %llu us", (unsigned long long)dt);
  ackrpc_result_clear(&r);
  /* The cap: 6 attempts capped at 20 ms: at most 5 x 20 ms. */
  ackrpc_retry_policy q = {
      .max_attempts = 6, .initial_backoff_ms = 10, .max_backoff_ms = 20};
  ackrpc_call_options o = {.retry = &q};
  t0 = fx_now_us();
  cr_assert_eq(echo(c, &o, &r), ACKRPC_E_CONNECT);
  dt = fx_now_us() - t0;
  cr_assert_eq(r.attempts, 6);
  cr_assert_geq(dt, 5000 + 4 * 10000);
  cr_assert_leq(dt, 5 * 20000 + fx_slack_us());
  ackrpc_result_clear(&r);
}

/* One call with no server, under policy `p` and a deadline of timeout_ms:
 * CONNECT every time. Returns how long the call took, in microseconds. */
static uint64_t timed_unreachable(const ackrpc_retry_policy *p, uint32_t timeout_ms,
                                  ackrpc_result *r) {
  ackrpc_client *c = client_with(fx_sock(), timeout_ms, p, 0);
  uint64_t t0 = fx_now_us();
  cr_assert_eq(echo(c, NULL, r), ACKRPC_E_CONNECT);
  return fx_now_us() - t0;
}

FX_TEST(retry, attempts_stay_inside_the_deadline) {
  /* Backoffs of 10-40 ms inside a 300 ms deadline: several attempts, then the
   * call ends near its deadline rather than after a million attempts. */
  ackrpc_retry_policy p = {
      .max_attempts = 1000000, .initial_backoff_ms = 20, .max_backoff_ms = 40};
  ackrpc_result r;
  uint64_t dt = timed_unreachable(&p, 300, &r);
  cr_assert_leq(dt, 300000 + fx_slack_us(), "the call outlived its deadline: %llu us",
                (unsigned long long)dt);
  cr_assert_gt(r.attempts, 3);
  cr_assert_lt(r.attempts, 40);
  ackrpc_result_clear(&r);
}

FX_TEST(retry, no_backoff_is_slept_past_the_deadline) {
  /* The first backoff (2.5-5 s) would end after the 300 ms deadline: the
   * call gives up at once instead of sleeping into it. A client that slept
   * would take 2.5 s or more, well past the slack for a loaded machine. */
  ackrpc_retry_policy p = {
      .max_attempts = 10, .initial_backoff_ms = 5000, .max_backoff_ms = 5000};
  ackrpc_result r;
  uint64_t dt = timed_unreachable(&p, 300, &r);
  cr_assert_eq(r.attempts, 1);
  cr_assert_lt(dt, 300000 + 1000000, "slept into the deadline: %llu us",
               (unsigned long long)dt);
  ackrpc_result_clear(&r);
}

FX_TEST(retry, per_call_policy_replaces_the_clients) {
  ackrpc_retry_policy p = {.max_attempts = 5, .initial_backoff_ms = 1};
  ackrpc_client *c = client_with(fx_sock(), 2000, &p, 0);
  ackrpc_retry_policy none = {0};
  ackrpc_call_options o = {.retry = &none};
  ackrpc_result r;
  cr_assert_eq(echo(c, &o, &r), ACKRPC_E_CONNECT);
  cr_assert_eq(r.attempts, 1);
  ackrpc_result_clear(&r);
  cr_assert_eq(echo(c, NULL, &r), ACKRPC_E_CONNECT);
  cr_assert_eq(r.attempts, 5);
  ackrpc_result_clear(&r);
}

FX_TEST(retry, bad_policies_are_refused) {
  static const ackrpc_status bad[] = {ACKRPC_E_CONNECT};
  static const ackrpc_status ok_too[] = {ACKRPC_OK};
  ackrpc_retry_policy p = {.max_attempts = 3, .retry_on = bad, .n_retry_on = 1};
  ackrpc_client_options o = {.address = fx_sock(), .retry = &p};
  ackrpc_client *c = NULL;
  cr_assert_eq(ackrpc_client_new(&o, &c), ACKRPC_E_INVAL);
  cr_assert_null(c);
  p.retry_on = ok_too;
  cr_assert_eq(ackrpc_client_new(&o, &c), ACKRPC_E_INVAL);
  p.retry_on = NULL;
  cr_assert_eq(ackrpc_client_new(&o, &c), ACKRPC_E_INVAL);
  ackrpc_client *d = fx_client(fx_sock(), 1000);
  p.retry_on = bad;
  ackrpc_call_options co = {.retry = &p};
  ackrpc_result r;
  cr_assert_eq(echo(d, &co, &r), ACKRPC_E_INVAL);
  cr_assert_eq(r.attempts, 0, "nothing was attempted");
  ackrpc_result_clear(&r);
}

FX_TEST(retry, pooled_calls_retry) {
  flaky f;
  flaky_start(&f, 2, ACKRPC_UNAVAILABLE);
  ackrpc_retry_policy p = {.max_attempts = 5,
                           .initial_backoff_ms = 2,
                           .retry_on = RETRY_ON,
                           .n_retry_on = 1};
  ackrpc_client_options co = {.address = fx_sock(), .retry = &p, .pool_size = 2};
  ackrpc_client *c = NULL;
  cr_assert_eq(ackrpc_client_new(&co, &c), ACKRPC_OK);
  ackrpc_result r;
  cr_assert_eq(echo(c, NULL, &r), ACKRPC_OK);
  cr_assert_eq(r.attempts, 3);
  ackrpc_result_clear(&r);
  ackrpc_client_free(c); /* its pooled session, before the server goes */
  flaky_stop(&f);
}

FX_TEST(retry, session_calls_retry) {
  flaky f;
  flaky_start(&f, 1, ACKRPC_RESOURCE_EXHAUSTED);
  ackrpc_retry_policy p = {.max_attempts = 3,
                           .initial_backoff_ms = 2,
                           .retry_on = RETRY_ON,
                           .n_retry_on = 2};
  ackrpc_client *c = client_with(fx_sock(), 5000, &p, 0);
  ackrpc_session *s = NULL;
  cr_assert_eq(ackrpc_session_open(c, 0, &s), ACKRPC_OK);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result r = {0};
  cr_assert_eq(ackrpc_session_call(s, &fx_echo_method, &req.base, NULL, &r), ACKRPC_OK);
  cr_assert_eq(r.attempts, 2);
  ackrpc_result_clear(&r);
  ackrpc_session_close(s);
  flaky_stop(&f);
}

/* --- asynchronous -------------------------------------------------------- */

typedef struct async_out {
  int done;
  ackrpc_status st;
  unsigned attempts;
} async_out;

static void async_done(ackrpc_result *r, void *user) {
  async_out *o = user;
  o->done++;
  o->st = r->status;
  o->attempts = r->attempts;
}

static void run_base(struct event_base *base, async_out *o) {
  uint64_t end = fx_now_us() + 10000000u;
  while (!o->done && fx_now_us() < end)
    event_base_loop(base, EVLOOP_ONCE);
}

FX_TEST(retry, async_call_retries) {
  struct event_base *base = event_base_new();
  cr_assert_not_null(base);
  ackrpc_retry_policy p = {.max_attempts = 3,
                           .initial_backoff_ms = 5,
                           .retry_on = RETRY_ON,
                           .n_retry_on = 1};
  ackrpc_client *c = client_with(fx_sock(), 5000, &p, 0);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  async_out o = {0};
  cr_assert_eq(ackrpc_client_call_async(c, base, &fx_echo_method, &req.base, NULL,
                                        async_done, &o),
               ACKRPC_OK);
  run_base(base, &o);
  cr_assert_eq(o.done, 1);
  cr_assert_eq(o.st, ACKRPC_E_CONNECT);
  cr_assert_eq(o.attempts, 3);

  flaky f;
  flaky_start(&f, 2, ACKRPC_UNAVAILABLE);
  o = (async_out){0};
  cr_assert_eq(ackrpc_client_call_async(c, base, &fx_echo_method, &req.base, NULL,
                                        async_done, &o),
               ACKRPC_OK);
  run_base(base, &o);
  cr_assert_eq(o.done, 1);
  cr_assert_eq(o.st, ACKRPC_OK, "got %s", ackrpc_status_name(o.st));
  cr_assert_eq(o.attempts, 3);
  for (int i = 1; i < 3; i++)
    cr_assert_eq(memcmp(f.ids[i], f.ids[0], f.id_lens[0]), 0,
                 "async attempt %d: new id", i);
  flaky_stop(&f);

  ackrpc_retry_policy none = {0};
  ackrpc_call_options co = {.retry = &none};
  o = (async_out){0};
  cr_assert_eq(ackrpc_client_call_async(c, base, &fx_echo_method, &req.base, &co,
                                        async_done, &o),
               ACKRPC_OK);
  run_base(base, &o);
  cr_assert_eq(o.st, ACKRPC_E_CONNECT);
  cr_assert_eq(o.attempts, 1);
  event_base_free(base);
}
