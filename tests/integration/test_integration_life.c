/* test_integration_life.c: deadlines, shutdown with calls in flight, limits
 * (request size, connections, read deadline) and raw-byte clients that
 * misbehave (cut-short requests, garbage, oversized announcements, several
 * requests on one connection). Real server in a thread; blocking clients or
 * raw sockets. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"

FX_SUITE(life);

static int path_exists(const char *p) {
  struct stat st;
  return lstat(p, &st) == 0;
}

FX_TEST(life, client_deadline_gives_ack_timeout) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 200);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__DEFER_THREAD;
  req.delay_ms = 1000;
  req.tag = 1;
  ackrpc_result r = {0};
  uint64_t t0 = fx_now_us();
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  uint64_t dt = fx_now_us() - t0;
  cr_assert_eq(st, ACKRPC_E_ACK_TIMEOUT, "got %s (%s)", ackrpc_status_name(st),
               r.message ? r.message : "");
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NO_ACK);
  cr_assert_geq(dt, 199000, "gave up after %llu us, before its 200 ms deadline",
                (unsigned long long)dt);
  cr_assert_leq(dt, 200000 + fx_slack_us(), "gave up only after %llu us", (unsigned long long)dt);
  cr_assert_eq(r.call_id_len, 16, "the result keeps the call id for a retry");
  ackrpc_result_clear(&r);
  /* The server's own deadline has passed by the time the handler answers. */
  int rc = fx_reply_rc_wait(1, 3000 + (uint32_t)(fx_slack_us() / 1000));
  cr_assert_eq(rc, ACKRPC_E_ALREADY_ANSWERED, "late ackrpc_call_reply returned %d (%s)", rc,
               rc >= 0 ? ackrpc_status_name((ackrpc_status)rc) : "none");
}

FX_TEST(life, server_handler_timeout_gives_deadline_exceeded) {
  ackrpc_server_options o = {.address = fx_sock(), .handler_timeout_ms = 200};
  fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__DEFER_THREAD;
  req.delay_ms = 1000;
  req.tag = 2;
  ackrpc_result r = {0};
  uint64_t t0 = fx_now_us();
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  uint64_t dt = fx_now_us() - t0;
  cr_assert_eq(st, ACKRPC_DEADLINE_EXCEEDED, "got %s (%s)", ackrpc_status_name(st),
               r.message ? r.message : "");
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_ACKED);
  cr_assert_geq(dt, 198000, "answered after %llu us, before handler_timeout_ms",
                (unsigned long long)dt);
  cr_assert_leq(dt, 200000 + fx_slack_us(), "answered only after %llu us", (unsigned long long)dt);
  ackrpc_result_clear(&r);
  int rc = fx_reply_rc_wait(2, 3000 + (uint32_t)(fx_slack_us() / 1000));
  cr_assert_eq(rc, ACKRPC_E_ALREADY_ANSWERED, "late ackrpc_call_reply returned %d", rc);
}

FX_TEST(life, stop_drains_calls_in_flight) {
  ackrpc_server_options o = {.address = fx_sock()}; /* drain: 5 s default */
  fx_server *fs = fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "in flight";
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  fx_bg_call *bg = fx_bg_echo(c, &req, 10000);
  cr_assert_eq(fx_held_wait(1, 5000), 1, "the handler never got the call");

  ackrpc_server_stop(fx_server_get(fs));
  ackrpc_server_stop(fx_server_get(fs)); /* repeated: harmless */
  /* The socket file goes at once, while the call drains. */
  for (int i = 0; i < 400 && path_exists(fx_sock()); i++) fx_sleep_ms(5);
  cr_assert(!path_exists(fx_sock()), "the socket file is still there after stop");
  ackrpc_status st = fx_echo(c, &req, NULL, NULL);
  cr_assert_eq(st, ACKRPC_E_CONNECT, "a new call after stop: %s", ackrpc_status_name(st));
  cr_assert(!fx_bg_done(bg), "the call in flight was answered before its handler replied");

  cr_assert_eq(fx_held_reply(0, ACKRPC_OK, "drained"), ACKRPC_OK,
               "a reply within the drain time is accepted");
  ackrpc_result *r = NULL;
  st = fx_bg_join(bg, 10000, &r);
  cr_assert_eq(st, ACKRPC_OK, "the drained call got %s (%s)", ackrpc_status_name(st),
               r->message ? r->message : "");
  cr_assert_str_eq(fx_echo_reply(r)->text, "in flight");
  cr_assert_eq(fx_server_join(fs, 10000), ACKRPC_OK);
  fx_server_free(fs);
  st = fx_echo(c, &req, NULL, NULL);
  cr_assert_eq(st, ACKRPC_E_CONNECT, "after free: %s", ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NOT_DELIVERED);
}

