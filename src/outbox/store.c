/* store.c: the outbox's SQLite database: the schema, the statements,
 * SQLite's result codes as statuses, and the commit counter
 * (outbox_internal.h).
 *
 * One database in WAL mode with synchronous=FULL (every commit is fsync'ed:
 * a message is durable when enqueue returns, through a power cut too, which
 * NORMAL would not promise) and exclusive locking mode (one process owns it;
 * no shared-memory index). Table `outbox` holds the pending messages with
 * their call ids, `dead_letters` the given-up ones. AUTOINCREMENT keeps ids
 * increasing and never reused, which is what ackrpc_outbox_last_id()
 * promises.
 *
 * The commit counter: SQLite drops, without a word, every WAL frame from the
 * first one whose checksum fails, so garbage in one frame silently undoes
 * that commit and all later ones (acked messages come back, enqueued ones
 * vanish). To notice, every write transaction adds one to a counter in
 * table `outbox_meta`, and after its COMMIT the counter is written, with
 * a random identity of the database, to the mark file "<path>-mark", and
 * synced (written after the commit's fsync, it can only lag the database,
 * never lead it; synced, it lags by at most the commit a power cut
 * interrupted). The mark is opened through the database's own SQLite VFS,
 * so that whatever sees the database's writes and syncs (a test's
 * power-loss VFS) sees the mark's too. At open,
 * a mark of the same database that is ahead of the counter means the
 * database lost commits: E_STORE_CORRUPT. A missing or unreadable mark, or
 * one of another database, is rewritten (docs/DELIVERY.md says what this
 * does not catch). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "outbox/outbox_internal.h"

#define BUSY_TIMEOUT_MS 2000 /* a dying previous owner may still hold the lock */

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " method TEXT NOT NULL,"
    " body BLOB NOT NULL,"
    " call_id BLOB NOT NULL UNIQUE,"
    " enqueued_at_ms INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " last_status INTEGER,"
    " last_message TEXT,"
    " sum INTEGER);"
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
    " dead_at_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS outbox_meta ("
    " k INTEGER PRIMARY KEY CHECK (k = 1),"
    " nonce INTEGER NOT NULL,"
    " commits INTEGER NOT NULL);";

#define MARK_MAGIC "AKROBMK1"
#define MARK_LEN 24 /* magic, nonce, commits (little-endian u64s) */

static const char *const SQL[S_COUNT_] = {
    [S_INSERT] = "INSERT INTO outbox (method, body, call_id, enqueued_at_ms, sum) "
                 "VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_FETCH] = "SELECT id, body, call_id, enqueued_at_ms, attempts, sum FROM outbox "
                "WHERE method = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
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
    [S_BUMP] = "UPDATE outbox_meta SET commits = ?1 WHERE k = 1",
};

int64_t akr_ob_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ackrpc_status akr_ob_status(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_ROW:
  case SQLITE_DONE: return ACKRPC_OK;
  case SQLITE_NOMEM: return ACKRPC_E_NOMEM;
  case SQLITE_FULL: return ACKRPC_E_STORE_FULL;
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB: return ACKRPC_E_STORE_CORRUPT;
  case SQLITE_BUSY:
  case SQLITE_LOCKED: return ACKRPC_E_STORE_LOCKED;
  default: return ACKRPC_E_STORE_IO;
  }
}

