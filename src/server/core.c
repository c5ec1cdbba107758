/* core.c: what every part of the server uses: its log, and the reference
 * count that keeps the server's memory alive while calls a handler holds
 * outlive ackrpc_server_free() (server_internal.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/clock.h"
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

void akr_server_unref(ackrpc_server *s) {
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
  akr_registry_free(&s->registry);
  akr_policy_free(s->policy);
  free(s->uids);
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
