/* core.c: what every part of the server uses: its log, and the reference
 * count that keeps the server's memory alive while calls a handler holds
 * outlive ackrpc_server_free() (server_internal.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/clock.h"
#include "server/synth.h"
#include "server/server_internal.h"

void akr_slog(ackrpc_server *s, ackrpc_log_level level, const char *fmt, ...) {
  if (level > s->opt.log_level) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  s->opt.log(s->opt.log_user, level, line);
}

static const char *const event_names[AKR_EV_COUNT] = {
#define AKR_EVENT_NAME_(e, n) #n,
    AKR_EVENT_KINDS(AKR_EVENT_NAME_)
#undef AKR_EVENT_NAME_
};

const char *akr_event_name(akr_event_kind kind) {
  return kind < AKR_EV_COUNT ? event_names[kind] : "unknown";
}

/* Whether a line of this kind may be logged now (events.h). */
static int event_line_allowed(ackrpc_server *s, akr_event_kind k,
                              ackrpc_log_level level) {
  akr_events *e = &s->events;
  uint64_t now_s = akr_now_us() / 1000000u;
  if (e->window_s[k] != now_s) {
    e->window_s[k] = now_s;
    e->lines[k] = 0;
  }
  if (e->lines[k] >= AKR_EVENT_LINES_PER_S) {
    e->suppressed[k]++;
    e->suppressed_total++;
    return 0;
  }
  e->lines[k]++;
  if (e->suppressed[k]) {
    akr_slog(s, level, "event=log_suppressed kind=%s lines=%llu", event_names[k],
             (unsigned long long)e->suppressed[k]);
    e->suppressed[k] = 0;
  }
  return 1;
}

void akr_event(ackrpc_server *s, akr_event_kind k, ackrpc_log_level level,
               const char *fmt, ...) {
  s->events.count[k]++;
  if (level > s->opt.log_level || !event_line_allowed(s, k, level)) return;
  char line[512];
  int n = snprintf(line, sizeof line, "event=%s ", event_names[k]);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  s->opt.log(s->opt.log_user, level, line);
}

ackrpc_status ackrpc_server_counters(const ackrpc_server *s, ackrpc_counters *out) {
  if (!s || !out) return ACKRPC_E_INVAL;
  const uint64_t *n = s->events.count;
  akr_rc_counts rc = akr_rc_counts_get(s->cache);
  *out = (ackrpc_counters){
      .uid_limit = n[AKR_EV_UID_LIMIT],
      .refused = n[AKR_EV_REFUSED],
      .evicted = n[AKR_EV_EVICTED],
      .accept_failed = n[AKR_EV_ACCEPT_FAILED],
      .read_timeouts = n[AKR_EV_READ_TIMEOUT],
      .handler_deadlines = n[AKR_EV_HANDLER_DEADLINE],
      .bad_requests = n[AKR_EV_BAD_REQUEST],
      .over_budget = n[AKR_EV_OVER_BUDGET],
      .call_limit = n[AKR_EV_CALL_LIMIT],
      .log_suppressed = s->events.suppressed_total,
      .log_dropped = ackrpc_log_stderr_dropped(),
      .memory_bytes = s->acct.bytes,
      .calls_in_progress = s->acct.calls,
      .replay_hits = rc.hits,
      .replay_joins = rc.joins,
      .replay_refused = rc.refused + s->replay_store_refused,
      .replay_evicted = rc.evicted,
      .replay_stored = s->replay_store_hits,
  };
  return ACKRPC_OK;
}

void akr_server_unref(ackrpc_server *s) {
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
  akr_registry_free(&s->registry);
  akr_synth_free(s->synth);
  akr_policy_free(s->policy);
  akr_policy_free(s->bridges);
  akr_uid_free_all(s);
  free(s->address_text);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

int akr_server_serving(const ackrpc_server *s) {
  return !s->stopping && !s->handed_over && !atomic_load(&s->stop_requested);
}

size_t akr_server_spare_bytes(const ackrpc_server *s) {
  return s->spare.bytes;
}

uint64_t akr_server_uptime_us(const ackrpc_server *s) {
  return akr_now_us() - s->created_us;
}
