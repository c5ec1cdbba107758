/* mailbox_receiver: the Mailbox service (mailbox.proto), storing each letter
 * in SQLite and acknowledging it only once it is on disk.
 *
 *   mailbox_receiver [--slow-ack SEQ] [--slow-ack-ms MS] [--reply-cache] SOCKET DB
 *   mailbox_receiver --count DB
 *
 * The database uses SQLite's embedded defaults for durability: WAL journal,
 * synchronous=FULL, so a committed transaction survives a power cut.
 *
 * Why a writer thread: a commit waits for fsync, and handlers run on the
 * server's loop, which must not block. So the Deliver and Count handlers copy
 * what they need into a job and return; one thread owns the database
 * connection, runs each job in a transaction and answers the call from there
 * (ackrpc_call_reply() is callable from any thread) only after COMMIT
 * succeeded. One writer also serializes the transactions: a Count sees every
 * letter acknowledged before it.
 *
 * Idempotency: the library's durable reply store (ackrpc/reply_store.h)
 * keeps each answer under its call id in the same transaction as the letter,
 * in the same database file. A retry of a call that may have lost its ack is
 * answered with the original receipt by the server itself, from memory or
 * from disk (after a restart too), and the handler never sees it; a call id
 * reused for another letter is refused INVALID_ARGUMENT. A second letter
 * with the same (sender, seq) under another call id is refused with
 * ALREADY_EXISTS.
 *
 * --slow-ack SEQ delays the commit, and so the ack, of the first letter with
 * that sequence number by --slow-ack-ms (default 3000), so that a sender
 * with a shorter deadline sees "delivered, no ack" and retries with the same
 * call id, which waits for the first call and then gets its answer
 * (run_mailbox.sh tests this).
 *
 * It prints one line per letter stored ("stored letter ..."), and when it
 * stops the repeats the server answered without the handler ("repeats
 * ..."). SIGTERM or SIGINT stop it cleanly: calls in flight finish, the
 * socket file and its lock file are removed, the database is closed, and it
 * exits 0.
 *
 * --reply-cache is accepted for older scripts: the reply store turns the
 * server's reply cache on anyway.
 *
 * --count DB prints the number of letters in DB and exits.
 */
/* pthread_sigmask, strdup, nanosleep, clock_gettime: POSIX. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include <ackrpc/ackrpc.h>
#include <ackrpc/reply_store.h>

#include "mailbox.ackrpc.h"

typedef enum job_kind { JOB_DELIVER, JOB_COUNT } job_kind;

/* One call handed to the writer thread, with copies of what it reads (the
 * loop thread owns the call; only ackrpc_call_reply() is for other threads). */
typedef struct job {
  struct job *next;
  job_kind kind;
  ackrpc_call *call;
  char *sender;
  uint64_t seq;
  char *body;
  uint8_t call_id[ACKRPC_MAX_CALL_ID];
  size_t call_id_len;
} job;

typedef struct receiver {
  sqlite3 *db;                /* for counting (the writer thread's) */
  ackrpc_reply_store *store;  /* answers, and the letters' transactions */
  sqlite3_stmt *insert;       /* a new letter, on the store's connection */
  sqlite3_stmt *count_all;    /* letters in the mailbox */
  sqlite3_stmt *count_sender; /* letters from one sender */

  pthread_t writer;
  pthread_mutex_t mu; /* guards head, tail, quit */
  pthread_cond_t cv;
  job *head, *tail;
  int quit;

  /* Writer thread only. */
  uint64_t stored;
  uint64_t slow_seq; /* 0: none */
  uint32_t slow_ms;
  int slow_done;
  int reply_cache; /* --reply-cache */
  int handover;    /* --handover */
} receiver;

static const char *const SCHEMA = "CREATE TABLE IF NOT EXISTS letters ("
                                  " id INTEGER PRIMARY KEY,"
                                  " sender TEXT NOT NULL,"
                                  " seq INTEGER NOT NULL,"
                                  " body TEXT NOT NULL,"
                                  " stored_at_ms INTEGER NOT NULL,"
                                  " call_id BLOB NOT NULL UNIQUE,"
                                  " UNIQUE (sender, seq))";

