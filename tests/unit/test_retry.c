/* test_retry.c: the one retry rule and the one backoff (src/client/retry.c),
 * which the client's retry policies and the outbox both use. */
#include <criterion/criterion.h>

#include "client/retry.h"

Test(retry, the_rule_by_outcome) {
  uint32_t on = 1u << ACKRPC_UNAVAILABLE;
  /* Not delivered: always (the server never saw the request). */
  cr_assert(akr_retryable(0, ACKRPC_E_CONNECT));
  cr_assert(akr_retryable(0, ACKRPC_E_BUSY));
  cr_assert(akr_retryable(0, ACKRPC_E_SEND));
  cr_assert(akr_retryable(0, ACKRPC_E_SEND_TIMEOUT));
  cr_assert(akr_retryable(0, ACKRPC_E_NOMEM), "short of memory before sending");
  cr_assert(akr_retryable(0, ACKRPC_E_SYSTEM), "short of descriptors before sending");
  /* Delivered, no ack: always (the call id makes it safe). */
  cr_assert(akr_retryable(0, ACKRPC_E_NO_ACK));
  cr_assert(akr_retryable(0, ACKRPC_E_ACK_TIMEOUT));
  cr_assert(akr_retryable(0, ACKRPC_E_BAD_REPLY));
  /* The server's statuses: only those listed; never OK. */
  cr_assert(akr_retryable(on, ACKRPC_UNAVAILABLE));
  cr_assert(!akr_retryable(on, ACKRPC_RESOURCE_EXHAUSTED));
  cr_assert(!akr_retryable(~0u, ACKRPC_OK));
  cr_assert(!akr_retryable(~0u, (ackrpc_status)40), "not a canonical code");
  /* A call that is wrong in itself, and the store's errors: never. */
  cr_assert(!akr_retryable(~0u, ACKRPC_E_INVAL));
  cr_assert(!akr_retryable(~0u, ACKRPC_E_ADDRESS));
  cr_assert(!akr_retryable(~0u, ACKRPC_E_STORE_IO));
}

Test(retry, the_mask_takes_canonical_codes_only) {
  uint32_t mask = 0;
  ackrpc_status good[] = {ACKRPC_UNAVAILABLE, ACKRPC_ABORTED};
  cr_assert_eq(akr_retry_mask(good, 2, &mask), ACKRPC_OK);
  cr_assert_eq(mask, 1u << ACKRPC_UNAVAILABLE | 1u << ACKRPC_ABORTED);
  ackrpc_status ok[] = {ACKRPC_OK};
  cr_assert_eq(akr_retry_mask(ok, 1, &mask), ACKRPC_E_INVAL);
  ackrpc_status local[] = {ACKRPC_E_CONNECT};
  cr_assert_eq(akr_retry_mask(local, 1, &mask), ACKRPC_E_INVAL);
  cr_assert_eq(akr_retry_mask(NULL, 1, &mask), ACKRPC_E_INVAL);
}

Test(retry, backoff_doubles_to_its_cap_with_jitter_in_the_upper_half) {
  akr_rng rng;
  akr_rng_seed(&rng, 7);
  for (unsigned attempt = 1; attempt <= 12; attempt++) {
    uint64_t b = 10u << (attempt - 1);
    if (b > 1000) b = 1000;
    for (int i = 0; i < 200; i++) {
      uint64_t us = akr_backoff_us(10, 1000, attempt, &rng);
      cr_assert(us >= b * 1000 / 2 && us <= b * 1000,
                "attempt %u: %llu us outside [%llu, %llu]", attempt,
                (unsigned long long)us, (unsigned long long)(b * 500),
                (unsigned long long)(b * 1000));
    }
  }
}

Test(retry, the_generator_gives_different_numbers) {
  akr_rng a, b;
  akr_rng_init(&a, "a");
  akr_rng_init(&b, "b");
  uint64_t x = akr_rng_next(&a), y = akr_rng_next(&a);
  cr_assert_neq(x, y, "two draws of one generator");
  cr_assert_neq(akr_rng_next(&a), akr_rng_next(&b), "two generators");
}
