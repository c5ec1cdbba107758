/* reply_store.c: the durable reply store (ackrpc/reply_store.h).
 *
 * One table, keyed by the call id:
 *
 *   ackrpc_replies(call_id BLOB PRIMARY KEY, digest BLOB, status INTEGER,
 *                  message TEXT, body BLOB, stored_at_ms INTEGER)
 *
 * Two connections to one WAL database: `rd` answers the server's lookups
 * on its loop thread (a reader never waits for the writer in WAL mode),
 * `wr` runs the handlers' transactions, one at a time: `open_call` says
 * whose is open (NULL: none; guarded by `mu`, waited for on `cv`), from
 * begin to commit or abort, which may run on another thread than begin
 * did. It also keeps commit and abort from finishing another call's.
 *
 * Pruning: every PRUNE_EVERY commits, inside the commit's transaction,
 * answers older than retain_ms and beyond retain_count go, oldest first.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>
#include <sqlite3.h>

#include <ackrpc/reply_store.h>

#include "core/messages.h"
#include "outbox/outbox_internal.h"

#define BUSY_TIMEOUT_MS 2000
#define DEFAULT_RETAIN_MS (7ull * 24 * 3600 * 1000)
#define DEFAULT_RETAIN_COUNT 1000000ull
#define PRUNE_EVERY 256

static const char SCHEMA[] = "CREATE TABLE IF NOT EXISTS ackrpc_replies ("
                             " call_id BLOB PRIMARY KEY,"
                             " digest BLOB NOT NULL,"
                             " status INTEGER NOT NULL,"
                             " message TEXT,"
                             " body BLOB,"
                             " stored_at_ms INTEGER NOT NULL)";
static const char SQL_FIND[] =
    "SELECT digest, status, message, body FROM ackrpc_replies WHERE call_id = ?1";
static const char SQL_INSERT[] =
    "INSERT INTO ackrpc_replies"
    " (call_id, digest, status, message, body, stored_at_ms)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
static const char SQL_PRUNE_AGE[] =
    "DELETE FROM ackrpc_replies WHERE stored_at_ms < ?1";
static const char SQL_PRUNE_COUNT[] =
    "DELETE FROM ackrpc_replies WHERE rowid IN (SELECT rowid FROM ackrpc_replies"
    " ORDER BY stored_at_ms, rowid LIMIT max(0, (SELECT count(*) FROM ackrpc_replies)"
    " - ?1))";

struct ackrpc_reply_store {
  sqlite3 *rd, *wr;
  sqlite3_stmt *rd_find, *wr_find, *insert, *prune_age, *prune_count;
  uint64_t retain_ms, retain_count;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  const ackrpc_call *open_call; /* whose transaction is open (under mu) */
  unsigned commits;             /* since the last prune (its owner's) */
  /* The last lookup's answer (loop thread), valid until the next. */
  uint8_t *buf;
  size_t buf_cap;
  _Atomic uint64_t stored, hits, refused, evicted;
};

/* --- opening ------------------------------------------------------------ */

static ackrpc_status open_conn(const char *path, int flags, sqlite3 **ret) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_FULLMUTEX, NULL);
  if (rc != SQLITE_OK) {
    sqlite3_close(db);
    return rc == SQLITE_NOMEM ? ACKRPC_E_NOMEM : ACKRPC_E_STORE_IO;
  }
  sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
  *ret = db;
  return ACKRPC_OK;
}

static ackrpc_status prepare(sqlite3 *db, const char *sql, sqlite3_stmt **ret) {
  return akr_ob_status(sqlite3_prepare_v2(db, sql, -1, ret, NULL));
}

ackrpc_reply_store *ackrpc_reply_store_close(ackrpc_reply_store *s) {
  if (!s) return NULL;
  if (s->wr && !sqlite3_get_autocommit(s->wr)) akr_ob_exec(s->wr, "ROLLBACK");
  sqlite3_finalize(s->rd_find);
  sqlite3_finalize(s->wr_find);
  sqlite3_finalize(s->insert);
  sqlite3_finalize(s->prune_age);
  sqlite3_finalize(s->prune_count);
  sqlite3_close(s->rd);
  sqlite3_close(s->wr);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->buf);
  free(s);
  return NULL;
}

