/* test_outbox_reply_store.c: the durable reply store (ackrpc/reply_store.h,
 * docs/DELIVERY.md), with a real SQLite file and real servers: an answer
 * committed with the handler's own write is given again after a restart
 * without running the handler; a call id reused for another request is
 * refused; an aborted call keeps nothing; a repeat that gets past the
 * server's lookup is answered inside begin; old answers are pruned. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include <ackrpc/reply_store.h>

#include "fixture.h"

FX_SUITE(rstore);

static atomic_uint g_runs; /* handler runs */

/* Echo with an effect: a row in `effects`, in the store's transaction.
 * Text "fail" aborts (ALREADY_EXISTS) after writing its row. */
static void on_echo(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  ackrpc_reply_store *store = user;
  const Ackrpc__Test__EchoRequest *req = (const Ackrpc__Test__EchoRequest *)request;
  atomic_fetch_add(&g_runs, 1);
  sqlite3 *db = NULL;
  if (ackrpc_reply_store_begin(store, call, &db) != ACKRPC_OK) return;
  sqlite3_stmt *st = NULL;
  cr_assert_eq(
      sqlite3_prepare_v2(db, "INSERT INTO effects(text) VALUES (?1)", -1, &st, NULL),
      SQLITE_OK);
  sqlite3_bind_text(st, 1, req->text, -1, SQLITE_STATIC);
  cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  if (strcmp(req->text, "fail") == 0) {
    ackrpc_reply_store_abort(store, call, ACKRPC_ALREADY_EXISTS, "refused by the test");
    return;
  }
  Ackrpc__Test__EchoReply reply = ACKRPC__TEST__ECHO_REPLY__INIT;
  reply.text = req->text;
  ackrpc_reply_store_commit(store, call, ACKRPC_OK, "stored", &reply.base);
}

typedef struct srv {
  ackrpc_server *s;
  ackrpc_reply_store *store;
  pthread_t t;
} srv;

static void *run_main(void *arg) {
  ackrpc_server_run(((srv *)arg)->s);
  return NULL;
}

/* A server on fx_sock() with the Echo method on a store over db.sqlite;
 * `attach`: the server's lookup is the store's. */
static void srv_start(srv *v, int attach, uint64_t retain_count) {
  ackrpc_reply_store_options so = {.path = fx_path("db.sqlite"),
                                   .retain_count = retain_count};
  cr_assert_eq(ackrpc_reply_store_open(&so, &v->store), ACKRPC_OK);
  /* The application's own table, in the same file. */
  sqlite3 *db = NULL;
  cr_assert_eq(sqlite3_open(fx_path("db.sqlite"), &db), SQLITE_OK);
  cr_assert_eq(sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS effects(text TEXT)", NULL,
                            NULL, NULL),
               SQLITE_OK);
  sqlite3_close(db);
  ackrpc_server_options o = {.address = fx_sock(), .log = ackrpc_log_discard};
  if (attach)
    ackrpc_reply_store_attach(v->store, &o);
  else
    o.reply_cache = 1; /* digests, but no lookup before the handler */
  cr_assert_eq(ackrpc_server_new(&o, &v->s), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(v->s, &fx_echo_method, on_echo, v->store),
               ACKRPC_OK);
  cr_assert_eq(pthread_create(&v->t, NULL, run_main, v), 0);
}

static void srv_stop(srv *v) {
  ackrpc_server_stop(v->s);
  pthread_join(v->t, NULL);
  v->s = ackrpc_server_free(v->s);
  v->store = ackrpc_reply_store_close(v->store);
}

static ackrpc_status echo(const char *id, const char *text, ackrpc_result *r) {
  static ackrpc_client *c; /* one per test: each runs in its own process */
  if (!c) c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = (char *)text;
  ackrpc_call_options o = {.call_id = (const uint8_t *)id, .call_id_len = strlen(id)};
  memset(r, 0, sizeof *r);
  return ackrpc_client_call(c, &fx_echo_method, &req.base, &o, r);
}

