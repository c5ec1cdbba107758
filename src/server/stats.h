/* stats.h: per-method call statistics of the server: counts by status,
 * bytes, and a fixed-size log-linear latency histogram.
 *
 * Recording is a few additions and one bit scan: no allocation, no lock.
 * Only the loop's thread records and reads (the server answers calls, and
 * the stats method runs, on the loop), so plain integers suffice.
 * Internal: not installed. */
#ifndef AKR_STATS_H
#define AKR_STATS_H

#include <stddef.h>
#include <stdint.h>

/* Buckets: values below 16 us exactly; above, 8 linear sub-buckets per power
 * of two (a bucket's width is at most 1/8 of its lower bound) up to 2^36 us
 * (19 hours); larger values land in the last bucket. */
#define AKR_HIST_EXACT 16
#define AKR_HIST_SUB 8
#define AKR_HIST_MAX_MSB 35
#define AKR_HIST_BUCKETS (AKR_HIST_EXACT + (AKR_HIST_MAX_MSB - 3) * AKR_HIST_SUB)
#define AKR_STATUS_CODES 17 /* canonical codes 0..16 */

typedef struct akr_method_stats {
  uint64_t calls;
  uint64_t by_status[AKR_STATUS_CODES];
  uint64_t bytes_in, bytes_out;
  uint64_t max_us;
  uint64_t hist[AKR_HIST_BUCKETS];
} akr_method_stats;

static inline unsigned akr_hist_bucket(uint64_t us) {
  if (us < AKR_HIST_EXACT) return (unsigned)us;
  unsigned msb = 63u - (unsigned)__builtin_clzll(us);
  if (msb > AKR_HIST_MAX_MSB) return AKR_HIST_BUCKETS - 1;
  unsigned sub = (unsigned)(us >> (msb - 3)) & (AKR_HIST_SUB - 1);
  return AKR_HIST_EXACT + (msb - 4) * AKR_HIST_SUB + sub;
}

/* One answered call. `status` is a canonical code (others count as
 * UNKNOWN). A call answered before its request was complete (refused by a
 * policy, timed out while reading) is counted but not timed (`timed` 0):
 * its latency would say nothing about the handler. */
static inline void akr_stats_record(akr_method_stats *st, uint32_t status,
                                    uint64_t bytes_in, uint64_t bytes_out, int timed,
                                    uint64_t us) {
  st->calls++;
  st->by_status[status < AKR_STATUS_CODES ? status : 2]++;
  st->bytes_in += bytes_in;
  st->bytes_out += bytes_out;
  if (!timed) return;
  if (us > st->max_us) st->max_us = us;
  st->hist[akr_hist_bucket(us)]++;
}

/* The latency below which a fraction `q` (0..1) of the calls fall: the upper
 * bound of the bucket that holds that rank, capped by the largest value
 * seen. 0 if there were no calls. */
uint64_t akr_stats_percentile(const akr_method_stats *st, double q);

#endif /* AKR_STATS_H */
