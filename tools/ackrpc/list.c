/* list.c: `ackrpc list [SOCKET]`: the services and their methods, from the
 * descriptors given, or else from the server's reflection (ListServices,
 * which also lists methods registered without descriptors). */
#include <getopt.h>
#include <stdio.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "ackrpc/reflection.pb-c.h"
#include "cli.h"

/* --json: {"services": [{"name", "hasDescriptors", "methods": [{"name",
 * "requestType", "replyType"}]}]} (docs/CLI.md). Adds one service to
 * `services`; returns its "methods" array (NULL: out of memory). */
static json_t *json_service(json_t *services, const char *name, int has_descriptors) {
  /* jansson's *_new() calls take the value even when they fail (a NULL
   * object included). */
  json_t *o = json_object(), *methods = json_array();
  json_object_set_new(o, "name", json_string(name));
  json_object_set_new(o, "hasDescriptors", json_boolean(has_descriptors));
  if (json_object_set_new(o, "methods", methods) != 0) {
    json_decref(o);
    return NULL;
  }
  return json_array_append_new(services, o) == 0 ? methods : NULL;
}

static int json_method(json_t *methods, const char *name, const char *request_type,
                       const char *reply_type) {
  json_t *o = json_object();
  if (!o || json_array_append_new(methods, o) != 0) return -1;
  json_object_set_new(o, "name", json_string(name));
  json_object_set_new(o, "requestType", json_string(request_type));
  json_object_set_new(o, "replyType", json_string(reply_type));
  return 0;
}

/* Prints and frees the document (NULL: out of memory). Returns an exit
 * status. */
