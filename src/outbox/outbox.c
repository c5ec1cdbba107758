/* outbox.c: the durable outbox (include/ackrpc/outbox.h, docs/DELIVERY.md).
 *
 * Storage: one SQLite database in WAL mode with synchronous=FULL (every
 * commit is fsync'ed: a message is durable when enqueue returns, through a
 * power cut too, which NORMAL would not promise) and exclusive locking mode
 * (one process owns it; no shared-memory index). Table `outbox` holds the
 * pending messages with their call ids, `dead_letters` the given-up ones.
 * AUTOINCREMENT keeps ids increasing and never reused, which is what
 * ackrpc_outbox_last_id() promises.
 *
 * Concurrency: one connection, guarded by `mu`, used for short transactions
 * only; the worker never holds `mu` during a call. Order: per method, only
 * the oldest message (smallest id) is ever sent, so a message goes out only
 * once its predecessor is gone (acked or dead). The methods with messages
 * are kept in memory (with each one's backoff), so picking the next message
 * is one index seek per method, not a scan.
 *
 * Not here: the calls themselves (client.c: ackrpc_client_call_raw()).
 */
#include "ackrpc/outbox.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <sqlite3.h>

#include "ackrpc/client.h"
#include "core/clock.h"
#include "mem/arena.h"
#include "wire/depth.h"
#include "wire/encode.h"
#include "wire/frame.h"
#include "wire/head.h"
#include "wire/names.h"

#define DEFAULT_CALL_TIMEOUT_MS 10000
#define DEFAULT_BACKOFF_MS 50
#define DEFAULT_MAX_BACKOFF_MS 5000
#define BUSY_TIMEOUT_MS 2000 /* a dying previous owner may still hold the lock */
#define DB_ERROR_RETRY_US 100000
#define IDLE_POLL_MS 20

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " method TEXT NOT NULL,"
    " body BLOB NOT NULL,"
    " call_id BLOB NOT NULL UNIQUE,"
    " enqueued_at_ms INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " last_status INTEGER,"
    " last_message TEXT);"
    "CREATE INDEX IF NOT EXISTS outbox_by_method ON outbox (method, id);"
    "CREATE TABLE IF NOT EXISTS dead_letters ("
    " id INTEGER PRIMARY KEY,"
    " method TEXT NOT NULL,"
    " body BLOB NOT NULL,"
    " call_id BLOB NOT NULL,"
    " enqueued_at_ms INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " last_status INTEGER NOT NULL,"
    " last_message TEXT,"
    " dead_at_ms INTEGER NOT NULL);";

enum stmt_id {
  S_INSERT,
  S_HEAD,
  S_DELETE,
  S_UPDATE,
  S_TO_DEAD,
  S_LAST_ID,
  S_PENDING,
  S_IN_FLIGHT,
  S_DEAD,
  S_ANY,
  S_DEAD_AFTER,
  S_COUNT_
};

static const char *const SQL[S_COUNT_] = {
    [S_INSERT] = "INSERT INTO outbox (method, body, call_id, enqueued_at_ms) "
                 "VALUES (?1, ?2, ?3, ?4)",
    [S_HEAD] = "SELECT id, body, call_id, enqueued_at_ms, attempts FROM outbox "
               "WHERE method = ?1 ORDER BY id LIMIT 1",
    [S_DELETE] = "DELETE FROM outbox WHERE id = ?1",
    [S_UPDATE] = "UPDATE outbox SET attempts = ?2, last_status = ?3, last_message = ?4 "
                 "WHERE id = ?1",
    [S_TO_DEAD] = "INSERT INTO dead_letters (id, method, body, call_id, enqueued_at_ms,"
                  " attempts, last_status, last_message, dead_at_ms) "
                  "SELECT id, method, body, call_id, enqueued_at_ms, ?2, ?3, ?4, ?5 "
                  "FROM outbox WHERE id = ?1",
    [S_LAST_ID] = "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'",
    [S_PENDING] = "SELECT count(*) FROM outbox",
    [S_IN_FLIGHT] = "SELECT count(*) FROM outbox WHERE attempts > 0",
    [S_DEAD] = "SELECT count(*) FROM dead_letters",
    [S_ANY] = "SELECT EXISTS (SELECT 1 FROM outbox)",
    [S_DEAD_AFTER] = "SELECT id, method, body, call_id, attempts, last_status, "
                     "last_message, enqueued_at_ms FROM dead_letters WHERE id > ?1 "
                     "ORDER BY id LIMIT 1",
};

