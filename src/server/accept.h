/* accept.h: taking connections in (internal: not installed): the accept
 * loop, the limits on connections (in all, per uid, waiting for a frame)
 * and what gives way when they are reached, and the pause when the process
 * runs out of descriptors. Loop thread only. */
#ifndef AKR_ACCEPT_H
#define AKR_ACCEPT_H

#include "server/server_internal.h"

/* Creates the accept events on the listening socket and starts
 * accepting. E_NOMEM. */
ackrpc_status akr_accept_start(ackrpc_server *server);

/* Serves a connection: counts it against its uid, checks the server-wide
 * policy (a refused peer is answered and dropped), and reads its first
 * frame. */
void akr_accept_serve(ackrpc_server *server, int fd);

/* Accepts everything in the kernel's queue now (connections that have sent
 * their requests are served rather than reset), then stops accepting. */
void akr_accept_drain_queue(ackrpc_server *server);

/* Stops accepting (the events stay until akr_accept_free()). */
void akr_accept_stop(ackrpc_server *server);

/* A connection closed: its uid's count goes down, and accepting resumes if
 * it was paused for room. */
void akr_accept_closed(akr_conn *conn);

/* Frees the accept events. */
void akr_accept_free(ackrpc_server *server);

#endif /* AKR_ACCEPT_H */
