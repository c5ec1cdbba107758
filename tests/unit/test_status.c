/* test_status.c: the status table (include/ackrpc/status.h): names,
 * messages, the canonical numbering, the delivery outcome of each range, and
 * the two log sinks in src/status.c. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ackrpc/common.h"
#include "ackrpc/status.h"

typedef struct entry {
  ackrpc_status value;
  const char *name;
  const char *message;
} entry;

/* The table as data, expanded from the same X-macro as the enum. */
static const entry table[] = {
#define ENTRY_(name, value, msg) {ACKRPC_##name, #name, msg},
    ACKRPC_STATUS_MAP(ENTRY_)
#undef ENTRY_
};
#define TABLE_LEN (sizeof table / sizeof *table)

Test(status, table_entries_are_distinct_and_described) {
  cr_assert_geq(TABLE_LEN, 17 + 4 + 3 + 8);
  for (size_t i = 0; i < TABLE_LEN; i++) {
    cr_assert_gt(strlen(table[i].name), 0);
    cr_assert_gt(strlen(table[i].message), 0, "%s", table[i].name);
    cr_assert_str_eq(ackrpc_status_name(table[i].value), table[i].name);
    cr_assert_str_eq(ackrpc_strerror(table[i].value), table[i].message);
    cr_assert_str_neq(table[i].name, "UNRECOGNIZED");
    for (size_t j = i + 1; j < TABLE_LEN; j++) {
      cr_assert_neq(table[i].value, table[j].value, "%s and %s", table[i].name,
                    table[j].name);
      cr_assert_str_neq(table[i].name, table[j].name);
      cr_assert_str_neq(table[i].message, table[j].message);
    }
  }
}

static int in_table(int v) {
  for (size_t i = 0; i < TABLE_LEN; i++)
    if ((int)table[i].value == v) return 1;
  return 0;
}

Test(status, values_outside_the_table) {
  /* Every value the table lacks, around and between its ranges, including
   * the unassigned canonical range 17..99 a newer server may use. */
  size_t outside = 0;
  for (int v = -16; v <= 1100; v++) {
    if (in_table(v)) continue;
    ackrpc_status s = (ackrpc_status)v;
    cr_assert_str_eq(ackrpc_status_name(s), "UNRECOGNIZED", "%d", v);
    cr_assert_str_eq(ackrpc_strerror(s), "unrecognized status", "%d", v);
    outside++;
  }
  cr_assert_gt(outside, 1000);
  cr_assert_not(in_table(17));
  cr_assert_not(in_table(99));
}