FX_TEST(life, stop_answers_undrained_calls_unavailable) {
  ackrpc_server_options o = {.address = fx_sock(), .drain_timeout_ms = 200};
  fx_server *fs = fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 20000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  fx_bg_call *bg = fx_bg_echo(c, &req, 20000);
  cr_assert_eq(fx_held_wait(1, 5000), 1);
  uint64_t t0 = fx_now_us();
  fx_server_request_stop(fs);
  ackrpc_result *r = NULL;
  ackrpc_status st = fx_bg_join(bg, 200 + 10000, &r);
  uint64_t dt = fx_now_us() - t0;
  cr_assert_eq(st, ACKRPC_UNAVAILABLE, "got %s (%s)", ackrpc_status_name(st),
               r->message ? r->message : "");
  cr_assert_geq(dt, 195000, "answered UNAVAILABLE after %llu us, before the drain time",
                (unsigned long long)dt);
  cr_assert_eq(fx_server_join(fs, 10000), ACKRPC_OK);
  cr_assert(!path_exists(fx_sock()));
  cr_assert_eq(fx_held_reply(0, ACKRPC_OK, NULL), ACKRPC_E_ALREADY_ANSWERED,
               "a reply after the drain is refused");
  fx_server_free(fs);
}

FX_TEST(life, stop_idle_server) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server *fs = fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK);
  ackrpc_server_stop(NULL);
  fx_server_request_stop(fs);
  fx_server_request_stop(fs);
  cr_assert_eq(fx_server_join(fs, 10000), ACKRPC_OK);
  cr_assert(!path_exists(fx_sock()), "stop removes the socket file");
  fx_server_free(fs);
}

FX_TEST(life, stop_before_run) {
  ackrpc_server_options o = {.address = fx_sock()};
  ackrpc_server *s = NULL;
  cr_assert_eq(ackrpc_server_new(&o, &s), ACKRPC_OK);
  ackrpc_server_stop(s);
  /* Run returns at once: a SIGTERM handler may stop before the loop starts. */
  cr_assert_eq(ackrpc_server_run(s), ACKRPC_OK);
  cr_assert(!path_exists(fx_sock()));
  cr_assert_null(ackrpc_server_free(s));
}

FX_TEST(life, free_removes_socket_file) {
  ackrpc_server_options o = {.address = fx_sock()};
  ackrpc_server *s = NULL;
  cr_assert_eq(ackrpc_server_new(&o, &s), ACKRPC_OK);
  cr_assert(path_exists(fx_sock()));
  cr_assert_null(ackrpc_server_free(s));
  cr_assert(!path_exists(fx_sock()), "ackrpc_server_free removes the socket file");
}

FX_TEST(life, request_larger_than_max_request_size) {
  ackrpc_server_options o = {.address = fx_sock(), .max_request_size = 64 * 1024};
  fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  size_t n = 1024 * 1024;
  uint8_t *blob = calloc(1, n);
  cr_assert_not_null(blob);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.blob.data = blob;
  req.blob.len = 32 * 1024;
  ackrpc_result r = {0};
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  cr_assert_eq(st, ACKRPC_OK, "32 KiB under a 64 KiB limit: %s", ackrpc_status_name(st));
  ackrpc_result_clear(&r);

  req.blob.len = n;
  st = fx_echo(c, &req, NULL, &r);
  free(blob);
  cr_assert_eq(st, ACKRPC_RESOURCE_EXHAUSTED,
               "1 MiB over a 64 KiB limit: got %s (%s); the client must read the reply "
               "even though its write failed",
               ackrpc_status_name(st), r.message ? r.message : "");
  cr_assert_eq(fx_handler_calls(), 1, "the oversized request was dispatched");
  ackrpc_result_clear(&r);
}

