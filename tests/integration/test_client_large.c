/* test_client_large.c: blocking calls with large request bodies, which the
 * client sends from the caller's memory in pieces (sendmsg) rather than
 * copying them into one frame: one-shot calls, sessions, pooled calls and
 * raw calls are acked and the server sees exactly the bytes sent; a send
 * that stalls in the middle of the body still ends in E_SEND_TIMEOUT at the
 * deadline, saying how far it got. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

FX_SUITE(large);

#define MIB (1024u * 1024u)

/* A body whose bytes differ from one position and seed to the next. */
static uint8_t *pattern(size_t n, unsigned seed) {
  uint8_t *p = malloc(n);
  cr_assert_not_null(p);
  uint32_t x = 0x9e3779b9u ^ seed;
  for (size_t i = 0; i < n; i++) {
    x = x * 1664525u + 1013904223u;
    p[i] = (uint8_t)(x >> 24);
  }
  return p;
}

/* --- a server whose handler compares what it received with what the test
 * sent (the same process: the test's buffers) --- */

typedef struct checker {
  ackrpc_server *srv;
  pthread_t thread;
  const uint8_t *blob; /* expected request.blob */
  size_t blob_len;
  const char *text; /* expected request.text */
} checker;

static void check_handler(ackrpc_call *call, const ProtobufCMessage *request,
                          void *user) {
  checker *k = user;
  const Ackrpc__Test__EchoRequest *req = (const Ackrpc__Test__EchoRequest *)request;
  char why[128] = "";
  if (req->blob.len != k->blob_len) {
    snprintf(why, sizeof why, "blob of %zu bytes, %zu expected", req->blob.len,
             k->blob_len);
  } else if (k->blob_len && memcmp(req->blob.data, k->blob, k->blob_len) != 0) {
    size_t i = 0;
    while (req->blob.data[i] == k->blob[i])
      i++;
    snprintf(why, sizeof why, "blob differs at byte %zu", i);
  } else if (strcmp(req->text, k->text) != 0) {
    snprintf(why, sizeof why, "text differs");
  }
  if (why[0]) {
    ackrpc_call_reply(call, ACKRPC_DATA_LOSS, why, NULL);
    return;
  }
  Ackrpc__Test__EchoReply reply = ACKRPC__TEST__ECHO_REPLY__INIT;
  reply.blob_len = (uint32_t)req->blob.len;
  reply.text = "same";
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

static void *checker_main(void *arg) {
  checker *k = arg;
  ackrpc_server_run(k->srv);
  return NULL;
}

/* read_timeout_ms: how long the server keeps an idle session (0: default). */
static void checker_start(checker *k, uint32_t read_timeout_ms) {
  memset(k, 0, sizeof *k);
  ackrpc_server_options o = {.address = fx_sock(),
                             .max_request_size = 8 * MIB,
                             .read_timeout_ms = read_timeout_ms,
                             .log = ackrpc_log_discard};
  cr_assert_eq(ackrpc_server_new(&o, &k->srv), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(k->srv, &fx_echo_method, check_handler, k),
               ACKRPC_OK);
  cr_assert_eq(pthread_create(&k->thread, NULL, checker_main, k), 0);
}

static void checker_stop(checker *k) {
  ackrpc_server_stop(k->srv);
  pthread_join(k->thread, NULL);
  k->srv = ackrpc_server_free(k->srv);
}

/* The request the checker expects next: `blob` (not copied) with a text
 * large enough to be sent in place too. */
static void expect(checker *k, Ackrpc__Test__EchoRequest *req, const uint8_t *blob,
                   size_t len, const char *text) {
  ackrpc__test__echo_request__init(req);
  req->blob.data = (uint8_t *)blob;
  req->blob.len = len;
  req->text = (char *)text;
  k->blob = blob;
  k->blob_len = len;
  k->text = text;
}

static void assert_same(ackrpc_status st, ackrpc_result *r, size_t len,
                        const char *what) {
  cr_assert_eq(st, ACKRPC_OK, "%s, %zu bytes: %s (%s)", what, len,
               ackrpc_status_name(st), r->message ? r->message : "");
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(r);
  cr_assert_str_eq(rep->text, "same");
  cr_assert_eq(rep->blob_len, len);
  ackrpc_result_clear(r);
}

static char *long_text(size_t n) {
  char *s = malloc(n + 1);
  cr_assert_not_null(s);
  for (size_t i = 0; i < n; i++)
    s[i] = (char)('A' + i % 26);
  s[n] = 0;
  return s;
}

static const size_t SIZES[] = {1 * MIB, 5 * MIB};

FX_TEST(large, one_shot_calls_send_the_same_bytes) {
  checker k;
  checker_start(&k, 0);
  ackrpc_client *c = fx_client(fx_sock(), 30000);
  char *text = long_text(40 * 1024);
  for (size_t i = 0; i < 2; i++) {
    uint8_t *blob = pattern(SIZES[i], (unsigned)i);
    Ackrpc__Test__EchoRequest req;
    expect(&k, &req, blob, SIZES[i], text);
    ackrpc_result r = {0};
    ackrpc_status st = fx_echo(c, &req, NULL, &r);
    assert_same(st, &r, SIZES[i], "one-shot");
    /* The request is left as it was. */
    cr_assert_eq(req.blob.data, blob);
    cr_assert_eq(req.blob.len, SIZES[i]);
    free(blob);
  }
  /* Small after large: the one-buffer path. */
  uint8_t small[100] = {1, 2, 3};
  Ackrpc__Test__EchoRequest req;
  expect(&k, &req, small, sizeof small, "small");
  ackrpc_result r = {0};
  assert_same(fx_echo(c, &req, NULL, &r), &r, sizeof small, "one-shot");
  free(text);
  checker_stop(&k);
}

FX_TEST(large, session_calls_send_the_same_bytes) {
  checker k;
  checker_start(&k, 0);
  ackrpc_client *c = fx_client(fx_sock(), 30000);
  ackrpc_session *s = NULL;
  cr_assert_eq(ackrpc_session_open(c, 0, &s), ACKRPC_OK);
  uint8_t small[10] = {9};
  for (size_t i = 0; i < 2; i++) {
    uint8_t *blob = pattern(SIZES[i], 10 + (unsigned)i);
    Ackrpc__Test__EchoRequest req;
    expect(&k, &req, blob, SIZES[i], "session");
    ackrpc_result r = {0};
    ackrpc_status st = ackrpc_session_call(s, &fx_echo_method, &req.base, NULL, &r);
    assert_same(st, &r, SIZES[i], "session");
    free(blob);
    /* The next frame on the connection starts where the pieces ended. */
    expect(&k, &req, small, sizeof small, "then small");
    st = ackrpc_session_call(s, &fx_echo_method, &req.base, NULL, &r);
    assert_same(st, &r, sizeof small, "session, small");
  }
  ackrpc_session_close(s);
  checker_stop(&k);
}

FX_TEST(large, pooled_and_raw_calls_send_the_same_bytes) {
  checker k;
  checker_start(&k, 0);
  ackrpc_client *c =
      fx_client_opts(&(ackrpc_client_options){.address = fx_sock(), .pool_size = 1});
  uint8_t *blob = pattern(3 * MIB, 20);
  Ackrpc__Test__EchoRequest req;
  expect(&k, &req, blob, 3 * MIB, "pooled");
  for (int i = 0; i < 2; i++) {
    ackrpc_result r = {0};
    assert_same(fx_echo(c, &req, NULL, &r), &r, 3 * MIB, "pooled");
  }
  /* A raw call: the serialized body is sent where it is. */
  expect(&k, &req, blob, 3 * MIB, "raw");
  size_t n = protobuf_c_message_get_packed_size(&req.base);
  uint8_t *body = malloc(n);
  cr_assert_not_null(body);
  protobuf_c_message_pack(&req.base, body);
  ackrpc_result r = {0};
  ackrpc_status st = ackrpc_client_call_raw(c, FX_ECHO, body, n, NULL, &r);
  cr_assert_eq(st, ACKRPC_OK, "raw: %s (%s)", ackrpc_status_name(st),
               r.message ? r.message : "");
  Ackrpc__Test__EchoReply *rep =
      ackrpc__test__echo_reply__unpack(NULL, r.reply_bytes_len, r.reply_bytes);
  cr_assert_not_null(rep);
  cr_assert_str_eq(rep->text, "same");
  ackrpc__test__echo_reply__free_unpacked(rep, NULL);
  ackrpc_result_clear(&r);
  free(body);
  free(blob);
  checker_stop(&k);
}

FX_TEST(large, session_sends_a_large_frame_again_after_the_server_ended_it) {
  checker k;
  /* Idle sessions are closed after 1 s. The same limit bounds the first
   * frame's arrival from accept: a shorter one could cut off a 2 MiB frame
   * on a loaded machine under ASan. */
  checker_start(&k, 1000);
  ackrpc_client *c = fx_client(fx_sock(), 30000);
  uint8_t *blob = pattern(2 * MIB, 40);
  ackrpc_session *s = NULL;
  cr_assert_eq(ackrpc_session_open(c, 0, &s), ACKRPC_OK);
  Ackrpc__Test__EchoRequest req;
  expect(&k, &req, blob, 2 * MIB, "first");
  ackrpc_result r = {0};
  assert_same(ackrpc_session_call(s, &fx_echo_method, &req.base, NULL, &r), &r, 2 * MIB,
              "session");
  fx_sleep_ms(1600); /* the server drops the idle connection */
  /* The first send fails at once (EPIPE): the same pieces go again, whole,
   * on a new connection. */
  expect(&k, &req, blob, 2 * MIB, "second");
  assert_same(ackrpc_session_call(s, &fx_echo_method, &req.base, NULL, &r), &r, 2 * MIB,
              "session, reconnected");
  ackrpc_session_close(s);
  free(blob);
  checker_stop(&k);
}

/* "N of M bytes sent": N must be inside the body, M the frame's size. */
static void assert_stalled_in_body(const ackrpc_result *r, size_t body_len) {
  size_t sent = 0, total = 0;
  cr_assert_not_null(r->message);
  cr_assert_eq(sscanf(r->message, "%zu of %zu bytes sent", &sent, &total), 2,
               "message: %s", r->message);
  cr_assert_gt(total, body_len, "%s", r->message);
  cr_assert_lt(total, body_len + 200, "%s", r->message);
  cr_assert_gt(sent, 0, "some of the frame went into the socket: %s", r->message);
  cr_assert_lt(sent, total, "%s", r->message);
}

FX_TEST(large, stalled_send_is_send_timeout) {
  fx_fake *f = fx_fake_start(fx_sock(), FX_FAKE_NO_READ, NULL, 0, 8);
  ackrpc_client *c = fx_client(fx_sock(), 300);
  size_t n = 5 * MIB;
  uint8_t *blob = pattern(n, 30);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.blob.data = blob;
  req.blob.len = n;
  ackrpc_result r = {0};
  uint64_t t0 = fx_now_us();
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  uint64_t dt = fx_now_us() - t0;
  cr_assert_eq(st, ACKRPC_E_SEND_TIMEOUT, "got %s (%s)", ackrpc_status_name(st),
               r.message ? r.message : "");
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NOT_DELIVERED);
  cr_assert_geq(dt, 299000, "gave up after %llu us", (unsigned long long)dt);
  cr_assert_leq(dt, 300000 + fx_slack_us(), "gave up after %llu us",
                (unsigned long long)dt);
  assert_stalled_in_body(&r, n);
  ackrpc_result_clear(&r);
  size_t got;
  int eof;
  fx_fake_join(f, &got, &eof);
  free(blob);
}

