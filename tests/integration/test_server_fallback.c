/* test_server_fallback.c: ackrpc_server_set_fallback(), the handler for
 * methods that are not registered (the import side of ackrpc-nats): it gets
 * the method's name and the body as sent, answers with an encoded reply,
 * and leaves registered methods to their own handlers. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

FX_SUITE(fallback);

#define ELSEWHERE "other.pkg.Remote/Do"

/* What the fallback saw of its last call (read after the call returns). */
static struct {
  char method[ACKRPC_MAX_METHOD_NAME + 1];
  uint8_t body[64];
  size_t body_len;
  uint8_t call_id[ACKRPC_MAX_CALL_ID];
  size_t call_id_len;
  char md[64];
  unsigned calls;
} seen;

/* Calls the deferred fallback holds (at most 8 a test). */
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static struct held_call {
  ackrpc_call *call;
  const uint8_t *body;
  size_t len;
} held[8];
static pthread_t held_threads[8];
static size_t n_held;

/* Answers "re:" + body with status FAILED_PRECONDITION for a body that
 * starts with "fail", else OK. */
static void answer(ackrpc_call *call, const uint8_t *body, size_t len) {
  uint8_t out[80];
  memcpy(out, "re:", 3);
  if (len) memcpy(out + 3, body, len);
  int fail = len >= 4 && memcmp(body, "fail", 4) == 0;
  ackrpc_call_reply_encoded(call, fail ? ACKRPC_FAILED_PRECONDITION : ACKRPC_OK,
                            fail ? "refused by the fallback" : NULL, out, len + 3);
}

static void fallback_inline(ackrpc_call *call, const uint8_t *body, size_t len,
                            void *user) {
  (void)user;
  seen.calls++;
  snprintf(seen.method, sizeof seen.method, "%s", ackrpc_call_method(call));
  seen.body_len = len < sizeof seen.body ? len : sizeof seen.body;
  if (len) memcpy(seen.body, body, seen.body_len);
  const uint8_t *id = ackrpc_call_id(call, &seen.call_id_len);
  memcpy(seen.call_id, id, seen.call_id_len);
  size_t vlen = 0;
  const uint8_t *v = ackrpc_call_metadata(call, "k", &vlen);
  snprintf(seen.md, sizeof seen.md, "%.*s", v ? (int)vlen : 0,
           v ? (const char *)v : "");
  answer(call, body, len);
}

/* Echoes the body from another thread, 100 ms after the handler
 * returned: the body must still be the call's by then. */
static void *reply_later(void *arg) {
  ackrpc_call *call = arg;
  fx_sleep_ms(100);
  size_t len = 0;
  const uint8_t *body = NULL;
  /* The handler passed these; kept in the call's user-visible slots. */
  pthread_mutex_lock(&held_mu);
  for (size_t i = 0; i < n_held; i++)
    if (held[i].call == call) body = held[i].body, len = held[i].len;
  pthread_mutex_unlock(&held_mu);
  ackrpc_call_reply_encoded(call, ACKRPC_OK, NULL, body, len);
  return NULL;
}

static atomic_int saw_memfd; /* a deferred call's body came in a memfd */

static void fallback_deferred(ackrpc_call *call, const uint8_t *body, size_t len,
                              void *user) {
  (void)user;
  size_t n = 0;
  if (ackrpc_call_body_in_memfd(call) && ackrpc_call_request_body(call, &n) == body &&
      n == len)
    saw_memfd = 1;
  pthread_mutex_lock(&held_mu);
  size_t i = n_held < 8 ? n_held++ : 8;
  if (i < 8) held[i] = (struct held_call){call, body, len};
  pthread_mutex_unlock(&held_mu);
  if (i == 8 || pthread_create(&held_threads[i], NULL, reply_later, call) != 0)
    ackrpc_call_reply_encoded(call, ACKRPC_INTERNAL, "no thread", NULL, 0);
}

