/* test_delivery_cache.c: the server's reply cache (idempotent retries,
 * docs/DELIVERY.md): the cache module's rules and bounds on their own
 * (src/reply_cache.c, with a fake clock), then through a real server: a
 * repeated call id is answered without running the handler, errors are not
 * kept, a repeat of a call still being handled waits for its answer, an
 * answer that came after the deadline still serves the repeats, and the
 * bounds in entries and age. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "server/reply_cache.h"

/* --- the module --------------------------------------------------------- */

/* A digest standing for the request `what` (the cache only compares them). */
static const uint8_t *dg(const char *what) {
  static uint8_t d[8][AKR_RC_DIGEST_LEN];
  static unsigned next;
  uint8_t *out = d[next++ % 8];
  memset(out, 0, AKR_RC_DIGEST_LEN);
  strncpy((char *)out, what, AKR_RC_DIGEST_LEN);
  return out;
}

Test(rc_unit, miss_then_hit_returns_the_frame) {
  akr_reply_cache *c = akr_rc_new(10, 1 << 20, 1000000);
  cr_assert_not_null(c);
  akr_rc_entry *e = NULL;
  const uint8_t *f = NULL;
  size_t n = 0;
  cr_assert_eq(akr_rc_begin(c, (const uint8_t *)"id1", 3, dg("a.S/M"), 0, &e, &f, &n),
               AKR_RC_MISS);
  cr_assert_null(akr_rc_finish(c, e, 1, (const uint8_t *)"FRAME", 5, 10));
  cr_assert_eq(akr_rc_begin(c, (const uint8_t *)"id1", 3, dg("a.S/M"), 20, &e, &f, &n),
               AKR_RC_HIT);
  cr_assert_eq(n, 5);
  cr_assert_eq(memcmp(f, "FRAME", 5), 0);
  /* The same id for another request (method, body or uid: another
   * digest) is refused, never answered with the first one's frame, and
   * does not disturb the kept answer. */
  cr_assert_eq(akr_rc_begin(c, (const uint8_t *)"id1", 3, dg("a.S/N"), 20, &e, &f, &n),
               AKR_RC_MISMATCH);
  cr_assert_eq(akr_rc_begin(c, (const uint8_t *)"id1", 3, dg("a.S/M"), 20, &e, &f, &n),
               AKR_RC_HIT);
  /* Another id: a different key. */
  cr_assert_eq(akr_rc_begin(c, (const uint8_t *)"id12", 4, dg("a.S/M"), 20, &e, &f, &n),
               AKR_RC_MISS);
  akr_rc_finish(c, e, 0, NULL, 0, 20);
  akr_rc_counts k = akr_rc_counts_get(c);
  cr_assert_eq(k.hits, 2);
  cr_assert_eq(k.refused, 1);
  cr_assert_eq(k.joins, 0);
  akr_rc_free(c);
}

Test(rc_unit, errors_are_not_kept) {
  akr_reply_cache *c = akr_rc_new(10, 1 << 20, 1000000);
  akr_rc_entry *e = NULL;
  const uint8_t *f;
  size_t n, done, flight;
  akr_rc_begin(c, (const uint8_t *)"x", 1, dg("a.S/M"), 0, &e, &f, &n);
  akr_rc_finish(c, e, 0, (const uint8_t *)"UNAVAILABLE", 11, 0);
  akr_rc_stats(c, &done, &flight, NULL);
  cr_assert_eq(done, 0);
  cr_assert_eq(flight, 0);
  cr_assert_eq(akr_rc_begin(c, (const uint8_t *)"x", 1, dg("a.S/M"), 1, &e, &f, &n),
               AKR_RC_MISS, "an error answer must leave the call id retryable");
  akr_rc_finish(c, e, 1, NULL, 0, 1); /* no frame: not kept either */
  cr_assert_eq(akr_rc_begin(c, (const uint8_t *)"x", 1, dg("a.S/M"), 2, &e, &f, &n),
               AKR_RC_MISS);
  akr_rc_finish(c, e, 0, NULL, 0, 2);
  akr_rc_free(c);
}

static void put(akr_reply_cache *c, unsigned i, uint64_t now, size_t frame_len) {
  char id[32];
  snprintf(id, sizeof id, "id-%u", i);
  akr_rc_entry *e = NULL;
  const uint8_t *f;
  size_t n;
  cr_assert_eq(
      akr_rc_begin(c, (const uint8_t *)id, strlen(id), dg("a.S/M"), now, &e, &f, &n),
      AKR_RC_MISS);
  static uint8_t frame[4096];
  memset(frame, (int)i, sizeof frame);
  akr_rc_finish(c, e, 1, frame, frame_len, now);
}

