/* test_integration_call.c: calls between a real server (its own loop in a
 * thread) and real blocking clients in the same process: what a handler sees
 * (method, peer, call id, metadata, deadline), what the client gets back
 * (replies, handler statuses, decoding errors), deferred replies, and many
 * threads sharing one client. Server lifecycle and limits are in
 * test_integration_life.c. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

FX_SUITE(call);

static fx_server *start_default(void) {
  ackrpc_server_options o = {.address = fx_sock()};
  return fx_server_start(&o);
}

FX_TEST(call, echo_roundtrip) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  uint8_t blob[1000];
  for (size_t i = 0; i < sizeof blob; i++) blob[i] = (uint8_t)(i * 7);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "hello, ackrpc";
  req.blob.data = blob;
  req.blob.len = sizeof blob;
  ackrpc_result r = {0};
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  cr_assert_eq(st, ACKRPC_OK, "status %s (%s)", ackrpc_status_name(st), r.message ? r.message : "");
  cr_assert_eq(r.status, ACKRPC_OK, "result.status must equal the returned status");
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_ACKED);
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
  cr_assert_str_eq(rep->text, "hello, ackrpc");
  cr_assert_eq(rep->blob_len, sizeof blob);
  cr_assert_str_eq(rep->method, FX_ECHO, "the handler sees the full method name");
  cr_assert_eq(fx_handler_calls(), 1);
  ackrpc_result_clear(&r);
  cr_assert_null(r.reply, "ackrpc_result_clear zeroes the result");
  cr_assert_null(r.message);
  ackrpc_result_clear(&r); /* twice is harmless */

  /* A NULL result: the status alone, the reply freed by the library. */
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK);
  cr_assert_eq(fx_handler_calls(), 2);
}

FX_TEST(call, large_body) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 20000);
  size_t n = 1u << 20;
  uint8_t *blob = malloc(n);
  cr_assert_not_null(blob);
  memset(blob, 0xA5, n);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.blob.data = blob;
  req.blob.len = n;
  ackrpc_result r = {0};
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  free(blob);
  cr_assert_eq(st, ACKRPC_OK, "1 MiB request under the 4 MiB default: %s", ackrpc_status_name(st));
  cr_assert_eq(fx_echo_reply(&r)->blob_len, n);
  ackrpc_result_clear(&r);
}

FX_TEST(call, peer_credentials) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result r = {0};
  cr_assert_eq(fx_echo(c, &req, NULL, &r), ACKRPC_OK);
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
  cr_assert_eq(rep->peer_uid, (uint32_t)getuid());
  cr_assert_eq(rep->peer_gid, (uint32_t)getgid());
  cr_assert_eq(rep->peer_pid, (int32_t)getpid());
  ackrpc_result_clear(&r);
}

FX_TEST(call, caller_chosen_call_id) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  uint8_t id[ACKRPC_MAX_CALL_ID];
  for (size_t i = 0; i < sizeof id; i++) id[i] = (uint8_t)(i * 37 + 0); /* includes 0x00 */
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  size_t lens[] = {1, 17, ACKRPC_MAX_CALL_ID};
  for (size_t k = 0; k < 3; k++) {
    for (int attempt = 0; attempt < 2; attempt++) { /* a retry carries the same id */
      ackrpc_call_options co = {.call_id = id, .call_id_len = lens[k]};
      ackrpc_result r = {0};
      cr_assert_eq(fx_echo(c, &req, &co, &r), ACKRPC_OK);
      const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
      cr_assert_eq(rep->call_id.len, lens[k], "handler saw %zu bytes, sent %zu",
                   rep->call_id.len, lens[k]);
      cr_assert_arr_eq(rep->call_id.data, id, lens[k], "the call id reaches the handler byte for byte");
      cr_assert_eq(r.call_id_len, lens[k]);
      cr_assert_arr_eq(r.call_id, id, lens[k], "the result reports the id sent");
      ackrpc_result_clear(&r);
    }
  }
}

