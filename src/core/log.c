/* log.c: log level names (ackrpc_log_level_parse). The sinks are in
 * status.c. */
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
