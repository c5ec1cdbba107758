/* retry.h: the one rule for which failed calls are tried again, and the one
 * backoff between tries (internal: not installed). The client's retry
 * policies (ackrpc_retry_policy) and the outbox's delivery both use it, so
 * a status means the same to both (docs/DELIVERY.md).
 *
 * No I/O and no clock: callers pass the attempt number and their generator
 * and do the waiting themselves. */
#ifndef AKR_RETRY_H
#define AKR_RETRY_H

#include <stddef.h>
#include <stdint.h>

#include "ackrpc/client.h"
#include "core/rng.h"

#define AKR_DEFAULT_BACKOFF_MS 10
#define AKR_DEFAULT_MAX_BACKOFF_MS 1000

/* A retry policy, checked and reduced to what the attempts need. */
typedef struct akr_retry_rules {
  unsigned max_attempts; /* <= 1: none */
  uint32_t initial_ms, max_ms, attempt_ms;
  uint32_t retry_on; /* bit n: the server's status n is tried again */
} akr_retry_rules;

/* Turns a list of server statuses into a retry_on mask. E_INVAL if the list
 * is NULL with n > 0, or names OK or a status that is not canonical. */
ackrpc_status akr_retry_mask(const ackrpc_status *list, size_t n, uint32_t *ret_mask);

/* Checks a client policy and reduces it to rules (defaults filled in); NULL
 * gives no retries. E_INVAL as akr_retry_mask(); *ret untouched then. */
ackrpc_status akr_retry_rules_make(const ackrpc_retry_policy *policy,
                                   akr_retry_rules *ret);

/* The rule: whether a call that ended with `status` may be tried again with
 * the same call id. Always: "delivered, no ack" (the server may have acted;
 * the same call id makes a retry safe) and "not delivered" failures of the
 * transport, and E_NOMEM and E_SYSTEM (this process was short of memory or
 * descriptors before anything was sent). Never: OK, other local errors (the
 * call itself is wrong: E_INVAL, E_ADDRESS, ...). A server's status: only if
 * its bit is set in `retry_on`. */
int akr_retryable(uint32_t retry_on, ackrpc_status status);

/* The backoff before try number attempt + 1 (attempt counts from 1), in
 * microseconds: b = min(max_ms, initial_ms * 2^(attempt-1)) milliseconds,
 * jittered uniformly in [b/2, b] so that callers that failed together do
 * not try again together. */
uint64_t akr_backoff_us(uint32_t initial_ms, uint32_t max_ms, unsigned attempt,
                        akr_rng *rng);

#endif /* AKR_RETRY_H */
