/* outbox_internal.h: what the files of the outbox share (internal: not
 * installed): the object, the statements, and the store's functions
 * (store.c). Callers hold `mu` around every use of the connection. */
#ifndef AKR_OUTBOX_INTERNAL_H
#define AKR_OUTBOX_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "ackrpc/client.h"
#include "ackrpc/outbox.h"
#include "core/rng.h"

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
  S_BUMP,
  S_COUNT_
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
  akr_rng rng; /* call ids without getrandom(), and the backoff's jitter */
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
  int mark_fd; /* -1: none (could not be created) */
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

/* Wall-clock milliseconds since the Unix epoch. */
int64_t akr_ob_wall_ms(void);
/* An SQLite result code as a status (local store codes; OK for OK, ROW,
 * DONE). */
ackrpc_status akr_ob_status(int rc);
int akr_ob_exec(sqlite3 *db, const char *sql);
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
 * Returns an SQLite code. Under mu. */
int akr_ob_bump(ackrpc_outbox *ob);
/* After a COMMIT that included akr_ob_bump(): counts it and writes the
 * mark file (not fsync'ed). Under mu. */
void akr_ob_committed(ackrpc_outbox *ob);
/* Finalizes the statements and closes the database. */
void akr_ob_db_close(ackrpc_outbox *ob);

#endif /* AKR_OUTBOX_INTERNAL_H */
