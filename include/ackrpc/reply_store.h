/* ackrpc/reply_store.h: a durable reply store, the receiver's half of
 * exactly-once delivery (docs/DELIVERY.md).
 *
 * A handler whose effect must happen once per call id does its writes in a
 * transaction the store opens for it, and answers through the store: the
 * answer (status, message, encoded reply) is stored under the call id, with
 * the request's digest (ackrpc_call_request_digest()), in the same
 * transaction, and sent only once committed. A repeated call id is then
 * answered from disk without running the handler again, after any crash:
 *
 *   - before the handler runs, by the server itself: attach the store to
 *     the server's options (ackrpc_reply_store_attach());
 *   - inside ackrpc_reply_store_begin(), under the write lock, for a repeat
 *     that raced its first call.
 *
 * A call id reused for another request (another method, body or peer uid)
 * is refused INVALID_ARGUMENT, never answered with another request's reply
 * and never run. Answers are kept for retain_ms and at most retain_count of
 * them (the oldest go first): a retry that comes later than that runs the
 * handler again, so keep them longer than any sender retries.
 *
 *   sqlite3 *db;
 *   if (ackrpc_reply_store_begin(store, call, &db) != ACKRPC_OK)
 *     return;                     // answered already (a repeat, an error)
 *   ... the handler's own writes, on db ...
 *   if (failed) {                 // nothing is kept, the error stays retryable
 *     ackrpc_reply_store_abort(store, call, ACKRPC_ALREADY_EXISTS, "...");
 *     return;
 *   }
 *   ackrpc_reply_store_commit(store, call, ACKRPC_OK, NULL, &reply.base);
 *
 * The database is an SQLite file in WAL mode with synchronous=FULL (a
 * commit is fsync'ed); the store's table is `ackrpc_replies`, and the
 * application's own tables may live in the same file (that is the point:
 * one transaction). The store holds two connections: one for the server's
 * lookups (read only, on the server's loop thread) and one for
 * transactions, used by one thread at a time under the store's lock, from
 * ackrpc_reply_store_begin() to _commit() or _abort(); a commit waits for
 * fsync, so handlers that commit usually run on a thread of their own
 * (examples/mailbox). Nothing here prints.
 *
 * Part of libackrpc-outbox (CMake ackrpc::outbox, pkg-config
 * ackrpc-outbox), the library that links SQLite.
 */
#ifndef ACKRPC_REPLY_STORE_H
#define ACKRPC_REPLY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <ackrpc/common.h>
#include <ackrpc/server.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ProtobufCMessage;
struct sqlite3;

typedef struct ackrpc_reply_store ackrpc_reply_store;

typedef struct ackrpc_reply_store_options {
  /* The SQLite database file, created if missing. Required. */
  const char *path;
  /* How long an answer is kept after it was stored, in milliseconds.
   * Default (0): 7 days. */
  uint64_t retain_ms;
  /* At most this many answers are kept, the oldest dropped first. Default
   * (0): 1,000,000. */
  uint64_t retain_count;
} ackrpc_reply_store_options;

/* What the store did since it was opened. */
typedef struct ackrpc_reply_store_stats {
  uint64_t stored;  /* answers committed */
  uint64_t hits;    /* repeats answered from disk (lookups and begins) */
  uint64_t refused; /* call ids reused for another request */
  uint64_t evicted; /* answers dropped by retain_ms or retain_count */
} ackrpc_reply_store_stats;

/* Opens (or creates) the store. On OK *ret_store is the store, owned by the
 * caller (ackrpc_reply_store_close()); on error it is untouched. Errors:
 * E_INVAL (NULL argument or path), E_NOMEM, E_STORE_IO (cannot open or
 * create), E_STORE_CORRUPT (not a database, or damaged), E_STORE_FULL. */
ACKRPC_EXPORT ackrpc_status ackrpc_reply_store_open(
    const ackrpc_reply_store_options *options, ackrpc_reply_store **ret_store);

