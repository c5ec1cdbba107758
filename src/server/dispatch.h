/* dispatch.h: from an admitted frame to a handler and back (internal: not
 * installed). The first three are the connection's hooks (see
 * server_internal.h); the reply cache's glue is in cache.c. Loop thread
 * only, but ackrpc_call_reply() (server.h) which is here too. */
#ifndef AKR_DISPATCH_H
#define AKR_DISPATCH_H

#include "server/server_internal.h"

/* Hook `admit`: decodes the head into a new call of the connection and
 * checks it: a known method, a peer its policy admits. 1 if admitted; else
 * the frame is answered (and, if not complete, the connection ends). */
int akr_dispatch_admit(akr_conn *conn, const akr_frame *frame, int complete);

/* Hook `dispatch`: decodes the body (depth and memory bounded) and runs
 * the handler, or answers from the reply cache. */
void akr_dispatch_frame(akr_conn *conn, const akr_frame *frame);

/* Hook `expired`: the deadline of the connection's call passed (the server
 * answers DEADLINE_EXCEEDED and the call goes on with its handler alone),
 * or a waiting repeat's answer is ready. */
void akr_dispatch_expired(akr_conn *conn);

/* Delivers the replies other threads queued (the wake event). */
void akr_dispatch_wake(ackrpc_server *server);

/* Drain time is over: a call still with its handler, or waiting in the
 * cache, is answered UNAVAILABLE and its connection ends. */
void akr_dispatch_shutdown(akr_conn *conn);

/* --- The reply cache's glue (cache.c; docs/DELIVERY.md) --- */

/* Before a handler runs: a call id already answered OK for this method is
 * answered from the cache (or the reply store); one whose id was used for
 * another request is refused; one whose first call is still being handled
 * waits for it (until its own deadline). Returns 1 if the call was taken
 * care of here, 0 if the handler must run (the call then owns a new cache
 * entry, finished by akr_cache_finish() when it is answered). */
int akr_cache_begin(akr_conn *conn, ackrpc_call *call);

/* Computes the call's request digest (ackrpc_call_request_digest()) from
 * its head and `body` (the request body as it arrived). */
void akr_cache_digest(ackrpc_call *call, const uint8_t *body, size_t body_len);

/* The call owning a cache entry was answered (its reply in call->out, or
 * none if out_len is 0): keeps an OK, and hands the answer to the repeats
 * waiting for it. They are woken through their timers, so that no other
 * connection runs inside the handler that called this. */
void akr_cache_finish(ackrpc_call *call);

/* A waiting repeat's timer: its answer arrived, or its deadline passed. */
void akr_cache_wait_over(akr_conn *conn, ackrpc_call *call);

#endif /* AKR_DISPATCH_H */