/* A typed reply is refused: the fallback has no reply type. */
static void fallback_typed(ackrpc_call *call, const uint8_t *body, size_t len,
                           void *user) {
  (void)body, (void)len, (void)user;
  Ackrpc__Test__EchoReply r = ACKRPC__TEST__ECHO_REPLY__INIT;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &r.base);
}

/* Sets the fallback `user` points to (a NULL one: none). */
static void set_fallback(ackrpc_server *s, void *user) {
  ackrpc_fallback_fn fn = *(ackrpc_fallback_fn *)user;
  if (fn) cr_assert_eq(ackrpc_server_set_fallback(s, fn, NULL), ACKRPC_OK);
}

/* A fixture server (its Echo registered) with fallback fn. */
static fx_server *start(ackrpc_fallback_fn fn) {
  return fx_server_start_setup(&(ackrpc_server_options){.address = fx_sock()},
                               set_fallback, &fn);
}

static ackrpc_status raw(ackrpc_client *c, const char *method, const char *body,
                         ackrpc_result *res) {
  static const ackrpc_metadata md[] = {
      {.key = "k", .value = (const uint8_t *)"v1", .value_len = 2}};
  ackrpc_call_options o = {.call_id = (const uint8_t *)"id-7",
                           .call_id_len = 4,
                           .metadata = md,
                           .metadata_count = 1};
  return ackrpc_client_call_raw(c, method, (const uint8_t *)body, strlen(body), &o,
                                res);
}

FX_TEST(fallback, unknown_methods_reach_it_with_name_body_id_and_metadata) {
  fx_server *r = start(fallback_inline);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result res = {0};
  cr_assert_eq(raw(c, ELSEWHERE, "hello", &res), ACKRPC_OK, "%s",
               res.message ? res.message : "");
  cr_assert_eq(res.reply_bytes_len, 8);
  cr_assert_arr_eq(res.reply_bytes, "re:hello", 8);
  cr_assert_str_eq(seen.method, ELSEWHERE);
  cr_assert_eq(seen.body_len, 5);
  cr_assert_arr_eq(seen.body, "hello", 5);
  cr_assert_eq(seen.call_id_len, 4);
  cr_assert_arr_eq(seen.call_id, "id-7", 4);
  cr_assert_str_eq(seen.md, "v1");
  ackrpc_result_clear(&res);

  /* A status and message come back as the fallback gave them. */
  cr_assert_eq(raw(c, "a.B/C", "fail now", &res), ACKRPC_FAILED_PRECONDITION);
  cr_assert_str_eq(res.message, "refused by the fallback");
  cr_assert_eq(res.reply_bytes_len, 11);
  ackrpc_result_clear(&res);

  /* An empty body is NULL, 0. */
  cr_assert_eq(raw(c, "a.B/C", "", &res), ACKRPC_OK);
  cr_assert_eq(seen.body_len, 0);
  ackrpc_result_clear(&res);

  /* A registered method keeps its handler. */
  unsigned before = seen.calls;
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "typed";
  cr_assert_eq(fx_echo(c, &req, NULL, &res), ACKRPC_OK);
  cr_assert_str_eq(fx_echo_reply(&res)->text, "typed");
  cr_assert_eq(seen.calls, before, "the echo call did not reach the fallback");
  ackrpc_result_clear(&res);
  fx_server_stop(r);
}

/* A large call in one thread. */
typedef struct big_call {
  ackrpc_client *client;
  uint8_t *body;
  size_t len;
  ackrpc_status st;
  ackrpc_result res;
} big_call;

static void *call_big(void *arg) {
  big_call *b = arg;
  b->st = ackrpc_client_call_raw(b->client, ELSEWHERE, b->body, b->len, NULL, &b->res);
  return NULL;
}