static akr_rc_result look(akr_reply_cache *c, unsigned i, uint64_t now) {
  char id[32];
  snprintf(id, sizeof id, "id-%u", i);
  akr_rc_entry *e = NULL;
  const uint8_t *f;
  size_t n;
  akr_rc_result r =
      akr_rc_begin(c, (const uint8_t *)id, strlen(id), dg("a.S/M"), now, &e, &f, &n);
  if (r == AKR_RC_MISS) akr_rc_finish(c, e, 0, NULL, 0, now);
  return r;
}

Test(rc_unit, bounded_in_entries_oldest_dropped_first) {
  akr_reply_cache *c = akr_rc_new(3, 1 << 20, 1000000);
  for (unsigned i = 0; i < 5; i++)
    put(c, i, i, 10);
  size_t done;
  akr_rc_stats(c, &done, NULL, NULL);
  cr_assert_eq(done, 3);
  cr_assert_eq(look(c, 0, 10), AKR_RC_MISS);
  cr_assert_eq(look(c, 1, 10), AKR_RC_MISS);
  for (unsigned i = 2; i < 5; i++)
    cr_assert_eq(look(c, i, 10), AKR_RC_HIT, "entry %u", i);
  akr_rc_free(c);
}

Test(rc_unit, bounded_in_bytes) {
  akr_reply_cache *c = akr_rc_new(1000, 3 * 1024, 1000000);
  for (unsigned i = 0; i < 6; i++)
    put(c, i, i, 1000);
  size_t done, bytes;
  akr_rc_stats(c, &done, NULL, &bytes);
  cr_assert_leq(bytes, 3 * 1024);
  cr_assert_eq(done, 2, "two 1000-byte answers (plus overhead) fit in 3 KiB, got %zu",
               done);
  cr_assert_eq(look(c, 5, 10), AKR_RC_HIT);
  cr_assert_eq(look(c, 0, 10), AKR_RC_MISS);
  put(c, 100, 11, 4096); /* larger than the whole budget: not kept */
  cr_assert_eq(look(c, 100, 12), AKR_RC_MISS);
  akr_rc_free(c);
}

Test(rc_unit, bounded_in_age) {
  akr_reply_cache *c = akr_rc_new(100, 1 << 20, 1000);
  put(c, 1, 5000, 10);
  put(c, 2, 5500, 10);
  cr_assert_eq(look(c, 1, 5999), AKR_RC_HIT, "younger than max_age: kept");
  cr_assert_eq(look(c, 1, 6000), AKR_RC_MISS, "max_age after it was answered: gone");
  cr_assert_eq(look(c, 2, 6499), AKR_RC_HIT);
  cr_assert_eq(look(c, 2, 6500), AKR_RC_MISS);
  size_t done;
  akr_rc_stats(c, &done, NULL, NULL);
  cr_assert_eq(done, 0);
  akr_rc_free(c);
}

Test(rc_unit, in_flight_repeats_wait_and_are_not_evicted) {
  akr_reply_cache *c = akr_rc_new(1, 1 << 20, 1000);
  akr_rc_entry *e1 = NULL, *e2 = NULL, *dup = NULL;
  const uint8_t *f;
  size_t n, flight;
  cr_assert_eq(akr_rc_begin(c, (const uint8_t *)"1", 1, dg("a.S/M"), 0, &e1, &f, &n),
               AKR_RC_MISS);
  cr_assert_eq(akr_rc_begin(c, (const uint8_t *)"2", 1, dg("a.S/M"), 0, &e2, &f, &n),
               AKR_RC_MISS);
  /* Far past max_age and over max_entries: calls in flight stay. */
  put(c, 7, 100000, 10);
  akr_rc_stats(c, NULL, &flight, NULL);
  cr_assert_eq(flight, 2);
  cr_assert_eq(
      akr_rc_begin(c, (const uint8_t *)"1", 1, dg("a.S/M"), 100000, &dup, &f, &n),
      AKR_RC_IN_FLIGHT);
  cr_assert_eq(dup, e1);
  cr_assert_eq(
      akr_rc_begin(c, (const uint8_t *)"1", 1, dg("other"), 100000, &dup, &f, &n),
      AKR_RC_MISMATCH, "another request must not join a running call");
  cr_assert_eq(akr_rc_counts_get(c).joins, 1);
  akr_rc_waiter w1 = {0}, w2 = {0}, w3 = {0};
  akr_rc_wait(e1, &w1);
  akr_rc_wait(e1, &w2);
  akr_rc_wait(e1, &w3);
  akr_rc_unwait(&w2); /* e.g. its connection closed */
  cr_assert_null(w2.entry);
  akr_rc_unwait(&w2); /* harmless twice */
  akr_rc_waiter *list = akr_rc_finish(c, e1, 1, (const uint8_t *)"OK", 2, 100001);
  int n_list = 0, saw1 = 0, saw3 = 0;
  for (akr_rc_waiter *w = list; w; w = w->next) {
    n_list++;
    saw1 |= w == &w1;
    saw3 |= w == &w3;
    cr_assert_null(w->entry);
  }
  cr_assert_eq(n_list, 2);
  cr_assert(saw1 && saw3);
  cr_assert_eq(
      akr_rc_begin(c, (const uint8_t *)"1", 1, dg("a.S/M"), 100002, &dup, &f, &n),
      AKR_RC_HIT);
  cr_assert_eq(n, 2);
  akr_rc_finish(c, e2, 0, NULL, 0, 100002);
  akr_rc_free(c);
}

