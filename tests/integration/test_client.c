/* test_client.c: what a client reports for each way a call can end, against
 * no server, fake servers playing raw bytes, and a real server: the status,
 * its outcome class, errno, the call id kept for a retry; the asynchronous
 * call's callback contract; misuse of the client API. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "ackrpc/wire.pb-c.h"
#include "fixture.h"

FX_SUITE(client);

static void bind_and_close(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  cr_assert_geq(fd, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  close(fd);
}

static ackrpc_status call_text(ackrpc_client *c, const char *text, ackrpc_result *r) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = (char *)text;
  return fx_echo(c, &req, NULL, r);
}

/* Returns the status of one call against a fake that plays `mode`; the fake
 * in *ret_fake if not NULL. */
static ackrpc_status call_fake(fx_fake_mode mode, const void *reply, size_t len,
                               const ackrpc_client_options *co, ackrpc_result *r,
                               fx_fake **ret_fake) {
  fx_fake *f = fx_fake_start(fx_sock(), mode, reply, len, 8);
  if (ret_fake) *ret_fake = f;
  ackrpc_client_options o = co ? *co : (ackrpc_client_options){.timeout_ms = 5000};
  o.address = fx_sock();
  return call_text(fx_client_opts(&o), "to the fake", r);
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

FX_TEST(client, no_server_is_not_delivered) {
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  uint8_t id[5] = {9, 8, 7, 6, 5};
  ackrpc_call_options co = {.call_id = id, .call_id_len = sizeof id};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result r = {0};
  ackrpc_status st = fx_echo(c, &req, &co, &r);
  cr_assert_eq(st, ACKRPC_E_CONNECT, "got %s", ackrpc_status_name(st));
  cr_assert_eq(r.status, st);
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NOT_DELIVERED);
  cr_assert_eq(r.sys_errno, ENOENT, "sys_errno %d", r.sys_errno);
  cr_assert_null(r.reply);
  cr_assert_eq(r.call_id_len, sizeof id, "the result keeps the call id");
  cr_assert_arr_eq(r.call_id, id, sizeof id);
  ackrpc_result_clear(&r);
}

FX_TEST(client, nobody_listening_is_not_delivered) {
  bind_and_close(fx_sock());
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result r = {0};
  ackrpc_status st = call_text(c, "x", &r);
  cr_assert_eq(st, ACKRPC_E_CONNECT, "got %s", ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NOT_DELIVERED);
  cr_assert_eq(r.sys_errno, ECONNREFUSED, "sys_errno %d", r.sys_errno);
  ackrpc_result_clear(&r);
  unlink(fx_sock());
}

FX_TEST(client, abstract_name_nobody_serves) {
  ackrpc_client *c = fx_client(fx_abstract(), 5000);
  ackrpc_status st = call_text(c, "x", NULL);
  cr_assert_eq(st, ACKRPC_E_CONNECT, "got %s", ackrpc_status_name(st));
}

FX_TEST(client, close_without_reply_is_no_ack) {
  ackrpc_result r = {0};
  ackrpc_client_options co = {.timeout_ms = 4000};
  fx_fake *f;
  ackrpc_status st = call_fake(FX_FAKE_CLOSE, NULL, 0, &co, &r, &f);
  cr_assert_eq(st, ACKRPC_E_NO_ACK, "got %s", ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NO_ACK);

  /* What the fake read is exactly one well-formed request frame, then EOF. */
  size_t len = 0;
  int eof = 0;
  const uint8_t *got = fx_fake_join(f, &len, &eof);
  cr_assert(eof, "the client did not half-close after its request");
  cr_assert_geq(len, 12);
  cr_assert(got[0] == 'A' && got[1] == 'K' && got[2] == 1 && got[3] == 1, "bad prefix");
  uint32_t hl = le32(got + 4), bl = le32(got + 8);
  cr_assert_eq((size_t)12 + hl + bl, len, "frame length %u+%u+12 != %zu bytes sent", hl,
               bl, len);
  Ackrpc__Wire__RequestHead *h = ackrpc__wire__request_head__unpack(NULL, hl, got + 12);
  cr_assert_not_null(h, "the request head does not decode");
  int method_ok = h->method && strcmp(h->method, FX_ECHO) == 0;
  int id_ok = h->call_id.len == r.call_id_len &&
              memcmp(h->call_id.data, r.call_id, r.call_id_len) == 0;
  uint64_t t = h->timeout_us;
  ackrpc__wire__request_head__free_unpacked(h, NULL);
  cr_assert(method_ok, "method on the wire");
  cr_assert(id_ok, "the result's call id is the one on the wire");
  cr_assert(t > 0 && t <= 4000000, "timeout_us %llu for a 4000 ms call",
            (unsigned long long)t);
  Ackrpc__Test__EchoRequest *body =
      ackrpc__test__echo_request__unpack(NULL, bl, got + 12 + hl);
  cr_assert_not_null(body);
  int text_ok = strcmp(body->text, "to the fake") == 0;
  ackrpc__test__echo_request__free_unpacked(body, NULL);
  cr_assert(text_ok, "the body is the request message");
  ackrpc_result_clear(&r);
}

