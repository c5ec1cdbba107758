/* ackrpc/outbox.h: a durable outbox: messages stored on disk first, then
 * delivered with ackrpc calls until the receiver acknowledges them
 * (docs/DELIVERY.md).
 *
 * A message is a method name and a request body (the serialized request
 * message, as for ackrpc_client_call_raw()). ackrpc_outbox_enqueue() returns
 * once the message is committed to an SQLite database (WAL journal,
 * synchronous=FULL: the commit is fsync'ed, so it survives a crash of the
 * process and of the machine). The outbox gives each message a call id when
 * it is enqueued and stores it with the message; every attempt to deliver it
 * carries that id, across restarts, so a receiver that deduplicates by call
 * id acts on it once. Enqueues from several threads at once share one
 * commit and its fsync (group commit); ackrpc_outbox_enqueue_batch() stores
 * many messages in one. A delivery worker (its own thread:
 * ackrpc_outbox_start(), or the caller's: ackrpc_outbox_pump()) sends the
 * messages of each method in enqueue order on one session, keeping up to
 * `window` calls in flight (default 1: a message is sent only after the one
 * before it was answered), and commits what came of them in batches. An
 * acked message is deleted; one that fails for good, or runs out of
 * attempts or age, moves to the dead-letter table with its last status.
 * After a crash, reopening the database resumes where delivery stopped (a
 * message whose ack was not yet committed is sent again, with its id).
 *
 * One process at a time: the database is opened in SQLite's exclusive
 * locking mode, so a second ackrpc_outbox_open() on it fails
 * (E_STORE_LOCKED) until the first is closed or its process ends. Beside
 * the database (and SQLite's "<path>-wal") the outbox keeps "<path>-mark",
 * its record of the commits made, by which a database that lost commits is
 * noticed at open (docs/DELIVERY.md): copy, move or delete them together.
 * Nothing here prints.
 *
 * The outbox is its own library, libackrpc-outbox (CMake ackrpc::outbox,
 * pkg-config ackrpc-outbox), on top of libackrpc: only programs that use it
 * link SQLite. <ackrpc/ackrpc.h> does not include this header.
 *
 * Statuses for the database, all local (status.h): E_STORE_IO (cannot
 * open, I/O error), E_STORE_CORRUPT (the file is not a database or is
 * damaged, or lost commits it had made: see docs/DELIVERY.md for what is
 * detected; once found, delivery stops for good: see
 * ackrpc_outbox_start()), E_STORE_FULL (the disk or the database is full: nothing was
 * stored), E_STORE_LOCKED (another process has it open), E_NOMEM.
 */
#ifndef ACKRPC_OUTBOX_H
#define ACKRPC_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include <ackrpc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ackrpc_outbox ackrpc_outbox;

/* What became of a message after one attempt. */
typedef enum ackrpc_outbox_fate {
  ACKRPC_OUTBOX_ACKED = 0, /* acked (OK) and deleted */
  ACKRPC_OUTBOX_RETRY = 1, /* will be tried again, with the same call id */
  ACKRPC_OUTBOX_DEAD = 2,  /* moved to the dead letters */
  /* The database is damaged (status E_STORE_CORRUPT): delivery stopped for
   * good, nothing more is sent until the outbox is closed and the file
   * repaired or recovered (docs/DELIVERY.md). The message, if any (id not
   * 0), stays as last committed. Reported once. */
  ACKRPC_OUTBOX_HALTED = 3,
} ackrpc_outbox_fate;

/* One attempt, as reported to the on_attempt callback. Every pointer is
 * valid during the callback only. With fate ACKRPC_OUTBOX_HALTED the report
 * may concern no message at all (the damage was found while looking for
 * one): then id is 0, method and call_id NULL, attempt 0, and status and
 * message say what was found. */
typedef struct ackrpc_outbox_attempt {
  uint64_t id;        /* the message's id (ackrpc_outbox_enqueue()); 0: none */
  const char *method; /* "package.Service/Method"; NULL: none */
  const uint8_t *call_id;
  size_t call_id_len;
  unsigned attempt; /* 1 for the first, counting across restarts */
  ackrpc_status status;
  const char *message;  /* the server's or a local explanation; may be NULL */
  const uint8_t *reply; /* the ack's body (may be NULL if empty) */
  size_t reply_len;
  ackrpc_outbox_fate fate;
} ackrpc_outbox_attempt;

/* Called after each attempt once its outcome is committed (so ACKED means
 * deleted), on the thread delivering: the worker, or the caller of
 * ackrpc_outbox_pump(). Also called once, with fate ACKRPC_OUTBOX_HALTED,
 * when delivery stops because the database is damaged. It must not call
 * ackrpc_outbox_stop() or _close(). */
typedef void (*ackrpc_outbox_attempt_fn)(void *user, const ackrpc_outbox_attempt *a);

