/* outbox_internal.h: what the files of the outbox share (internal: not
 * installed): the object, the statements, the store's functions (store.c)
 * and the group commit (commit.c).
 *
 * Locking: `mu` guards the object's memory (the method list, the queue of
 * writes, the flags). The SQLite connection belongs to whoever holds the
 * `db_busy` token (akr_ob_db_enter()/_leave(), or the leader of a group
 * commit), without `mu`: so while one thread waits for a commit's fsync,
 * others can queue their writes for the next one. A token holder may take
 * `mu` briefly; never the other way round. */
#ifndef AKR_OUTBOX_INTERNAL_H
#define AKR_OUTBOX_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include <event2/event.h>

#include "ackrpc/client.h"
#include "ackrpc/outbox.h"
#include "core/rng.h"

enum stmt_id {
  S_INSERT,
  S_FETCH,
  S_DELETE,
  S_UPDATE,
  S_TO_DEAD,
  S_LAST_ID,
  S_PENDING,
  S_IN_FLIGHT,
  S_DEAD,
  S_ANY,
  S_DEAD_AFTER,
  S_BUMP,
  S_COUNT_
};

/* A method with messages, and the delivery's state of it (deliver.c). */
typedef struct method_queue {
  char *name;
  uint64_t next_at_us; /* CLOCK_MONOTONIC; 0: now */
  /* The largest id sent (or being sent) and not to be fetched again; 0 at
   * first. A failed attempt sets it back to just before that message. */
  uint64_t cursor;
  int rewound; /* cursor was set back: fetched rows may be in flight */
  int slow;    /* the last attempt failed: one call in flight until an ack */
  unsigned in_flight;
} method_queue;

struct flight;

/* What one attempt came to, for the group commit to record. */
typedef struct ob_outcome {
  uint64_t id;
  unsigned attempts; /* counting this one */
  ackrpc_outbox_fate fate;
  ackrpc_status status;
  const char *message; /* may be NULL */
} ob_outcome;

/* One write waiting for a group commit (commit.c): messages to store, or
 * outcomes to record. The leader fills `rc` and `first_id`, then sets
 * `done`. */
typedef struct ob_write {
  struct ob_write *next;
  const ackrpc_outbox_entry *entries; /* enqueue: n entries */
  size_t n;
  const uint8_t (*call_ids)[16]; /* one per entry */
  const ob_outcome *outcomes;    /* delivery: n_outcomes outcomes */
  size_t n_outcomes;
  uint64_t first_id; /* the first entry's id, once committed */
  int rc;            /* an SQLite code */
  int done;
} ob_write;

struct ackrpc_outbox {
  sqlite3 *db;
  sqlite3_stmt *st[S_COUNT_];
  pthread_mutex_t mu;     /* the method list, the write queue, the flags */
  pthread_cond_t cv;      /* enqueue and stop wake the worker */
  pthread_cond_t db_cv;   /* the token is free, or a group was committed */
  int db_busy;            /* someone holds the connection (see the top) */
  ob_write *wq, *wq_tail; /* writes waiting for the next group commit */
  uint64_t enq_commits;   /* group commits that stored messages */
  uint64_t group_commits; /* group commits tried (wait_idle waits for one) */
  uint32_t group_commit_us;
  unsigned window; /* calls in flight at most */
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
  akr_rng rng; /* call ids without getrandom(), and the backoff's jitter */
  /* Delivery (deliver.c), on one thread at a time (the worker, or the
   * caller of pump): an asynchronous session on a private event base, the
   * calls in flight in the order sent, and a round-robin start. */
  struct event_base *base;
  ackrpc_async_session *session;
  struct flight **flights;
  size_t n_flights, n_replied;
  size_t rr;
  int force_settle;
  pthread_t worker;
  int running, stopping;
  /* E_STORE_CORRUPT once delivery met a damaged database (then it stops
   * for good), else OK; `fault_msg` says what SQLite or the check found. */
  ackrpc_status fault;
  char fault_msg[200];
  uint64_t bad_sum_id; /* the message that failed its checksum, if that was it */
  /* The commit counter (store.c): the transactions ever committed, as in
   * the database, and the mark file that repeats it outside the WAL. */
  uint64_t commits, nonce;
  /* The mark file, opened through the database's own VFS (so a test VFS
   * sees its writes and syncs too); NULL: none (could not be opened). */
  sqlite3_file *mark;
  char *mark_path; /* must outlive `mark` (SQLite's VFS contract) */
};

/* Wall-clock milliseconds since the Unix epoch. */
int64_t akr_ob_wall_ms(void);
/* An SQLite result code as a status (local store codes; OK for OK, ROW,
 * DONE). */
ackrpc_status akr_ob_status(int rc);
int akr_ob_exec(sqlite3 *db, const char *sql);
/* Takes the connection for a read (waiting while a commit runs), and gives
 * it back. Without mu. */
void akr_ob_db_enter(ackrpc_outbox *ob);
void akr_ob_db_leave(ackrpc_outbox *ob);
/* Queues `w` for the next group commit and waits until it is committed
 * (or failed), leading the commit if no one else is: one BEGIN..COMMIT,
 * one fsync, for every write queued meanwhile. Returns w->rc. Without mu
 * and without the token. */
int akr_ob_commit(ackrpc_outbox *ob, ob_write *w);
/* Closes the delivery's session and event base, frees calls in flight
 * (deliver.c). The worker must be stopped. */
void akr_ob_deliver_free(ackrpc_outbox *ob);
/* Ends a failed transaction, if one is open. */
void akr_ob_rollback(ackrpc_outbox *ob);
/* Steps a statement that returns no row, and resets it. */
int akr_ob_step_done(sqlite3_stmt *st);
/* Runs a one-number query. */
int akr_ob_query_u64(sqlite3_stmt *st, uint64_t *ret);
/* Index of `name` in the method list, adding it; -1 if out of memory. */
long akr_ob_method_index(ackrpc_outbox *ob, const char *name);
/* Opens the database at `path`: exclusive, WAL, synchronous=FULL, the
 * schema, the statements and the list of methods with messages; compares
 * the commit counter with the mark file (E_STORE_CORRUPT if the database
 * lost commits the mark saw). */
ackrpc_status akr_ob_db_open(ackrpc_outbox *ob, const char *path);
/* Notes damage met by delivery: if `rc` is a corruption code and no fault
 * is noted yet, sets ob->fault and ob->fault_msg and returns 1 (the caller
 * then reports it once, outside mu); else 0. Under mu. */
int akr_ob_note_fault(ackrpc_outbox *ob, int rc);
/* The checksum stored with each message (column `sum`), over what is
 * sent: method, body, call id, and the enqueue time. A positive int64. */
int64_t akr_ob_sum(const char *method, const uint8_t *body, size_t body_len,
                   const uint8_t *call_id, size_t call_id_len, int64_t enqueued_at_ms);
/* Adds one to the commit counter inside the open write transaction.
 * Returns an SQLite code. With the token. */
int akr_ob_bump(ackrpc_outbox *ob);
/* After a COMMIT that included akr_ob_bump(): counts it, writes the mark
 * file and syncs it. With the token. */
void akr_ob_committed(ackrpc_outbox *ob);
/* Finalizes the statements and closes the database. */
void akr_ob_db_close(ackrpc_outbox *ob);

#endif /* AKR_OUTBOX_INTERNAL_H */