FX_TEST(life, max_connections_queues_not_refuses) {
  ackrpc_server_options o = {.address = fx_sock(), .max_connections = 2};
  fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 20000);
  Ackrpc__Test__EchoRequest held = ACKRPC__TEST__ECHO_REQUEST__INIT;
  held.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  fx_bg_call *b1 = fx_bg_echo(c, &held, 20000);
  fx_bg_call *b2 = fx_bg_echo(c, &held, 20000);
  cr_assert_eq(fx_held_wait(2, 5000), 2);
  Ackrpc__Test__EchoRequest quick = ACKRPC__TEST__ECHO_REQUEST__INIT;
  quick.text = "third";
  fx_bg_call *b3 = fx_bg_echo(c, &quick, 20000);
  fx_sleep_ms(200);
  cr_assert(!fx_bg_done(b3), "a third connection was served beyond max_connections=2 "
                             "(or refused: it returned early)");
  cr_assert_eq(fx_handler_calls(), 2);
  cr_assert_eq(fx_held_reply(0, ACKRPC_OK, NULL), ACKRPC_OK);
  ackrpc_result *r = NULL;
  ackrpc_status st = fx_bg_join(b3, 15000, &r);
  cr_assert_eq(st, ACKRPC_OK, "the queued call got %s (%s)", ackrpc_status_name(st),
               r->message ? r->message : "");
  cr_assert_str_eq(fx_echo_reply(r)->text, "third");
  cr_assert_eq(fx_held_reply(1, ACKRPC_OK, NULL), ACKRPC_OK);
  cr_assert_eq(fx_bg_join(b1, 10000, NULL), ACKRPC_OK);
  cr_assert_eq(fx_bg_join(b2, 10000, NULL), ACKRPC_OK);
}

/* --- Raw clients --- */

FX_TEST(life, session_mode_answers_in_order) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server_start(&o);
  Ackrpc__Test__EchoRequest r1 = ACKRPC__TEST__ECHO_REQUEST__INIT, r2 = r1;
  r1.text = "one";
  r2.text = "two";
  r2.reply_status = ACKRPC_NOT_FOUND;
  r2.reply_message = "second";
  uint8_t *f1, *f2;
  size_t n1 = fx_frame_request(&f1, FX_ECHO, 5000000, (const uint8_t *)"id-1", 4, &r1.base);
  size_t n2 = fx_frame_request(&f2, FX_ECHO, 5000000, (const uint8_t *)"id-2", 4, &r2.base);
  int fd = fx_raw_connect(fx_sock());
  cr_assert_geq(fd, 0, "connect: %s", strerror(errno));
  int ok = fx_raw_send(fd, f1, n1) == 0 && fx_raw_send(fd, f2, n2) == 0;
  shutdown(fd, SHUT_WR);
  size_t len = 0;
  int eof = 0;
  uint8_t *buf = fx_raw_read_all(fd, 5000, &len, &eof);
  close(fd);
  cr_assert(ok, "send failed");
  cr_assert(eof, "the server did not close after the session");
  uint32_t st = 99;
  char *msg = NULL;
  const uint8_t *body;
  size_t blen;
  size_t used = fx_parse_reply(buf, len, &st, &msg, &body, &blen);
  cr_assert_gt(used, 0, "no first reply frame in %zu bytes", len);
  cr_assert_eq(st, 0);
  Ackrpc__Test__EchoReply *rep = ackrpc__test__echo_reply__unpack(NULL, blen, body);
  cr_assert_not_null(rep);
  int first_ok = strcmp(rep->text, "one") == 0 && rep->call_id.len == 4 &&
                 memcmp(rep->call_id.data, "id-1", 4) == 0;
  ackrpc__test__echo_reply__free_unpacked(rep, NULL);
  free(msg);
  cr_assert(first_ok, "the first reply answers the first request");
  size_t used2 = fx_parse_reply(buf + used, len - used, &st, &msg, &body, &blen);
  cr_assert_gt(used2, 0, "no second reply frame");
  cr_assert_eq(used + used2, len, "trailing bytes after two replies");
  cr_assert_eq(st, ACKRPC_NOT_FOUND);
  cr_assert_str_eq(msg ? msg : "", "second");
  free(msg);
  rep = ackrpc__test__echo_reply__unpack(NULL, blen, body);
  cr_assert_not_null(rep);
  int second_ok = strcmp(rep->text, "two") == 0;
  ackrpc__test__echo_reply__free_unpacked(rep, NULL);
  cr_assert(second_ok);
  cr_assert_eq(fx_handler_calls(), 2);
}