/* Rows of `table` in the database file, read by a connection of its own. */
static int64_t rows(const char *table) {
  sqlite3 *db = NULL;
  cr_assert_eq(sqlite3_open(fx_path("db.sqlite"), &db), SQLITE_OK);
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
  sqlite3_stmt *st = NULL;
  cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

FX_TEST(rstore, answer_survives_a_restart_and_a_reused_id_is_refused) {
  atomic_store(&g_runs, 0);
  srv v;
  srv_start(&v, 1, 0);
  ackrpc_result r;
  cr_assert_eq(echo("A", "hello", &r), ACKRPC_OK);
  cr_assert_str_eq(((Ackrpc__Test__EchoReply *)r.reply)->text, "hello");
  ackrpc_result_clear(&r);
  srv_stop(&v);

  /* A new server and store: nothing in memory, the answer is on disk. */
  srv_start(&v, 1, 0);
  cr_assert_eq(echo("A", "hello", &r), ACKRPC_OK);
  cr_assert_not_null(r.reply);
  cr_assert_str_eq(((Ackrpc__Test__EchoReply *)r.reply)->text, "hello");
  cr_assert_str_eq(r.message, "stored", "the stored message comes back");
  ackrpc_result_clear(&r);
  cr_assert_eq(atomic_load(&g_runs), 1, "the handler ran again after the restart");
  cr_assert_eq(rows("effects"), 1);

  /* The same id for another body: refused, never the first one's reply. */
  cr_assert_eq(echo("A", "other", &r), ACKRPC_INVALID_ARGUMENT);
  cr_assert_null(r.reply);
  cr_assert(strstr(r.message, "call id already used for another request"));
  ackrpc_result_clear(&r);
  cr_assert_eq(atomic_load(&g_runs), 1);
  ackrpc_reply_store_stats k;
  cr_assert_eq(ackrpc_reply_store_get_stats(v.store, &k), ACKRPC_OK);
  cr_assert_eq(k.hits, 1);
  cr_assert_eq(k.stored, 0);
  srv_stop(&v);
  /* Again with nothing in memory: the store itself refuses it. */
  srv_start(&v, 1, 0);
  cr_assert_eq(echo("A", "other", &r), ACKRPC_INVALID_ARGUMENT);
  ackrpc_result_clear(&r);
  cr_assert_eq(ackrpc_reply_store_get_stats(v.store, &k), ACKRPC_OK);
  cr_assert_eq(k.refused, 1);
  cr_assert_eq(atomic_load(&g_runs), 1);
  srv_stop(&v);
  cr_assert_eq(rows("effects"), 1);
  cr_assert_eq(rows("ackrpc_replies"), 1);
}

FX_TEST(rstore, abort_keeps_nothing) {
  atomic_store(&g_runs, 0);
  srv v;
  srv_start(&v, 1, 0);
  ackrpc_result r;
  for (int i = 1; i <= 2; i++) {
    cr_assert_eq(echo("F", "fail", &r), ACKRPC_ALREADY_EXISTS);
    ackrpc_result_clear(&r);
    cr_assert_eq(atomic_load(&g_runs), (unsigned)i, "an error must stay retryable");
  }
  srv_stop(&v);
  cr_assert_eq(rows("effects"), 0, "the aborted write was kept");
  cr_assert_eq(rows("ackrpc_replies"), 0);
}

FX_TEST(rstore, a_repeat_past_the_lookup_is_answered_in_begin) {
  atomic_store(&g_runs, 0);
  srv v;
  srv_start(&v, 0, 0); /* no lookup: every repeat reaches the handler */
  ackrpc_result r;
  cr_assert_eq(echo("B", "once", &r), ACKRPC_OK);
  ackrpc_result_clear(&r);
  srv_stop(&v);
  srv_start(&v, 0, 0);
  cr_assert_eq(echo("B", "once", &r), ACKRPC_OK);
  cr_assert_str_eq(((Ackrpc__Test__EchoReply *)r.reply)->text, "once");
  ackrpc_result_clear(&r);
  cr_assert_eq(atomic_load(&g_runs), 2, "the handler ran, as there was no lookup");
  cr_assert_eq(echo("B", "twice", &r), ACKRPC_INVALID_ARGUMENT);
  ackrpc_result_clear(&r);
  srv_stop(&v);
  cr_assert_eq(rows("effects"), 1, "the repeat's effect was committed");
}

FX_TEST(rstore, old_answers_are_pruned) {
  atomic_store(&g_runs, 0);
  srv v;
  srv_start(&v, 1, 10);
  ackrpc_result r;
  char id[16];
  for (int i = 0; i < 300; i++) {
    snprintf(id, sizeof id, "id-%d", i);
    cr_assert_eq(echo(id, "x", &r), ACKRPC_OK);
    ackrpc_result_clear(&r);
  }
  ackrpc_reply_store_stats k;
  ackrpc_reply_store_get_stats(v.store, &k);
  cr_assert_eq(k.stored, 300);
  /* Pruned at the 256th commit down to 10. */
  cr_assert_eq(k.evicted, 246, "evicted %llu", (unsigned long long)k.evicted);
  srv_stop(&v);
  cr_assert_eq(rows("ackrpc_replies"), 300 - 246);
}

static void on_bare(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)request;
  sqlite3 *db = NULL;
  ackrpc_status st = ackrpc_reply_store_begin(user, call, &db);
  cr_assert_eq(st, ACKRPC_E_INVAL);
}

FX_TEST(rstore, a_server_without_digests_is_refused) {
  ackrpc_reply_store *store = NULL;
  ackrpc_reply_store_options so = {.path = fx_path("db.sqlite")};
  cr_assert_eq(ackrpc_reply_store_open(&so, &store), ACKRPC_OK);
  srv v = {.store = store};
  ackrpc_server_options o = {.address = fx_sock(), .log = ackrpc_log_discard};
  cr_assert_eq(ackrpc_server_new(&o, &v.s), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(v.s, &fx_echo_method, on_bare, store),
               ACKRPC_OK);
  cr_assert_eq(pthread_create(&v.t, NULL, run_main, &v), 0);
  ackrpc_result r;
  cr_assert_eq(echo("C", "x", &r), ACKRPC_FAILED_PRECONDITION);
  ackrpc_result_clear(&r);
  srv_stop(&v);
}

Test(rstore_api, bad_arguments) {
  ackrpc_reply_store *s = NULL;
  ackrpc_reply_store_options o = {0};
  cr_assert_eq(ackrpc_reply_store_open(&o, &s), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_reply_store_open(NULL, &s), ACKRPC_E_INVAL);
  o.path = "/nonexistent-dir/x/db.sqlite";
  cr_assert_eq(ackrpc_reply_store_open(&o, &s), ACKRPC_E_STORE_IO);
  cr_assert_null(s);
  cr_assert_null(ackrpc_reply_store_close(NULL));
}