Test(rc_unit, many_keys) {
  akr_reply_cache *c = akr_rc_new(20000, 64 << 20, 1000000);
  for (unsigned i = 0; i < 10000; i++)
    put(c, i, 1, 8);
  for (unsigned i = 0; i < 10000; i++)
    cr_assert_eq(look(c, i, 2), AKR_RC_HIT, "key %u", i);
  akr_rc_free(c);
}

/* --- through a server ---------------------------------------------------- */

FX_SUITE(cache);

static fx_server *start_cached(uint32_t entries, uint32_t age_ms) {
  ackrpc_server_options o = {.address = fx_sock(),
                             .reply_cache = 1,
                             .reply_cache_entries = entries,
                             .reply_cache_age_ms = age_ms,
                             .log = ackrpc_log_discard};
  return fx_server_start(&o);
}

static ackrpc_status echo_id(ackrpc_client *c, const char *id, const char *text,
                             uint32_t reply_status, ackrpc_result *r) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = (char *)text;
  req.reply_status = reply_status;
  ackrpc_call_options o = {.call_id = (const uint8_t *)id, .call_id_len = strlen(id)};
  memset(r, 0, sizeof *r);
  return ackrpc_client_call(c, &fx_echo_method, &req.base, &o, r);
}

FX_TEST(cache, repeated_call_id_is_answered_without_the_handler) {
  start_cached(0, 0);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result a, b;
  cr_assert_eq(echo_id(c, "call-1", "first", 0, &a), ACKRPC_OK);
  cr_assert_eq(echo_id(c, "call-1", "first", 0, &b), ACKRPC_OK);
  cr_assert_eq(fx_handler_calls(), 1, "the handler ran for the repeat");
  const Ackrpc__Test__EchoReply *ra = fx_echo_reply(&a), *rb = fx_echo_reply(&b);
  cr_assert_str_eq(rb->text, "first", "the repeat gets the original ack");
  cr_assert_eq(ra->deadline_us, rb->deadline_us, "byte for byte the same ack");
  ackrpc_result_clear(&a);
  ackrpc_result_clear(&b);
  /* A new id runs the handler. */
  cr_assert_eq(echo_id(c, "call-2", "third", 0, &a), ACKRPC_OK);
  cr_assert_eq(fx_handler_calls(), 2);
  ackrpc_result_clear(&a);
}

FX_TEST(cache, call_id_reused_for_another_request_is_refused) {
  start_cached(0, 0);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result a;
  cr_assert_eq(echo_id(c, "call-1", "first", 0, &a), ACKRPC_OK);
  ackrpc_result_clear(&a);
  /* Another body under the same id: never the first request's reply. */
  cr_assert_eq(echo_id(c, "call-1", "second", 0, &a), ACKRPC_INVALID_ARGUMENT);
  cr_assert_not_null(a.message);
  cr_assert(strstr(a.message, "call id already used for another request"), "%s",
            a.message);
  cr_assert_null(a.reply, "a refusal carries no ack");
  ackrpc_result_clear(&a);
  /* Another method under the same id: refused too. */
  Ackrpc__Test__Strict s = ACKRPC__TEST__STRICT__INIT;
  s.must = "m";
  ackrpc_call_options o = {.call_id = (const uint8_t *)"call-1", .call_id_len = 6};
  cr_assert_eq(ackrpc_client_call(c, &fx_strict_method, &s.base, &o, NULL),
               ACKRPC_INVALID_ARGUMENT);
  cr_assert_eq(fx_handler_calls(), 1, "a reused id ran a handler");
  /* The first request, repeated, still gets its answer. */
  cr_assert_eq(echo_id(c, "call-1", "first", 0, &a), ACKRPC_OK);
  cr_assert_str_eq(fx_echo_reply(&a)->text, "first");
  ackrpc_result_clear(&a);
  Ackrpc__Reflection__Counters k = fx_counters(c);
  cr_assert_eq(k.replay_refused, 2);
  cr_assert_eq(k.replay_hits, 1);
  cr_assert_eq(k.replay_joins, 0);
}

