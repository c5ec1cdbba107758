/* call.h: call objects (internal: not installed): what a handler holds.
 * A call is created when a frame's head is admitted, reused from a pool,
 * and lives on references: the connection's while they are together, the
 * handler's until it replies. Encoding the reply into the call's own buffer
 * is safe from any thread; everything else here is for the loop's thread
 * unless said otherwise. */
#ifndef AKR_CALL_H
#define AKR_CALL_H

#include "server/server_internal.h"

/* A call for a connection of `server`, holding one reference (the
 * connection's) and one on the server; answered (so no reply is taken)
 * until dispatch arms it. NULL if out of memory. */
ackrpc_call *akr_call_new(ackrpc_server *server);

/* Drops a reference; the last one gives the call back to the pool (on the
 * loop, while the server is open) or frees it, and drops its reference on
 * the server. Any thread; `on_loop` says which. */
void akr_call_unref(ackrpc_call *call, int on_loop);

/* Encodes a reply frame into the call's buffer (announcing the call's
 * reply_fds; closed if the reply cannot be made): `status` (a status a
 * server may send), an optional message and body; a reply too large for the
 * protocol becomes INTERNAL. Any thread, by whoever answers the call.
 * E_NOMEM leaves no reply. */
ackrpc_status akr_call_encode(ackrpc_call *call, uint32_t status, const char *message,
                              const ProtobufCMessage *body);

/* The same with a body already encoded (`body_len` bytes, copied). */
ackrpc_status akr_call_encode_raw(ackrpc_call *call, uint32_t status,
                                  const char *message, const uint8_t *body,
                                  size_t body_len);

/* Copies a whole encoded reply frame into the call's buffer (an answer from
 * the reply cache). -1 if out of memory. */
int akr_call_set_reply(ackrpc_call *call, const uint8_t *frame, size_t len);

/* Frees the pool of unused calls (when the server closes). */
void akr_call_pool_free(ackrpc_server *server);

#endif /* AKR_CALL_H */