FX_TEST(client, garbage_reply_is_bad_reply) {
  static const char junk[] = "HTTP/1.1 200 OK\r\n\r\nnot an ackrpc frame";
  ackrpc_result r = {0};
  ackrpc_status st = call_fake(FX_FAKE_REPLY, junk, sizeof junk - 1, NULL, &r, NULL);
  cr_assert_eq(st, ACKRPC_E_BAD_REPLY, "got %s", ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NO_ACK);
  cr_assert_null(r.reply);
  ackrpc_result_clear(&r);
}

static size_t big_reply(uint8_t **frame, size_t body_bytes) {
  static uint8_t blob[8192];
  Ackrpc__Test__EchoReply rep = ACKRPC__TEST__ECHO_REPLY__INIT;
  rep.text = "big";
  rep.call_id.data = blob;
  rep.call_id.len = body_bytes < sizeof blob ? body_bytes : sizeof blob;
  return fx_frame_reply(frame, 0, NULL, &rep.base);
}

FX_TEST(client, reply_over_max_reply_size_is_bad_reply) {
  uint8_t *frame;
  size_t n = big_reply(&frame, 4096);
  ackrpc_client_options co = {.timeout_ms = 5000, .max_reply_size = 1024};
  ackrpc_result r = {0};
  ackrpc_status st = call_fake(FX_FAKE_REPLY, frame, n, &co, &r, NULL);
  cr_assert_eq(st, ACKRPC_E_BAD_REPLY, "a %zu-byte reply, max_reply_size 1024: %s", n,
               ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NO_ACK);
  cr_assert_null(r.reply);
  ackrpc_result_clear(&r);
}

FX_TEST(client, same_reply_under_default_limit_is_ok) {
  /* The control for the test above. */
  uint8_t *frame;
  size_t n = big_reply(&frame, 4096);
  ackrpc_result r = {0};
  ackrpc_status st = call_fake(FX_FAKE_REPLY, frame, n, NULL, &r, NULL);
  cr_assert_eq(st, ACKRPC_OK, "got %s", ackrpc_status_name(st));
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
  cr_assert_str_eq(rep->text, "big");
  cr_assert_eq(rep->call_id.len, 4096);
  ackrpc_result_clear(&r);
}

FX_TEST(client, truncated_reply_is_no_ack) {
  uint8_t *frame;
  size_t n = big_reply(&frame, 100);
  ackrpc_result r = {0};
  ackrpc_status st = call_fake(FX_FAKE_REPLY, frame, n - 10, NULL, &r, NULL);
  cr_assert(st == ACKRPC_E_NO_ACK || st == ACKRPC_E_BAD_REPLY, "got %s",
            ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NO_ACK);
  ackrpc_result_clear(&r);
}