FX_TEST(cache, errors_are_not_kept) {
  start_cached(0, 0);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result r;
  cr_assert_eq(echo_id(c, "e", "x", ACKRPC_UNAVAILABLE, &r), ACKRPC_UNAVAILABLE);
  ackrpc_result_clear(&r);
  cr_assert_eq(echo_id(c, "e", "x", ACKRPC_OK, &r), ACKRPC_OK,
               "after an error the same id must run the handler again");
  ackrpc_result_clear(&r);
  cr_assert_eq(fx_handler_calls(), 2);
}

FX_TEST(cache, off_by_default) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result r;
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(echo_id(c, "same", "x", 0, &r), ACKRPC_OK);
    ackrpc_result_clear(&r);
  }
  cr_assert_eq(fx_handler_calls(), 3);
}

/* A blocking call in a thread, with a chosen call id and timeout. */
typedef struct bg {
  pthread_t t;
  ackrpc_client *c;
  const char *id;
  uint32_t timeout_ms;
  int hold;
  ackrpc_status st;
  ackrpc_result r;
  _Atomic int done;
} bg;

static void *bg_main(void *arg) {
  bg *b = arg;
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "bg";
  if (b->hold) req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  ackrpc_call_options o = {.call_id = (const uint8_t *)b->id,
                           .call_id_len = strlen(b->id),
                           .timeout_ms = b->timeout_ms};
  b->st = ackrpc_client_call(b->c, &fx_echo_method, &req.base, &o, &b->r);
  atomic_store(&b->done, 1);
  return NULL;
}

/* The request a held `bg` call sent, again under `id`, blocking. */
static ackrpc_status repeat_bg(ackrpc_client *c, const char *id, ackrpc_result *r) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "bg";
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  ackrpc_call_options o = {.call_id = (const uint8_t *)id, .call_id_len = strlen(id)};
  memset(r, 0, sizeof *r);
  return ackrpc_client_call(c, &fx_echo_method, &req.base, &o, r);
}

static void bg_start(bg *b, ackrpc_client *c, const char *id, uint32_t timeout_ms,
                     int hold) {
  memset(b, 0, sizeof *b);
  b->c = c;
  b->id = id;
  b->timeout_ms = timeout_ms;
  b->hold = hold;
  cr_assert_eq(pthread_create(&b->t, NULL, bg_main, b), 0);
}

static void bg_join(bg *b) {
  pthread_join(b->t, NULL);
}

FX_TEST(cache, repeat_of_a_call_in_flight_waits_for_its_answer) {
  start_cached(0, 0);
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  bg first, dup;
  bg_start(&first, c, "inflight", 10000, 1);
  cr_assert_eq(fx_held_wait(1, 5000), 1);
  bg_start(&dup, c, "inflight", 10000, 1); /* the same request: joins */
  fx_sleep_ms(200);
  cr_assert_eq(atomic_load(&dup.done), 0, "the repeat did not wait");
  cr_assert_eq(fx_handler_calls(), 1, "the repeat ran the handler");
  cr_assert_eq(fx_held_reply(0, ACKRPC_OK, NULL), ACKRPC_OK);
  bg_join(&first);
  bg_join(&dup);
  cr_assert_eq(first.st, ACKRPC_OK);
  cr_assert_eq(dup.st, ACKRPC_OK, "repeat: %s", ackrpc_status_name(dup.st));
  cr_assert_eq(fx_echo_reply(&first.r)->deadline_us,
               fx_echo_reply(&dup.r)->deadline_us);
  cr_assert_eq(fx_handler_calls(), 1);
  ackrpc_result_clear(&first.r);
  ackrpc_result_clear(&dup.r);
}

