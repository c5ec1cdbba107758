/* ackrpc/status.h: the one status table of ackrpc.
 *
 * Every fallible ackrpc function returns an ackrpc_status. Values 0 to 16 are
 * the canonical RPC codes (the numbering gRPC and Google APIs use): they are
 * what a server answers and they travel on the wire. Values from 100 up are
 * local: they never travel, and say what happened on this side. For a call,
 * the status alone tells the three outcomes apart (ackrpc_status_outcome()):
 *
 *   - not delivered (connect or send failed, or a local error before sending):
 *     the server never dispatched the request; retrying is safe;
 *   - delivered, no ack (the whole request was sent but no complete reply came
 *     back): the server may or may not have acted; retry only with the same
 *     call id;
 *   - acked: the server answered; the status is the server's. Most
 *     statuses say the handler did not act (UNIMPLEMENTED, INVALID_ARGUMENT,
 *     PERMISSION_DENIED, RESOURCE_EXHAUSTED from the server's limits), but
 *     DEADLINE_EXCEEDED and UNAVAILABLE answered by the server itself while a
 *     handler held the call mean "the handler may still act": treat them like
 *     "delivered, no ack" and retry only with the same call id.
 *
 * Codes 0 to 16 only ever mean what a server answered. Whatever this side
 * decides has a local code: a call that failed here (100 to 199, by outcome),
 * a misuse of the API or a resource of this process (200 and up), the
 * outbox's store (220 and up). Local codes never travel on the wire.
 */
#ifndef ACKRPC_STATUS_H
#define ACKRPC_STATUS_H

#include <stddef.h>

#include <ackrpc/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(NAME, value, message). The single source of the enum, the names and the
 * messages: they cannot drift apart. */
#define ACKRPC_STATUS_MAP(X)                                                           \
  X(OK, 0, "ok")                                                                       \
  X(CANCELLED, 1, "the call was cancelled")                                            \
  X(UNKNOWN, 2, "unknown error")                                                       \
  X(INVALID_ARGUMENT, 3, "invalid argument")                                           \
  X(DEADLINE_EXCEEDED, 4, "deadline exceeded")                                         \
  X(NOT_FOUND, 5, "not found")                                                         \
  X(ALREADY_EXISTS, 6, "already exists")                                               \
  X(PERMISSION_DENIED, 7, "permission denied")                                         \
  X(RESOURCE_EXHAUSTED, 8, "resource exhausted")                                       \
  X(FAILED_PRECONDITION, 9, "failed precondition")                                     \
  X(ABORTED, 10, "aborted")                                                            \
  X(OUT_OF_RANGE, 11, "out of range")                                                  \
  X(UNIMPLEMENTED, 12, "unimplemented")                                                \
  X(INTERNAL, 13, "internal error")                                                    \
  X(UNAVAILABLE, 14, "unavailable")                                                    \
  X(DATA_LOSS, 15, "data loss")                                                        \
  X(UNAUTHENTICATED, 16, "unauthenticated")                                            \
  /* Local: not delivered (the server never dispatched the call). */                   \
  X(E_CONNECT, 100, "could not connect to the server (not delivered)")                 \
  X(E_BUSY, 101, "the server's connection queue is full (not delivered)")              \
  X(E_SEND, 102, "could not send the request (not delivered)")                         \
  X(E_SEND_TIMEOUT, 103,                                                               \
    "deadline passed before the request was sent "                                     \
    "(not delivered)")                                                                 \
  /* Local: delivered, no ack (the server may have acted). */                          \
  X(E_NO_ACK, 110,                                                                     \
    "request sent, connection closed without a reply "                                 \
    "(outcome unknown)")                                                               \
  X(E_ACK_TIMEOUT, 111,                                                                \
    "request sent, deadline passed before the reply "                                  \
    "(outcome unknown)")                                                               \
  X(E_BAD_REPLY, 112,                                                                  \
    "request sent, the reply was malformed or too large "                              \
    "(outcome unknown)")                                                               \
  /* Local errors of the API itself (nothing was sent). */                             \
  X(E_INVAL, 200, "invalid argument to an ackrpc function")                            \
  X(E_NOMEM, 201, "out of memory")                                                     \
  X(E_SYSTEM, 202, "a system call failed")                                             \
  X(E_ADDRESS, 203, "invalid socket address")                                          \
  X(E_ADDR_IN_USE, 204, "another server is serving this address")                      \
  X(E_EXISTS, 205, "a file that is not a socket is in the way")                        \
  X(E_STATE, 206, "not allowed in the object's current state")                         \
  X(E_ALREADY_ANSWERED, 207,                                                           \
    "the call was already answered by the server "                                     \
    "(deadline or shutdown)")                                                          \
  X(E_UNSAFE_DIR, 208,                                                                 \
    "a directory on the socket's path would let another user replace the socket")      \
  X(E_NOT_FOUND, 209,                                                                  \
    "a name given to an ackrpc function names nothing (method, group, socket, entry)") \
  X(E_WAIT_TIMEOUT, 210, "the wait ended before what it waited for happened")          \
  X(E_SERVER_IDENTITY, 211,                                                            \
    "the server runs as a user the client does not trust (nothing was sent)")          \
  /* Local: the durable store (libackrpc-outbox); nothing was stored or read. */       \
  X(E_STORE_IO, 220, "the store could not be read or written (I/O error)")             \
  X(E_STORE_CORRUPT, 221, "the store is not a database or is damaged")                 \
  X(E_STORE_FULL, 222, "the disk or the store is full")                                \
  X(E_STORE_LOCKED, 223, "another process holds the store")