FX_TEST(client, server_status_message_and_body) {
  Ackrpc__Test__EchoReply rep = ACKRPC__TEST__ECHO_REPLY__INIT;
  rep.text = "partial";
  uint8_t *frame;
  size_t n = fx_frame_reply(&frame, ACKRPC_NOT_FOUND, "gone away", &rep.base);
  ackrpc_result r = {0};
  ackrpc_status st = call_fake(FX_FAKE_REPLY, frame, n, NULL, &r, NULL);
  cr_assert_eq(st, ACKRPC_NOT_FOUND, "got %s", ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_ACKED);
  cr_assert_str_eq(r.message ? r.message : "(null)", "gone away");
  cr_assert_str_eq(fx_echo_reply(&r)->text, "partial");
  ackrpc_result_clear(&r);
}

FX_TEST(client, newer_status_code_is_acked) {
  uint8_t *frame;
  size_t n = fx_frame_reply(&frame, 42, "from the future", NULL);
  ackrpc_result r = {0};
  ackrpc_status st = call_fake(FX_FAKE_REPLY, frame, n, NULL, &r, NULL);
  cr_assert_eq((int)st, 42, "got %d (%s)", (int)st, ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_ACKED);
  ackrpc_result_clear(&r);
}

FX_TEST(client, local_status_on_the_wire_is_bad_reply) {
  /* 110 is E_NO_ACK locally; a server can never send it. */
  uint8_t *frame;
  size_t n = fx_frame_reply(&frame, 110, NULL, NULL);
  ackrpc_result r = {0};
  ackrpc_status st = call_fake(FX_FAKE_REPLY, frame, n, NULL, &r, NULL);
  cr_assert_eq(st, ACKRPC_E_BAD_REPLY, "got %s", ackrpc_status_name(st));
  ackrpc_result_clear(&r);
}

FX_TEST(client, undecodable_reply_body_is_bad_reply) {
  /* A reply body that is not an EchoReply: field 1 as a varint. */
  Ackrpc__Test__Mismatch m = ACKRPC__TEST__MISMATCH__INIT;
  m.text = 5;
  uint8_t *frame;
  size_t n = fx_frame_reply(&frame, 0, NULL, &m.base);
  ackrpc_result r = {0};
  ackrpc_status st = call_fake(FX_FAKE_REPLY, frame, n, NULL, &r, NULL);
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NO_ACK,
               "an OK reply whose body does not decode: got %s",
               ackrpc_status_name(st));
  cr_assert_null(r.reply);
  ackrpc_result_clear(&r);
}

FX_TEST(client, silent_server_is_ack_timeout) {
  ackrpc_client_options co = {.timeout_ms = 300};
  ackrpc_result r = {0};
  uint64_t t0 = fx_now_us();
  ackrpc_status st = call_fake(FX_FAKE_HOLD, NULL, 0, &co, &r, NULL);
  uint64_t dt = fx_now_us() - t0;
  cr_assert_eq(st, ACKRPC_E_ACK_TIMEOUT, "got %s", ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NO_ACK);
  cr_assert_geq(dt, 299000, "gave up after %llu us", (unsigned long long)dt);
  cr_assert_leq(dt, 300000 + fx_slack_us(), "gave up after %llu us",
                (unsigned long long)dt);
  ackrpc_result_clear(&r);
}

FX_TEST(client, unread_large_request_is_send_timeout) {
  fx_fake_start(fx_sock(), FX_FAKE_NO_READ, NULL, 0, 8);
  ackrpc_client *c = fx_client(fx_sock(), 300);
  size_t n = 3 * 1024 * 1024;
  uint8_t *blob = calloc(1, n);
  cr_assert_not_null(blob);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.blob.data = blob;
  req.blob.len = n;
  ackrpc_result r = {0};
  uint64_t t0 = fx_now_us();
  ackrpc_status st = fx_echo(c, &req, NULL, &r);
  uint64_t dt = fx_now_us() - t0;
  free(blob);
  cr_assert_eq(st, ACKRPC_E_SEND_TIMEOUT, "got %s", ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NOT_DELIVERED);
  cr_assert_leq(dt, 300000 + fx_slack_us(), "gave up after %llu us",
                (unsigned long long)dt);
  ackrpc_result_clear(&r);
}