/* Closes the store. A transaction still open is rolled back. Close it after
 * the server it is attached to has been freed. NULL is ignored; returns
 * NULL. */
ACKRPC_EXPORT ackrpc_reply_store *ackrpc_reply_store_close(ackrpc_reply_store *store);

/* Sets options->reply_lookup to this store's lookup (which turns the
 * server's reply cache on). The store must outlive the server made with
 * these options. */
ACKRPC_EXPORT void ackrpc_reply_store_attach(ackrpc_reply_store *store,
                                             ackrpc_server_options *options);

/* The lookup ackrpc_reply_store_attach() installs (an
 * ackrpc_reply_lookup_fn; `store` is the ackrpc_reply_store). Server loop
 * thread only; exposed for servers that chain lookups. */
ACKRPC_EXPORT ackrpc_lookup_result ackrpc_reply_store_lookup(void *store,
                                                             const uint8_t *call_id,
                                                             size_t call_id_len,
                                                             const uint8_t *digest,
                                                             ackrpc_stored_reply *ret);

/* In a handler holding `call` (any thread): takes the store's lock and
 * opens a write transaction (BEGIN IMMEDIATE).
 * OK: *ret_db is the connection to do the handler's writes on, until
 * ackrpc_reply_store_commit() or _abort(), one of which must follow (the
 * lock is held until then).
 * Any other status: the call has been answered already and the handler
 * must not touch it again; nothing is open. E_ALREADY_ANSWERED: its call
 * id was answered before (it got that answer again) or used for another
 * request (refused INVALID_ARGUMENT). E_STORE_*: the database failed (the
 * call was answered UNAVAILABLE: not run, retry). E_INVAL: NULL argument
 * (nothing answered), or the call has a call id but no digest (the server
 * was made without this store attached: answered FAILED_PRECONDITION). A
 * call without a call id gets a plain transaction: nothing is stored. */
ACKRPC_EXPORT ackrpc_status ackrpc_reply_store_begin(ackrpc_reply_store *store,
                                                     ackrpc_call *call,
                                                     struct sqlite3 **ret_db);

/* Stores the answer under the call id in the open transaction, commits it,
 * releases the lock, and only then answers the call with
 * ackrpc_call_reply() (status, message and reply as there; `reply` is
 * serialized here and not kept). Whatever status is given is stored: a
 * handler whose writes failed uses _abort() instead.
 * Returns what ackrpc_call_reply() returned once committed (OK, or
 * E_ALREADY_ANSWERED when the server had given up on the call: the answer
 * is stored all the same, and a retry gets it). If the commit fails, it is
 * rolled back, the call is answered UNAVAILABLE ("not stored"), and the
 * store status is returned (E_STORE_IO, E_STORE_FULL, ...). E_INVAL: NULL
 * store or call, or no transaction open for it (nothing answered). */
ACKRPC_EXPORT ackrpc_status ackrpc_reply_store_commit(
    ackrpc_reply_store *store, ackrpc_call *call, ackrpc_status status,
    const char *message, const struct ProtobufCMessage *reply);

/* Rolls the transaction back (nothing is stored: the call id stays
 * unanswered, the caller may retry), releases the lock and answers the call
 * with `status` and `message` and no reply. Returns what ackrpc_call_reply()
 * returned; E_INVAL: NULL store or call, or no transaction open (nothing
 * answered). */
ACKRPC_EXPORT ackrpc_status ackrpc_reply_store_abort(ackrpc_reply_store *store,
                                                     ackrpc_call *call,
                                                     ackrpc_status status,
                                                     const char *message);

/* Fills *ret (owned by the caller). Any thread. E_INVAL: NULL argument. */
ACKRPC_EXPORT ackrpc_status ackrpc_reply_store_get_stats(ackrpc_reply_store *store,
                                                         ackrpc_reply_store_stats *ret);

#ifdef __cplusplus
}
#endif

#endif /* ACKRPC_REPLY_STORE_H */
