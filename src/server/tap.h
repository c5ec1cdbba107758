/* tap.h: the capture tap (internal: not installed): a server copies the
 * calls it serves to the peers that asked for them with the built-in
 * method ackrpc.reflection.Capture/Watch (docs/PROTOCOL.md §8b), as a
 * pcapng stream (docs/CAPTURE.md describes the record format).
 *
 * Off, the tap costs one test of `server->tap` (NULL) on the call path.
 * On, each record is encoded once into every listener's bounded buffer and
 * written when the socket takes it; a listener that does not keep up loses
 * records (counted in each later record), never slows the server. Loop
 * thread only. */
#ifndef AKR_TAP_H
#define AKR_TAP_H

#include "server/server_internal.h"

/* The handler of ackrpc.reflection.Capture/Watch (`user`: the server).
 * Admits the caller if it runs as root, as the server's effective uid, or
 * as the owner of the socket file; answers OK, then the connection carries
 * the capture stream until the caller closes it or the server ends. */
void akr_tap_watch(ackrpc_call *call, const ProtobufCMessage *request, void *user);

/* A request frame is complete and about to be decoded (`server->tap` set). */
void akr_tap_request(ackrpc_server *server, const ackrpc_call *call,
                     const uint8_t *body, size_t body_len);

/* A call is answered: `frame` is the encoded reply frame. */
void akr_tap_reply_frame(ackrpc_server *server, const ackrpc_call *call,
                         const uint8_t *frame, size_t len);

/* A call is answered without a handler's reply (a refusal, a deadline,
 * shutdown): the status and the message, no body. */
void akr_tap_answer(ackrpc_server *server, const ackrpc_call *call, uint32_t status,
                    const char *message);

/* Ends every listener (the server closes). */
void akr_tap_free(ackrpc_server *server);

#endif /* AKR_TAP_H */
