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
    "held; nonzero ones only in the table), then per method (built-in ones\n"
    "included): calls answered, errors (calls answered with a status other\n"
    "than OK), latency percentiles and maximum in microseconds (from the\n"
    "request complete to the reply written; percentiles at most 1/8 above the\n"
    "true value), request and reply bytes, and the count of each status.\n"
    "\n"
    "Options:\n"
    "  -j, --json     one JSON object instead of a table\n"
    "  -a, --active   only the methods that have been called\n"
    "  -h, --help     this help\n";

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

static int print_json(const Ackrpc__Reflection__StatsReply *r, int active) {
  json_t *root = json_object(), *methods = json_array();
  if (!root || !methods) return -1;
  json_object_set_new(root, "uptimeMs", json_integer((json_int_t)r->uptime_ms));
  json_object_set_new(root, "connections", json_integer((json_int_t)r->connections));
  for (size_t i = 0; i < r->n_methods; i++) {
    const Ackrpc__Reflection__MethodStats *m = r->methods[i];
    if (active && !m->calls) continue;
    json_t *o = json_object(), *st = json_object();
    json_object_set_new(o, "method", json_string(m->method));
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
    json_object_set_new(o, "maxUs", json_integer((json_int_t)m->max_us));
    json_array_append_new(methods, o);
  }
  json_object_set_new(root, "methods", methods);
  json_t *counters = json_object();
  each_counter(r->counters, 0, counter_json, counters);
  json_object_set_new(root, "counters", counters);
  int rc = json_dumpf(root, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(root);
  putchar('\n');
  return rc;
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
  size_t w = strlen("METHOD");
  for (size_t i = 0; i < r->n_methods; i++)
    if (!active || r->methods[i]->calls)
      if (strlen(r->methods[i]->method) > w) w = strlen(r->methods[i]->method);
  printf("%-*s %10s %8s %9s %9s %9s %9s %12s %12s  %s\n", (int)w, "METHOD", "CALLS",
         "ERRORS", "P50_US", "P90_US", "P99_US", "MAX_US", "BYTES_IN", "BYTES_OUT",
         "STATUSES");
  for (size_t i = 0; i < r->n_methods; i++) {
    const Ackrpc__Reflection__MethodStats *m = r->methods[i];
    if (active && !m->calls) continue;
    printf("%-*s %10" PRIu64 " %8" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64
           " %9" PRIu64 " %12" PRIu64 " %12" PRIu64 " ",
           (int)w, m->method, m->calls, m->errors, m->p50_us, m->p90_us, m->p99_us,
           m->max_us, m->bytes_in, m->bytes_out);
    for (size_t k = 0; k < m->n_statuses; k++)
      printf(" %s=%" PRIu64, status_name(m->statuses[k]->code), m->statuses[k]->count);
    if (!m->n_statuses) printf(" -");
    putchar('\n');
  }
}

int akrcli_cmd_stats(int argc, char **argv) {
  static const struct option longopts[] = {{"json", 0, NULL, 'j'},
                                           {"active", 0, NULL, 'a'},
                                           {"help", 0, NULL, 'h'},
                                           AKRCLI_SERVER_LONGOPT,
                                           {NULL, 0, NULL, 0}};
  akrcli_server srv = {0};
  int opt, json = 0, active = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "t:jah", longopts, NULL)) != -1) {
    switch (opt) {
    case 'j': json = 1; break;
    case 'a': active = 1; break;
    case 't':
      if (akrcli_timeout_take(&srv, "stats", optarg) < 0) return AKRCLI_EXIT_USAGE;
      break;
    case AKRCLI_OPT_SERVER_UID:
      if (akrcli_server_uid_take(&srv, "stats", optarg) < 0) return AKRCLI_EXIT_USAGE;
      break;
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
  ProtobufCMessage *msg = NULL;
  srv.socket = argv[optind];
  int rc = akrcli_builtin_call("stats", &srv, &akrcli_m_stats, NULL, &msg, NULL);
  if (rc != 0) return rc;
  const Ackrpc__Reflection__StatsReply *r = (const Ackrpc__Reflection__StatsReply *)msg;
  if (json) {
    if (print_json(r, active) != 0) rc = AKRCLI_EXIT_SOFTWARE;
  } else {
    print_table(r, active);
  }
  protobuf_c_message_free_unpacked(msg, NULL);
  if (fflush(stdout) != 0) rc = AKRCLI_EXIT_SOFTWARE;
  return rc;
}