FX_TEST(client, full_backlog_is_busy) {
  fx_fake *f = fx_fake_start(fx_sock(), FX_FAKE_NO_ACCEPT, NULL, 0, 0);
  (void)f;
  int fds[64];
  int n = 0, busy = 0;
  for (; n < 64; n++) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", fx_sock());
    fds[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert_geq(fds[n], 0);
    if (connect(fds[n], (struct sockaddr *)&sa, sizeof sa) != 0) {
      busy = errno == EAGAIN;
      close(fds[n]);
      break;
    }
  }
  ackrpc_status st = ACKRPC_OK;
  if (busy) st = call_text(fx_client(fx_sock(), 2000), "x", NULL);
  for (int i = 0; i < n; i++)
    close(fds[i]);
  cr_assert(busy, "could not fill the listen queue with %d connections", n);
  cr_assert_eq(st, ACKRPC_E_BUSY, "got %s", ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NOT_DELIVERED);
}

FX_TEST(client, invalid_calls_send_nothing) {
  ackrpc_server_options so = {.address = fx_sock()};
  fx_server_start(&so);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result r = {0};
  cr_assert_eq(ackrpc_client_call(NULL, &fx_echo_method, &req.base, NULL, &r),
               ACKRPC_E_INVAL);
  ackrpc_result_clear(&r);
  cr_assert_eq(ackrpc_client_call(c, NULL, &req.base, NULL, &r), ACKRPC_E_INVAL);
  ackrpc_result_clear(&r);

  uint8_t id[ACKRPC_MAX_CALL_ID + 1] = {0};
  ackrpc_call_options long_id = {.call_id = id, .call_id_len = sizeof id};
  ackrpc_status st = fx_echo(c, &req, &long_id, &r);
  cr_assert_eq(st, ACKRPC_E_INVAL, "a 65-byte call id: %s", ackrpc_status_name(st));
  cr_assert_eq(ackrpc_status_outcome(st), ACKRPC_OUTCOME_NOT_DELIVERED);
  ackrpc_result_clear(&r);

  static ackrpc_metadata many[ACKRPC_MAX_METADATA + 1];
  for (size_t i = 0; i < ACKRPC_MAX_METADATA + 1; i++)
    many[i] = (ackrpc_metadata){"k", "v", 1};
  ackrpc_call_options too_many = {.metadata = many,
                                  .metadata_count = ACKRPC_MAX_METADATA + 1};
  cr_assert_eq(fx_echo(c, &req, &too_many, &r), ACKRPC_E_INVAL, "65 metadata entries");
  ackrpc_result_clear(&r);

  const char *bad_keys[] = {"Upper", "", "sp ace", "slash/"};
  for (size_t i = 0; i < 4; i++) {
    ackrpc_metadata md = {bad_keys[i], "v", 1};
    ackrpc_call_options co = {.metadata = &md, .metadata_count = 1};
    st = fx_echo(c, &req, &co, &r);
    cr_assert_eq(st, ACKRPC_E_INVAL, "metadata key \"%s\": %s", bad_keys[i],
                 ackrpc_status_name(st));
    ackrpc_result_clear(&r);
  }
  static uint8_t big[ACKRPC_MAX_METADATA_VALUE + 1];
  ackrpc_metadata md = {"big", big, sizeof big};
  ackrpc_call_options co = {.metadata = &md, .metadata_count = 1};
  cr_assert_eq(fx_echo(c, &req, &co, &r), ACKRPC_E_INVAL, "a 4097-byte metadata value");
  ackrpc_result_clear(&r);

  cr_assert_eq(fx_handler_calls(), 0, "an invalid call reached the server");
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK, "the control call");
}

FX_TEST(client, new_rejects_bad_arguments) {
  ackrpc_client *c = (ackrpc_client *)0x1;
  ackrpc_client_options o = {.address = fx_sock()};
  cr_assert_eq(ackrpc_client_new(NULL, &c), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_client_new(&o, NULL), ACKRPC_E_INVAL);
  ackrpc_client_options none = {0};
  cr_assert_eq(ackrpc_client_new(&none, &c), ACKRPC_E_INVAL);
  cr_assert_eq(c, (ackrpc_client *)0x1, "*ret_client touched on failure");
  cr_assert_null(ackrpc_client_free(NULL));
  ackrpc_result_clear(NULL);
  ackrpc_result zero = {0};
  ackrpc_result_clear(&zero);
}