FX_TEST(call, default_call_ids) {
  start_default();
  ackrpc_client *c1 = fx_client(fx_sock(), 5000);
  ackrpc_client *c2 = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  uint8_t ids[3][16];
  ackrpc_client *cs[3] = {c1, c1, c2};
  for (int i = 0; i < 3; i++) {
    ackrpc_result r = {0};
    cr_assert_eq(fx_echo(cs[i], &req, NULL, &r), ACKRPC_OK);
    const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
    cr_assert_eq(r.call_id_len, 16, "the default call id is 16 bytes, got %zu", r.call_id_len);
    cr_assert_eq(rep->call_id.len, 16);
    cr_assert_arr_eq(rep->call_id.data, r.call_id, 16, "the handler sees the id the result reports");
    memcpy(ids[i], r.call_id, 16);
    ackrpc_result_clear(&r);
  }
  cr_assert_arr_neq(ids[0], ids[1], 16, "two calls get different ids");
  cr_assert_arr_eq(ids[0], ids[1], 8, "the first 64 bits are fixed per client object");
  cr_assert_arr_neq(ids[0] + 8, ids[1] + 8, 8, "the counter part differs");
  cr_assert_arr_neq(ids[0], ids[2], 8, "two clients have different random parts");
}

FX_TEST(call, metadata) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  static const uint8_t bin[] = {0x00, 0x01, 0xff, 0x7f};
  static uint8_t big[ACKRPC_MAX_METADATA_VALUE];
  memset(big, 0x5a, sizeof big);
  ackrpc_metadata md[] = {
      {"trace-id", "abc", 3},
      {"bin.v_1", bin, sizeof bin},
      {"dup", "one", 3},
      {"dup", "two", 3},
      {"empty", "", 0},
      {"big", big, sizeof big},
  };
  char *keys[] = {"dup", "bin.v_1", "missing", "empty"};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.lookup_keys = keys;
  req.n_lookup_keys = 4;
  ackrpc_call_options co = {.metadata = md, .metadata_count = 6};
  ackrpc_result r = {0};
  ackrpc_status st = fx_echo(c, &req, &co, &r);
  cr_assert_eq(st, ACKRPC_OK, "%s", ackrpc_status_name(st));
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
  cr_assert_eq(rep->metadata_count, 6);
  char *bighex = malloc(2 * sizeof big + 1);
  for (size_t i = 0; i < sizeof big; i++) memcpy(bighex + 2 * i, "5a", 2);
  bighex[2 * sizeof big] = 0;
  char *want = NULL;
  cr_assert_geq(asprintf(&want,
                         "trace-id=616263;bin.v_1=0001ff7f;dup=6f6e65;dup=74776f;empty=;big=%s;"
                         "?dup=6f6e65;?bin.v_1=0001ff7f;?missing=NULL;?empty=;oob=-1",
                         bighex),
                0);
  cr_assert_str_eq(rep->meta, want,
                   "entries in order via at(), lookup returns the first match, a missing key "
                   "gives NULL, at(count) gives -1 with outputs untouched");
  free(want);
  free(bighex);
  ackrpc_result_clear(&r);
}

FX_TEST(call, no_metadata) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  char *keys[] = {"anything"};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.lookup_keys = keys;
  req.n_lookup_keys = 1;
  ackrpc_result r = {0};
  cr_assert_eq(fx_echo(c, &req, NULL, &r), ACKRPC_OK);
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
  cr_assert_eq(rep->metadata_count, 0);
  cr_assert_str_eq(rep->meta, "?anything=NULL;oob=-1");
  ackrpc_result_clear(&r);
}

static void check_deadline(uint32_t client_timeout_ms, const ackrpc_call_options *co,
                           uint32_t expect_ms) {
  ackrpc_client *c = fx_client(fx_sock(), client_timeout_ms);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result r = {0};
  uint64_t t0 = fx_now_us();
  cr_assert_eq(fx_echo(c, &req, co, &r), ACKRPC_OK);
  uint64_t t1 = fx_now_us();
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
  uint64_t want = (uint64_t)expect_ms * 1000u;
  /* The deadline is counted from when the request was complete, so it lies
   * between (call start + timeout) and (call end + timeout); 2 ms of rounding. */
  cr_assert_geq(rep->deadline_us + 2000, t0 + want,
                "deadline %llu us is more than 2 ms before call start %llu + %u ms",
                (unsigned long long)rep->deadline_us, (unsigned long long)t0, expect_ms);
  cr_assert_leq(rep->deadline_us, t1 + want + 2000,
                "deadline %llu us is after call end %llu + %u ms",
                (unsigned long long)rep->deadline_us, (unsigned long long)t1, expect_ms);
  cr_assert_gt(rep->remaining_ms, 0);
  cr_assert_leq(rep->remaining_ms, (int64_t)expect_ms);
  ackrpc_result_clear(&r);
}

FX_TEST(call, deadline_is_client_timeout) {
  start_default();
  check_deadline(3000, NULL, 3000);
}