FX_TEST(fallback, body_lives_until_the_call_is_answered) {
  fx_server *r = start(fallback_deferred);
  /* Bodies over the spare store's threshold: while a call waits for its
   * handler, the server gives its input buffer back to the spare store,
   * and the next connection's frame lands in it. Each reply must still be
   * its own request's bytes. */
  enum { N = 3, LEN = 600 << 10 };
  big_call b[N];
  pthread_t t[N];
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  for (int i = 0; i < N; i++) {
    b[i] = (big_call){.client = c, .len = LEN, .body = malloc(LEN)};
    cr_assert_not_null(b[i].body);
    memset(b[i].body, 'a' + i, LEN);
    cr_assert_eq(pthread_create(&t[i], NULL, call_big, &b[i]), 0);
    fx_sleep_ms(20);
  }
  for (int i = 0; i < N; i++) {
    pthread_join(t[i], NULL);
    cr_assert_eq(b[i].st, ACKRPC_OK, "%s", b[i].res.message ? b[i].res.message : "");
    cr_assert_eq(b[i].res.reply_bytes_len, LEN);
    cr_assert_arr_eq(b[i].res.reply_bytes, b[i].body, LEN, "call %d got another body",
                     i);
    ackrpc_result_clear(&b[i].res);
    free(b[i].body);
  }
  for (size_t i = 0; i < n_held; i++)
    pthread_join(held_threads[i], NULL);
  fx_server_stop(r);
}

FX_TEST(fallback, a_body_in_a_memfd_reaches_it) {
  fx_server *r = start(fallback_deferred);
  enum { LEN = 200 << 10 };
  ackrpc_client *c = fx_client_opts(&(ackrpc_client_options){
      .address = fx_sock(), .timeout_ms = 10000, .memfd_threshold = 4096});
  big_call b = {.client = c, .len = LEN, .body = malloc(LEN)};
  cr_assert_not_null(b.body);
  for (size_t i = 0; i < LEN; i++)
    b.body[i] = (uint8_t)(i * 7);
  call_big(&b);
  cr_assert_eq(b.st, ACKRPC_OK, "%s", b.res.message ? b.res.message : "");
  cr_assert_eq(b.res.reply_bytes_len, LEN);
  cr_assert_arr_eq(b.res.reply_bytes, b.body, LEN);
  cr_assert(saw_memfd, "the body came in a memfd, and the fallback got its mapping");
  ackrpc_result_clear(&b.res);
  free(b.body);
  for (size_t i = 0; i < n_held; i++)
    pthread_join(held_threads[i], NULL);
  fx_server_stop(r);
}

FX_TEST(fallback, without_one_unknown_is_unimplemented_and_typed_replies_are_refused) {
  fx_server *r = start(NULL);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result res = {0};
  cr_assert_eq(raw(c, ELSEWHERE, "x", &res), ACKRPC_UNIMPLEMENTED);
  ackrpc_result_clear(&res);
  fx_server_stop(r);

  r = start(fallback_typed);
  c = fx_client(fx_sock(), 5000);
  cr_assert_eq(raw(c, ELSEWHERE, "x", &res), ACKRPC_INTERNAL);
  ackrpc_result_clear(&res);
  fx_server_stop(r);
}

FX_TEST(fallback, set_and_remove) {
  cr_assert_eq(ackrpc_server_set_fallback(NULL, fallback_inline, NULL), ACKRPC_E_INVAL);
  ackrpc_server *s = NULL;
  cr_assert_eq(ackrpc_server_new(&(ackrpc_server_options){.address = fx_sock()}, &s),
               ACKRPC_OK);
  cr_assert_eq(ackrpc_server_set_fallback(s, fallback_inline, NULL), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_set_fallback(s, fallback_typed, NULL), ACKRPC_E_EXISTS);
  cr_assert_eq(ackrpc_server_set_fallback(s, NULL, NULL), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_set_fallback(s, fallback_typed, NULL), ACKRPC_OK);
  ackrpc_server_free(s);
}