FX_TEST(life, request_without_deadline_uses_handler_timeout) {
  ackrpc_server_options o = {.address = fx_sock(), .handler_timeout_ms = 1500};
  fx_server_start(&o);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  uint8_t *f;
  size_t n = fx_frame_request(&f, FX_ECHO, 0, NULL, 0, &req.base);
  int fd = fx_raw_connect(fx_sock());
  cr_assert_geq(fd, 0);
  uint64_t t0 = fx_now_us();
  int ok = fx_raw_send(fd, f, n) == 0;
  shutdown(fd, SHUT_WR);
  size_t len = 0;
  uint8_t *buf = fx_raw_read_all(fd, 5000, &len, NULL);
  uint64_t t1 = fx_now_us();
  close(fd);
  cr_assert(ok);
  uint32_t st = 99;
  const uint8_t *body;
  size_t blen;
  cr_assert_gt(fx_parse_reply(buf, len, &st, NULL, &body, &blen), 0);
  cr_assert_eq(st, 0);
  Ackrpc__Test__EchoReply *rep = ackrpc__test__echo_reply__unpack(NULL, blen, body);
  cr_assert_not_null(rep);
  uint64_t dl = rep->deadline_us;
  ackrpc__test__echo_reply__free_unpacked(rep, NULL);
  cr_assert_geq(dl + 2000, t0 + 1500000, "deadline before send + handler_timeout_ms");
  cr_assert_leq(dl, t1 + 1500000 + 2000, "deadline after reply + handler_timeout_ms");
}

FX_TEST(life, cut_short_request_never_dispatched) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server_start(&o);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "this request loses its tail";
  uint8_t *f;
  size_t n = fx_frame_request(&f, FX_ECHO, 5000000, NULL, 0, &req.base);
  /* Cut inside the body, inside the head, and inside the prefix. */
  size_t cuts[] = {n - 3, 14, 7};
  for (size_t i = 0; i < 3; i++) {
    int fd = fx_raw_connect(fx_sock());
    cr_assert_geq(fd, 0);
    int ok = fx_raw_send(fd, f, cuts[i]) == 0;
    shutdown(fd, SHUT_WR);
    size_t len = 0;
    int eof = 0;
    uint8_t *buf = fx_raw_read_all(fd, 5000, &len, &eof);
    close(fd);
    cr_assert(ok);
    cr_assert(eof, "cut at %zu: the server kept the connection open", cuts[i]);
    uint32_t st = 0;
    if (len) {
      cr_assert_gt(fx_parse_reply(buf, len, &st, NULL, NULL, NULL), 0,
                   "cut at %zu: the server's answer is not a reply frame", cuts[i]);
      cr_assert_neq(st, 0, "cut at %zu: answered OK", cuts[i]);
    }
    cr_assert_eq(fx_handler_calls(), 0, "cut at %zu: a cut-short request was dispatched", cuts[i]);
  }
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK, "the server still serves");
}

FX_TEST(life, garbage_request_never_dispatched) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server_start(&o);
  static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  int fd = fx_raw_connect(fx_sock());
  cr_assert_geq(fd, 0);
  int ok = fx_raw_send(fd, junk, sizeof junk - 1) == 0;
  shutdown(fd, SHUT_WR);
  size_t len = 0;
  int eof = 0;
  uint8_t *buf = fx_raw_read_all(fd, 5000, &len, &eof);
  close(fd);
  (void)ok; /* the server may close before reading it all */
  cr_assert(eof, "the server kept a garbage connection open");
  uint32_t st = 0;
  if (len) {
    cr_assert_gt(fx_parse_reply(buf, len, &st, NULL, NULL, NULL), 0);
    cr_assert_neq(st, 0);
  }
  cr_assert_eq(fx_handler_calls(), 0);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK, "the server still serves");
}

