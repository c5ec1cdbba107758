/* rng.h: the library's one random-number generator (internal: not
 * installed), for what needs numbers that differ between processes and
 * threads but not secrecy: call id prefixes and backoff jitter.
 *
 * splitmix64 over an atomic counter: lock-free, so many threads may draw
 * from one generator, and each draw is a different number. Every object
 * that draws keeps its own generator (a client, an asynchronous call, an
 * outbox): there is no global state. */
#ifndef AKR_RNG_H
#define AKR_RNG_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct akr_rng {
  atomic_uint_least64_t state;
} akr_rng;

/* Seeds from getrandom(); if that fails, from the clock, the pid and
 * `salt` (any address unique to the caller). */
void akr_rng_init(akr_rng *rng, const void *salt);

/* Seeds with a given value (a number drawn from another generator). */
static inline void akr_rng_seed(akr_rng *rng, uint64_t seed) {
  atomic_init(&rng->state, seed);
}

static inline uint64_t akr_rng_next(akr_rng *rng) {
  uint64_t z = atomic_fetch_add_explicit(&rng->state, 0x9e3779b97f4a7c15u,
                                         memory_order_relaxed) +
               0x9e3779b97f4a7c15u;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

#endif /* AKR_RNG_H */
