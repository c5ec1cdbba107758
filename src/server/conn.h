/* conn.h: connections (internal: not installed): a socket, its buffers
 * and the frames on it, served one call at a time. Loop thread only.
 *
 * The I/O path follows the plain epoll loop, not libevent's bufferevents
 * (../shared/peers/RESULTS.md: bufferevents cost ~35%): plain events, a
 * read straight after accept (the request is usually there already), the
 * reply written directly, and events armed only when a read or a write would
 * block. A one-shot call costs accept4, getsockopt(SO_PEERCRED), read, write,
 * read (EOF) and close.
 *
 * A connection does not know what a handler is: it finds frames and
 * reports them through the server's hooks (server_internal.h), and sends
 * what it is given. */
#ifndef AKR_CONN_H
#define AKR_CONN_H

#include "server/server_internal.h"

/* Serves a new connection on `fd` (accepted, non-blocking): the peer's
 * credentials are read and the connection is listed as waiting for its
 * first frame, but nothing is read yet (akr_conn_resume() does). NULL if
 * out of memory (then `fd` is closed). */
akr_conn *akr_conn_start(ackrpc_server *server, int fd);

/* The connection's state machine: reads, finds frames, hands them to the
 * hooks, until it must wait. Called from the loop's callbacks, never from
 * inside a handler; may close the connection (the caller must not touch it
 * afterwards). */
void akr_conn_resume(akr_conn *conn);

/* Answers the frame being served without a handler (a refusal, a protocol
 * error, a deadline, shutdown): the reply goes out after what is already
 * queued; with `then_close` the connection ends after it. */
void akr_conn_answer(akr_conn *conn, ackrpc_status status, const char *message,
                     int then_close);

/* Sends the reply of `call` (the connection's call, answered): the
 * connection's reference to the call goes with it, the call is no longer
 * the connection's. */
void akr_conn_reply(akr_conn *conn, ackrpc_call *call);

/* A call of this connection is with its handler (or waits in the reply
 * cache) until `deadline_us`: stops reading meanwhile, and sends the
 * replies batched so far rather than hold them back. */
void akr_conn_busy(akr_conn *conn, uint64_t deadline_us);

/* Moves the descriptors that came with the frame being admitted to *ret
 * (zeroed if none): see akr_fdq_claim(). */
void akr_conn_claim_fds(akr_conn *conn, akr_fd_batch *ret);

/* Parts the connection from its call, which lives on with its other
 * references (a handler's). */
void akr_conn_part(akr_conn *conn);

/* Closes the connection: its socket, its place in the lists, its call (if
 * any is left, parted), then the hooks' `closed`. */
void akr_conn_close(akr_conn *conn);

/* Frees the pool of unused connection objects. */
void akr_conn_pool_free(ackrpc_server *server);

/* Arms the timer that unmaps kept large buffers once no call asks for one
 * (after buffers went back to the spare store). */
void akr_conn_spare_watch(ackrpc_server *server);

#endif /* AKR_CONN_H */