FX_TEST(life, oversized_announcement_refused_from_prefix) {
  ackrpc_server_options o = {.address = fx_sock(), .max_request_size = 64 * 1024};
  fx_server_start(&o);
  uint8_t prefix[12];
  fx_frame_prefix(prefix, 1, 32, 100u * 1024 * 1024);
  int fd = fx_raw_connect(fx_sock());
  cr_assert_geq(fd, 0);
  cr_assert_eq(fx_raw_send(fd, prefix, sizeof prefix), 0);
  /* No body follows and the connection stays open: a server that waited for
   * the body before refusing would answer nothing here. */
  size_t len = 0;
  int eof = 0;
  uint8_t *buf = fx_raw_read_all(fd, 3000, &len, &eof);
  int early = len > 0;
  if (!len) { /* give it EOF, to report what it does then */
    shutdown(fd, SHUT_WR);
    buf = fx_raw_read_all(fd, 3000, &len, &eof);
  }
  close(fd);
  uint32_t st = 0;
  cr_assert_gt(fx_parse_reply(buf, len, &st, NULL, NULL, NULL), 0, "no reply frame (%zu bytes)",
               len);
  cr_assert_eq(st, ACKRPC_RESOURCE_EXHAUSTED, "got status %u", st);
  cr_assert(early, "the refusal came only after the client half-closed");
  cr_assert_eq(fx_handler_calls(), 0);
}

FX_TEST(life, read_timeout_cuts_off_a_stalled_client) {
  ackrpc_server_options o = {.address = fx_sock(), .read_timeout_ms = 300};
  fx_server_start(&o);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  uint8_t *f;
  size_t n = fx_frame_request(&f, FX_ECHO, 0, NULL, 0, &req.base);
  int fd = fx_raw_connect(fx_sock());
  cr_assert_geq(fd, 0);
  uint64_t t0 = fx_now_us();
  cr_assert_eq(fx_raw_send(fd, f, n / 2), 0);
  size_t len = 0;
  int eof = 0;
  uint8_t *buf = fx_raw_read_all(fd, 300 + (uint32_t)(fx_slack_us() / 1000) + 2000, &len, &eof);
  uint64_t dt = fx_now_us() - t0;
  close(fd);
  cr_assert(eof, "the stalled connection was not closed");
  cr_assert_geq(dt, 290000, "cut off after %llu us, before read_timeout_ms", (unsigned long long)dt);
  uint32_t st = 0;
  cr_assert_gt(fx_parse_reply(buf, len, &st, NULL, NULL, NULL), 0, "no reply frame");
  cr_assert_eq(st, ACKRPC_DEADLINE_EXCEEDED, "got status %u", st);
  cr_assert_eq(fx_handler_calls(), 0);
}

FX_TEST(life, client_gone_before_reply) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server *fs = fx_server_start(&o);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  uint8_t *f;
  size_t n = fx_frame_request(&f, FX_ECHO, 10000000, NULL, 0, &req.base);
  int fd = fx_raw_connect(fx_sock());
  cr_assert_geq(fd, 0);
  cr_assert_eq(fx_raw_send(fd, f, n), 0);
  shutdown(fd, SHUT_WR);
  cr_assert_eq(fx_held_wait(1, 5000), 1);
  close(fd);
  fx_sleep_ms(50);
  ackrpc_status rc = fx_held_reply(0, ACKRPC_OK, NULL);
  cr_assert(rc == ACKRPC_OK || rc == ACKRPC_E_ALREADY_ANSWERED,
            "replying to a call whose client left: %s", ackrpc_status_name(rc));
  size_t conns = 99;
  for (int i = 0; i < 200 && (conns = fx_server_connections(fs)) != 0; i++) fx_sleep_ms(5);
  cr_assert_eq(conns, 0, "the dead client's connection is still open");
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE;
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK);
}