int akr_ob_exec(sqlite3 *db, const char *sql) {
  return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

int akr_ob_note_fault(ackrpc_outbox *ob, int rc) {
  if (ob->fault != ACKRPC_OK || akr_ob_status(rc) != ACKRPC_E_STORE_CORRUPT) return 0;
  ob->fault = ACKRPC_E_STORE_CORRUPT;
  if (ob->bad_sum_id)
    snprintf(ob->fault_msg, sizeof ob->fault_msg,
             "the outbox database is damaged (message %llu does not match its "
             "checksum): delivery stopped",
             (unsigned long long)ob->bad_sum_id);
  else
    snprintf(ob->fault_msg, sizeof ob->fault_msg,
             "the outbox database is damaged (%s): delivery stopped",
             sqlite3_errmsg(ob->db));
  return 1;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 1099511628211u;
  return h;
}

int64_t akr_ob_sum(const char *method, const uint8_t *body, size_t body_len,
                   const uint8_t *call_id, size_t call_id_len, int64_t enqueued_at_ms) {
  uint64_t h = 14695981039346656037u, n;
  h = fnv(h, method, strlen(method) + 1);
  n = body_len;
  h = fnv(h, &n, sizeof n);
  if (body_len) h = fnv(h, body, body_len);
  n = call_id_len;
  h = fnv(h, &n, sizeof n);
  h = fnv(h, call_id, call_id_len);
  h = fnv(h, &enqueued_at_ms, sizeof enqueued_at_ms);
  return (int64_t)(h & INT64_MAX);
}

void akr_ob_rollback(ackrpc_outbox *ob) {
  if (!sqlite3_get_autocommit(ob->db)) akr_ob_exec(ob->db, "ROLLBACK");
}

int akr_ob_step_done(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int akr_ob_query_u64(sqlite3_stmt *st, uint64_t *ret) {
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

long akr_ob_method_index(ackrpc_outbox *ob, const char *name) {
  for (size_t i = 0; i < ob->n_methods; i++)
    if (strcmp(ob->methods[i].name, name) == 0) return (long)i;
  method_queue *t = realloc(ob->methods, (ob->n_methods + 1) * sizeof *t);
  if (!t) return -1;
  ob->methods = t;
  char *copy = strdup(name);
  if (!copy) return -1;
  t[ob->n_methods] = (method_queue){.name = copy};
  return (long)ob->n_methods++;
}

static void mark_close(ackrpc_outbox *ob) {
  if (ob->mark) {
    if (ob->mark->pMethods) ob->mark->pMethods->xClose(ob->mark);
    free(ob->mark);
    ob->mark = NULL;
  }
  free(ob->mark_path);
  ob->mark_path = NULL;
}

void akr_ob_db_close(ackrpc_outbox *ob) {
  for (int i = 0; i < S_COUNT_; i++) {
    sqlite3_finalize(ob->st[i]);
    ob->st[i] = NULL;
  }
  sqlite3_close(ob->db);
  ob->db = NULL;
  mark_close(ob);
}

int akr_ob_bump(ackrpc_outbox *ob) {
  sqlite3_bind_int64(ob->st[S_BUMP], 1, (sqlite3_int64)(ob->commits + 1));
  return akr_ob_step_done(ob->st[S_BUMP]);
}

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void write_mark(ackrpc_outbox *ob) {
  if (!ob->mark) return;
  uint8_t b[MARK_LEN];
  memcpy(b, MARK_MAGIC, 8);
  put_u64(b + 8, ob->nonce);
  put_u64(b + 16, ob->commits);
  /* A failed write or sync only weakens the check: the mark lags. */
  if (ob->mark->pMethods->xWrite(ob->mark, b, sizeof b, 0) == SQLITE_OK)
    ob->mark->pMethods->xSync(ob->mark, SQLITE_SYNC_NORMAL);
}

void akr_ob_committed(ackrpc_outbox *ob) {
  ob->commits++;
  write_mark(ob);
}

/* Opens "<path>-mark" with the database's VFS. No mark (ob->mark NULL) if
 * it cannot be opened: then no check (documented). SQLite code. */
static int mark_open(ackrpc_outbox *ob, const char *path) {
  sqlite3_vfs *vfs = NULL;
  if (sqlite3_file_control(ob->db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs) !=
          SQLITE_OK ||
      !vfs)
    return SQLITE_OK;
  size_t plen = strlen(path);
  /* Two NULs: SQLite may look for URI parameters after a file name. */
  ob->mark_path = calloc(1, plen + sizeof "-mark" + 1);
  ob->mark = calloc(1, (size_t)vfs->szOsFile);
  if (!ob->mark_path || !ob->mark) {
    mark_close(ob);
    return SQLITE_NOMEM;
  }
  memcpy(ob->mark_path, path, plen);
  memcpy(ob->mark_path + plen, "-mark", sizeof "-mark");
  int flags = 0;
  /* A journal's type: created with the database's mode, and its
   * directory synced with its first sync. */
  if (vfs->xOpen(vfs, ob->mark_path, ob->mark,
                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_MAIN_JOURNAL,
                 &flags) != SQLITE_OK)
    mark_close(ob);
  return SQLITE_OK;
}

/* A database from before the per-message checksum gets its column (NULL
 * in the rows already there: those are not checked). */
static int add_sum_column(ackrpc_outbox *ob) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(ob->db, "SELECT sum FROM outbox LIMIT 0", -1, &st, NULL) ==
      SQLITE_OK) {
    sqlite3_finalize(st);
    return SQLITE_OK;
  }
  return akr_ob_exec(ob->db, "ALTER TABLE outbox ADD COLUMN sum INTEGER");
}

/* Reads the counter (creating the row with a fresh identity) and checks it
 * against the mark file. Returns an SQLite code; SQLITE_CORRUPT if the
 * database is behind its mark. */
static int check_mark(ackrpc_outbox *ob, const char *path) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(
      ob->db, "SELECT nonce, commits FROM outbox_meta WHERE k = 1", -1, &st, NULL);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_step(st);
  int found = rc == SQLITE_ROW;
  if (found) {
    ob->nonce = (uint64_t)sqlite3_column_int64(st, 0);
    ob->commits = (uint64_t)sqlite3_column_int64(st, 1);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_OK) return rc;
  if (!found) {
    /* A new database (or one from before the counter): a new identity. */
    uint64_t nonce = 0;
    if (getrandom(&nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
      nonce = (uint64_t)akr_ob_wall_ms() ^ ((uint64_t)getpid() << 32);
    nonce &= INT64_MAX; /* stored as a positive SQLite integer */
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT INTO outbox_meta VALUES (1, %lld, 0)",
             (long long)nonce);
    rc = akr_ob_exec(ob->db, sql);
    if (rc != SQLITE_OK) return rc;
    ob->nonce = nonce;
    ob->commits = 0;
  }
  rc = mark_open(ob, path);
  if (rc != SQLITE_OK || !ob->mark) return rc;
  uint8_t b[MARK_LEN] = {0};
  /* A short read (a new, empty mark) fills with zeros: no magic. */
  int rr = ob->mark->pMethods->xRead(ob->mark, b, sizeof b, 0);
  if ((rr == SQLITE_OK || rr == SQLITE_IOERR_SHORT_READ) &&
      memcmp(b, MARK_MAGIC, 8) == 0 && get_u64(b + 8) == ob->nonce &&
      get_u64(b + 16) > ob->commits)
    return SQLITE_CORRUPT; /* commits the mark saw are gone */
  write_mark(ob);
  return SQLITE_OK;
}

ackrpc_status akr_ob_db_open(ackrpc_outbox *ob, const char *path) {
  int rc = sqlite3_open_v2(
      path, &ob->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
      NULL);
  if (rc != SQLITE_OK) {
    ackrpc_status st = akr_ob_status(rc);
    akr_ob_db_close(ob);
    return st;
  }
  sqlite3_extended_result_codes(ob->db, 0);
  sqlite3_busy_timeout(ob->db, BUSY_TIMEOUT_MS);
  /* Exclusive before the first access: the lock is held from the first
   * transaction on, and WAL then needs no shared memory. */
  rc = akr_ob_exec(ob->db, "PRAGMA locking_mode=EXCLUSIVE");
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
  if (rc == SQLITE_OK) rc = akr_ob_exec(ob->db, "PRAGMA synchronous=FULL");
  /* The schema in a write transaction: this takes the exclusive lock. */
  if (rc == SQLITE_OK) rc = akr_ob_exec(ob->db, "BEGIN IMMEDIATE");
  if (rc == SQLITE_OK) rc = akr_ob_exec(ob->db, SCHEMA);
  if (rc == SQLITE_OK) rc = add_sum_column(ob);
  if (rc == SQLITE_OK) rc = check_mark(ob, path);
  if (rc == SQLITE_OK) rc = akr_ob_exec(ob->db, "COMMIT");
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
      if (m && akr_ob_method_index(ob, m) < 0) {
        rc = SQLITE_NOMEM;
        break;
      }
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    sqlite3_finalize(st);
  }
  if (rc != SQLITE_OK) {
    ackrpc_status s = akr_ob_status(rc);
    if (s == ACKRPC_OK) s = ACKRPC_E_STORE_IO;
    akr_ob_rollback(ob);
    akr_ob_db_close(ob);
    return s;
  }
  return ACKRPC_OK;
}