/* Outbox options; zero means "the default" for every field. */
typedef struct ackrpc_outbox_options {
  /* The SQLite database file, created if missing. Required. Copied. */
  const char *path;
  /* The receiver's address ("/path.sock" or "@name"). Needed to deliver;
   * NULL: the outbox only stores (enqueue, counts). Copied. */
  const char *address;
  /* Deadline of each attempt. Default 10000 ms. */
  uint32_t call_timeout_ms;
  /* Attempts (across restarts) after which a message that still fails is
   * dead-lettered. 0: no limit. */
  unsigned max_attempts;
  /* Age (since enqueue, wall clock) after which a message that still fails
   * is dead-lettered. 0: no limit. */
  uint32_t max_age_ms;
  /* Backoff between attempts at one message: b = min(max, initial *
   * 2^(attempts-1)), jittered in [b/2, b]. Defaults 50 ms and 5000 ms.
   * Meanwhile later messages of the same method wait (order), those of
   * other methods go on. */
  uint32_t initial_backoff_ms;
  uint32_t max_backoff_ms;
  /* Server statuses after which a message is tried again. NULL: the
   * default, DEADLINE_EXCEEDED, ABORTED, UNAVAILABLE, RESOURCE_EXHAUSTED.
   * Any other non-OK status from the server dead-letters the message at
   * once. "Not delivered" and "delivered, no ack" are always tried again,
   * as are E_NOMEM and E_SYSTEM (the rule of ackrpc_retry_policy), and
   * E_SERVER_IDENTITY (a server of the wrong user answered: the message
   * went nowhere, and the real server may come back; max_attempts and
   * max_age_ms still bound it).
   * Copied. */
  const ackrpc_status *retry_on;
  size_t n_retry_on;
  /* Told of each attempt (optional). */
  ackrpc_outbox_attempt_fn on_attempt;
  void *on_attempt_user;
  /* Calls in flight at once on the delivery's session (pipelined; the
   * receiver answers them in order). Default 1, at most 4096. Above 1,
   * messages of a method are still sent in order, and their outcomes are
   * committed together (one commit for up to `window` answers); but a
   * message the receiver refuses with a retryable status (retry_on) is
   * tried again after the ones already sent behind it, which the receiver
   * may have acted on: see docs/DELIVERY.md before raising it for a
   * receiver that can refuse one message and accept the next. */
  unsigned window;
  /* How long the first writer of a group commit waits for others to join
   * before it commits (microseconds). 0 (the default): no wait; writers
   * that arrive during a commit's fsync still share the next one. At most
   * 1000000 (1 s). */
  uint32_t group_commit_us;
} ackrpc_outbox_options;

/* Opens (creating if needed) the outbox database and takes it for this
 * process. Messages left by an earlier run are due at once. On success the
 * caller owns *ret_outbox (ackrpc_outbox_close()); on error it is
 * untouched. Errors: E_INVAL (NULL argument or path, a retry_on status that
 * is not a canonical code 1..16, a window over 4096, group_commit_us over
 * 1 s), E_ADDRESS (bad address), and the database
 * statuses above. */
ACKRPC_EXPORT ackrpc_status ackrpc_outbox_open(const ackrpc_outbox_options *options,
                                               ackrpc_outbox **ret_outbox);

/* Stops the worker if it runs (see ackrpc_outbox_stop()), closes the
 * database and frees the outbox. Messages not yet acked stay on disk for the
 * next open. NULL is ignored. Returns NULL. */
ACKRPC_EXPORT ackrpc_outbox *ackrpc_outbox_close(ackrpc_outbox *outbox);

/* Stores a message: `method` (a full method name) and `body` (body_len
 * bytes, copied; NULL if body_len is 0). Returns OK once it is committed to
 * disk (with whatever other threads enqueued meanwhile: one fsync for all);
 * *ret_id (if not NULL) is then its id. Ids are 1, 2, 3, ... in
 * enqueue order and never reused, even after a restart. Callable from any
 * thread, also while the worker runs. Errors: E_INVAL (NULL outbox or
 * method, malformed method name, body too large for one frame), and the
 * database statuses above: then nothing was stored. */
ACKRPC_EXPORT ackrpc_status ackrpc_outbox_enqueue(ackrpc_outbox *outbox,
                                                  const char *method,
                                                  const uint8_t *body, size_t body_len,
                                                  uint64_t *ret_id);

/* One message for ackrpc_outbox_enqueue_batch(). */
typedef struct ackrpc_outbox_entry {
  const char *method;  /* a full method name */
  const uint8_t *body; /* body_len bytes; NULL if body_len is 0 */
  size_t body_len;
} ackrpc_outbox_entry;

/* Stores n messages (1 or more) in one transaction: all or none. Returns OK
 * once they are committed to disk; their ids are then *ret_first_id (if
 * not NULL), *ret_first_id + 1, ..., in the order given. Bodies are copied.
 * Callable from any thread, as ackrpc_outbox_enqueue(), which is this with
 * one message. Errors: E_INVAL (NULL outbox or entries, n 0, a malformed
 * method name or too large a body in any entry) and the database statuses
 * above: then none was stored. */
