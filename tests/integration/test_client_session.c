/* test_client_session.c: sessions (several calls on one connection) and the
 * client's session pool, against a real server. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

FX_SUITE(session);

static fx_server *start(uint32_t read_timeout_ms) {
  ackrpc_server_options o = {.address = fx_sock(), .read_timeout_ms = read_timeout_ms};
  return fx_server_start(&o);
}

static ackrpc_status echo_on(ackrpc_session *s, const char *text, ackrpc_result *r) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = (char *)text;
  return ackrpc_session_call(s, &fx_echo_method, &req.base, NULL, r);
}

FX_TEST(session, calls_share_one_connection) {
  fx_server *fs = start(0);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_session *s = NULL;
  cr_assert_eq(ackrpc_session_open(c, 0, &s), ACKRPC_OK);
  char text[32];
  for (int i = 0; i < 20; i++) {
    ackrpc_result r = {0};
    snprintf(text, sizeof text, "call %d", i);
    ackrpc_status st = echo_on(s, text, &r);
    cr_assert_eq(st, ACKRPC_OK, "call %d: %s (%s)", i, ackrpc_status_name(st),
                 r.message ? r.message : "");
    cr_assert_str_eq(fx_echo_reply(&r)->text, text, "replies come back in order");
    ackrpc_result_clear(&r);
  }
  /* The probe's own connection plus the session's: one, not twenty. */
  cr_assert_eq(fx_server_connections(fs), 1,
               "the session holds exactly one connection");
  cr_assert_eq(fx_handler_calls(), 20);
  s = ackrpc_session_close(s);
  cr_assert_null(s);
  /* After the half-close the server ends the session. */
  uint64_t until = fx_now_us() + 2000000 + fx_slack_us();
  while (fx_server_connections(fs) != 0 && fx_now_us() < until)
    fx_sleep_ms(10);
  cr_assert_eq(fx_server_connections(fs), 0,
               "closing the session closes the connection");
}

FX_TEST(session, reconnects_after_the_server_ends_an_idle_session) {
  start(200); /* idle sessions are closed after 200 ms */
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_session *s = NULL;
  cr_assert_eq(ackrpc_session_open(c, 0, &s), ACKRPC_OK);
  ackrpc_result r = {0};
  cr_assert_eq(echo_on(s, "first", &r), ACKRPC_OK);
  ackrpc_result_clear(&r);
  fx_sleep_ms(600); /* the server drops the idle connection */
  ackrpc_status st = echo_on(s, "second", &r);
  cr_assert_eq(st, ACKRPC_OK, "a stale session reconnects before sending: %s (%s)",
               ackrpc_status_name(st), r.message ? r.message : "");
  cr_assert_str_eq(fx_echo_reply(&r)->text, "second");
  ackrpc_result_clear(&r);
  ackrpc_session_close(s);
}

FX_TEST(session, error_status_keeps_the_session_and_local_failure_drops_it) {
  fx_server *fs = start(0);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_session *s = NULL;
  cr_assert_eq(ackrpc_session_open(c, 0, &s), ACKRPC_OK);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.reply_status = ACKRPC_NOT_FOUND;
  req.reply_message = "no such thing";
  ackrpc_result r = {0};
  cr_assert_eq(ackrpc_session_call(s, &fx_echo_method, &req.base, NULL, &r),
               ACKRPC_NOT_FOUND);
  cr_assert_str_eq(r.message, "no such thing");
  ackrpc_result_clear(&r);
  cr_assert_eq(echo_on(s, "after an error", &r), ACKRPC_OK,
               "a server status leaves the session usable");
  ackrpc_result_clear(&r);
  cr_assert_eq(fx_server_connections(fs), 1);

  /* An unknown method is answered before the body; still a clean frame
   * boundary on a complete frame, so the session goes on. */
  ackrpc_method unknown = fx_echo_method;
  unknown.name = "ackrpc.test.Test/Nope";
  cr_assert_eq(ackrpc_session_call(s, &unknown, &req.base, NULL, &r),
               ACKRPC_UNIMPLEMENTED);
  ackrpc_result_clear(&r);
  cr_assert_eq(echo_on(s, "again", &r), ACKRPC_OK);
  ackrpc_result_clear(&r);

  /* A local argument error sends nothing and returns E_INVAL. */
  cr_assert_eq(ackrpc_session_call(s, NULL, &req.base, NULL, &r), ACKRPC_E_INVAL);
  ackrpc_result_clear(&r);
  cr_assert_eq(ackrpc_session_call(NULL, &fx_echo_method, &req.base, NULL, NULL),
               ACKRPC_E_INVAL);
  ackrpc_session_close(s);
}

FX_TEST(session, open_fails_when_nobody_listens) {
  ackrpc_client *c = fx_client(fx_sock(), 500);
  ackrpc_session *s = (ackrpc_session *)&s; /* must stay untouched */
  ackrpc_session *before = s;
  cr_assert_eq(ackrpc_session_open(c, 0, &s), ACKRPC_E_CONNECT);
  cr_assert_eq(s, before, "ret_session untouched on error");
  cr_assert_eq(ackrpc_session_open(NULL, 0, &s), ACKRPC_E_INVAL);
  cr_assert_null(ackrpc_session_close(NULL));
  /* Invalid arguments with no result to fill: the explanation the call
   * builds must not leak (ASan and valgrind check it). */
  cr_assert_eq(ackrpc_client_call(c, NULL, NULL, NULL, NULL), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_client_call(NULL, &fx_echo_method, NULL, NULL, NULL), ACKRPC_E_INVAL);
}

FX_TEST(session, pool_reuses_connections_for_one_shot_calls) {
  fx_server *fs = start(0);
  ackrpc_client_options o = {.address = fx_sock(), .timeout_ms = 5000, .pool_size = 2};
  ackrpc_client *c = fx_client_opts(&o);
  for (int i = 0; i < 30; i++) {
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    req.text = "pooled";
    cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK, "call %d", i);
  }
  cr_assert_eq(fx_server_connections(fs), 1,
               "sequential calls through the pool use one kept connection");
  cr_assert_eq(fx_handler_calls(), 30);
}

FX_TEST(session, pool_reports_outcomes_like_one_shot_calls) {
  ackrpc_client_options o = {.address = fx_sock(), .timeout_ms = 500, .pool_size = 4};
  ackrpc_client *c = fx_client_opts(&o);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result r = {0};
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  cr_assert_eq(st, ACKRPC_E_CONNECT, "no server: not delivered (%s)",
               ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NOT_DELIVERED);
  cr_assert_eq(r.call_id_len, 16, "the result carries the call id to retry with");
  ackrpc_result_clear(&r);

  /* The server answers a deferred call only after the client's deadline:
   * delivered, no ack, and the broken session is not pooled again. */
  fx_server *fs = start(0);
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  st = fx_echo(c, &req, NULL, &r);
  cr_assert_eq(st, ACKRPC_E_ACK_TIMEOUT, "%s", ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NO_ACK);
  ackrpc_result_clear(&r);
  cr_assert_eq(fx_held_wait(1, 2000), 1);
  fx_held_reply(0, ACKRPC_OK, NULL);
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE;
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK,
               "a fresh connection after the failure");
  (void)fs;
}
