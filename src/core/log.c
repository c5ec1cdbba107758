/* log.c: the log sinks and the names of log levels (include/ackrpc/common.h). */
#include <stdio.h>
#include <strings.h>

#include "ackrpc/common.h"

ackrpc_status ackrpc_log_level_parse(const char *name, ackrpc_log_level *ret_level) {
  static const struct {
    const char *name;
    ackrpc_log_level level;
  } names[] = {{"error", ACKRPC_LOG_ERROR},
               {"warning", ACKRPC_LOG_WARNING},
               {"warn", ACKRPC_LOG_WARNING},
               {"info", ACKRPC_LOG_INFO},
               {"debug", ACKRPC_LOG_DEBUG}};
  if (!name || !ret_level) return ACKRPC_E_INVAL;
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (strcasecmp(name, names[i].name) == 0) {
      *ret_level = names[i].level;
      return ACKRPC_OK;
    }
  return ACKRPC_E_INVAL;
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