/* --- Asynchronous calls --- */

struct async_call {
  struct event_base *base;
  int in_start; /* set while ackrpc_client_call_async runs */
  int done;
  int inside; /* the callback ran inside ackrpc_client_call_async */
  int wrong_thread;
  pthread_t loop_thread;
  ackrpc_status status;
  ProtobufCMessage *reply; /* taken from the result */
  char *message;           /* taken from the result */
  int pending;             /* calls not yet done (for loopexit) */
};

static void async_done(ackrpc_result *r, void *user) {
  struct async_call *a = user;
  a->done++;
  if (a->in_start) a->inside = 1;
  if (!pthread_equal(pthread_self(), a->loop_thread)) a->wrong_thread = 1;
  a->status = r->status;
  if (!a->reply) {
    a->reply = r->reply; /* the documented way to keep it */
    r->reply = NULL;
  }
  if (!a->message) {
    a->message = r->message;
    r->message = NULL;
  }
  if (--a->pending <= 0) event_base_loopexit(a->base, NULL);
}

static ackrpc_status start_async(ackrpc_client *c, struct async_call *a,
                                 const ackrpc_method *m, const char *text,
                                 const ackrpc_call_options *co) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = (char *)text;
  a->in_start = 1;
  a->pending++;
  ackrpc_status st =
      ackrpc_client_call_async(c, a->base, m, &req.base, co, async_done, a);
  a->in_start = 0;
  if (st != ACKRPC_OK) a->pending--;
  return st;
}

static void run_loop(struct event_base *base, int ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  event_base_loopexit(base, &tv);
  event_base_dispatch(base);
}

static void async_clear(struct async_call *a) {
  if (a->reply) protobuf_c_message_free_unpacked(a->reply, NULL);
  a->reply = NULL;
  free(a->message);
  a->message = NULL;
}

FX_TEST(client, async_success_calls_back_once) {
  ackrpc_server_options so = {.address = fx_sock()};
  fx_server_start(&so);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  struct async_call a = {.base = event_base_new(), .loop_thread = pthread_self()};
  cr_assert_not_null(a.base);
  cr_assert_eq(start_async(c, &a, &fx_echo_method, "async hello", NULL), ACKRPC_OK);
  cr_assert_eq(a.done, 0, "the callback ran inside ackrpc_client_call_async");
  run_loop(a.base, 10000);
  cr_assert_eq(a.done, 1, "the callback ran %d times", a.done);
  run_loop(a.base, 100); /* and never again */
  cr_assert_eq(a.done, 1, "the callback ran %d times", a.done);
  cr_assert(!a.inside);
  cr_assert(!a.wrong_thread, "the callback ran off the loop's thread");
  cr_assert_eq(a.status, ACKRPC_OK, "%s", ackrpc_status_name(a.status));
  cr_assert_not_null(a.reply);
  cr_assert_eq(a.reply->descriptor, &ackrpc__test__echo_reply__descriptor);
  cr_assert_str_eq(((Ackrpc__Test__EchoReply *)a.reply)->text, "async hello");
  async_clear(&a);
  event_base_free(a.base);
}

FX_TEST(client, async_no_server_reports_in_callback) {
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  struct async_call a = {.base = event_base_new(), .loop_thread = pthread_self()};
  cr_assert_not_null(a.base);
  cr_assert_eq(start_async(c, &a, &fx_echo_method, "x", NULL), ACKRPC_OK,
               "a connect failure is reported by the callback, not the return value");
  cr_assert_eq(a.done, 0, "the callback ran inside ackrpc_client_call_async");
  run_loop(a.base, 10000);
  cr_assert_eq(a.done, 1, "the callback ran %d times", a.done);
  cr_assert(!a.inside);
  cr_assert_eq(a.status, ACKRPC_E_CONNECT, "%s", ackrpc_status_name(a.status));
  cr_assert_null(a.reply);
  async_clear(&a);
  event_base_free(a.base);
}