typedef enum ackrpc_status {
#define ACKRPC_STATUS_ENUM_(name, value, msg) ACKRPC_##name = value,
  ACKRPC_STATUS_MAP(ACKRPC_STATUS_ENUM_)
#undef ACKRPC_STATUS_ENUM_
} ackrpc_status;

/* What a call's status says about delivery. */
typedef enum ackrpc_outcome {
  ACKRPC_OUTCOME_NOT_DELIVERED = 0, /* never dispatched: safe to retry */
  ACKRPC_OUTCOME_NO_ACK = 1,        /* sent, no reply: outcome unknown */
  ACKRPC_OUTCOME_ACKED = 2,         /* the server answered this status */
} ackrpc_outcome;

/* The enum's name without prefix ("OK", "INVALID_ARGUMENT", "E_NO_ACK"), or
 * "UNRECOGNIZED" for a value outside the table. Static storage; never NULL. */
ACKRPC_EXPORT const char *ackrpc_status_name(ackrpc_status status);

/* A one-line English description. Static storage; never NULL. */
ACKRPC_EXPORT const char *ackrpc_strerror(ackrpc_status status);

/* Classifies a call's status: 0..16 → ACKED (including codes a newer server
 * may send that this table lacks, 17..99), 110..199 → NO_ACK, anything
 * else → NOT_DELIVERED. */
ACKRPC_EXPORT ackrpc_outcome ackrpc_status_outcome(ackrpc_status status);

/* The outcome in words: "not delivered", "delivered, no ack", "acked"; or
 * "unknown outcome" for a value outside the enum. Static storage; never
 * NULL. */
ACKRPC_EXPORT const char *ackrpc_outcome_name(ackrpc_outcome outcome);

/* Formats a call's status for a person, as snprintf() does, into `buf`
 * (`len` bytes; NULL if `len` is 0): "NAME (code): message [outcome]" for a
 * status a server answered (0 to 99, e.g. "NOT_FOUND (5): no such key
 * [acked]"), "NAME: message [outcome]" for a local one (e.g. "E_CONNECT:
 * could not connect to the server: No such file or directory [not
 * delivered]": local numbers are internal, so they are left out).
 * `message` is the call's message (ackrpc_result.message); NULL or "" means
 * ackrpc_strerror(status). Returns the length of the whole text (without
 * the NUL), whether it fit or not; when `len` > 0 the text is cut to fit
 * and always NUL-terminated. Never fails; safe from any thread. */
ACKRPC_EXPORT int ackrpc_status_format(char *buf, size_t len, ackrpc_status status,
                                       const char *message);

/* Nonzero if a server may put this status on the wire (0..16). */
ACKRPC_EXPORT int ackrpc_status_is_canonical(ackrpc_status status);

#ifdef __cplusplus
}
#endif

#endif /* ACKRPC_STATUS_H */
