/* clock.h: the library's one clock (CLOCK_MONOTONIC, in microseconds) and
 * the libevent timeouts derived from it. Internal: not installed. */
#ifndef AKR_CLOCK_H
#define AKR_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

static inline uint64_t akr_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A duration as a timeval. */
static inline struct timeval akr_tv_us(uint64_t us) {
  struct timeval tv = {.tv_sec = (time_t)(us / 1000000u),
                       .tv_usec = (suseconds_t)(us % 1000000u)};
  return tv;
}

/* The time left until `deadline_us` (akr_now_us() time), 0 if it passed. */
static inline struct timeval akr_tv_until(uint64_t deadline_us) {
  uint64_t now = akr_now_us();
  return akr_tv_us(deadline_us > now ? deadline_us - now : 0);
}

#endif /* AKR_CLOCK_H */
