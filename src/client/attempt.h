/* attempt.h: the blocking calls' attempts and their retries (internal: not
 * installed). Every blocking entry point (one-shot, pooled, session, raw)
 * is an attempt function run by akr_blocking_call(), so retries, the call
 * id kept across attempts and the shared deadline are written once. */
#ifndef AKR_CLIENT_ATTEMPT_H
#define AKR_CLIENT_ATTEMPT_H

#include "client/client_internal.h"

/* One attempt with these options (call id and timeout already set), waiting
 * at most wait_ms (0: its timeout) for the ack. Returns its status (also in
 * r). */
typedef ackrpc_status (*akr_attempt_fn)(void *ctx, const ackrpc_call_options *options,
                                        uint32_t wait_ms, ackrpc_result *r);

/* Runs `fn` until an attempt succeeds, fails for good (retry.h's rule),
 * the attempts run out or the call's deadline would pass; every attempt
 * with the first one's call id. The per-call policy, if any, replaces
 * `rules` (E_INVAL if it is malformed). The result goes to ret_result
 * (zeroed first) or, if NULL, to a local one cleared before returning. */
ackrpc_status akr_blocking_call(akr_ids *ids, uint32_t default_ms,
                                const akr_retry_rules *rules,
                                const ackrpc_call_options *options, akr_attempt_fn fn,
                                void *ctx, ackrpc_result *ret_result);

/* A blocking entry point's answer to a bad argument: E_INVAL, with `why`
 * in ret_result (if not NULL). */
ackrpc_status akr_blocking_refuse(ackrpc_result *ret_result, const char *why);

#endif /* AKR_CLIENT_ATTEMPT_H */