ackrpc_status ackrpc_reply_store_open(const ackrpc_reply_store_options *o,
                                      ackrpc_reply_store **ret_store) {
  if (!o || !o->path || !*o->path || !ret_store) return ACKRPC_E_INVAL;
  ackrpc_reply_store *s = calloc(1, sizeof *s);
  if (!s) return ACKRPC_E_NOMEM;
  if (pthread_mutex_init(&s->mu, NULL) != 0) {
    free(s);
    return ACKRPC_E_NOMEM;
  }
  if (pthread_cond_init(&s->cv, NULL) != 0) {
    pthread_mutex_destroy(&s->mu);
    free(s);
    return ACKRPC_E_NOMEM;
  }
  s->retain_ms = o->retain_ms ? o->retain_ms : DEFAULT_RETAIN_MS;
  s->retain_count = o->retain_count ? o->retain_count : DEFAULT_RETAIN_COUNT;
  if (s->retain_count > INT64_MAX) s->retain_count = INT64_MAX;
  ackrpc_status st =
      open_conn(o->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &s->wr);
  if (st != ACKRPC_OK) goto fail;
  /* WAL: the loop's reader never waits for a writer. FULL: a commit is
   * fsync'ed before the answer it holds is sent. */
  int rc = akr_ob_exec(s->wr, "PRAGMA journal_mode=WAL");
  if (rc == SQLITE_OK) rc = akr_ob_exec(s->wr, "PRAGMA synchronous=FULL");
  if (rc == SQLITE_OK) rc = akr_ob_exec(s->wr, SCHEMA);
  if (rc != SQLITE_OK) {
    st = akr_ob_status(rc);
    goto fail;
  }
  st = open_conn(o->path, SQLITE_OPEN_READONLY, &s->rd);
  if (st == ACKRPC_OK) st = prepare(s->rd, SQL_FIND, &s->rd_find);
  if (st == ACKRPC_OK) st = prepare(s->wr, SQL_FIND, &s->wr_find);
  if (st == ACKRPC_OK) st = prepare(s->wr, SQL_INSERT, &s->insert);
  if (st == ACKRPC_OK) st = prepare(s->wr, SQL_PRUNE_AGE, &s->prune_age);
  if (st == ACKRPC_OK) st = prepare(s->wr, SQL_PRUNE_COUNT, &s->prune_count);
  if (st != ACKRPC_OK) goto fail;
  *ret_store = s;
  return ACKRPC_OK;
fail:
  ackrpc_reply_store_close(s);
  return st == ACKRPC_OK ? ACKRPC_E_STORE_IO : st;
}

void ackrpc_reply_store_attach(ackrpc_reply_store *s, ackrpc_server_options *o) {
  if (!s || !o) return;
  o->reply_lookup = ackrpc_reply_store_lookup;
  o->reply_lookup_user = s;
}

/* --- finding an answer --------------------------------------------------- */

typedef enum found { FOUND_NONE, FOUND_SAME, FOUND_OTHER, FOUND_ERROR } found;

/* Runs `find` for the id: the row's columns stay readable until reset. */
static found find(sqlite3_stmt *find, const uint8_t *id, size_t id_len,
                  const uint8_t *digest) {
  if (sqlite3_bind_blob(find, 1, id, (int)id_len, SQLITE_STATIC) != SQLITE_OK)
    return FOUND_ERROR;
  int rc = sqlite3_step(find);
  if (rc == SQLITE_DONE) return FOUND_NONE;
  if (rc != SQLITE_ROW) return FOUND_ERROR;
  const void *d = sqlite3_column_blob(find, 0);
  if (!d || sqlite3_column_bytes(find, 0) != ACKRPC_DIGEST_LEN ||
      memcmp(d, digest, ACKRPC_DIGEST_LEN) != 0)
    return FOUND_OTHER;
  return FOUND_SAME;
}

/* Copies the found row's answer into the store's buffer and *ret. */
static int take_answer(ackrpc_reply_store *s, sqlite3_stmt *st,
                       ackrpc_stored_reply *ret) {
  const char *msg = (const char *)sqlite3_column_text(st, 2);
  size_t msg_len = msg ? (size_t)sqlite3_column_bytes(st, 2) : 0;
  const void *body = sqlite3_column_blob(st, 3);
  size_t body_len = body ? (size_t)sqlite3_column_bytes(st, 3) : 0;
  size_t need = msg_len + 1 + body_len;
  if (need > s->buf_cap) {
    uint8_t *b = realloc(s->buf, need);
    if (!b) return -1;
    s->buf = b;
    s->buf_cap = need;
  }
  if (body_len) memcpy(s->buf, body, body_len);
  if (msg) memcpy(s->buf + body_len, msg, msg_len);
  s->buf[body_len + msg_len] = '\0';
  ret->status = (ackrpc_status)sqlite3_column_int(st, 1);
  ret->body = body_len ? s->buf : NULL;
  ret->body_len = body_len;
  ret->message = msg ? (const char *)s->buf + body_len : NULL;
  return 0;
}