FX_TEST(call, per_call_timeout_overrides_client) {
  start_default();
  ackrpc_call_options co = {.timeout_ms = 2000};
  check_deadline(30000, &co, 2000);
}

FX_TEST(call, handler_timeout_caps_deadline) {
  ackrpc_server_options o = {.address = fx_sock(), .handler_timeout_ms = 1500};
  fx_server_start(&o);
  check_deadline(30000, NULL, 1500);
}

FX_TEST(call, unknown_method) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_method m = {"ackrpc.test.Test/NoSuchMethod", &ackrpc__test__echo_request__descriptor,
                     &ackrpc__test__echo_reply__descriptor};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result r = {0};
  ackrpc_status st = ackrpc_client_call(c, &m, &req.base, NULL, &r);
  cr_assert_eq(st, ACKRPC_UNIMPLEMENTED, "got %s", ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_ACKED);
  cr_assert_not_null(r.message);
  cr_assert(strstr(r.message, "ackrpc.test.Test/NoSuchMethod") != NULL,
            "the message names the method: \"%s\"", r.message);
  cr_assert_eq(fx_handler_calls(), 0);
  ackrpc_result_clear(&r);
}

FX_TEST(call, strict_method_works) {
  /* The control for the two tests below: a well-formed Strict decodes. */
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__Strict req = ACKRPC__TEST__STRICT__INIT;
  req.must = "present";
  ackrpc_result r = {0};
  cr_assert_eq(ackrpc_client_call(c, &fx_strict_method, &req.base, NULL, &r), ACKRPC_OK);
  cr_assert_not_null(r.reply);
  cr_assert_str_eq(((Ackrpc__Test__StrictReply *)r.reply)->got, "present");
  ackrpc_result_clear(&r);
}

FX_TEST(call, undecodable_body_missing_required) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  /* The same method name, described with another request type on this side:
   * its bytes lack Strict's required field (and clash with its wire type). */
  ackrpc_method m = {FX_STRICT, &ackrpc__test__mismatch__descriptor,
                     &ackrpc__test__strict_reply__descriptor};
  Ackrpc__Test__Mismatch req = ACKRPC__TEST__MISMATCH__INIT;
  req.text = 7;
  ackrpc_result r = {0};
  ackrpc_status st = ackrpc_client_call(c, &m, &req.base, NULL, &r);
  cr_assert_eq(st, ACKRPC_INVALID_ARGUMENT, "got %s (%s)", ackrpc_status_name(st),
               r.message ? r.message : "");
  cr_assert_eq(fx_handler_calls(), 0, "a body that does not decode is never dispatched");
  ackrpc_result_clear(&r);

  /* An empty body lacks the required field as well. */
  Ackrpc__Test__Mismatch empty = ACKRPC__TEST__MISMATCH__INIT;
  st = ackrpc_client_call(c, &m, &empty.base, NULL, &r);
  cr_assert_eq(st, ACKRPC_INVALID_ARGUMENT, "empty body: got %s", ackrpc_status_name(st));
  cr_assert_eq(fx_handler_calls(), 0);
  ackrpc_result_clear(&r);
}

FX_TEST(call, undecodable_body_wire_type) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  /* Field 1 as a varint where EchoRequest has a string. */
  ackrpc_method m = {FX_ECHO, &ackrpc__test__mismatch__descriptor,
                     &ackrpc__test__echo_reply__descriptor};
  Ackrpc__Test__Mismatch req = ACKRPC__TEST__MISMATCH__INIT;
  req.text = 300;
  ackrpc_result r = {0};
  ackrpc_status st = ackrpc_client_call(c, &m, &req.base, NULL, &r);
  cr_assert_eq(st, ACKRPC_INVALID_ARGUMENT, "got %s", ackrpc_status_name(st));
  cr_assert_eq(fx_handler_calls(), 0);
  ackrpc_result_clear(&r);
}