FX_TEST(client, async_error_never_calls_back) {
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  struct async_call a = {.base = event_base_new(), .loop_thread = pthread_self()};
  cr_assert_not_null(a.base);
  cr_assert_eq(start_async(c, &a, NULL, "x", NULL), ACKRPC_E_INVAL);
  uint8_t id[ACKRPC_MAX_CALL_ID + 1] = {0};
  ackrpc_call_options co = {.call_id = id, .call_id_len = sizeof id};
  cr_assert_eq(start_async(c, &a, &fx_echo_method, "x", &co), ACKRPC_E_INVAL);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  cr_assert_eq(ackrpc_client_call_async(NULL, a.base, &fx_echo_method, &req.base, NULL,
                                        async_done, &a),
               ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_client_call_async(c, NULL, &fx_echo_method, &req.base, NULL,
                                        async_done, &a),
               ACKRPC_E_INVAL);
  cr_assert_eq(
      ackrpc_client_call_async(c, a.base, &fx_echo_method, &req.base, NULL, NULL, &a),
      ACKRPC_E_INVAL);
  run_loop(a.base, 100);
  cr_assert_eq(a.done, 0, "a call that returned an error called back");
  event_base_free(a.base);
}

FX_TEST(client, async_many_in_flight) {
  ackrpc_server_options so = {.address = fx_sock()};
  fx_server_start(&so);
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  struct event_base *base = event_base_new();
  cr_assert_not_null(base);
  enum { N = 20 };
  static struct async_call a[N];
  int pending = N;
  char text[N][16];
  for (int i = 0; i < N; i++) {
    a[i] =
        (struct async_call){.base = base, .loop_thread = pthread_self(), .pending = 0};
    snprintf(text[i], sizeof text[i], "call %d", i);
    cr_assert_eq(start_async(c, &a[i], &fx_echo_method, text[i], NULL), ACKRPC_OK);
    a[i].pending = 1000; /* no loopexit from one call */
  }
  uint64_t end = fx_now_us() + 10000000 + fx_slack_us();
  while (pending > 0 && fx_now_us() < end) {
    event_base_loop(base, EVLOOP_ONCE);
    pending = 0;
    for (int i = 0; i < N; i++)
      pending += a[i].done == 0;
  }
  for (int i = 0; i < N; i++) {
    cr_assert_eq(a[i].done, 1, "call %d: callback ran %d times", i, a[i].done);
    cr_assert_eq(a[i].status, ACKRPC_OK, "call %d: %s", i,
                 ackrpc_status_name(a[i].status));
    cr_assert_not_null(a[i].reply);
    cr_assert_str_eq(((Ackrpc__Test__EchoReply *)a[i].reply)->text, text[i],
                     "call %d got another call's reply", i);
    async_clear(&a[i]);
  }
  event_base_free(base);
}

FX_TEST(client, async_ack_timeout) {
  fx_fake_start(fx_sock(), FX_FAKE_HOLD, NULL, 0, 8);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  struct async_call a = {.base = event_base_new(), .loop_thread = pthread_self()};
  cr_assert_not_null(a.base);
  ackrpc_call_options co = {.timeout_ms = 200};
  uint64_t t0 = fx_now_us();
  cr_assert_eq(start_async(c, &a, &fx_echo_method, "x", &co), ACKRPC_OK);
  run_loop(a.base, 10000);
  uint64_t dt = fx_now_us() - t0;
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, ACKRPC_E_ACK_TIMEOUT, "%s", ackrpc_status_name(a.status));
  cr_assert_geq(dt, 199000);
  cr_assert_leq(dt, 200000 + fx_slack_us());
  async_clear(&a);
  event_base_free(a.base);
}

FX_TEST(client, async_survives_client_free) {
  ackrpc_server_options so = {.address = fx_sock()};
  fx_server_start(&so);
  ackrpc_client_options o = {.address = fx_sock(), .timeout_ms = 5000};
  ackrpc_client *c = NULL;
  cr_assert_eq(ackrpc_client_new(&o, &c), ACKRPC_OK);
  struct async_call a = {.base = event_base_new(), .loop_thread = pthread_self()};
  cr_assert_not_null(a.base);
  cr_assert_eq(start_async(c, &a, &fx_echo_method, "orphan", NULL), ACKRPC_OK);
  cr_assert_null(ackrpc_client_free(c), "free returns NULL");
  run_loop(a.base, 10000);
  cr_assert_eq(a.done, 1);
  cr_assert_eq(a.status, ACKRPC_OK, "%s", ackrpc_status_name(a.status));
  cr_assert_str_eq(((Ackrpc__Test__EchoReply *)a.reply)->text, "orphan");
  async_clear(&a);
  event_base_free(a.base);
}

