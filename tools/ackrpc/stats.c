/* stats.c: `ackrpc stats SOCKET`: the server's per-method statistics, from
 * its built-in stats service (ackrpc.reflection.Stats/Get), as a table or as
 * JSON. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "ackrpc/reflection.pb-c.h"
#include "cli.h"

static const char usage[] =
    "usage: ackrpc stats [OPTIONS] SOCKET\n"
    "\n"
    "Prints the statistics of the server at SOCKET: its uptime and open\n"
    "connections, its counters (refusals, drops, timeouts; memory and calls\n"
    "held; nonzero ones only in the table), then per method: calls answered,\n"
    "errors (calls answered with a status other than OK), latency percentiles\n"
    "(p50, p90, p99, p99.9) and maximum in microseconds (from the request\n"
    "complete to the reply written; percentiles at most 1/8 above the true\n"
    "value), request and reply bytes, and the count of each status. The\n"
    "application's methods come first, with their total; the server's\n"
    "built-in methods (reflection, health, stats) after them, apart: they\n"
    "count this tool's own lookups (each `ackrpc call` without descriptors\n"
    "makes one FileContainingSymbol call).\n"
    "\n"
    "Options:\n"
    "  -j, --json         one JSON object instead of a table\n"
    "  -m, --openmetrics  the OpenMetrics (Prometheus) text format, for a\n"
    "                     scraper or a node_exporter textfile collector\n"
    "  -a, --active       only the methods that have been called\n"
    "  -h, --help         this help\n";

static const char *status_name(uint32_t code) {
  const char *n = ackrpc_status_name((ackrpc_status)code);
  return n ? n : "?";
}

/* The counters' fields, by the message's own descriptor (all uint64):
 * calls fn(name, value) for each, or only for nonzero ones. */
static void each_counter(const Ackrpc__Reflection__Counters *c, int nonzero,
                         void (*fn)(void *arg, const char *name, uint64_t value),
                         void *arg) {
  if (!c) return;
  const ProtobufCMessageDescriptor *d = c->base.descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_UINT64) continue;
    uint64_t v = *(const uint64_t *)((const char *)c + f->offset);
    if (v || !nonzero) fn(arg, f->name, v);
  }
}

static void counter_json(void *arg, const char *name, uint64_t value) {
  json_object_set_new(arg, name, json_integer((json_int_t)value));
}

static void counter_text(void *arg, const char *name, uint64_t value) {
  (void)arg;
  printf(" %s=%" PRIu64, name, value);
}

/* Calls and errors of the application's methods and of the built-in ones,
 * apart. */
typedef struct totals {
  uint64_t calls, errors;
} totals;

static void sum_totals(const Ackrpc__Reflection__StatsReply *r, totals *app,
                       totals *builtin) {
  *app = (totals){0};
  *builtin = (totals){0};
  for (size_t i = 0; i < r->n_methods; i++) {
    totals *t = r->methods[i]->builtin ? builtin : app;
    t->calls += r->methods[i]->calls;
    t->errors += r->methods[i]->errors;
  }
}

static json_t *totals_json(const totals *t) {
  json_t *o = json_object();
  if (!o) return NULL;
  json_object_set_new(o, "calls", json_integer((json_int_t)t->calls));
  json_object_set_new(o, "errors", json_integer((json_int_t)t->errors));
  return o;
}