/* A method with messages, and when its head may be tried again. */
typedef struct method_queue {
  char *name;
  uint64_t next_at_us; /* CLOCK_MONOTONIC; 0: now */
} method_queue;

struct ackrpc_outbox {
  sqlite3 *db;
  sqlite3_stmt *st[S_COUNT_];
  pthread_mutex_t mu; /* the connection, the method list, the flags */
  pthread_cond_t cv;  /* enqueue and stop wake the worker */
  method_queue *methods;
  size_t n_methods;
  ackrpc_client *client; /* NULL: no address */
  uint32_t call_timeout_ms;
  unsigned max_attempts;
  uint32_t max_age_ms;
  uint32_t initial_backoff_ms, max_backoff_ms;
  uint32_t retry_on; /* bit n: canonical status n */
  ackrpc_outbox_attempt_fn on_attempt;
  void *on_attempt_user;
  uint64_t rng;
  pthread_t worker;
  int running, stopping;
};

/* One message taken for an attempt. */
typedef struct message {
  uint64_t id;
  size_t method; /* index in methods */
  char *method_name;
  uint8_t *body;
  size_t body_len;
  uint8_t call_id[ACKRPC_MAX_CALL_ID];
  size_t call_id_len;
  int64_t enqueued_at_ms;
  unsigned attempts;
} message;

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An SQLite result code as a status. */
static ackrpc_status db_status(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_ROW:
  case SQLITE_DONE: return ACKRPC_OK;
  case SQLITE_NOMEM: return ACKRPC_E_NOMEM;
  case SQLITE_FULL: return ACKRPC_RESOURCE_EXHAUSTED;
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB: return ACKRPC_DATA_LOSS;
  case SQLITE_BUSY:
  case SQLITE_LOCKED: return ACKRPC_UNAVAILABLE;
  default: return ACKRPC_E_SYSTEM;
  }
}

static int exec_sql(sqlite3 *db, const char *sql) {
  return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Ends a failed transaction, if one is open. */
static void rollback(ackrpc_outbox *ob) {
  if (!sqlite3_get_autocommit(ob->db)) exec_sql(ob->db, "ROLLBACK");
}

/* Steps a statement that returns no row, and resets it. */
static int step_done(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Runs a one-number query. */
static int query_u64(sqlite3_stmt *st, uint64_t *ret) {
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *ret = (uint64_t)sqlite3_column_int64(st, 0);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    *ret = 0;
    rc = SQLITE_OK;
  }
  sqlite3_reset(st);
  return rc;
}

static uint64_t next_random(ackrpc_outbox *ob) {
  ob->rng = ob->rng * 6364136223846793005u + 1442695040888963407u;
  return ob->rng >> 11;
}

/* Index of `name` in the method list, adding it; -1 if out of memory. */
static long method_index(ackrpc_outbox *ob, const char *name) {
  for (size_t i = 0; i < ob->n_methods; i++)
    if (strcmp(ob->methods[i].name, name) == 0) return (long)i;
  method_queue *t = realloc(ob->methods, (ob->n_methods + 1) * sizeof *t);
  if (!t) return -1;
  ob->methods = t;
  char *copy = strdup(name);
  if (!copy) return -1;
  t[ob->n_methods] = (method_queue){copy, 0};
  return (long)ob->n_methods++;
}

/* --- opening and closing ----------------------------------------------- */

static void db_close(ackrpc_outbox *ob) {
  for (int i = 0; i < S_COUNT_; i++) {
    sqlite3_finalize(ob->st[i]);
    ob->st[i] = NULL;
  }
  sqlite3_close(ob->db);
  ob->db = NULL;
}

static ackrpc_status db_open(ackrpc_outbox *ob, const char *path) {
  int rc = sqlite3_open_v2(
      path, &ob->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
      NULL);
  if (rc != SQLITE_OK) {
    ackrpc_status st = rc == SQLITE_NOMEM ? ACKRPC_E_NOMEM : ACKRPC_E_SYSTEM;
    if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT) st = ACKRPC_DATA_LOSS;
    db_close(ob);
    return st;
  }
  sqlite3_extended_result_codes(ob->db, 0);
  sqlite3_busy_timeout(ob->db, BUSY_TIMEOUT_MS);
  /* Exclusive before the first access: the lock is held from the first
   * transaction on, and WAL then needs no shared memory. */
  rc = exec_sql(ob->db, "PRAGMA locking_mode=EXCLUSIVE");
  sqlite3_stmt *st = NULL;
  int wal = 0;
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(ob->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const char *mode = (const char *)sqlite3_column_text(st, 0);
      wal = mode && strcmp(mode, "wal") == 0;
      rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
  }
  if (rc == SQLITE_OK && !wal) rc = SQLITE_CANTOPEN;
  if (rc == SQLITE_OK) rc = exec_sql(ob->db, "PRAGMA synchronous=FULL");
  /* The schema in a write transaction: this takes the exclusive lock. */
  if (rc == SQLITE_OK) rc = exec_sql(ob->db, "BEGIN IMMEDIATE");
  if (rc == SQLITE_OK) rc = exec_sql(ob->db, SCHEMA);
  if (rc == SQLITE_OK) rc = exec_sql(ob->db, "COMMIT");
  for (int i = 0; rc == SQLITE_OK && i < S_COUNT_; i++)
    rc = sqlite3_prepare_v3(ob->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &ob->st[i],
                            NULL);
  /* The methods with messages (a scan, once). */
  if (rc == SQLITE_OK)
    rc =
        sqlite3_prepare_v2(ob->db, "SELECT DISTINCT method FROM outbox", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const char *m = (const char *)sqlite3_column_text(st, 0);
      if (m && method_index(ob, m) < 0) {
        rc = SQLITE_NOMEM;
        break;
      }
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    sqlite3_finalize(st);
  }
  if (rc != SQLITE_OK) {
    ackrpc_status s = db_status(rc);
    if (s == ACKRPC_OK) s = ACKRPC_E_SYSTEM;
    rollback(ob);
    db_close(ob);
    return s;
  }
  return ACKRPC_OK;
}