FX_TEST(cache, repeat_waits_only_until_its_deadline) {
  /* Server deadlines of 200 ms: the first call is answered
   * DEADLINE_EXCEEDED while its handler still holds it, and the repeat
   * waits 200 ms for it, then is told the call is still being handled. */
  ackrpc_server_options so = {.address = fx_sock(),
                              .reply_cache = 1,
                              .handler_timeout_ms = 200,
                              .log = ackrpc_log_discard};
  fx_server_start(&so);
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  bg first;
  bg_start(&first, c, "slow", 5000, 1);
  cr_assert_eq(fx_held_wait(1, 5000), 1);
  bg_join(&first);
  cr_assert_eq(first.st, ACKRPC_DEADLINE_EXCEEDED);
  ackrpc_result_clear(&first.r);
  ackrpc_result r;
  uint64_t t0 = fx_now_us();
  ackrpc_status st = repeat_bg(c, "slow", &r);
  uint64_t dt = fx_now_us() - t0;
  cr_assert_eq(st, ACKRPC_DEADLINE_EXCEEDED, "got %s", ackrpc_status_name(st));
  cr_assert(r.message && strstr(r.message, "still being handled"), "message: %s",
            r.message ? r.message : "(none)");
  cr_assert_geq(dt, 150000, "the repeat did not wait (%llu us)",
                (unsigned long long)dt);
  cr_assert_lt(dt, 200000 + fx_slack_us());
  ackrpc_result_clear(&r);
  cr_assert_eq(fx_handler_calls(), 1, "the repeat ran the handler");
  cr_assert_eq(fx_held_reply(0, ACKRPC_OK, NULL), ACKRPC_E_ALREADY_ANSWERED);
}

FX_TEST(cache, a_late_answer_still_serves_the_repeats) {
  ackrpc_server_options so = {.address = fx_sock(),
                              .reply_cache = 1,
                              .handler_timeout_ms = 200,
                              .log = ackrpc_log_discard};
  fx_server_start(&so);
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  bg first;
  bg_start(&first, c, "late", 5000, 1);
  cr_assert_eq(fx_held_wait(1, 5000), 1);
  bg_join(&first);
  cr_assert_eq(first.st, ACKRPC_DEADLINE_EXCEEDED, "got %s",
               ackrpc_status_name(first.st));
  ackrpc_result_clear(&first.r);
  /* The handler answers after the server gave up on the call. */
  cr_assert_eq(fx_held_reply(0, ACKRPC_OK, NULL), ACKRPC_E_ALREADY_ANSWERED);
  ackrpc_result r;
  ackrpc_status st = ACKRPC_E_NO_ACK;
  /* The late answer reaches the cache through the loop: allow it a moment. */
  for (int i = 0; i < 100; i++) {
    st = repeat_bg(c, "late", &r);
    if (st == ACKRPC_OK) break;
    ackrpc_result_clear(&r);
    fx_sleep_ms(10);
  }
  cr_assert_eq(st, ACKRPC_OK);
  cr_assert_str_eq(fx_echo_reply(&r)->text, "bg", "the retry gets the late answer");
  ackrpc_result_clear(&r);
  cr_assert_eq(fx_handler_calls(), 1);
}

FX_TEST(cache, entries_bound) {
  start_cached(2, 0);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result r;
  const char *ids[] = {"A", "B", "C"};
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(echo_id(c, ids[i], "x", 0, &r), ACKRPC_OK);
    ackrpc_result_clear(&r);
  }
  cr_assert_eq(fx_handler_calls(), 3);
  cr_assert_eq(echo_id(c, "C", "x", 0, &r), ACKRPC_OK);
  ackrpc_result_clear(&r);
  cr_assert_eq(fx_handler_calls(), 3, "C is among the 2 newest: kept");
  cr_assert_eq(echo_id(c, "A", "x", 0, &r), ACKRPC_OK);
  ackrpc_result_clear(&r);
  cr_assert_eq(fx_handler_calls(), 4, "A was the oldest of 3: dropped");
}

FX_TEST(cache, age_bound) {
  start_cached(0, 150);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result r;
  cr_assert_eq(echo_id(c, "aged", "x", 0, &r), ACKRPC_OK);
  ackrpc_result_clear(&r);
  cr_assert_eq(echo_id(c, "aged", "x", 0, &r), ACKRPC_OK);
  ackrpc_result_clear(&r);
  cr_assert_eq(fx_handler_calls(), 1);
  fx_sleep_ms(300);
  cr_assert_eq(echo_id(c, "aged", "x", 0, &r), ACKRPC_OK);
  ackrpc_result_clear(&r);
  cr_assert_eq(fx_handler_calls(), 2,
               "an answer older than reply_cache_age_ms is gone");
}
