/* tap.h: the capture tap (internal: not installed): a server copies the
 * calls it serves to the peers that asked for them with the built-in
 * method ackrpc.reflection.Capture/Watch (its handler is in builtin.c;
 * docs/PROTOCOL.md §8a), as a pcapng stream (docs/CAPTURE.md describes the
 * record format).
 *
 * Off, the tap costs one test of `server->tap` (NULL) on the call path.
 * On, each record is encoded once into every listener's bounded buffer and
 * written when the socket takes it; a listener that does not keep up loses
 * records (counted in each later record), never slows the server. Loop
 * thread only. */
#ifndef AKR_TAP_H
#define AKR_TAP_H

#include "server/server_internal.h"

/* The method that makes a listener (builtin.c); its own calls are not
 * recorded. */
#define AKR_TAP_WATCH_METHOD "ackrpc.reflection.Capture/Watch"

/* Whether the server has as many listeners as it takes. */
int akr_tap_full(const ackrpc_server *server);

/* Makes a listener of `fd` (a connected socket, non-blocking, now the
 * tap's): the stream's header is queued, nothing is sent until
 * akr_tap_arm(). 0, or -1 (full, out of memory: `fd` is still the
 * caller's). */
int akr_tap_add(ackrpc_server *server, int fd);

/* Starts sending to the listener of `fd`. */
void akr_tap_arm(ackrpc_server *server, int fd);

/* Ends the listener of `fd` (closing it) before it was armed. */
void akr_tap_cancel(ackrpc_server *server, int fd);

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
