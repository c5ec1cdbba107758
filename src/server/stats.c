/* stats.c: percentiles from the latency histogram of stats.h. */
#include "server/stats.h"

/* The largest value that falls in bucket `b`. */
static uint64_t bucket_upper(unsigned b) {
  if (b < AKR_HIST_EXACT) return b;
  unsigned msb = (b - AKR_HIST_EXACT) / AKR_HIST_SUB + 4;
  unsigned sub = (b - AKR_HIST_EXACT) % AKR_HIST_SUB;
  uint64_t width = (uint64_t)1 << (msb - 3);
  return ((uint64_t)(AKR_HIST_SUB + sub) << (msb - 3)) + width - 1;
}

uint64_t akr_stats_percentile(const akr_method_stats *st, double q) {
  uint64_t total = 0;
  for (unsigned b = 0; b < AKR_HIST_BUCKETS; b++)
    total += st->hist[b];
  if (!total) return 0;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  /* The rank (1-based) of the value wanted: ceil(q * total), at least 1. */
  uint64_t rank = (uint64_t)(q * (double)total);
  if ((double)rank < q * (double)total) rank++;
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (unsigned b = 0; b < AKR_HIST_BUCKETS; b++) {
    seen += st->hist[b];
    if (seen >= rank) {
      uint64_t up = bucket_upper(b);
      return up < st->max_us ? up : st->max_us;
    }
  }
  return st->max_us;
}