static int json_print(json_t *root, int failed) {
  int rc = AKRCLI_EXIT_OK;
  if (!root || failed ||
      json_dumpf(root, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0) {
    fprintf(stderr, "%s list: out of memory\n", AKRCLI_PROG);
    rc = AKRCLI_EXIT_SOFTWARE;
  } else {
    putchar('\n');
  }
  json_decref(root);
  return rc;
}

/* By reflection: ListServices. */
static int list_by_reflection(const akrcli_server *srv, int methods_only, int as_json) {
  ProtobufCMessage *msg = NULL;
  int rc = akrcli_builtin_call("list", srv, &akrcli_m_list_services, NULL, &msg, NULL);
  if (rc != 0) return rc;
  const Ackrpc__Reflection__ListServicesReply *r =
      (const Ackrpc__Reflection__ListServicesReply *)msg;
  if (as_json) {
    json_t *root = json_object(), *services = json_array();
    /* NULL root or services: -1, and services freed. */
    int failed = json_object_set_new(root, "services", services) != 0;
    for (size_t i = 0; i < r->n_services && !failed; i++) {
      const Ackrpc__Reflection__ServiceInfo *s = r->services[i];
      json_t *methods = json_service(services, s->name, s->has_descriptors);
      failed = !methods;
      for (size_t j = 0; j < s->n_methods && !failed; j++)
        failed = json_method(methods, s->methods[j]->name, s->methods[j]->request_type,
                             s->methods[j]->reply_type) != 0;
    }
    protobuf_c_message_free_unpacked(msg, NULL);
    rc = json_print(root, failed);
    return fflush(stdout) == 0 ? rc : AKRCLI_EXIT_SOFTWARE;
  }
  for (size_t i = 0; i < r->n_services; i++) {
    const Ackrpc__Reflection__ServiceInfo *s = r->services[i];
    if (!methods_only)
      printf("%s%s\n", s->name, s->has_descriptors ? "" : "  (no descriptors)");
    for (size_t j = 0; j < s->n_methods; j++) {
      const Ackrpc__Reflection__MethodInfo *m = s->methods[j];
      if (methods_only)
        printf("%s\n", m->name);
      else
        printf("  %s(%s) returns (%s)\n", m->name, m->request_type, m->reply_type);
    }
  }
  protobuf_c_message_free_unpacked(msg, NULL);
  return fflush(stdout) == 0 ? 0 : AKRCLI_EXIT_SOFTWARE;
}

static const char usage[] =
    "usage: ackrpc list [OPTIONS] [SOCKET]\n"
    "\n"
    "Lists the services and their methods: each service's full name, then one\n"
    "indented line per method: its name as `ackrpc call` takes it, the request\n"
    "and the reply types. With SOCKET alone, the server says (reflection: its\n"
    "built-in services included; \"(no descriptors)\" marks a service whose\n"
    "methods were registered without them); with descriptors, SOCKET may be\n"
    "left out.\n"
    "\n"
    "Options:\n"
    "  -1, --methods   only the method names (package.Service/Method), one a line\n"
    "  -j, --json      one JSON object: {\"services\": [{\"name\", "
    "\"hasDescriptors\",\n"
    "                  \"methods\": [{\"name\", \"requestType\", \"replyType\"}]}]}\n"
    "  -h, --help      this help\n";

int akrcli_cmd_list(int argc, char **argv) {
  static const struct option longopts[] = {
      {"methods", 0, NULL, '1'}, {"json", 0, NULL, 'j'}, {"help", 0, NULL, 'h'},
      AKRCLI_SERVER_LONGOPT,     AKRCLI_DESC_LONGOPTS,   {NULL, 0, NULL, 0},
  };
  akrcli_descopts d = {0};
  akrcli_server srv = {0};
  int methods_only = 0, as_json = 0, opt;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "t:1jh" AKRCLI_DESC_SHORTOPTS, longopts,
                            NULL)) != -1) {
    int taken = akrcli_descopts_take(&d, "list", opt, optarg);
    if (!taken) taken = akrcli_server_opt_take(&srv, "list", opt, optarg);
    if (taken < 0) return AKRCLI_EXIT_USAGE;
    if (taken) continue;
    switch (opt) {
    case '1': methods_only = 1; break;
    case 'j': as_json = 1; break;
    case 'h':
      printf("%s\n%s\n%s\n%s", usage, akrcli_server_help, akrcli_desc_help,
             akrcli_exit_help);
      return 0;
    default: fprintf(stderr, "%s", usage); return AKRCLI_EXIT_USAGE;
    }
  }
  if (argc - optind > 1) {
    fprintf(stderr, "%s list: wants at most one SOCKET\n%s", AKRCLI_PROG, usage);
    return AKRCLI_EXIT_USAGE;
  }
  if (methods_only && as_json) {
    fprintf(stderr, "%s list: --methods or --json, not both\n%s", AKRCLI_PROG, usage);
    return AKRCLI_EXIT_USAGE;
  }
  srv.socket = optind < argc ? argv[optind] : NULL;
  if (srv.socket && !d.n_sets && !d.n_protos)
    return list_by_reflection(&srv, methods_only, as_json);
  akrcli_pool pool = {0};
  int rc = akrcli_load_descriptors("list", &d, &srv, "", &pool);
  if (rc == 0 && as_json) {
    json_t *root = json_object(), *services = json_array();
    /* NULL root or services: -1, and services freed. */
    int failed = json_object_set_new(root, "services", services) != 0;
    for (size_t i = 0; i < pool.n_services && !failed; i++) {
      const akrcli_service *s = &pool.services[i];
      json_t *methods = json_service(services, s->full_name, 1);
      failed = !methods;
      for (size_t j = 0; j < s->n_methods && !failed; j++)
        failed = json_method(methods, s->methods[j].wire_name,
                             s->methods[j].input->full_name,
                             s->methods[j].output->full_name) != 0;
    }
    rc = json_print(root, failed);
    if (fflush(stdout) != 0) rc = AKRCLI_EXIT_SOFTWARE;
  } else if (rc == 0) {
    for (size_t i = 0; i < pool.n_services; i++) {
      const akrcli_service *s = &pool.services[i];
      if (!methods_only) printf("%s\n", s->full_name);
      for (size_t j = 0; j < s->n_methods; j++) {
        const akrcli_method *m = &s->methods[j];
        if (methods_only)
          printf("%s\n", m->wire_name);
        else
          printf("  %s(%s) returns (%s)\n", m->wire_name, m->input->full_name,
                 m->output->full_name);
      }
    }
    if (fflush(stdout) != 0) rc = AKRCLI_EXIT_SOFTWARE;
  }
  akrcli_pool_clear(&pool);
  return rc;
}