FX_TEST(large, stalled_session_send_is_send_timeout) {
  fx_fake *f = fx_fake_start(fx_sock(), FX_FAKE_NO_READ, NULL, 0, 8);
  ackrpc_client *c = fx_client(fx_sock(), 300);
  ackrpc_session *s = NULL;
  cr_assert_eq(ackrpc_session_open(c, 0, &s), ACKRPC_OK);
  size_t n = 5 * MIB;
  uint8_t *blob = pattern(n, 31);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.blob.data = blob;
  req.blob.len = n;
  ackrpc_result r = {0};
  uint64_t t0 = fx_now_us();
  ackrpc_status st = ackrpc_session_call(s, &fx_echo_method, &req.base, NULL, &r);
  uint64_t dt = fx_now_us() - t0;
  cr_assert_eq(st, ACKRPC_E_SEND_TIMEOUT, "got %s (%s)", ackrpc_status_name(st),
               r.message ? r.message : "");
  cr_assert_leq(dt, 300000 + fx_slack_us(), "gave up after %llu us",
                (unsigned long long)dt);
  assert_stalled_in_body(&r, n);
  ackrpc_result_clear(&r);
  ackrpc_session_close(s);
  size_t got;
  int eof;
  fx_fake_join(f, &got, &eof);
  free(blob);
}