Test(status, canonical_numbers_are_grpc_numbers) {
  /* The numbering of google.rpc.Code / grpc::StatusCode, spelled out here on
   * purpose rather than derived from the table. */
  cr_assert_eq(ACKRPC_OK, 0);
  cr_assert_eq(ACKRPC_CANCELLED, 1);
  cr_assert_eq(ACKRPC_UNKNOWN, 2);
  cr_assert_eq(ACKRPC_INVALID_ARGUMENT, 3);
  cr_assert_eq(ACKRPC_DEADLINE_EXCEEDED, 4);
  cr_assert_eq(ACKRPC_NOT_FOUND, 5);
  cr_assert_eq(ACKRPC_ALREADY_EXISTS, 6);
  cr_assert_eq(ACKRPC_PERMISSION_DENIED, 7);
  cr_assert_eq(ACKRPC_RESOURCE_EXHAUSTED, 8);
  cr_assert_eq(ACKRPC_FAILED_PRECONDITION, 9);
  cr_assert_eq(ACKRPC_ABORTED, 10);
  cr_assert_eq(ACKRPC_OUT_OF_RANGE, 11);
  cr_assert_eq(ACKRPC_UNIMPLEMENTED, 12);
  cr_assert_eq(ACKRPC_INTERNAL, 13);
  cr_assert_eq(ACKRPC_UNAVAILABLE, 14);
  cr_assert_eq(ACKRPC_DATA_LOSS, 15);
  cr_assert_eq(ACKRPC_UNAUTHENTICATED, 16);
  cr_assert_str_eq(ackrpc_status_name(ACKRPC_UNAUTHENTICATED), "UNAUTHENTICATED");
  cr_assert_str_eq(ackrpc_status_name(ACKRPC_DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
}

Test(status, every_canonical_code_is_in_the_table) {
  for (int v = 0; v <= 16; v++) {
    cr_assert_str_neq(ackrpc_status_name((ackrpc_status)v), "UNRECOGNIZED", "%d", v);
    cr_assert(ackrpc_status_is_canonical((ackrpc_status)v), "%d", v);
  }
  static const int not_canonical[] = {-1, 17, 99, 100, 110, 200, 207};
  for (size_t i = 0; i < sizeof not_canonical / sizeof *not_canonical; i++)
    cr_assert_not(ackrpc_status_is_canonical((ackrpc_status)not_canonical[i]), "%d",
                  not_canonical[i]);
}

static ackrpc_outcome outcome(int v) {
  return ackrpc_status_outcome((ackrpc_status)v);
}

Test(status, outcome_of_each_range) {
  /* Server answers, including codes a newer server may add. */
  for (int v = 0; v <= 99; v++)
    cr_assert_eq(outcome(v), ACKRPC_OUTCOME_ACKED, "%d", v);
  /* Not delivered: connect, busy, send, send timeout. */
  for (int v = 100; v <= 103; v++)
    cr_assert_eq(outcome(v), ACKRPC_OUTCOME_NOT_DELIVERED, "%d", v);
  /* Delivered, no ack. */
  for (int v = 110; v <= 112; v++)
    cr_assert_eq(outcome(v), ACKRPC_OUTCOME_NO_ACK, "%d", v);
  /* API errors: nothing was sent. */
  for (int v = 200; v <= 207; v++)
    cr_assert_eq(outcome(v), ACKRPC_OUTCOME_NOT_DELIVERED, "%d", v);
  cr_assert_eq(outcome(1000), ACKRPC_OUTCOME_NOT_DELIVERED);
  cr_assert_eq(outcome(-1), ACKRPC_OUTCOME_NOT_DELIVERED);

  cr_assert_eq(ackrpc_status_outcome(ACKRPC_E_CONNECT), ACKRPC_OUTCOME_NOT_DELIVERED);
  cr_assert_eq(ackrpc_status_outcome(ACKRPC_E_SEND_TIMEOUT),
               ACKRPC_OUTCOME_NOT_DELIVERED);
  cr_assert_eq(ackrpc_status_outcome(ACKRPC_E_NO_ACK), ACKRPC_OUTCOME_NO_ACK);
  cr_assert_eq(ackrpc_status_outcome(ACKRPC_E_ACK_TIMEOUT), ACKRPC_OUTCOME_NO_ACK);
  cr_assert_eq(ackrpc_status_outcome(ACKRPC_E_BAD_REPLY), ACKRPC_OUTCOME_NO_ACK);
  cr_assert_eq(ackrpc_status_outcome(ACKRPC_E_NOMEM), ACKRPC_OUTCOME_NOT_DELIVERED);
}

Test(status, table_messages_agree_with_outcomes) {
  /* The messages of local statuses say which outcome they are. */
  for (size_t i = 0; i < TABLE_LEN; i++) {
    ackrpc_outcome o = ackrpc_status_outcome(table[i].value);
    if (o == ACKRPC_OUTCOME_NO_ACK)
      cr_assert_not_null(strstr(table[i].message, "outcome unknown"), "%s",
                         table[i].name);
    else if (table[i].value >= 100 && table[i].value < 110)
      cr_assert_not_null(strstr(table[i].message, "not delivered"), "%s",
                         table[i].name);
  }
}

Test(status, log_stderr_writes_one_line, .init = cr_redirect_stderr) {
  ackrpc_log_stderr(NULL, ACKRPC_LOG_WARNING, "socket gone");
  ackrpc_log_stderr(NULL, ACKRPC_LOG_ERROR, "x");
  fflush(stderr);
  cr_assert_stderr_eq_str("ackrpc: warning: socket gone\nackrpc: error: x\n");
}

Test(status, log_discard_writes_nothing, .init = cr_redirect_stderr) {
  ackrpc_log_discard(NULL, ACKRPC_LOG_ERROR, "dropped");
  fflush(stderr);
  cr_assert_stderr_eq_str("");
}

Test(status, outcome_names) {
  cr_assert_str_eq(ackrpc_outcome_name(ACKRPC_OUTCOME_NOT_DELIVERED), "not delivered");
  cr_assert_str_eq(ackrpc_outcome_name(ACKRPC_OUTCOME_NO_ACK), "delivered, no ack");
  cr_assert_str_eq(ackrpc_outcome_name(ACKRPC_OUTCOME_ACKED), "acked");
  cr_assert_str_eq(ackrpc_outcome_name((ackrpc_outcome)9), "unknown outcome");
}

Test(status, format_a_server_status_with_its_code) {
  char buf[128];
  int n = ackrpc_status_format(buf, sizeof buf, ACKRPC_NOT_FOUND, "no such key");
  cr_assert_str_eq(buf, "NOT_FOUND (5): no such key [acked]");
  cr_assert_eq(n, (int)strlen(buf));
  ackrpc_status_format(buf, sizeof buf, ACKRPC_OK, NULL);
  cr_assert_str_eq(buf, "OK (0): ok [acked]");
  /* A code a newer server may send. */
  ackrpc_status_format(buf, sizeof buf, (ackrpc_status)42, "");
  cr_assert_str_eq(buf, "UNRECOGNIZED (42): unrecognized status [acked]", "%s", buf);
}

Test(status, format_a_local_status_without_its_number) {
  char buf[256];
  ackrpc_status_format(buf, sizeof buf, ACKRPC_E_CONNECT, "connect: No such file");
  cr_assert_str_eq(buf, "E_CONNECT: connect: No such file [not delivered]");
  ackrpc_status_format(buf, sizeof buf, ACKRPC_E_NO_ACK, "");
  cr_assert_str_eq(buf, "E_NO_ACK: request sent, connection closed without a reply "
                        "(outcome unknown) [delivered, no ack]");
}

Test(status, format_cuts_like_snprintf) {
  const char *full = "INTERNAL (13): boom [acked]";
  char buf[8];
  memset(buf, 'x', sizeof buf);
  int n = ackrpc_status_format(buf, sizeof buf, ACKRPC_INTERNAL, "boom");
  cr_assert_eq(n, (int)strlen(full));
  cr_assert_str_eq(buf, "INTERNA");
  /* Measuring only. */
  cr_assert_eq(ackrpc_status_format(NULL, 0, ACKRPC_INTERNAL, "boom"), n);
  char one[1] = {'x'};
  cr_assert_eq(ackrpc_status_format(one, 1, ACKRPC_INTERNAL, "boom"), n);
  cr_assert_eq(one[0], '\0');
}

Test(status, log_level_from_the_environment) {
  ackrpc_log_level level = ACKRPC_LOG_ERROR;
  char err[128] = "untouched";
  cr_assert_eq(unsetenv(ACKRPC_LOG_LEVEL_ENV), 0);
  cr_assert_eq(ackrpc_log_level_from_env(&level, err, sizeof err), ACKRPC_OK);
  cr_assert_eq(level, ACKRPC_LOG_DEFAULT);
  cr_assert_eq(setenv(ACKRPC_LOG_LEVEL_ENV, "", 1), 0);
  level = ACKRPC_LOG_ERROR;
  cr_assert_eq(ackrpc_log_level_from_env(&level, err, sizeof err), ACKRPC_OK);
  cr_assert_eq(level, ACKRPC_LOG_DEFAULT);
  cr_assert_eq(setenv(ACKRPC_LOG_LEVEL_ENV, "DeBuG", 1), 0);
  cr_assert_eq(ackrpc_log_level_from_env(&level, err, sizeof err), ACKRPC_OK);
  cr_assert_eq(level, ACKRPC_LOG_DEBUG);
  cr_assert_str_eq(err, "untouched");
  cr_assert_eq(setenv(ACKRPC_LOG_LEVEL_ENV, "warn", 1), 0);
  cr_assert_eq(ackrpc_log_level_from_env(&level, NULL, 0), ACKRPC_OK);
  cr_assert_eq(level, ACKRPC_LOG_WARNING);
}

Test(status, log_level_from_the_environment_refuses_a_bad_value,
     .init = cr_redirect_stderr) {
  ackrpc_log_level level = ACKRPC_LOG_INFO;
  char err[128];
  cr_assert_eq(setenv(ACKRPC_LOG_LEVEL_ENV, "verbose", 1), 0);
  cr_assert_eq(ackrpc_log_level_from_env(&level, err, sizeof err), ACKRPC_E_INVAL);
  cr_assert_eq(level, ACKRPC_LOG_INFO, "the level changed on failure");
  cr_assert_str_eq(err, "ACKRPC_LOG_LEVEL=\"verbose\" is not a log level "
                        "(error, warning, info or debug)");
  char small[10];
  cr_assert_eq(ackrpc_log_level_from_env(&level, small, sizeof small), ACKRPC_E_INVAL);
  cr_assert_str_eq(small, "ACKRPC_LO");
  cr_assert_eq(ackrpc_log_level_from_env(&level, NULL, 0), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_log_level_from_env(NULL, err, sizeof err), ACKRPC_E_INVAL);
  fflush(stderr);
  cr_assert_stderr_eq_str("", "it printed");
}
