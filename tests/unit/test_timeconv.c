/* test_timeconv.c: google.protobuf.Timestamp and .Duration to and from
 * struct timespec and milliseconds (include/ackrpc/common.h): values at and
 * beyond the types' ranges, before 1970, negative durations, rounding. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <time.h>

#include "ackrpc/common.h"

#define MIN_S ACKRPC_TIMESTAMP_MIN_SECONDS
#define MAX_S ACKRPC_TIMESTAMP_MAX_SECONDS
#define DMAX ACKRPC_DURATION_MAX_SECONDS

Test(timeconv, the_ranges_are_protobufs) {
  /* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, as timestamp.proto says. */
  cr_assert_eq(MIN_S, -62135596800LL);
  cr_assert_eq(MAX_S, 253402300799LL);
  cr_assert_eq(DMAX, 10000LL * 36525 * 864); /* 10,000 years of 365.25 days */
}

Test(timeconv, timestamp_to_timespec) {
  struct timespec ts = {1, 2};
  cr_assert_eq(ackrpc_timestamp_to_timespec(1700000000, 123456789, &ts), ACKRPC_OK);
  cr_assert_eq(ts.tv_sec, 1700000000);
  cr_assert_eq(ts.tv_nsec, 123456789);
  cr_assert_eq(ackrpc_timestamp_to_timespec(MIN_S, 0, &ts), ACKRPC_OK);
  cr_assert_eq(ackrpc_timestamp_to_timespec(MAX_S, 999999999, &ts), ACKRPC_OK);
  cr_assert_eq(ts.tv_sec, MAX_S);
  struct timespec keep = {5, 6};
  ts = keep;
  cr_assert_eq(ackrpc_timestamp_to_timespec(MAX_S + 1, 0, &ts), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_timestamp_to_timespec(MIN_S - 1, 999999999, &ts), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_timestamp_to_timespec(0, -1, &ts), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_timestamp_to_timespec(0, 1000000000, &ts), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_timestamp_to_timespec(0, 0, NULL), ACKRPC_E_INVAL);
  cr_assert(ts.tv_sec == 5 && ts.tv_nsec == 6, "written on failure");
}

Test(timeconv, timestamp_from_timespec) {
  int64_t s = 7;
  int32_t n = 7;
  struct timespec ts = {-2, 500000000}; /* 1969-12-31T23:59:58.5Z */
  cr_assert_eq(ackrpc_timestamp_from_timespec(&ts, &s, &n), ACKRPC_OK);
  cr_assert(s == -2 && n == 500000000);
  ts.tv_sec = (time_t)(MAX_S + 1);
  s = n = 7;
  cr_assert_eq(ackrpc_timestamp_from_timespec(&ts, &s, &n), ACKRPC_E_INVAL);
  ts.tv_sec = 0;
  ts.tv_nsec = 1000000000;
  cr_assert_eq(ackrpc_timestamp_from_timespec(&ts, &s, &n), ACKRPC_E_INVAL);
  ts.tv_nsec = -1;
  cr_assert_eq(ackrpc_timestamp_from_timespec(&ts, &s, &n), ACKRPC_E_INVAL);
  cr_assert(s == 7 && n == 7, "written on failure");
  cr_assert_eq(ackrpc_timestamp_from_timespec(NULL, &s, &n), ACKRPC_E_INVAL);
  /* Now, both ways. */
  struct timespec now, back;
  cr_assert_eq(clock_gettime(CLOCK_REALTIME, &now), 0);
  cr_assert_eq(ackrpc_timestamp_from_timespec(&now, &s, &n), ACKRPC_OK);
  cr_assert_eq(ackrpc_timestamp_to_timespec(s, n, &back), ACKRPC_OK);
  cr_assert(back.tv_sec == now.tv_sec && back.tv_nsec == now.tv_nsec);
}