ackrpc_lookup_result ackrpc_reply_store_lookup(void *store, const uint8_t *id,
                                               size_t id_len, const uint8_t *digest,
                                               ackrpc_stored_reply *ret) {
  ackrpc_reply_store *s = store;
  if (!s || !id || !digest || !ret) return ACKRPC_LOOKUP_ERROR;
  ackrpc_lookup_result r = ACKRPC_LOOKUP_ERROR;
  switch (find(s->rd_find, id, id_len, digest)) {
  case FOUND_NONE: r = ACKRPC_LOOKUP_NONE; break;
  case FOUND_OTHER:
    atomic_fetch_add(&s->refused, 1);
    r = ACKRPC_LOOKUP_MISMATCH;
    break;
  case FOUND_SAME:
    if (take_answer(s, s->rd_find, ret) == 0) {
      atomic_fetch_add(&s->hits, 1);
      r = ACKRPC_LOOKUP_FOUND;
    }
    break;
  case FOUND_ERROR: break;
  }
  sqlite3_reset(s->rd_find);
  sqlite3_clear_bindings(s->rd_find);
  return r;
}

/* --- transactions ------------------------------------------------------- */

/* Makes `call` the owner of the write connection, waiting for the one
 * before it. */
static void take(ackrpc_reply_store *s, const ackrpc_call *call) {
  pthread_mutex_lock(&s->mu);
  while (s->open_call)
    pthread_cond_wait(&s->cv, &s->mu);
  s->open_call = call;
  pthread_mutex_unlock(&s->mu);
}