ackrpc_status ackrpc_outbox_open(const ackrpc_outbox_options *o, ackrpc_outbox **ret) {
  if (!o || !ret || !o->path || (o->n_retry_on && !o->retry_on)) return ACKRPC_E_INVAL;
  uint32_t retry_on = 0;
  if (o->retry_on) {
    for (size_t i = 0; i < o->n_retry_on; i++) {
      if (o->retry_on[i] == ACKRPC_OK || !ackrpc_status_is_canonical(o->retry_on[i]))
        return ACKRPC_E_INVAL;
      retry_on |= 1u << (unsigned)o->retry_on[i];
    }
  } else {
    retry_on = 1u << ACKRPC_DEADLINE_EXCEEDED | 1u << ACKRPC_ABORTED |
               1u << ACKRPC_UNAVAILABLE | 1u << ACKRPC_RESOURCE_EXHAUSTED;
  }
  ackrpc_outbox *ob = calloc(1, sizeof *ob);
  if (!ob) return ACKRPC_E_NOMEM;
  ob->call_timeout_ms =
      o->call_timeout_ms ? o->call_timeout_ms : DEFAULT_CALL_TIMEOUT_MS;
  ob->max_attempts = o->max_attempts;
  ob->max_age_ms = o->max_age_ms;
  ob->initial_backoff_ms =
      o->initial_backoff_ms ? o->initial_backoff_ms : DEFAULT_BACKOFF_MS;
  ob->max_backoff_ms = o->max_backoff_ms ? o->max_backoff_ms : DEFAULT_MAX_BACKOFF_MS;
  if (ob->max_backoff_ms < ob->initial_backoff_ms)
    ob->max_backoff_ms = ob->initial_backoff_ms;
  ob->retry_on = retry_on;
  ob->on_attempt = o->on_attempt;
  ob->on_attempt_user = o->on_attempt_user;
  ob->rng = akr_now_us() ^ (uint64_t)(uintptr_t)ob;
  ackrpc_status st = ACKRPC_OK;
  if (o->address) {
    ackrpc_client_options co = {.address = o->address,
                                .timeout_ms = ob->call_timeout_ms};
    st = ackrpc_client_new(&co, &ob->client);
  }
  if (st == ACKRPC_OK) st = db_open(ob, o->path);
  if (st != ACKRPC_OK) {
    ackrpc_client_free(ob->client);
    for (size_t i = 0; i < ob->n_methods; i++)
      free(ob->methods[i].name);
    free(ob->methods);
    free(ob);
    return st;
  }
  pthread_mutex_init(&ob->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ob->cv, &ca);
  pthread_condattr_destroy(&ca);
  *ret = ob;
  return ACKRPC_OK;
}