Test(timeconv, timestamp_and_milliseconds_round_down) {
  int64_t ms = 0, s = 0;
  int32_t n = 0;
  cr_assert_eq(ackrpc_timestamp_to_ms(1, 999999999, &ms), ACKRPC_OK);
  cr_assert_eq(ms, 1999);
  cr_assert_eq(ackrpc_timestamp_to_ms(-2, 500000000, &ms), ACKRPC_OK); /* -1.5 s */
  cr_assert_eq(ms, -1500);
  cr_assert_eq(ackrpc_timestamp_to_ms(-1, 999999, &ms), ACKRPC_OK); /* -0.999001 s */
  cr_assert_eq(ms, -1000, "the millisecond it falls in, not toward zero: %lld",
               (long long)ms);
  cr_assert_eq(ackrpc_timestamp_from_ms(-1500, &s, &n), ACKRPC_OK);
  cr_assert(s == -2 && n == 500000000, "%lld %d", (long long)s, n);
  cr_assert_eq(ackrpc_timestamp_from_ms(1999, &s, &n), ACKRPC_OK);
  cr_assert(s == 1 && n == 999000000);
  cr_assert_eq(ackrpc_timestamp_from_ms(MAX_S * 1000 + 999, &s, &n), ACKRPC_OK);
  s = 3;
  cr_assert_eq(ackrpc_timestamp_from_ms(MAX_S * 1000 + 1000, &s, &n), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_timestamp_from_ms(MIN_S * 1000 - 1, &s, &n), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_timestamp_from_ms(INT64_MIN, &s, &n), ACKRPC_E_INVAL);
  cr_assert_eq(s, 3);
  cr_assert_eq(ackrpc_timestamp_to_ms(MAX_S + 1, 0, &ms), ACKRPC_E_INVAL);
}

Test(timeconv, duration_and_milliseconds_truncate_toward_zero) {
  int64_t ms = 0, s = 0;
  int32_t n = 0;
  cr_assert_eq(ackrpc_duration_to_ms(1, 999999999, &ms), ACKRPC_OK);
  cr_assert_eq(ms, 1999);
  cr_assert_eq(ackrpc_duration_to_ms(-1, -999999999, &ms), ACKRPC_OK);
  cr_assert_eq(ms, -1999);
  cr_assert_eq(ackrpc_duration_to_ms(0, -999999, &ms), ACKRPC_OK);
  cr_assert_eq(ms, 0);
  cr_assert_eq(ackrpc_duration_from_ms(-1500, &s, &n), ACKRPC_OK);
  cr_assert(s == -1 && n == -500000000, "nanos carry the sign: %lld %d", (long long)s,
            n);
  cr_assert_eq(ackrpc_duration_from_ms(DMAX * 1000, &s, &n), ACKRPC_OK);
  cr_assert_eq(s, DMAX);
  cr_assert_eq(ackrpc_duration_from_ms(DMAX * 1000 + 1000, &s, &n), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_duration_from_ms(INT64_MIN, &s, &n), ACKRPC_E_INVAL);
  /* Malformed durations: mixed signs, nanos out of range, beyond 10,000 y. */
  ms = 5;
  cr_assert_eq(ackrpc_duration_to_ms(1, -1, &ms), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_duration_to_ms(-1, 1, &ms), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_duration_to_ms(0, 1000000000, &ms), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_duration_to_ms(DMAX + 1, 0, &ms), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_duration_to_ms(-DMAX - 1, 0, &ms), ACKRPC_E_INVAL);
  cr_assert_eq(ms, 5);
  cr_assert_eq(ackrpc_duration_to_ms(-DMAX, -999999999, &ms), ACKRPC_OK);
  cr_assert_eq(ackrpc_duration_to_ms(0, 0, NULL), ACKRPC_E_INVAL);
}

Test(timeconv, duration_and_timespec) {
  struct timespec ts;
  int64_t s;
  int32_t n;
  cr_assert_eq(ackrpc_duration_to_timespec(-1, -500000000, &ts), ACKRPC_OK);
  cr_assert(ts.tv_sec == -2 && ts.tv_nsec == 500000000, "normalized: %lld %ld",
            (long long)ts.tv_sec, ts.tv_nsec);
  cr_assert_eq(ackrpc_duration_from_timespec(&ts, &s, &n), ACKRPC_OK);
  cr_assert(s == -1 && n == -500000000);
  ts = (struct timespec){3, 250};
  cr_assert_eq(ackrpc_duration_from_timespec(&ts, &s, &n), ACKRPC_OK);
  cr_assert(s == 3 && n == 250);
  ts = (struct timespec){(time_t)(-DMAX - 1), 0};
  cr_assert_eq(ackrpc_duration_from_timespec(&ts, &s, &n), ACKRPC_E_INVAL);
  ts = (struct timespec){(time_t)(-DMAX - 1), 1}; /* -DMAX s + 1 ns - 1 s: in range */
  cr_assert_eq(ackrpc_duration_from_timespec(&ts, &s, &n), ACKRPC_OK);
  cr_assert(s == -DMAX && n == -999999999);
  ts = (struct timespec){0, -1};
  cr_assert_eq(ackrpc_duration_from_timespec(&ts, &s, &n), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_duration_to_timespec(1, -1, &ts), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_duration_to_timespec(DMAX + 1, 0, &ts), ACKRPC_E_INVAL);
}