ACKRPC_EXPORT ackrpc_status
ackrpc_outbox_enqueue_batch(ackrpc_outbox *outbox, const ackrpc_outbox_entry *entries,
                            size_t n, uint64_t *ret_first_id);

/* The id of the last message ever enqueued in this database (0 if none),
 * delivered or not: a producer that is its only writer learns from it where
 * to resume after a crash. Errors: E_INVAL and the database statuses. */
ACKRPC_EXPORT ackrpc_status ackrpc_outbox_last_id(ackrpc_outbox *outbox,
                                                  uint64_t *ret_id);

/* Starts the delivery worker, a thread (all signals blocked in it) that
 * delivers messages as they become due, until ackrpc_outbox_stop(). An I/O
 * error or a full disk makes it retry (every 100 ms, or after the message's
 * backoff); a damaged database (E_STORE_CORRUPT) stops it for good: it
 * reports that once through on_attempt (fate ACKRPC_OUTBOX_HALTED) and
 * exits, and ackrpc_outbox_wait_idle() returns the status. Errors: E_INVAL,
 * E_STATE (already running, or no address), E_SYSTEM (the thread could not
 * be created), E_STORE_CORRUPT (delivery already stopped on damage). */
ACKRPC_EXPORT ackrpc_status ackrpc_outbox_start(ackrpc_outbox *outbox);

/* Stops the worker and waits for it: the calls in flight finish first
 * (within call_timeout_ms) and their outcomes are committed. Harmless if it
 * is not running. Not from the on_attempt callback. Errors: E_INVAL. */
ACKRPC_EXPORT ackrpc_status ackrpc_outbox_stop(ackrpc_outbox *outbox);

/* Delivers on the caller's thread: makes up to `max` attempts at messages
 * that are due now (it does not wait for backoffs), up to `window` at a
 * time, blocking until they are answered and their outcomes committed, and
 * returns the number made in *ret_attempts (if not NULL). For
 * programs with their own scheduling, and for tests. Errors: E_INVAL,
 * E_STATE (the worker runs, or no address), database statuses;
 * E_STORE_CORRUPT stops delivery for good, as in the worker (on_attempt is
 * told once, with fate ACKRPC_OUTBOX_HALTED). */
ACKRPC_EXPORT ackrpc_status ackrpc_outbox_pump(ackrpc_outbox *outbox, unsigned max,
                                               unsigned *ret_attempts);

/* Waits until no message is pending (all acked or dead-lettered), or
 * `timeout_ms` passes (E_WAIT_TIMEOUT). Needs the worker running (or
 * another thread pumping). Returns E_STORE_CORRUPT as soon as delivery has
 * stopped on a damaged database (it will never empty). Errors: E_INVAL,
 * E_WAIT_TIMEOUT, database statuses. */
ACKRPC_EXPORT ackrpc_status ackrpc_outbox_wait_idle(ackrpc_outbox *outbox,
                                                    uint32_t timeout_ms);

typedef struct ackrpc_outbox_counts {
  /* Messages stored and not yet acked or dead-lettered. */
  uint64_t pending;
  /* Of those, the ones attempted at least once: they may have reached the
   * receiver, and wait for an ack (their call id is pinned). */
  uint64_t in_flight;
  /* Messages in the dead-letter table. */
  uint64_t dead;
} ackrpc_outbox_counts;

/* Counts the messages, as committed. Errors: E_INVAL and the database
 * statuses (then *ret_counts is untouched). */
ACKRPC_EXPORT ackrpc_status ackrpc_outbox_count(ackrpc_outbox *outbox,
                                                ackrpc_outbox_counts *ret_counts);

/* A dead letter as stored. Owned by the caller after
 * ackrpc_outbox_dead_letter(): free with ackrpc_outbox_message_clear(). */
typedef struct ackrpc_outbox_message {
  uint64_t id;
  char *method;
  uint8_t *body; /* NULL if empty */
  size_t body_len;
  uint8_t call_id[ACKRPC_MAX_CALL_ID];
  size_t call_id_len;
  unsigned attempts;
  ackrpc_status last_status;
  char *last_message;     /* may be NULL */
  int64_t enqueued_at_ms; /* Unix epoch, milliseconds */
} ackrpc_outbox_message;

/* Reads the dead letter with the smallest id greater than `after_id` into
 * *ret_message (zero it first; clear it after). E_NOT_FOUND if there is none.
 * Errors: E_INVAL, E_NOMEM and the database statuses (then *ret_message is
 * untouched). */
ACKRPC_EXPORT ackrpc_status ackrpc_outbox_dead_letter(
    ackrpc_outbox *outbox, uint64_t after_id, ackrpc_outbox_message *ret_message);

/* Frees what a message owns and zeroes it. NULL is ignored. */
ACKRPC_EXPORT void ackrpc_outbox_message_clear(ackrpc_outbox_message *message);

#ifdef __cplusplus
}
#endif

#endif /* ACKRPC_OUTBOX_H */