static int print_json(const Ackrpc__Reflection__StatsReply *r, int active) {
  json_t *root = json_object(), *methods = json_array();
  if (!root || !methods) {
    json_decref(root);
    json_decref(methods);
    return -1;
  }
  json_object_set_new(root, "uptimeMs", json_integer((json_int_t)r->uptime_ms));
  json_object_set_new(root, "connections", json_integer((json_int_t)r->connections));
  for (size_t i = 0; i < r->n_methods; i++) {
    const Ackrpc__Reflection__MethodStats *m = r->methods[i];
    if (active && !m->calls) continue;
    json_t *o = json_object(), *st = json_object();
    json_object_set_new(o, "method", json_string(m->method));
    json_object_set_new(o, "builtin", json_boolean(m->builtin));
    json_object_set_new(o, "calls", json_integer((json_int_t)m->calls));
    json_object_set_new(o, "errors", json_integer((json_int_t)m->errors));
    for (size_t k = 0; k < m->n_statuses; k++)
      json_object_set_new(st, status_name(m->statuses[k]->code),
                          json_integer((json_int_t)m->statuses[k]->count));
    json_object_set_new(o, "statuses", st);
    json_object_set_new(o, "bytesIn", json_integer((json_int_t)m->bytes_in));
    json_object_set_new(o, "bytesOut", json_integer((json_int_t)m->bytes_out));
    json_object_set_new(o, "p50Us", json_integer((json_int_t)m->p50_us));
    json_object_set_new(o, "p90Us", json_integer((json_int_t)m->p90_us));
    json_object_set_new(o, "p99Us", json_integer((json_int_t)m->p99_us));
    json_object_set_new(o, "p999Us", json_integer((json_int_t)m->p999_us));
    json_object_set_new(o, "maxUs", json_integer((json_int_t)m->max_us));
    json_array_append_new(methods, o);
  }
  json_object_set_new(root, "methods", methods);
  totals app, builtin;
  sum_totals(r, &app, &builtin);
  json_object_set_new(root, "application", totals_json(&app));
  json_object_set_new(root, "builtin", totals_json(&builtin));
  json_t *counters = json_object();
  each_counter(r->counters, 0, counter_json, counters);
  json_object_set_new(root, "counters", counters);
  int rc = json_dumpf(root, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(root);
  putchar('\n');
  return rc;
}

static void print_row(const Ackrpc__Reflection__MethodStats *m, int w) {
  printf("%-*s %10" PRIu64 " %8" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64
         " %9" PRIu64 " %9" PRIu64 " %12" PRIu64 " %12" PRIu64 " ",
         w, m->method, m->calls, m->errors, m->p50_us, m->p90_us, m->p99_us, m->p999_us,
         m->max_us, m->bytes_in, m->bytes_out);
  for (size_t k = 0; k < m->n_statuses; k++)
    printf(" %s=%" PRIu64, status_name(m->statuses[k]->code), m->statuses[k]->count);
  if (!m->n_statuses) printf(" -");
  putchar('\n');
}

static void print_table(const Ackrpc__Reflection__StatsReply *r, int active) {
  printf("uptime %.1f s, %" PRIu64 " connection(s) open\n",
         (double)r->uptime_ms / 1000.0, r->connections);
  if (r->counters) {
    printf("counters:");
    each_counter(r->counters, 1, counter_text, NULL);
    if (!r->counters->memory_bytes) printf(" memory_bytes=0");
    putchar('\n');
  }
  totals app, builtin;
  sum_totals(r, &app, &builtin);
  printf("application: %" PRIu64 " call(s), %" PRIu64 " error(s); built-in: %" PRIu64
         " call(s), %" PRIu64 " error(s)\n",
         app.calls, app.errors, builtin.calls, builtin.errors);
  size_t w = strlen("METHOD");
  for (size_t i = 0; i < r->n_methods; i++)
    if (!active || r->methods[i]->calls)
      if (strlen(r->methods[i]->method) > w) w = strlen(r->methods[i]->method);
  printf("%-*s %10s %8s %9s %9s %9s %9s %9s %12s %12s  %s\n", (int)w, "METHOD", "CALLS",
         "ERRORS", "P50_US", "P90_US", "P99_US", "P999_US", "MAX_US", "BYTES_IN",
         "BYTES_OUT", "STATUSES");
  /* The application's methods, then the built-in ones under their own
   * heading. */
  for (int pass = 0; pass < 2; pass++) {
    int headed = 0;
    for (size_t i = 0; i < r->n_methods; i++) {
      const Ackrpc__Reflection__MethodStats *m = r->methods[i];
      if ((int)m->builtin != pass || (active && !m->calls)) continue;
      if (pass && !headed) printf("built-in (reflection, health, stats):\n");
      headed = 1;
      print_row(m, (int)w);
    }
  }
}

/* --- OpenMetrics text format ---------------------------------------------- */

/* Writes s as an OpenMetrics label value (without the quotes): backslash,
 * double quote and line feed escaped. */
static void om_label_value(const char *s) {
  for (; *s; s++) {
    if (*s == '\\')
      fputs("\\\\", stdout);
    else if (*s == '"')
      fputs("\\\"", stdout);
    else if (*s == '\n')
      fputs("\\n", stdout);
    else
      putchar(*s);
  }
}

static void om_family(const char *name, const char *type, const char *unit,
                      const char *help) {
  printf("# TYPE %s %s\n", name, type);
  if (unit) printf("# UNIT %s %s\n", name, unit);
  printf("# HELP %s %s\n", name, help);
}

/* `name{method="...",builtin="..."[,extra]} ` */
static void om_method_sample(const char *name, const Ackrpc__Reflection__MethodStats *m,
                             const char *extra_name, const char *extra_value) {
  printf("%s{method=\"", name);
  om_label_value(m->method);
  printf("\",builtin=\"%s\"", m->builtin ? "true" : "false");
  if (extra_name) {
    printf(",%s=\"", extra_name);
    om_label_value(extra_value);
    putchar('"');
  }
  printf("} ");
}

/* Microseconds as seconds, exactly. */
static void om_seconds(uint64_t us) {
  printf("%" PRIu64 ".%06" PRIu64 "\n", us / 1000000u, us % 1000000u);
}

/* The server counters (ackrpc_counters, include/ackrpc/server.h): their
 * help text, and whether each is a level now (a gauge) rather than a count
 * since the server was created. A field this table does not know (a newer
 * server) is still printed, as a counter. */
static const struct {
  const char *name;
  int gauge;
  const char *help;
} counter_info[] = {
    {"uid_limit", 0, "Connections refused: their uid was at the per-uid limit."},
    {"refused", 0, "Peers refused by a policy (server or method)."},
    {"evicted", 0, "Idle or incomplete connections dropped to admit others."},
    {"accept_failed", 0, "accept() failures: out of descriptors or memory."},
    {"read_timeouts", 0, "Requests not whole within the read timeout."},
    {"handler_deadlines", 0,
     "Calls answered DEADLINE_EXCEEDED while their handler held them."},
    {"bad_requests", 0, "Malformed frames and heads."},
    {"over_budget", 0, "Requests refused by a memory budget."},
    {"call_limit", 0, "Requests refused: too many calls in progress."},
    {"log_suppressed", 0, "Log lines left out by the rate limit."},
    {"log_dropped", 0, "Log lines that could not be written at once."},
    {"memory_bytes", 1, "Bytes connections and calls hold now."},
    {"calls_in_progress", 1, "Calls with their handlers now."},
};

static void counter_om(void *arg, const char *name, uint64_t value) {
  (void)arg;
  int gauge = 0;
  const char *help = "A server counter (ackrpc_counters).";
  for (size_t i = 0; i < sizeof counter_info / sizeof counter_info[0]; i++)
    if (strcmp(counter_info[i].name, name) == 0) {
      gauge = counter_info[i].gauge;
      help = counter_info[i].help;
    }
  char family[96];
  snprintf(family, sizeof family, "ackrpc_%s", name);
  size_t len = strlen(family);
  int bytes = len > 6 && strcmp(family + len - 6, "_bytes") == 0;
  om_family(family, gauge ? "gauge" : "counter", bytes ? "bytes" : NULL, help);
  printf("%s%s %" PRIu64 "\n", family, gauge ? "" : "_total", value);
}

static int om_listed(const Ackrpc__Reflection__MethodStats *m, int active) {
  return !active || m->calls;
}

static uint64_t get_errors(const Ackrpc__Reflection__MethodStats *m) {
  return m->errors;
}
static uint64_t get_bytes_in(const Ackrpc__Reflection__MethodStats *m) {
  return m->bytes_in;
}
static uint64_t get_bytes_out(const Ackrpc__Reflection__MethodStats *m) {
  return m->bytes_out;
}

/* A counter family with one sample per method. */
static void
om_method_counter(const Ackrpc__Reflection__StatsReply *r, int active,
                  const char *family, const char *unit, const char *help,
                  uint64_t (*get)(const Ackrpc__Reflection__MethodStats *)) {
  char sample[96];
  snprintf(sample, sizeof sample, "%s_total", family);
  om_family(family, "counter", unit, help);
  for (size_t i = 0; i < r->n_methods; i++) {
    if (!om_listed(r->methods[i], active)) continue;
    om_method_sample(sample, r->methods[i], NULL, NULL);
    printf("%" PRIu64 "\n", get(r->methods[i]));
  }
}

/* Every family in one block, its samples contiguous, each method a label
 * set; the exposition ends with "# EOF". */
static void print_openmetrics(const Ackrpc__Reflection__StatsReply *r, int active) {
  om_family("ackrpc_uptime_seconds", "gauge", "seconds",
            "Time since the server was created.");
  printf("ackrpc_uptime_seconds %" PRIu64 ".%03" PRIu64 "\n", r->uptime_ms / 1000u,
         r->uptime_ms % 1000u);
  om_family("ackrpc_connections", "gauge", NULL, "Connections open now.");
  printf("ackrpc_connections %" PRIu64 "\n", r->connections);
  each_counter(r->counters, 0, counter_om, NULL);

  om_family("ackrpc_calls", "counter", NULL,
            "Calls answered, by method and status (builtin: the server's own "
            "reflection, health and stats methods).");
  for (size_t i = 0; i < r->n_methods; i++) {
    const Ackrpc__Reflection__MethodStats *m = r->methods[i];
    if (!om_listed(m, active)) continue;
    if (!m->n_statuses) {
      /* Never called: one sample, so that the method is listed. */
      om_method_sample("ackrpc_calls_total", m, "status", "OK");
      printf("0\n");
    }
    for (size_t k = 0; k < m->n_statuses; k++) {
      om_method_sample("ackrpc_calls_total", m, "status",
                       status_name(m->statuses[k]->code));
      printf("%" PRIu64 "\n", m->statuses[k]->count);
    }
  }
  om_method_counter(r, active, "ackrpc_call_errors", NULL,
                    "Calls answered with a status other than OK, by method.",
                    get_errors);
  om_method_counter(r, active, "ackrpc_request_bytes", "bytes",
                    "Request frames read (prefix, head and body), by method.",
                    get_bytes_in);
  om_method_counter(r, active, "ackrpc_reply_bytes", "bytes",
                    "Reply frames written (prefix, head and body), by method.",
                    get_bytes_out);
  om_family("ackrpc_call_latency_seconds", "gauge", "seconds",
            "Latency from the request complete to the reply written, since the "
            "server was created: quantiles from a log-linear histogram (at most "
            "1/8 above the true value), by method.");
  for (size_t i = 0; i < r->n_methods; i++) {
    const Ackrpc__Reflection__MethodStats *m = r->methods[i];
    if (!om_listed(m, active)) continue;
    static const char *const q[] = {"0.5", "0.9", "0.99", "0.999"};
    const uint64_t v[] = {m->p50_us, m->p90_us, m->p99_us, m->p999_us};
    for (size_t k = 0; k < 4; k++) {
      om_method_sample("ackrpc_call_latency_seconds", m, "quantile", q[k]);
      om_seconds(v[k]);
    }
  }
  om_family("ackrpc_call_latency_max_seconds", "gauge", "seconds",
            "The longest latency seen, by method.");
  for (size_t i = 0; i < r->n_methods; i++) {
    if (!om_listed(r->methods[i], active)) continue;
    om_method_sample("ackrpc_call_latency_max_seconds", r->methods[i], NULL, NULL);
    om_seconds(r->methods[i]->max_us);
  }
  printf("# EOF\n");
}

int akrcli_cmd_stats(int argc, char **argv) {
  static const struct option longopts[] = {
      {"json", 0, NULL, 'j'}, {"openmetrics", 0, NULL, 'm'}, {"active", 0, NULL, 'a'},
      {"help", 0, NULL, 'h'}, AKRCLI_SERVER_LONGOPT,         {NULL, 0, NULL, 0}};
  akrcli_server srv = {0};
  int opt, json = 0, openmetrics = 0, active = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "t:jmah", longopts, NULL)) != -1) {
    int taken = akrcli_server_opt_take(&srv, "stats", opt, optarg);
    if (taken < 0) return AKRCLI_EXIT_USAGE;
    if (taken) continue;
    switch (opt) {
    case 'j': json = 1; break;
    case 'm': openmetrics = 1; break;
    case 'a': active = 1; break;
    case 'h':
      printf("%s\n%s\n%s", usage, akrcli_server_help, akrcli_exit_help);
      return AKRCLI_EXIT_OK;
    default: fprintf(stderr, "%s", usage); return AKRCLI_EXIT_USAGE;
    }
  }
  if (argc - optind != 1) {
    fprintf(stderr, "%s stats: wants SOCKET\n%s", AKRCLI_PROG, usage);
    return AKRCLI_EXIT_USAGE;
  }
  if (json && openmetrics) {
    fprintf(stderr, "%s stats: --json or --openmetrics, not both\n", AKRCLI_PROG);
    return AKRCLI_EXIT_USAGE;
  }
  ProtobufCMessage *msg = NULL;
  srv.socket = argv[optind];
  int rc = akrcli_builtin_call("stats", &srv, &akrcli_m_stats, NULL, &msg, NULL);
  if (rc != 0) return rc;
  const Ackrpc__Reflection__StatsReply *r = (const Ackrpc__Reflection__StatsReply *)msg;
  if (json) {
    if (print_json(r, active) != 0) rc = AKRCLI_EXIT_SOFTWARE;
  } else if (openmetrics) {
    print_openmetrics(r, active);
  } else {
    print_table(r, active);
  }
  protobuf_c_message_free_unpacked(msg, NULL);
  if (fflush(stdout) != 0) rc = AKRCLI_EXIT_SOFTWARE;
  return rc;
}