FX_TEST(call, handler_error_statuses) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  static const struct {
    ackrpc_status st;
    const char *msg;
  } cases[] = {
      {ACKRPC_NOT_FOUND, "no such key: k1"},
      {ACKRPC_PERMISSION_DENIED, "uid 1234 may not write"},
      {ACKRPC_UNAVAILABLE, "try again later"},
      {ACKRPC_FAILED_PRECONDITION, "version mismatch"},
      {ACKRPC_ALREADY_EXISTS, "exists"},
      {ACKRPC_UNAUTHENTICATED, "who are you? \xc3\xa9"},
      {ACKRPC_CANCELLED, "cancelled by handler"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    req.text = "body with error";
    req.reply_status = cases[i].st;
    req.reply_message = (char *)cases[i].msg;
    req.tag = (uint32_t)(i + 1);
    ackrpc_result r = {0};
    ackrpc_status st = fx_echo(c, &req, NULL, &r);
    cr_assert_eq(st, cases[i].st, "case %zu: got %s, handler sent %s", i,
                 ackrpc_status_name(st), ackrpc_status_name(cases[i].st));
    cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_ACKED);
    cr_assert_not_null(r.message, "case %zu: no message", i);
    cr_assert_str_eq(r.message, cases[i].msg);
    cr_assert_str_eq(fx_echo_reply(&r)->text, "body with error",
                     "a reply body sent with a non-OK status reaches result.reply");
    cr_assert_eq(fx_reply_rc_wait(req.tag, 5000), ACKRPC_OK);
    ackrpc_result_clear(&r);
  }
}

FX_TEST(call, handler_non_canonical_status) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.reply_status = ACKRPC_E_NO_ACK; /* a local status: never on the wire */
  req.tag = 1;
  ackrpc_result r = {0};
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  cr_assert_eq(fx_reply_rc_wait(1, 5000), ACKRPC_E_INVAL, "ackrpc_call_reply with status 110 returned %d",
               fx_reply_rc(1));
  cr_assert_eq(st, ACKRPC_INTERNAL, "the client gets INTERNAL, got %s", ackrpc_status_name(st));
  ackrpc_result_clear(&r);
}

FX_TEST(call, deferred_reply_from_thread) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "later";
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__DEFER_THREAD;
  req.delay_ms = 100;
  req.tag = 3;
  ackrpc_result r = {0};
  uint64_t t0 = fx_now_us();
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  cr_assert_eq(st, ACKRPC_OK, "%s (%s)", ackrpc_status_name(st), r.message ? r.message : "");
  cr_assert_geq(fx_now_us() - t0, 100000, "the reply cannot come before the handler sent it");
  cr_assert_str_eq(fx_echo_reply(&r)->text, "later");
  cr_assert_eq(fx_reply_rc_wait(3, 5000), ACKRPC_OK);
  ackrpc_result_clear(&r);
}

FX_TEST(call, deferred_reply_from_loop_timer) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "timer";
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__DEFER_TIMER;
  req.delay_ms = 100;
  req.tag = 4;
  req.reply_status = ACKRPC_NOT_FOUND;
  req.reply_message = "from the timer";
  ackrpc_result r = {0};
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  cr_assert_eq(st, ACKRPC_NOT_FOUND, "%s (%s)", ackrpc_status_name(st), r.message ? r.message : "");
  cr_assert_str_eq(r.message, "from the timer");
  cr_assert_str_eq(fx_echo_reply(&r)->text, "timer");
  cr_assert_eq(fx_reply_rc_wait(4, 5000), ACKRPC_OK);
  ackrpc_result_clear(&r);

  req.reply_status = 0;
  req.reply_message = "";
  req.tag = 5;
  cr_assert_eq(fx_echo(c, &req, NULL, &r), ACKRPC_OK);
  ackrpc_result_clear(&r);
}

/* --- Many threads on one client --- */

struct worker {
  pthread_t thr;
  ackrpc_client *client;
  int id;
  int calls;
  int mode;
  int failures;
  char first_failure[256];
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < w->calls; i++) {
    char text[64];
    snprintf(text, sizeof text, "w%d-c%d", w->id, i);
    uint8_t blob[8];
    memset(blob, 0, sizeof blob);
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    req.text = text;
    req.blob.data = blob;
    req.blob.len = (size_t)(i % 8);
    req.mode = (Ackrpc__Test__EchoRequest__Mode)w->mode;
    req.delay_ms = (uint32_t)(i % 3);
    ackrpc_result r = {0};
    ackrpc_status st = fx_echo(w->client, &req, NULL, &r);
    const char *why = NULL;
    const Ackrpc__Test__EchoReply *rep = (const Ackrpc__Test__EchoReply *)r.reply;
    if (st != ACKRPC_OK) why = ackrpc_status_name(st);
    else if (!rep || rep->base.descriptor != &ackrpc__test__echo_reply__descriptor) why = "no reply";
    else if (strcmp(rep->text, text) != 0) why = "reply of another request";
    else if (rep->blob_len != (uint32_t)(i % 8)) why = "wrong blob_len";
    else if (rep->call_id.len != r.call_id_len ||
             memcmp(rep->call_id.data, r.call_id, r.call_id_len) != 0)
      why = "call id mismatch";
    if (why && w->failures++ == 0)
      snprintf(w->first_failure, sizeof w->first_failure, "thread %d call %d: %s%s%s", w->id, i,
               why, r.message ? ": " : "", r.message ? r.message : "");
    ackrpc_result_clear(&r);
  }
  return NULL;
}