/* --- Handlers: on the loop's thread, never blocking --- */

static void job_free(job *j) {
  if (!j) return;
  free(j->sender);
  free(j->body);
  free(j);
}

/* Queues a job for the writer. */
static void enqueue(receiver *r, job *j) {
  pthread_mutex_lock(&r->mu);
  j->next = NULL;
  if (r->tail)
    r->tail->next = j;
  else
    r->head = j;
  r->tail = j;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

/* A job for `call`, with its call id copied; NULL if out of memory (then the
 * call has been answered). */
static job *job_new(ackrpc_call *call, job_kind kind) {
  job *j = calloc(1, sizeof *j);
  if (!j) {
    ackrpc_call_reply(call, ACKRPC_RESOURCE_EXHAUSTED, "receiver out of memory", NULL);
    return NULL;
  }
  j->kind = kind;
  j->call = call;
  size_t len = 0;
  const uint8_t *id = ackrpc_call_id(call, &len);
  if (len > sizeof j->call_id) len = sizeof j->call_id; /* cannot happen: 64 max */
  memcpy(j->call_id, id, len);
  j->call_id_len = len;
  return j;
}

static void on_deliver(ackrpc_call *call, const Ackrpc__Mailbox__Letter *letter,
                       void *user) {
  receiver *r = user;
  if (letter->sender[0] == '\0' || letter->seq == 0 || letter->seq > INT64_MAX) {
    ackrpc_call_reply(call, ACKRPC_INVALID_ARGUMENT,
                      "a letter needs a sender and a seq from 1 to 2^63-1", NULL);
    return;
  }
  job *j = job_new(call, JOB_DELIVER);
  if (!j) return;
  j->seq = letter->seq;
  j->sender = strdup(letter->sender);
  j->body = strdup(letter->body);
  if (!j->sender || !j->body) {
    job_free(j);
    ackrpc_call_reply(call, ACKRPC_RESOURCE_EXHAUSTED, "receiver out of memory", NULL);
    return;
  }
  enqueue(r, j);
}

static void on_count(ackrpc_call *call, const Ackrpc__Mailbox__CountRequest *request,
                     void *user) {
  receiver *r = user;
  job *j = job_new(call, JOB_COUNT);
  if (!j) return;
  j->sender = strdup(request->sender);
  if (!j->sender) {
    job_free(j);
    ackrpc_call_reply(call, ACKRPC_RESOURCE_EXHAUSTED, "receiver out of memory", NULL);
    return;
  }
  enqueue(r, j);
}

/* --- The writer thread --- */

static void hex(const uint8_t *p, size_t n, char *out, size_t cap) {
  size_t i = 0;
  for (; i < n && 2 * i + 2 < cap; i++)
    snprintf(out + 2 * i, 3, "%02x", p[i]);
  out[2 * i] = '\0';
}

static uint64_t now_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint32_t ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Runs one SQL statement without results; 0 or -1. */
static int exec_sql(sqlite3 *db, const char *sql) {
  return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* Stores the letter of `j` and answers its call, in one transaction of the
 * reply store, which keeps the receipt under the call id. Prints what
 * became of it. */
static void run_deliver(receiver *r, job *j) {
  char id_hex[2 * ACKRPC_MAX_CALL_ID + 1];
  hex(j->call_id, j->call_id_len, id_hex, sizeof id_hex);
  sqlite3 *db = NULL;
  ackrpc_status st = ackrpc_reply_store_begin(r->store, j->call, &db);
  if (st != ACKRPC_OK) {
    /* Answered already: a repeat that got past the server's lookup, a
     * reused call id, or a store that cannot be written. */
    printf("answered by the reply store call_id=%s seq=%" PRIu64 ": %s\n", id_hex,
           j->seq, ackrpc_status_name(st));
    return;
  }
  if (r->slow_seq && j->seq == r->slow_seq && !r->slow_done) {
    r->slow_done = 1;
    printf("delaying the ack of seq=%" PRIu64 " by %" PRIu32 " ms (--slow-ack)\n",
           j->seq, r->slow_ms);
    sleep_ms(r->slow_ms);
  }
  char msg[256];
  if (!r->insert && sqlite3_prepare_v2(
                        db,
                        "INSERT INTO letters (sender, seq, body, stored_at_ms, call_id)"
                        " VALUES (?1, ?2, ?3, ?4, ?5)",
                        -1, &r->insert, NULL) != SQLITE_OK)
    goto db_error;
  uint64_t stored_at = now_ms();
  sqlite3_stmt *ins = r->insert;
  if (sqlite3_bind_text(ins, 1, j->sender, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(ins, 2, (sqlite3_int64)j->seq) != SQLITE_OK ||
      sqlite3_bind_text(ins, 3, j->body, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(ins, 4, (sqlite3_int64)stored_at) != SQLITE_OK ||
      sqlite3_bind_blob(ins, 5, j->call_id, (int)j->call_id_len, SQLITE_STATIC) !=
          SQLITE_OK)
    goto db_error;
  int rc = sqlite3_step(ins);
  sqlite3_reset(ins);
  if (rc == SQLITE_CONSTRAINT) {
    /* UNIQUE (sender, seq): the call id is new (the store checked it). */
    snprintf(msg, sizeof msg,
             "letter seq %" PRIu64 " from %s is already stored under another call id",
             j->seq, j->sender);
    printf("refused letter seq=%" PRIu64 " from=%s call_id=%s: ALREADY_EXISTS: %s\n",
           j->seq, j->sender, id_hex, msg);
    ackrpc_reply_store_abort(r->store, j->call, ACKRPC_ALREADY_EXISTS, msg);
    return;
  }
  if (rc != SQLITE_DONE) goto db_error;
  Ackrpc__Mailbox__Receipt receipt = ACKRPC__MAILBOX__RECEIPT__INIT;
  receipt.id = (uint64_t)sqlite3_last_insert_rowid(db);
  receipt.seq = j->seq;
  receipt.stored_at_ms = stored_at;
  receipt.sender = j->sender;
  /* Committed with its receipt, and only then acknowledged. */
  st = ackrpc_reply_store_commit(r->store, j->call, ACKRPC_OK, NULL, &receipt.base);
  if (st == ACKRPC_OK || st == ACKRPC_E_ALREADY_ANSWERED) {
    r->stored++;
    printf("stored letter id=%" PRIu64 " seq=%" PRIu64 " from=%s (%zu bytes) "
           "call_id=%s\n",
           receipt.id, receipt.seq, j->sender, strlen(j->body), id_hex);
    if (st == ACKRPC_OK)
      printf("acked letter id=%" PRIu64 " seq=%" PRIu64 "\n", receipt.id, receipt.seq);
    else
      printf("ack of letter id=%" PRIu64 " seq=%" PRIu64
             " not sent (the server gave up on the call; a retry gets it)\n",
             receipt.id, receipt.seq);
  } else {
    printf("letter seq=%" PRIu64 " from=%s call_id=%s not stored: %s: %s\n", j->seq,
           j->sender, id_hex, ackrpc_status_name(st), ackrpc_strerror(st));
  }
  return;

db_error:
  /* Not committed: the sender may retry. */
  snprintf(msg, sizeof msg, "not stored: %s", sqlite3_errmsg(db));
  printf("refused letter seq=%" PRIu64 " from=%s call_id=%s: UNAVAILABLE: %s\n", j->seq,
         j->sender, id_hex, msg);
  ackrpc_reply_store_abort(r->store, j->call, ACKRPC_UNAVAILABLE, msg);
}

/* Runs a counting statement; -1 on error. */
static int64_t count_rows(sqlite3_stmt *st) {
  int64_t n = -1;
  if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return n;
}

static void run_count(receiver *r, job *j) {
  Ackrpc__Mailbox__CountReply reply = ACKRPC__MAILBOX__COUNT_REPLY__INIT;
  int64_t all = count_rows(r->count_all);
  int64_t mine = -1;
  if (sqlite3_bind_text(r->count_sender, 1, j->sender, -1, SQLITE_STATIC) == SQLITE_OK)
    mine = count_rows(r->count_sender);
  ackrpc_status rs;
  if (all < 0 || mine < 0) {
    char msg[256];
    snprintf(msg, sizeof msg, "cannot count: %s", sqlite3_errmsg(r->db));
    rs = ackrpc_call_reply(j->call, ACKRPC_UNAVAILABLE, msg, NULL);
  } else {
    reply.letters = (uint64_t)all;
    reply.from_sender = (uint64_t)mine;
    rs = ackrpc_call_reply(j->call, ACKRPC_OK, NULL, &reply.base);
  }
  if (rs != ACKRPC_OK)
    printf("count not answered: %s: %s\n", ackrpc_status_name(rs), ackrpc_strerror(rs));
}

static void *writer_main(void *arg) {
  receiver *r = arg;
  for (;;) {
    pthread_mutex_lock(&r->mu);
    while (!r->head && !r->quit)
      pthread_cond_wait(&r->cv, &r->mu);
    job *j = r->head;
    if (j) {
      r->head = j->next;
      if (!r->head) r->tail = NULL;
    }
    pthread_mutex_unlock(&r->mu);
    if (!j) break; /* quit, and the queue is empty */
    if (j->kind == JOB_DELIVER)
      run_deliver(r, j);
    else
      run_count(r, j);
    job_free(j);
  }
  return NULL;
}

/* --- The database --- */

static void db_close(receiver *r) {
  sqlite3_finalize(r->insert);
  sqlite3_finalize(r->count_all);
  sqlite3_finalize(r->count_sender);
  r->insert = r->count_all = r->count_sender = NULL;
  r->store = ackrpc_reply_store_close(r->store);
  if (r->db && sqlite3_close(r->db) != SQLITE_OK)
    fprintf(stderr, "mailbox_receiver: closing the database: %s\n",
            sqlite3_errmsg(r->db));
  r->db = NULL;
}

static int prepare(receiver *r, const char *sql, sqlite3_stmt **ret) {
  if (sqlite3_prepare_v2(r->db, sql, -1, ret, NULL) == SQLITE_OK) return 0;
  fprintf(stderr, "mailbox_receiver: preparing \"%s\": %s\n", sql,
          sqlite3_errmsg(r->db));
  return -1;
}

/* Opens (creating) the database in WAL mode with synchronous=FULL. */
static int db_open(receiver *r, const char *path, int create) {
  int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
  if (sqlite3_open_v2(path, &r->db, flags, NULL) != SQLITE_OK) {
    fprintf(stderr, "mailbox_receiver: cannot open %s: %s\n", path,
            r->db ? sqlite3_errmsg(r->db) : "out of memory");
    db_close(r);
    return -1;
  }
  /* journal_mode answers the mode actually in use: check that it is WAL. */
  sqlite3_stmt *st = NULL;
  int wal = 0;
  if (prepare(r, "PRAGMA journal_mode=WAL", &st) == 0) {
    if (sqlite3_step(st) == SQLITE_ROW) {
      const char *mode = (const char *)sqlite3_column_text(st, 0);
      wal = mode && strcmp(mode, "wal") == 0;
    }
    sqlite3_finalize(st);
  }
  if (!wal) {
    fprintf(stderr, "mailbox_receiver: %s: cannot use WAL mode: %s\n", path,
            sqlite3_errmsg(r->db));
    db_close(r);
    return -1;
  }
  if (exec_sql(r->db, "PRAGMA synchronous=FULL") != 0 ||
      sqlite3_busy_timeout(r->db, 5000) != SQLITE_OK || exec_sql(r->db, SCHEMA) != 0) {
    fprintf(stderr, "mailbox_receiver: %s: %s\n", path, sqlite3_errmsg(r->db));
    db_close(r);
    return -1;
  }
  if (prepare(r, "SELECT COUNT(*) FROM letters", &r->count_all) != 0 ||
      prepare(r, "SELECT COUNT(*) FROM letters WHERE sender = ?1", &r->count_sender) !=
          0) {
    db_close(r);
    return -1;
  }
  return 0;
}

/* --count DB */
static int count_mode(const char *path) {
  receiver r;
  memset(&r, 0, sizeof r);
  if (db_open(&r, path, 0) != 0) return 1;
  int64_t n = count_rows(r.count_all);
  if (n < 0) {
    fprintf(stderr, "mailbox_receiver: cannot count %s: %s\n", path,
            sqlite3_errmsg(r.db));
    db_close(&r);
    return 1;
  }
  db_close(&r);
  printf("%" PRId64 "\n", n);
  return 0;
}

/* --- main --- */

static int usage(FILE *out, int rc) {
  fprintf(
      out,
      "usage: mailbox_receiver [--slow-ack SEQ] [--slow-ack-ms MS] [--reply-cache]\n"
      "                        [--handover] SOCKET DB\n"
      "       mailbox_receiver --count DB\n"
      "Serves ackrpc.mailbox.Mailbox on SOCKET (a path or @name), storing letters\n"
      "in the SQLite database DB, until SIGTERM or SIGINT. --count prints the\n"
      "number of letters in DB.\n"
      "  --slow-ack SEQ    delay the ack of the first letter with seq SEQ\n"
      "  --slow-ack-ms MS  by MS milliseconds (default 3000)\n"
      "  --reply-cache     turn on the server's reply cache\n"
      "  --handover        take the socket over from a running receiver (restart\n"
      "                    without refusing a call), and offer it to the next\n"
      "SOCKET may be systemd: (socket activation: examples/systemd). Environment:\n"
      "ACKRPC_LOG_LEVEL=debug logs one line per call (key=value, on stderr).\n");
  return rc;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret) {
  char *end;
  if (s[0] < '0' || s[0] > '9') return -1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end != '\0' || errno != 0 || v > max) return -1;
  *ret = v;
  return 0;
}

/* Serves until stopped; the writer thread and the database are set up and
 * torn down around the loop. */
static int serve(receiver *r, const char *address, const char *db_path) {
  if (db_open(r, db_path, 1) != 0) return 1;
  ackrpc_reply_store_options so = {.path = db_path};
  ackrpc_status st = ackrpc_reply_store_open(&so, &r->store);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "mailbox_receiver: %s: cannot open the reply store: %s: %s\n",
            db_path, ackrpc_status_name(st), ackrpc_strerror(st));
    db_close(r);
    return 1;
  }

  /* The reply store answers repeats before the handler runs (and turns the
   * reply cache on, so a retry whose first call is still in the writer's
   * queue waits for its answer). */
  ackrpc_server_options options = {
      .address = address, .reply_cache = r->reply_cache, .handover = r->handover};
  ackrpc_reply_store_attach(r->store, &options);
  char why[160]; /* ACKRPC_LOG_LEVEL=debug: one line per call */
  if (ackrpc_log_level_from_env(&options.log_level, why, sizeof why) != ACKRPC_OK)
    fprintf(stderr, "mailbox_receiver: %s; using the default\n", why);
  ackrpc_server *server = NULL;
  st = ackrpc_server_new(&options, &server);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "mailbox_receiver: cannot serve on %s: %s: %s\n", address,
            ackrpc_status_name(st), ackrpc_strerror(st));
    db_close(r);
    return 1;
  }
  ackrpc__mailbox__Mailbox_handlers handlers = {.Deliver = on_deliver,
                                                .Count = on_count};
  st = ackrpc__mailbox__Mailbox_register(server, &handlers, r);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "mailbox_receiver: cannot register %s: %s: %s\n",
            ackrpc__mailbox__Mailbox_service.name, ackrpc_status_name(st),
            ackrpc_strerror(st));
    ackrpc_server_free(server);
    db_close(r);
    return 1;
  }

  /* The writer starts with every signal blocked: they go to the main
   * thread, whose handler stops the server. */
  sigset_t all, old;
  sigfillset(&all);
  int err = pthread_sigmask(SIG_SETMASK, &all, &old);
  if (err == 0) {
    err = pthread_create(&r->writer, NULL, writer_main, r);
    int err2 = pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err == 0 && err2 != 0)
      fprintf(stderr, "mailbox_receiver: pthread_sigmask: %s\n", strerror(err2));
  }
  if (err != 0) {
    fprintf(stderr, "mailbox_receiver: cannot start the writer thread: %s\n",
            strerror(err));
    ackrpc_server_free(server);
    db_close(r);
    return 1;
  }

  /* The socket is bound and listening from here on; SIGTERM or SIGINT
   * stop the server (the writer thread blocks both, so the loop's thread
   * takes them): the calls in flight finish, then run returns. */
  int rc = 0;
  printf("receiving %s on %s, database %s\n", ackrpc__mailbox__Mailbox_service.name,
         address, db_path);
  st = ackrpc_server_run_until_signal(server, NULL);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "mailbox_receiver: the server loop failed: %s: %s\n",
            ackrpc_status_name(st), ackrpc_strerror(st));
    rc = 1;
  }

  /* The writer finishes the jobs it has (answers to calls the server already
   * answered at shutdown are dropped: E_ALREADY_ANSWERED), then ends. */
  pthread_mutex_lock(&r->mu);
  r->quit = 1;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
  err = pthread_join(r->writer, NULL);
  if (err != 0) {
    fprintf(stderr, "mailbox_receiver: pthread_join: %s\n", strerror(err));
    rc = 1;
  }
  ackrpc_counters k = {0};
  ackrpc_server_counters(server, &k); /* the loop has ended: this thread's */
  ackrpc_server_free(server);
  db_close(r);
  if (rc == 0) {
    printf("repeats answered without the handler: %" PRIu64 " (reply cache %" PRIu64
           ", waited for their first call %" PRIu64 ", from the reply store %" PRIu64
           "), refused as reused call ids %" PRIu64 "\n",
           k.replay_hits + k.replay_joins + k.replay_stored, k.replay_hits,
           k.replay_joins, k.replay_stored, k.replay_refused);
    printf("stopped: %" PRIu64 " letters stored\n", r->stored);
  }
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
    return usage(stdout, 0);
  if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) return 1;
  if (argc == 3 && strcmp(argv[1], "--count") == 0) return count_mode(argv[2]);

  receiver r;
  memset(&r, 0, sizeof r);
  r.slow_ms = 3000;
  int i = 1;
  for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
    uint64_t v;
    if (strcmp(argv[i], "--reply-cache") == 0) {
      r.reply_cache = 1;
      i--; /* a flag without a value */
      continue;
    }
    if (strcmp(argv[i], "--handover") == 0) {
      r.handover = 1;
      i--;
      continue;
    }
    if (strcmp(argv[i], "--slow-ack") == 0 &&
        parse_u64(argv[i + 1], INT64_MAX, &v) == 0)
      r.slow_seq = v;
    else if (strcmp(argv[i], "--slow-ack-ms") == 0 &&
             parse_u64(argv[i + 1], 600000, &v) == 0)
      r.slow_ms = (uint32_t)v;
    else
      return usage(stderr, 2);
  }
  if (argc - i != 2 || argv[i][0] == '-') return usage(stderr, 2);

  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    perror("mailbox_receiver: signal");
    return 1;
  }
  int err = pthread_mutex_init(&r.mu, NULL);
  if (err == 0) {
    err = pthread_cond_init(&r.cv, NULL);
    if (err != 0) pthread_mutex_destroy(&r.mu);
  }
  if (err != 0) {
    fprintf(stderr, "mailbox_receiver: %s\n", strerror(err));
    return 1;
  }
  int rc = serve(&r, argv[i], argv[i + 1]);
  pthread_cond_destroy(&r.cv);
  pthread_mutex_destroy(&r.mu);
  return rc;
}