/* Gives the write connection up, if `call` has it: 0, else -1. */
static int give_up(ackrpc_reply_store *s, const ackrpc_call *call) {
  pthread_mutex_lock(&s->mu);
  int mine = s->open_call == call;
  if (mine) {
    s->open_call = NULL;
    pthread_cond_signal(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
  return mine ? 0 : -1;
}

/* Whether `call` has the write connection. */
static int owns(ackrpc_reply_store *s, const ackrpc_call *call) {
  pthread_mutex_lock(&s->mu);
  int mine = s->open_call == call;
  pthread_mutex_unlock(&s->mu);
  return mine;
}

/* Ends begin() without a transaction: gives the connection up, answers. */
static ackrpc_status begin_fail(ackrpc_reply_store *s, ackrpc_call *call,
                                ackrpc_status ret, ackrpc_status status,
                                const char *msg) {
  if (!sqlite3_get_autocommit(s->wr)) akr_ob_exec(s->wr, "ROLLBACK");
  give_up(s, call);
  ackrpc_call_reply(call, status, msg, NULL);
  return ret;
}

ackrpc_status ackrpc_reply_store_begin(ackrpc_reply_store *s, ackrpc_call *call,
                                       sqlite3 **ret_db) {
  if (!s || !call || !ret_db) return ACKRPC_E_INVAL;
  size_t id_len = 0;
  const uint8_t *id = ackrpc_call_id(call, &id_len);
  const uint8_t *digest = ackrpc_call_request_digest(call);
  if (id_len && !digest) {
    ackrpc_call_reply(call, ACKRPC_FAILED_PRECONDITION,
                      "the server has no reply store attached: not run", NULL);
    return ACKRPC_E_INVAL;
  }
  take(s, call);
  int rc = akr_ob_exec(s->wr, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK)
    return begin_fail(s, call, akr_ob_status(rc), ACKRPC_UNAVAILABLE,
                      "the reply store cannot be written: not run, retry later");
  if (id_len) {
    found f = find(s->wr_find, id, id_len, digest);
    ackrpc_stored_reply r = {0};
    ackrpc_status ret = ACKRPC_E_ALREADY_ANSWERED;
    switch (f) {
    case FOUND_NONE: break;
    case FOUND_OTHER:
      atomic_fetch_add(&s->refused, 1);
      sqlite3_reset(s->wr_find);
      return begin_fail(s, call, ret, ACKRPC_INVALID_ARGUMENT, AKR_MSG_CALL_ID_REUSED);
    case FOUND_SAME:
      /* A repeat that raced its first call past the server's lookup. */
      atomic_fetch_add(&s->hits, 1);
      if (take_answer(s, s->wr_find, &r) != 0) {
        sqlite3_reset(s->wr_find);
        return begin_fail(s, call, ACKRPC_E_NOMEM, ACKRPC_UNAVAILABLE,
                          "out of memory: not run, retry later");
      }
      sqlite3_reset(s->wr_find);
      akr_ob_exec(s->wr, "ROLLBACK");
      give_up(s, call);
      ackrpc_call_reply_encoded(call, r.status, r.message, r.body, r.body_len);
      return ret;
    case FOUND_ERROR:
      sqlite3_reset(s->wr_find);
      return begin_fail(s, call, ACKRPC_E_STORE_IO, ACKRPC_UNAVAILABLE,
                        "the reply store cannot be read: not run, retry later");
    }
    sqlite3_reset(s->wr_find);
  }
  *ret_db = s->wr;
  return ACKRPC_OK;
}

/* Drops answers past retain_ms and beyond retain_count (in the open
 * transaction); counts them. SQLite's result code. */
static int prune(ackrpc_reply_store *s, int64_t now_ms) {
  int64_t cutoff = now_ms - (int64_t)s->retain_ms;
  sqlite3_bind_int64(s->prune_age, 1, cutoff);
  int rc = akr_ob_step_done(s->prune_age);
  if (rc != SQLITE_OK) return rc;
  uint64_t n = (uint64_t)sqlite3_changes(s->wr);
  sqlite3_bind_int64(s->prune_count, 1, (int64_t)s->retain_count);
  rc = akr_ob_step_done(s->prune_count);
  if (rc != SQLITE_OK) return rc;
  n += (uint64_t)sqlite3_changes(s->wr);
  atomic_fetch_add(&s->evicted, n);
  return SQLITE_OK;
}

/* Stores the call's answer in the open transaction; SQLite's result code. */
static int insert(ackrpc_reply_store *s, ackrpc_call *call, ackrpc_status status,
                  const char *message, const uint8_t *body, size_t body_len) {
  size_t id_len = 0;
  const uint8_t *id = ackrpc_call_id(call, &id_len);
  sqlite3_stmt *st = s->insert;
  int64_t now = akr_ob_wall_ms();
  sqlite3_bind_blob(st, 1, id, (int)id_len, SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, ackrpc_call_request_digest(call), ACKRPC_DIGEST_LEN,
                    SQLITE_STATIC);
  sqlite3_bind_int(st, 3, (int)status);
  if (message && *message)
    sqlite3_bind_text(st, 4, message, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 4);
  if (body_len)
    sqlite3_bind_blob64(st, 5, body, body_len, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 5);
  sqlite3_bind_int64(st, 6, now);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) return rc;
  if (++s->commits >= PRUNE_EVERY) {
    s->commits = 0;
    rc = prune(s, now);
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

ackrpc_status ackrpc_reply_store_commit(ackrpc_reply_store *s, ackrpc_call *call,
                                        ackrpc_status status, const char *message,
                                        const ProtobufCMessage *reply) {
  if (!s || !call || !owns(s, call)) return ACKRPC_E_INVAL;
  size_t id_len = 0;
  ackrpc_call_id(call, &id_len);
  int rc = SQLITE_OK;
  if (id_len) {
    uint8_t *body = NULL;
    size_t n = reply ? protobuf_c_message_get_packed_size(reply) : 0;
    if (n && !(body = malloc(n))) {
      rc = SQLITE_NOMEM;
    } else {
      if (n) protobuf_c_message_pack(reply, body);
      rc = insert(s, call, status, message, body, n);
      free(body);
    }
  }
  if (rc == SQLITE_OK) rc = akr_ob_exec(s->wr, "COMMIT");
  if (rc != SQLITE_OK) {
    ackrpc_status st = akr_ob_status(rc);
    if (!sqlite3_get_autocommit(s->wr)) akr_ob_exec(s->wr, "ROLLBACK");
    give_up(s, call);
    ackrpc_call_reply(call, ACKRPC_UNAVAILABLE,
                      "not stored: the reply store failed; retry with the same call id",
                      NULL);
    return st == ACKRPC_OK ? ACKRPC_E_STORE_IO : st;
  }
  if (id_len) atomic_fetch_add(&s->stored, 1);
  give_up(s, call);
  /* Committed: only now is the call answered. */
  return ackrpc_call_reply(call, status, message, reply);
}

ackrpc_status ackrpc_reply_store_abort(ackrpc_reply_store *s, ackrpc_call *call,
                                       ackrpc_status status, const char *message) {
  if (!s || !call || !owns(s, call)) return ACKRPC_E_INVAL;
  if (!sqlite3_get_autocommit(s->wr)) akr_ob_exec(s->wr, "ROLLBACK");
  give_up(s, call);
  return ackrpc_call_reply(call, status, message, NULL);
}

ackrpc_status ackrpc_reply_store_get_stats(ackrpc_reply_store *s,
                                           ackrpc_reply_store_stats *ret) {
  if (!s || !ret) return ACKRPC_E_INVAL;
  *ret = (ackrpc_reply_store_stats){.stored = atomic_load(&s->stored),
                                    .hits = atomic_load(&s->hits),
                                    .refused = atomic_load(&s->refused),
                                    .evicted = atomic_load(&s->evicted)};
  return ACKRPC_OK;
}