static void run_workers(int threads, int calls, int mode) {
  start_default();
  ackrpc_client *c = fx_client(fx_sock(), 30000);
  struct worker *ws = calloc((size_t)threads, sizeof *ws);
  cr_assert_not_null(ws);
  for (int t = 0; t < threads; t++) {
    ws[t] = (struct worker){.client = c, .id = t, .calls = calls, .mode = mode};
    cr_assert_eq(pthread_create(&ws[t].thr, NULL, worker_main, &ws[t]), 0);
  }
  int failures = 0;
  char first[256] = "";
  for (int t = 0; t < threads; t++) {
    pthread_join(ws[t].thr, NULL);
    if (ws[t].failures && !failures) snprintf(first, sizeof first, "%s", ws[t].first_failure);
    failures += ws[t].failures;
  }
  free(ws);
  cr_assert_eq(failures, 0, "%d of %d calls failed; first: %s", failures, threads * calls, first);
  cr_assert_eq(fx_handler_calls(), (unsigned)(threads * calls));
}

FX_TEST(call, concurrent_threads_share_one_client) {
  run_workers(16, fx_valgrind() ? 15 : 200, ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE);
}

FX_TEST(call, concurrent_deferred_replies) {
  run_workers(8, fx_valgrind() ? 4 : 25, ACKRPC__TEST__ECHO_REQUEST__MODE__DEFER_THREAD);
}

/* --- Signals --- */

static atomic_int g_signals;
static void on_usr1(int sig) {
  (void)sig;
  atomic_fetch_add(&g_signals, 1);
}

struct pester {
  pthread_t target;
  atomic_int stop;
};

static void *pester_main(void *arg) {
  struct pester *p = arg;
  for (int i = 0; i < 1000 && !atomic_load(&p->stop); i++) {
    pthread_kill(p->target, SIGUSR1);
    fx_sleep_ms(5);
  }
  return NULL;
}

FX_TEST(call, signals_do_not_break_a_call) {
  start_default();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: poll() and friends see EINTR */
  cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "through signals";
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__DEFER_THREAD;
  req.delay_ms = 300;
  struct pester p = {.target = pthread_self()};
  pthread_t thr;
  cr_assert_eq(pthread_create(&thr, NULL, pester_main, &p), 0);
  ackrpc_result r = {0};
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  atomic_store(&p.stop, 1);
  pthread_join(thr, NULL);
  signal(SIGUSR1, SIG_IGN);
  cr_assert_gt(atomic_load(&g_signals), 0, "no signal arrived during the call");
  cr_assert_eq(st, ACKRPC_OK, "EINTR broke the call: %s (%s)", ackrpc_status_name(st),
               r.message ? r.message : "");
  cr_assert_str_eq(fx_echo_reply(&r)->text, "through signals");
  ackrpc_result_clear(&r);
}

/* --- Connection accounting --- */

FX_TEST(call, server_connection_count) {
  fx_server *fs = start_default();
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  for (int i = 0; i < 3; i++) cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK);

  /* Closing after a reply happens on the loop; give it a bounded moment. */
  size_t n = 99;
  for (int i = 0; i < 200 && (n = fx_server_connections(fs)) != 0; i++) fx_sleep_ms(5);
  cr_assert_eq(n, 0, "%zu connections still open after every call returned", n);

  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  fx_bg_call *bg = fx_bg_echo(c, &req, 10000);
  cr_assert_eq(fx_held_wait(1, 5000), 1);
  cr_assert_eq(fx_server_connections(fs), 1, "the held call's connection is open");
  cr_assert_eq(fx_held_reply(0, ACKRPC_OK, NULL), ACKRPC_OK);
  cr_assert_eq(fx_bg_join(bg, 10000, NULL), ACKRPC_OK);
  for (int i = 0; i < 200 && (n = fx_server_connections(fs)) != 0; i++) fx_sleep_ms(5);
  cr_assert_eq(n, 0, "%zu connections open after the held call was answered", n);
}
