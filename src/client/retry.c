/* retry.c: the retry rule and the backoff (retry.h). */
#include "client/retry.h"

#include <string.h>

ackrpc_status akr_retry_mask(const ackrpc_status *list, size_t n, uint32_t *ret_mask) {
  if (n && !list) return ACKRPC_E_INVAL;
  uint32_t mask = 0;
  for (size_t i = 0; i < n; i++) {
    if (list[i] == ACKRPC_OK || !ackrpc_status_is_canonical(list[i]))
      return ACKRPC_E_INVAL;
    mask |= 1u << (unsigned)list[i];
  }
  *ret_mask = mask;
  return ACKRPC_OK;
}

ackrpc_status akr_retry_rules_make(const ackrpc_retry_policy *p, akr_retry_rules *ret) {
  akr_retry_rules r;
  memset(&r, 0, sizeof r);
  if (p) {
    ackrpc_status st = akr_retry_mask(p->retry_on, p->n_retry_on, &r.retry_on);
    if (st != ACKRPC_OK) return st;
    r.max_attempts = p->max_attempts;
    r.initial_ms =
        p->initial_backoff_ms ? p->initial_backoff_ms : AKR_DEFAULT_BACKOFF_MS;
    r.max_ms = p->max_backoff_ms ? p->max_backoff_ms : AKR_DEFAULT_MAX_BACKOFF_MS;
    if (r.max_ms < r.initial_ms) r.max_ms = r.initial_ms;
    r.attempt_ms = p->attempt_timeout_ms;
  }
  *ret = r;
  return ACKRPC_OK;
}

int akr_retryable(uint32_t retry_on, ackrpc_status st) {
  switch (ackrpc_status_outcome(st)) {
  case ACKRPC_OUTCOME_NO_ACK: return 1;
  case ACKRPC_OUTCOME_NOT_DELIVERED:
    return ((int)st >= 100 && (int)st < 110) || st == ACKRPC_E_NOMEM ||
           st == ACKRPC_E_SYSTEM;
  case ACKRPC_OUTCOME_ACKED:
    return st != ACKRPC_OK && ackrpc_status_is_canonical(st) &&
           (retry_on >> (unsigned)st & 1u);
  }
  return 0;
}

uint64_t akr_backoff_us(uint32_t initial_ms, uint32_t max_ms, unsigned attempt,
                        akr_rng *rng) {
  uint64_t b = initial_ms;
  for (unsigned i = 1; i < attempt && b < max_ms; i++)
    b *= 2;
  if (b > max_ms) b = max_ms;
  b *= 1000u;
  return b / 2 + akr_rng_next(rng) % (b / 2 + 1);
}
