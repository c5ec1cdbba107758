/* account.h: what connections and calls hold, counted against budgets
 * (internal: not installed).
 *
 * Three accounts see every charge: the connection's, its peer uid's and
 * the server's. A connection is charged its input buffer; a call, from its
 * admission until its last reference is dropped, one call in progress and
 * the bytes its arena holds (the decoded request and whatever else
 * protobuf-c kept). A call the server gave up on (its deadline passed, its
 * client left) stays charged to its connection, while that is open, and to
 * its uid until its handler lets it go: a peer cannot leave calls behind
 * to hold memory beyond its budgets. The limits are the server's options
 * (max_memory*, max_calls_per_*); admission asks here for room, the
 * charges never fail. Loop thread only. */
#ifndef AKR_SERVER_ACCOUNT_H
#define AKR_SERVER_ACCOUNT_H

#include <stddef.h>
#include <sys/types.h>

typedef struct ackrpc_server ackrpc_server;
typedef struct ackrpc_call ackrpc_call;
typedef struct akr_conn akr_conn;

typedef struct akr_acct {
  size_t bytes;
  size_t calls;
} akr_acct;

/* One peer uid: its connections (counted against max_connections_per_uid),
 * those waiting for a request, and its account. Lives while any of these
 * is nonzero. */
typedef struct akr_uid_rec {
  uid_t uid;
  unsigned conns;
  unsigned pending;
  akr_acct a;
} akr_uid_rec;

/* The record of `uid`, made if there is none: NULL if out of memory. */
akr_uid_rec *akr_uid_get(ackrpc_server *server, uid_t uid);
/* Forgets the record if nothing counts on it any more. */
void akr_uid_put(ackrpc_server *server, akr_uid_rec *rec);
/* Frees every record (the server's last reference). */
void akr_uid_free_all(ackrpc_server *server);

/* Sets what the connection's input buffer is charged to its capacity. */
void akr_acct_conn_input(akr_conn *conn);
/* The connection closed: its calls stay charged to their uid and the
 * server only; its input charge goes. */
void akr_acct_conn_closed(akr_conn *conn);
/* Bytes that may still be charged to the connection: the least room left
 * in its, its uid's and the server's budgets. */
size_t akr_acct_room(const akr_conn *conn);

/* The call, admitted on `conn`, counts as a call in progress. */
void akr_acct_call_start(ackrpc_call *call, akr_conn *conn);
/* Sets what the call is charged to `bytes`. */
void akr_acct_call_bytes(ackrpc_call *call, size_t bytes);
/* The call's last reference went: it counts no more. */
void akr_acct_call_end(ackrpc_call *call);

#endif /* AKR_SERVER_ACCOUNT_H */
