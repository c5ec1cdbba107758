/* status.c: names and messages of the status table, and the log sinks. */
#include <stdio.h>

#include "ackrpc/common.h"
#include "ackrpc/status.h"

const char *ackrpc_status_name(ackrpc_status status) {
  switch (status) {
#define NAME_CASE_(name, value, msg)                                                   \
  case ACKRPC_##name: return #name;
    ACKRPC_STATUS_MAP(NAME_CASE_)
#undef NAME_CASE_
  }
  return "UNRECOGNIZED";
}

const char *ackrpc_strerror(ackrpc_status status) {
  switch (status) {
#define MSG_CASE_(name, value, msg)                                                    \
  case ACKRPC_##name: return msg;
    ACKRPC_STATUS_MAP(MSG_CASE_)
#undef MSG_CASE_
  }
  return "unrecognized status";
}

ackrpc_outcome ackrpc_status_outcome(ackrpc_status status) {
  int v = (int)status;
  if (v >= 0 && v < 100) return ACKRPC_OUTCOME_ACKED;
  if (v >= 110 && v < 200) return ACKRPC_OUTCOME_NO_ACK;
  return ACKRPC_OUTCOME_NOT_DELIVERED;
}

int ackrpc_status_is_canonical(ackrpc_status status) {
  return (int)status >= 0 && (int)status <= 16;
}

static const char *level_name(ackrpc_log_level level) {
  switch (level) {
  case ACKRPC_LOG_ERROR: return "error";
  case ACKRPC_LOG_WARNING: return "warning";
  case ACKRPC_LOG_INFO: return "info";
  case ACKRPC_LOG_DEBUG: return "debug";
  case ACKRPC_LOG_DEFAULT: break;
  }
  return "log";
}

void ackrpc_log_stderr(void *user, ackrpc_log_level level, const char *message) {
  (void)user;
  /* One fprintf: stderr is unbuffered, so the line is written in one go and
   * lines from several threads do not interleave. */
  fprintf(stderr, "ackrpc: %s: %s\n", level_name(level), message);
}

void ackrpc_log_discard(void *user, ackrpc_log_level level, const char *message) {
  (void)user;
  (void)level;
  (void)message;
}
