/* pattern.h: test bytes that show where they came from. Header-only, so
 * that unit tests that link nothing of tests/support can use it too. */
#ifndef ACKRPC_TEST_PATTERN_H
#define ACKRPC_TEST_PATTERN_H

#include <criterion/criterion.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* A malloc'ed buffer of `n` bytes (at least 1 allocated) from an xorshift
 * seeded by `seed`: it differs from one seed to another and from one
 * position to the next, so a piece sent from the wrong place, twice, or
 * cut shows. Freed by the test. */
static inline uint8_t *fx_pattern(size_t n, unsigned seed) {
  uint8_t *p = malloc(n ? n : 1);
  cr_assert_not_null(p);
  uint32_t x = 2463534242u ^ seed;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p[i] = (uint8_t)x;
  }
  return p;
}

#endif
