/* events.h: what the server counts and logs about its peers, at a bounded
 * rate (internal: not installed).
 *
 * Every refusal, eviction and timeout a peer can cause is counted (the
 * counters are in ackrpc_server_counters() and the built-in Stats), and
 * logged at most AKR_EVENT_LINES_PER_S times a second per kind: a peer that
 * makes the server refuse 100,000 connections a second costs a counter
 * each, not a log line each. Lines left out are summed up in one line
 * ("event=log_suppressed kind=K lines=N") when the next line of that kind
 * passes. Loop thread only. */
#ifndef AKR_SERVER_EVENTS_H
#define AKR_SERVER_EVENTS_H

#include <stdint.h>

#include "ackrpc/common.h"

#define AKR_EVENT_LINES_PER_S 10

/* X(ENUM, name): the kinds, in the order of ackrpc_server_counters. */
#define AKR_EVENT_KINDS(X)                                                             \
  X(UID_LIMIT, uid_limit)                                                              \
  X(REFUSED, refused)                                                                  \
  X(EVICTED, evicted)                                                                  \
  X(ACCEPT_FAILED, accept_failed)                                                      \
  X(READ_TIMEOUT, read_timeout)                                                        \
  X(HANDLER_DEADLINE, handler_deadline)                                                \
  X(BAD_REQUEST, bad_request)                                                          \
  X(OVER_BUDGET, over_budget)                                                          \
  X(CALL_LIMIT, call_limit)

typedef enum akr_event_kind {
#define AKR_EVENT_ENUM_(e, n) AKR_EV_##e,
  AKR_EVENT_KINDS(AKR_EVENT_ENUM_)
#undef AKR_EVENT_ENUM_
      AKR_EV_COUNT
} akr_event_kind;

/* The counts and the rate limit of each kind. */
typedef struct akr_events {
  uint64_t count[AKR_EV_COUNT];
  uint64_t suppressed_total;
  uint64_t window_s[AKR_EV_COUNT]; /* the second the lines below are of */
  unsigned lines[AKR_EV_COUNT];    /* lines logged in that second */
  uint64_t suppressed[AKR_EV_COUNT];
} akr_events;

/* The name of a kind ("uid_limit"). */
const char *akr_event_name(akr_event_kind kind);

#endif /* AKR_SERVER_EVENTS_H */
