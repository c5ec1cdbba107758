/* rng.c: seeding the generator (rng.h). */
#include "core/rng.h"

#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/clock.h"

void akr_rng_init(akr_rng *rng, const void *salt) {
  uint64_t seed;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
    seed = akr_now_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)salt;
  akr_rng_seed(rng, seed);
}
