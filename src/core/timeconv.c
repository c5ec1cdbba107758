/* timeconv.c: google.protobuf.Timestamp and .Duration to and from struct
 * timespec and milliseconds (include/ackrpc/common.h). Every check is made
 * before anything is written: outputs stay untouched on failure. */
#include <stdint.h>
#include <time.h>

#include "ackrpc/common.h"

#define NANOS_PER_SEC 1000000000
#define NANOS_PER_MS 1000000

/* Whether `s` fits a time_t (narrower than int64_t on some 32-bit ABIs). */
static int fits_time_t(int64_t s) {
  return (int64_t)(time_t)s == s;
}

static int timestamp_ok(int64_t seconds, int32_t nanos) {
  return seconds >= ACKRPC_TIMESTAMP_MIN_SECONDS &&
         seconds <= ACKRPC_TIMESTAMP_MAX_SECONDS && nanos >= 0 && nanos < NANOS_PER_SEC;
}

static int duration_ok(int64_t seconds, int32_t nanos) {
  return seconds >= -ACKRPC_DURATION_MAX_SECONDS &&
         seconds <= ACKRPC_DURATION_MAX_SECONDS && nanos > -NANOS_PER_SEC &&
         nanos < NANOS_PER_SEC && !(seconds > 0 && nanos < 0) &&
         !(seconds < 0 && nanos > 0);
}

ackrpc_status ackrpc_timestamp_to_timespec(int64_t seconds, int32_t nanos,
                                           struct timespec *ret_ts) {
  if (!ret_ts || !timestamp_ok(seconds, nanos) || !fits_time_t(seconds))
    return ACKRPC_E_INVAL;
  ret_ts->tv_sec = (time_t)seconds;
  ret_ts->tv_nsec = nanos;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_timestamp_from_timespec(const struct timespec *ts,
                                             int64_t *ret_seconds, int32_t *ret_nanos) {
  if (!ts || !ret_seconds || !ret_nanos || ts->tv_nsec < 0 ||
      ts->tv_nsec >= NANOS_PER_SEC || !timestamp_ok((int64_t)ts->tv_sec, 0))
    return ACKRPC_E_INVAL;
  *ret_seconds = (int64_t)ts->tv_sec;
  *ret_nanos = (int32_t)ts->tv_nsec;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_timestamp_to_ms(int64_t seconds, int32_t nanos, int64_t *ret_ms) {
  if (!ret_ms || !timestamp_ok(seconds, nanos)) return ACKRPC_E_INVAL;
  /* nanos >= 0, so this rounds down, before 1970 too. */
  *ret_ms = seconds * 1000 + nanos / NANOS_PER_MS;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_timestamp_from_ms(int64_t ms, int64_t *ret_seconds,
                                       int32_t *ret_nanos) {
  if (!ret_seconds || !ret_nanos) return ACKRPC_E_INVAL;
  int64_t s = ms / 1000, rest = ms % 1000;
  if (rest < 0) { /* C truncates toward zero; a Timestamp's nanos are >= 0 */
    s -= 1;
    rest += 1000;
  }
  if (!timestamp_ok(s, 0)) return ACKRPC_E_INVAL;
  *ret_seconds = s;
  *ret_nanos = (int32_t)(rest * NANOS_PER_MS);
  return ACKRPC_OK;
}

ackrpc_status ackrpc_duration_to_timespec(int64_t seconds, int32_t nanos,
                                          struct timespec *ret_ts) {
  if (!ret_ts || !duration_ok(seconds, nanos)) return ACKRPC_E_INVAL;
  if (nanos < 0) { /* normalize: -1.5 s is tv_sec -2, tv_nsec 500000000 */
    seconds -= 1;
    nanos += NANOS_PER_SEC;
  }
  if (!fits_time_t(seconds)) return ACKRPC_E_INVAL;
  ret_ts->tv_sec = (time_t)seconds;
  ret_ts->tv_nsec = nanos;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_duration_from_timespec(const struct timespec *ts,
                                            int64_t *ret_seconds, int32_t *ret_nanos) {
  if (!ts || !ret_seconds || !ret_nanos || ts->tv_nsec < 0 ||
      ts->tv_nsec >= NANOS_PER_SEC)
    return ACKRPC_E_INVAL;
  int64_t s = (int64_t)ts->tv_sec;
  int32_t n = (int32_t)ts->tv_nsec;
  if (s < 0 && n > 0) { /* a Duration's nanos carry its sign */
    s += 1;
    n -= NANOS_PER_SEC;
  }
  if (!duration_ok(s, n)) return ACKRPC_E_INVAL;
  *ret_seconds = s;
  *ret_nanos = n;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_duration_to_ms(int64_t seconds, int32_t nanos, int64_t *ret_ms) {
  if (!ret_ms || !duration_ok(seconds, nanos)) return ACKRPC_E_INVAL;
  /* Same signs, so both parts truncate toward zero. */
  *ret_ms = seconds * 1000 + nanos / NANOS_PER_MS;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_duration_from_ms(int64_t ms, int64_t *ret_seconds,
                                      int32_t *ret_nanos) {
  if (!ret_seconds || !ret_nanos) return ACKRPC_E_INVAL;
  int64_t s = ms / 1000; /* the remainder takes the sign of ms, as nanos must */
  int32_t n = (int32_t)(ms % 1000 * NANOS_PER_MS);
  if (!duration_ok(s, n)) return ACKRPC_E_INVAL;
  *ret_seconds = s;
  *ret_nanos = n;
  return ACKRPC_OK;
}