ackrpc_outbox *ackrpc_outbox_close(ackrpc_outbox *ob) {
  if (!ob) return NULL;
  ackrpc_outbox_stop(ob);
  db_close(ob);
  ackrpc_client_free(ob->client);
  for (size_t i = 0; i < ob->n_methods; i++)
    free(ob->methods[i].name);
  free(ob->methods);
  pthread_cond_destroy(&ob->cv);
  pthread_mutex_destroy(&ob->mu);
  free(ob);
  return NULL;
}

/* --- storing ----------------------------------------------------------- */

static void new_call_id(ackrpc_outbox *ob, uint8_t id[16]) {
  if (getrandom(id, 16, 0) == 16) return;
  /* No entropy source: time, address and a counter still never repeat
   * within this process, and collide across processes only by bad luck. */
  uint64_t a = (uint64_t)wall_ms() ^ akr_now_us(), b = next_random(ob);
  memcpy(id, &a, 8);
  memcpy(id + 8, &b, 8);
}

ackrpc_status ackrpc_outbox_enqueue(ackrpc_outbox *ob, const char *method,
                                    const uint8_t *body, size_t body_len,
                                    uint64_t *ret_id) {
  if (!ob || !method || !akr_method_name_valid(method) || (body_len && !body) ||
      body_len > UINT32_MAX)
    return ACKRPC_E_INVAL;
  uint8_t id[16];
  new_call_id(ob, id);
  pthread_mutex_lock(&ob->mu);
  long mi = method_index(ob, method);
  if (mi < 0) {
    pthread_mutex_unlock(&ob->mu);
    return ACKRPC_E_NOMEM;
  }
  sqlite3_stmt *st = ob->st[S_INSERT];
  int rc = exec_sql(ob->db, "BEGIN IMMEDIATE");
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, method, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, body ? (const void *)body : (const void *)"",
                      (int)body_len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, id, sizeof id, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, wall_ms());
    rc = step_done(st);
  }
  uint64_t rowid = (uint64_t)sqlite3_last_insert_rowid(ob->db);
  if (rc == SQLITE_OK) rc = exec_sql(ob->db, "COMMIT");
  if (rc != SQLITE_OK)
    rollback(ob);
  else
    pthread_cond_broadcast(&ob->cv);
  pthread_mutex_unlock(&ob->mu);
  if (rc != SQLITE_OK)
    return db_status(rc) == ACKRPC_OK ? ACKRPC_E_SYSTEM : db_status(rc);
  if (ret_id) *ret_id = rowid;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_outbox_last_id(ackrpc_outbox *ob, uint64_t *ret_id) {
  if (!ob || !ret_id) return ACKRPC_E_INVAL;
  pthread_mutex_lock(&ob->mu);
  uint64_t v = 0;
  int rc = query_u64(ob->st[S_LAST_ID], &v);
  pthread_mutex_unlock(&ob->mu);
  if (rc != SQLITE_OK) return db_status(rc);
  *ret_id = v;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_outbox_count(ackrpc_outbox *ob, ackrpc_outbox_counts *ret) {
  if (!ob || !ret) return ACKRPC_E_INVAL;
  ackrpc_outbox_counts c = {0};
  pthread_mutex_lock(&ob->mu);
  int rc = query_u64(ob->st[S_PENDING], &c.pending);
  if (rc == SQLITE_OK) rc = query_u64(ob->st[S_IN_FLIGHT], &c.in_flight);
  if (rc == SQLITE_OK) rc = query_u64(ob->st[S_DEAD], &c.dead);
  pthread_mutex_unlock(&ob->mu);
  if (rc != SQLITE_OK) return db_status(rc);
  *ret = c;
  return ACKRPC_OK;
}

void ackrpc_outbox_message_clear(ackrpc_outbox_message *m) {
  if (!m) return;
  free(m->method);
  free(m->body);
  free(m->last_message);
  memset(m, 0, sizeof *m);
}

ackrpc_status ackrpc_outbox_dead_letter(ackrpc_outbox *ob, uint64_t after_id,
                                        ackrpc_outbox_message *ret) {
  if (!ob || !ret) return ACKRPC_E_INVAL;
  ackrpc_outbox_message m = {0};
  ackrpc_status status = ACKRPC_OK;
  pthread_mutex_lock(&ob->mu);
  sqlite3_stmt *st = ob->st[S_DEAD_AFTER];
  sqlite3_bind_int64(st, 1, (sqlite3_int64)after_id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    m.id = (uint64_t)sqlite3_column_int64(st, 0);
    const char *method = (const char *)sqlite3_column_text(st, 1);
    m.method = strdup(method ? method : "");
    m.body_len = (size_t)sqlite3_column_bytes(st, 2);
    if (m.body_len) {
      m.body = malloc(m.body_len);
      if (m.body) memcpy(m.body, sqlite3_column_blob(st, 2), m.body_len);
    }
    size_t idl = (size_t)sqlite3_column_bytes(st, 3);
    m.call_id_len = idl > sizeof m.call_id ? sizeof m.call_id : idl;
    memcpy(m.call_id, sqlite3_column_blob(st, 3), m.call_id_len);
    m.attempts = (unsigned)sqlite3_column_int64(st, 4);
    m.last_status = (ackrpc_status)sqlite3_column_int(st, 5);
    const char *lm = (const char *)sqlite3_column_text(st, 6);
    if (lm) m.last_message = strdup(lm);
    m.enqueued_at_ms = sqlite3_column_int64(st, 7);
    if (!m.method || (m.body_len && !m.body) || (lm && !m.last_message))
      status = ACKRPC_E_NOMEM;
  } else if (rc == SQLITE_DONE) {
    status = ACKRPC_NOT_FOUND;
  } else {
    status = db_status(rc);
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  pthread_mutex_unlock(&ob->mu);
  if (status != ACKRPC_OK) {
    ackrpc_outbox_message_clear(&m);
    return status;
  }
  *ret = m;
  return ACKRPC_OK;
}

/* --- delivering -------------------------------------------------------- */

static void message_free(message *m) {
  free(m->method_name);
  free(m->body);
  memset(m, 0, sizeof *m);
}

/* Takes the head of the method that is due first. Returns SQLITE_OK with
 * *ret_found 1 (m filled) or 0 (nothing due; *ret_wait_us is how long until
 * something is, UINT64_MAX if the outbox is empty). Under mu. */
static int pick(ackrpc_outbox *ob, message *m, int *ret_found, uint64_t *ret_wait_us) {
  uint64_t now = akr_now_us(), wait = UINT64_MAX;
  *ret_found = 0;
  for (size_t i = 0; i < ob->n_methods; i++) {
    method_queue *q = &ob->methods[i];
    if (q->next_at_us > now) {
      /* Still backing off; it has messages (an empty queue is dropped). */
      if (q->next_at_us - now < wait) wait = q->next_at_us - now;
      continue;
    }
    sqlite3_stmt *st = ob->st[S_HEAD];
    sqlite3_bind_text(st, 1, q->name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      m->id = (uint64_t)sqlite3_column_int64(st, 0);
      m->method = i;
      m->method_name = strdup(q->name);
      m->body_len = (size_t)sqlite3_column_bytes(st, 1);
      m->body = malloc(m->body_len ? m->body_len : 1);
      if (m->body && m->body_len)
        memcpy(m->body, sqlite3_column_blob(st, 1), m->body_len);
      size_t idl = (size_t)sqlite3_column_bytes(st, 2);
      m->call_id_len = idl > sizeof m->call_id ? sizeof m->call_id : idl;
      memcpy(m->call_id, sqlite3_column_blob(st, 2), m->call_id_len);
      m->enqueued_at_ms = sqlite3_column_int64(st, 3);
      m->attempts = (unsigned)sqlite3_column_int64(st, 4);
      sqlite3_reset(st);
      sqlite3_clear_bindings(st);
      if (!m->method_name || !m->body) {
        message_free(m);
        return SQLITE_NOMEM;
      }
      *ret_found = 1;
      return SQLITE_OK;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) return rc;
    /* No message for this method: forget it (enqueue adds it again). */
    free(q->name);
    ob->methods[i] = ob->methods[--ob->n_methods];
    i--;
  }
  *ret_wait_us = wait;
  return SQLITE_OK;
}

static int retryable(const ackrpc_outbox *ob, ackrpc_status st) {
  switch (ackrpc_status_outcome(st)) {
  case ACKRPC_OUTCOME_NO_ACK: return 1;
  case ACKRPC_OUTCOME_NOT_DELIVERED: return st != ACKRPC_E_INVAL; /* malformed: never */
  case ACKRPC_OUTCOME_ACKED:
    return ackrpc_status_is_canonical(st) && (ob->retry_on >> (unsigned)st & 1u);
  }
  return 0;
}

static uint64_t backoff_us(ackrpc_outbox *ob, unsigned attempts) {
  uint64_t b = ob->initial_backoff_ms;
  for (unsigned i = 1; i < attempts && b < ob->max_backoff_ms; i++)
    b *= 2;
  if (b > ob->max_backoff_ms) b = ob->max_backoff_ms;
  b *= 1000u;
  return b / 2 + next_random(ob) % (b / 2 + 1);
}

/* Commits what one attempt did to message m. Under mu. Returns the fate;
 * a database error leaves the message as it was, to be sent again (with
 * its call id) after a backoff. */
static ackrpc_outbox_fate record(ackrpc_outbox *ob, message *m,
                                 const ackrpc_result *r) {
  unsigned attempts = m->attempts + 1;
  method_queue *q = m->method < ob->n_methods &&
                            strcmp(ob->methods[m->method].name, m->method_name) == 0
                        ? &ob->methods[m->method]
                        : NULL;
  int rc;
  ackrpc_outbox_fate fate;
  if (r->status == ACKRPC_OK) {
    fate = ACKRPC_OUTBOX_ACKED;
    sqlite3_bind_int64(ob->st[S_DELETE], 1, (sqlite3_int64)m->id);
    rc = step_done(ob->st[S_DELETE]);
  } else {
    int dead =
        !retryable(ob, r->status) ||
        (ob->max_attempts && attempts >= ob->max_attempts) ||
        (ob->max_age_ms && wall_ms() - m->enqueued_at_ms >= (int64_t)ob->max_age_ms);
    fate = dead ? ACKRPC_OUTBOX_DEAD : ACKRPC_OUTBOX_RETRY;
    rc = exec_sql(ob->db, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = ob->st[dead ? S_TO_DEAD : S_UPDATE];
    if (rc == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, (sqlite3_int64)m->id);
      sqlite3_bind_int64(st, 2, attempts);
      sqlite3_bind_int(st, 3, (int)r->status);
      if (r->message)
        sqlite3_bind_text(st, 4, r->message, -1, SQLITE_STATIC);
      else
        sqlite3_bind_null(st, 4);
      if (dead) sqlite3_bind_int64(st, 5, wall_ms());
      rc = step_done(st);
    }
    if (rc == SQLITE_OK && dead) {
      sqlite3_bind_int64(ob->st[S_DELETE], 1, (sqlite3_int64)m->id);
      rc = step_done(ob->st[S_DELETE]);
    }
    if (rc == SQLITE_OK) rc = exec_sql(ob->db, "COMMIT");
    if (rc != SQLITE_OK) rollback(ob);
  }
  if (rc != SQLITE_OK) {
    /* Not recorded: the message stays the head and is sent again. */
    if (q) q->next_at_us = akr_now_us() + backoff_us(ob, attempts);
    return ACKRPC_OUTBOX_RETRY;
  }
  m->attempts = attempts;
  if (q)
    q->next_at_us =
        fate == ACKRPC_OUTBOX_RETRY ? akr_now_us() + backoff_us(ob, attempts) : 0;
  return fate;
}

/* One attempt at a picked message, outside mu; then records it. */
static void attempt(ackrpc_outbox *ob, message *m) {
  ackrpc_call_options co = {.call_id = m->call_id,
                            .call_id_len = m->call_id_len,
                            .timeout_ms = ob->call_timeout_ms};
  ackrpc_result r = {0};
  ackrpc_client_call_raw(ob->client, m->method_name, m->body, m->body_len, &co, &r);
  pthread_mutex_lock(&ob->mu);
  ackrpc_outbox_fate fate = record(ob, m, &r);
  pthread_mutex_unlock(&ob->mu);
  if (ob->on_attempt) {
    ackrpc_outbox_attempt a = {.id = m->id,
                               .method = m->method_name,
                               .call_id = m->call_id,
                               .call_id_len = m->call_id_len,
                               .attempt = m->attempts ? m->attempts : 1,
                               .status = r.status,
                               .message = r.message,
                               .reply = r.reply_bytes,
                               .reply_len = r.reply_bytes_len,
                               .fate = fate};
    ob->on_attempt(ob->on_attempt_user, &a);
  }
  ackrpc_result_clear(&r);
}

static void *worker_main(void *arg) {
  ackrpc_outbox *ob = arg;
  pthread_mutex_lock(&ob->mu);
  while (!ob->stopping) {
    message m = {0};
    int found = 0;
    uint64_t wait = UINT64_MAX;
    int rc = pick(ob, &m, &found, &wait);
    if (rc != SQLITE_OK) wait = DB_ERROR_RETRY_US; /* e.g. I/O error: try later */
    if (found) {
      pthread_mutex_unlock(&ob->mu);
      attempt(ob, &m);
      message_free(&m);
      pthread_mutex_lock(&ob->mu);
      continue;
    }
    /* Nothing due: sleep until something is, or enqueue or stop wake us. */
    if (wait == UINT64_MAX) {
      pthread_cond_wait(&ob->cv, &ob->mu);
    } else {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      uint64_t ns = (uint64_t)ts.tv_nsec + (wait % 1000000u) * 1000u;
      ts.tv_sec += (time_t)(wait / 1000000u + ns / 1000000000u);
      ts.tv_nsec = (long)(ns % 1000000000u);
      pthread_cond_timedwait(&ob->cv, &ob->mu, &ts);
    }
  }
  pthread_mutex_unlock(&ob->mu);
  return NULL;
}

ackrpc_status ackrpc_outbox_start(ackrpc_outbox *ob) {
  if (!ob) return ACKRPC_E_INVAL;
  if (!ob->client || ob->running) return ACKRPC_E_STATE;
  ob->stopping = 0;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int err = pthread_create(&ob->worker, NULL, worker_main, ob);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    errno = err;
    return ACKRPC_E_SYSTEM;
  }
  ob->running = 1;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_outbox_stop(ackrpc_outbox *ob) {
  if (!ob) return ACKRPC_E_INVAL;
  if (!ob->running) return ACKRPC_OK;
  pthread_mutex_lock(&ob->mu);
  ob->stopping = 1;
  pthread_cond_broadcast(&ob->cv);
  pthread_mutex_unlock(&ob->mu);
  pthread_join(ob->worker, NULL);
  ob->running = 0;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_outbox_pump(ackrpc_outbox *ob, unsigned max,
                                 unsigned *ret_attempts) {
  if (!ob) return ACKRPC_E_INVAL;
  if (!ob->client || ob->running) return ACKRPC_E_STATE;
  unsigned n = 0;
  ackrpc_status status = ACKRPC_OK;
  while (n < max) {
    message m = {0};
    int found = 0;
    uint64_t wait;
    pthread_mutex_lock(&ob->mu);
    int rc = pick(ob, &m, &found, &wait);
    pthread_mutex_unlock(&ob->mu);
    if (rc != SQLITE_OK) {
      status = db_status(rc);
      break;
    }
    if (!found) break;
    attempt(ob, &m);
    message_free(&m);
    n++;
  }
  if (ret_attempts) *ret_attempts = n;
  return status;
}

ackrpc_status ackrpc_outbox_wait_idle(ackrpc_outbox *ob, uint32_t timeout_ms) {
  if (!ob) return ACKRPC_E_INVAL;
  uint64_t end = akr_now_us() + (uint64_t)timeout_ms * 1000u;
  for (;;) {
    uint64_t any = 0;
    pthread_mutex_lock(&ob->mu);
    int rc = query_u64(ob->st[S_ANY], &any);
    pthread_mutex_unlock(&ob->mu);
    if (rc != SQLITE_OK) return db_status(rc);
    if (!any) return ACKRPC_OK;
    if (akr_now_us() >= end) return ACKRPC_DEADLINE_EXCEEDED;
    struct timespec ts = {0, IDLE_POLL_MS * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
}