/* --- the runtime of generated stubs --- */

FX_TEST(client, stub_call_hands_over_the_reply) {
  ackrpc_server_options so = {.address = fx_sock()};
  fx_server_start(&so);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "stub";
  ProtobufCMessage *reply = NULL;
  ackrpc_result r = {0};
  ackrpc_status st = ackrpc_stub_call(c, &fx_echo_method, &req.base, &reply, NULL, &r);
  cr_assert_eq(st, ACKRPC_OK, "%s", ackrpc_status_name(st));
  cr_assert_not_null(reply, "the reply was not handed over");
  cr_assert_null(r.reply, "the result still owns the reply it handed over");
  cr_assert_str_eq(((Ackrpc__Test__EchoReply *)reply)->text, "stub");
  protobuf_c_message_free_unpacked(reply, NULL);
  ackrpc_result_clear(&r);
  /* A failed call leaves *ret_reply as it was. */
  ackrpc_client *none = fx_client(fx_path("nobody.sock"), 1000);
  reply = (ProtobufCMessage *)&req;
  st = ackrpc_stub_call(none, &fx_echo_method, &req.base, &reply, NULL, NULL);
  cr_assert_eq(st, ACKRPC_E_CONNECT, "%s", ackrpc_status_name(st));
  cr_assert_eq(reply, (ProtobufCMessage *)&req, "*ret_reply changed on failure");
}

typedef void (*echo_done_fn)(ackrpc_status status, Ackrpc__Test__EchoReply *reply,
                             struct async_call *a);

static void typed_echo_done(ackrpc_status status, Ackrpc__Test__EchoReply *reply,
                            struct async_call *a) {
  a->done++;
  a->status = status;
  a->message = reply ? strdup(reply->text) : NULL;
  if (--a->pending <= 0) event_base_loopexit(a->base, NULL);
}

static void echo_adapter(ackrpc_result *r, ackrpc_stub_fn done, void *user) {
  ((echo_done_fn)done)(r->status, (Ackrpc__Test__EchoReply *)r->reply, user);
}

FX_TEST(client, stub_call_async_runs_the_adapter_once) {
  ackrpc_server_options so = {.address = fx_sock()};
  fx_server_start(&so);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  struct async_call a = {.base = event_base_new(), .loop_thread = pthread_self()};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "typed";
  cr_assert_eq(ackrpc_stub_call_async(c, a.base, &fx_echo_method, &req.base, NULL, NULL,
                                      (ackrpc_stub_fn)typed_echo_done, &a),
               ACKRPC_E_INVAL, "a NULL adapter is refused");
  cr_assert_eq(ackrpc_stub_call_async(c, a.base, &fx_echo_method, &req.base, NULL,
                                      echo_adapter, NULL, &a),
               ACKRPC_E_INVAL, "a NULL done is refused");
  a.pending = 1;
  cr_assert_eq(ackrpc_stub_call_async(c, a.base, &fx_echo_method, &req.base, NULL,
                                      echo_adapter, (ackrpc_stub_fn)typed_echo_done,
                                      &a),
               ACKRPC_OK);
  cr_assert_eq(a.done, 0, "the adapter ran inside ackrpc_stub_call_async");
  run_loop(a.base, 10000);
  run_loop(a.base, 100);
  cr_assert_eq(a.done, 1, "the adapter ran %d times", a.done);
  cr_assert_eq(a.status, ACKRPC_OK, "%s", ackrpc_status_name(a.status));
  cr_assert_not_null(a.message);
  cr_assert_str_eq(a.message, "typed");
  async_clear(&a);
  event_base_free(a.base);
}
