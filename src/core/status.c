/* status.c: names, messages and outcomes of the status table
 * (include/ackrpc/status.h). */
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

const char *ackrpc_outcome_name(ackrpc_outcome outcome) {
  switch (outcome) {
  case ACKRPC_OUTCOME_NOT_DELIVERED: return "not delivered";
  case ACKRPC_OUTCOME_NO_ACK: return "delivered, no ack";
  case ACKRPC_OUTCOME_ACKED: return "acked";
  }
  return "unknown outcome";
}

int ackrpc_status_format(char *buf, size_t len, ackrpc_status status,
                         const char *message) {
  if (!buf) len = 0;
  const char *msg = message && message[0] ? message : ackrpc_strerror(status);
  ackrpc_outcome outcome = ackrpc_status_outcome(status);
  /* A server's code is part of the protocol; a local one is internal. */
  if (outcome == ACKRPC_OUTCOME_ACKED)
    return snprintf(buf, len, "%s (%d): %s [%s]", ackrpc_status_name(status),
                    (int)status, msg, ackrpc_outcome_name(outcome));
  return snprintf(buf, len, "%s: %s [%s]", ackrpc_status_name(status), msg,
                  ackrpc_outcome_name(outcome));
}
