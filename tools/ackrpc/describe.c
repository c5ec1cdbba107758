/* describe.c: `ackrpc describe [SOCKET] NAME`: a service, method, message or
 * enum, printed as .proto text from the descriptors. Type references are
 * fully qualified (with a leading dot), so the text is unambiguous. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char usage[] =
    "usage: ackrpc describe [OPTIONS] [SOCKET] [NAME]\n"
    "\n"
    "Prints NAME as .proto text. NAME is a service (package.Service), a method\n"
    "(package.Service/Method or package.Service.Method: the method, then its\n"
    "request and reply messages), a message or an enum (package.Name, nested\n"
    "ones as package.Outer.Inner). Without NAME, prints every service. The\n"
    "descriptors come from the server's reflection service, or from the\n"
    "options below (then SOCKET may be left out, and a single argument is\n"
    "NAME).\n"
    "\n"
    "Options:\n"
    "  -j, --json   JSON instead of .proto text (docs/CLI.md gives the shape)\n"
    "  -h, --help   this help\n";

static void indent(unsigned level) {
  for (unsigned i = 0; i < level; i++)
    fputs("  ", stdout);
}

static const char *file_name(const akrcli_file_proto *f) {
  return f && f->name ? f->name : "?";
}

static void print_enum(const akrcli_enum_proto *e, unsigned level) {
  indent(level);
  printf("enum %s {\n", e->name);
  for (size_t i = 0; i < e->n_value; i++) {
    indent(level + 1);
    printf("%s = %d;\n", e->value[i]->name ? e->value[i]->name : "?",
           e->value[i]->number);
  }
  indent(level);
  printf("}\n");
}

static const char *last_part(const char *full) {
  const char *dot = strrchr(full, '.');
  return dot ? dot + 1 : full;
}

/* The type of f as written in a .proto file. */
static void print_type(const akrcli_field *f) {
  const char *kw = akrcli_type_keyword(f->type);
  if (kw)
    fputs(kw, stdout);
  else if (f->type == AKRCLI_T_ENUM)
    printf(".%s", f->enm->full_name);
  else
    printf(".%s", f->msg->full_name);
}

static void print_msg_body(const akrcli_pool *pool, const akrcli_msg *m,
                           unsigned level);

/* Whether json is the JSON name protoc derives from name (lowerCamelCase):
 * protoc fills json_name in, so it is printed only when it was set. */
static int is_default_json_name(const char *name, const char *json) {
  int up = 0;
  for (; *name; name++) {
    if (*name == '_') {
      up = 1;
      continue;
    }
    char c = up && *name >= 'a' && *name <= 'z' ? (char)(*name - 'a' + 'A') : *name;
    up = 0;
    if (c != *json++) return 0;
  }
  return *json == '\0';
}

static void print_field(const akrcli_pool *pool, const akrcli_msg *m,
                        const akrcli_field *f, unsigned level) {
  const akrcli_field_proto *fp = f->proto;
  indent(level);
  if (f->is_map) {
    const akrcli_field *k = akrcli_msg_field_by_number(f->msg, 1);
    const akrcli_field *v = akrcli_msg_field_by_number(f->msg, 2);
    printf("map<");
    if (k) print_type(k);
    printf(", ");
    if (v) print_type(v);
    printf("> %s = %u;\n", f->name, f->number);
    return;
  }
  if (f->repeated)
    printf("repeated ");
  else if (f->required)
    printf("required ");
  else if (!m->proto3 && f->oneof < 0)
    printf("optional ");
  else if (m->proto3 && fp->has_proto3_optional && fp->proto3_optional)
    printf("optional ");
  if (f->type == AKRCLI_T_GROUP) {
    printf("group %s = %u {\n", last_part(f->msg->full_name), f->number);
    print_msg_body(pool, f->msg, level + 1);
    indent(level);
    printf("}\n");
    return;
  }
  print_type(f);
  printf(" %s = %u", f->name, f->number);
  /* Options that change the encoding or the JSON. */
  const char *sep = " [";
  if (fp->default_value) {
    int quote = f->type == AKRCLI_T_STRING || f->type == AKRCLI_T_BYTES;
    printf("%sdefault = %s%s%s", sep, quote ? "\"" : "", fp->default_value,
           quote ? "\"" : "");
    sep = ", ";
  }
  if (fp->options && fp->options->has_packed) {
    printf("%spacked = %s", sep, fp->options->packed ? "true" : "false");
    sep = ", ";
  }
  if (fp->json_name && !is_default_json_name(f->name, fp->json_name)) {
    printf("%sjson_name = \"%s\"", sep, fp->json_name);
    sep = ", ";
  }
  printf("%s;\n", sep[0] == ',' ? "]" : "");
}

/* Whether a nested message is printed inline elsewhere (map entries are
 * written as map<K, V>, groups with their field). */
static int nested_is_inline(const akrcli_pool *pool, const akrcli_msg *m,
                            const akrcli_msg *nested) {
  (void)pool;
  if (nested->map_entry) return 1;
  for (size_t i = 0; i < m->n_fields; i++)
    if (m->fields[i].type == AKRCLI_T_GROUP && m->fields[i].msg == nested) return 1;
  return 0;
}

static void print_msg_body(const akrcli_pool *pool, const akrcli_msg *m,
                           unsigned level) {
  const akrcli_msg_proto *p = m->proto;
  for (size_t i = 0; i < p->n_enum_type; i++)
    print_enum(p->enum_type[i], level);
  for (size_t i = 0; i < p->n_nested_type; i++) {
    size_t n = strlen(m->full_name) + strlen(p->nested_type[i]->name) + 2;
    char *full = malloc(n);
    if (!full) continue;
    snprintf(full, n, "%s.%s", m->full_name, p->nested_type[i]->name);
    const akrcli_msg *nested = akrcli_pool_message(pool, full);
    free(full);
    if (!nested || nested_is_inline(pool, m, nested)) continue;
    indent(level);
    printf("message %s {\n", p->nested_type[i]->name);
    print_msg_body(pool, nested, level + 1);
    indent(level);
    printf("}\n");
  }
  /* Fields in declaration order; a oneof is printed where its first member
   * is declared. */
  for (size_t i = 0; i < m->n_fields; i++) {
    const akrcli_field *f = &m->fields[i];
    if (f->oneof < 0) {
      print_field(pool, m, f, level);
      continue;
    }
    int first = 1;
    for (size_t j = 0; j < i && first; j++)
      first = m->fields[j].oneof != f->oneof;
    if (!first) continue;
    indent(level);
    printf("oneof %s {\n", m->oneof_names[f->oneof]);
    for (size_t j = i; j < m->n_fields; j++)
      if (m->fields[j].oneof == f->oneof)
        print_field(pool, m, &m->fields[j], level + 1);
    indent(level);
    printf("}\n");
  }
}

static void print_message(const akrcli_pool *pool, const akrcli_msg *m) {
  printf("// %s (%s, %s)\n", m->full_name, file_name(m->file),
         m->proto3 ? "proto3" : "proto2");
  printf("message %s {\n", m->proto->name);
  print_msg_body(pool, m, 1);
  printf("}\n");
}

static void print_rpc(const akrcli_method *m, unsigned level) {
  indent(level);
  printf("rpc %s(.%s) returns (.%s);\n", m->proto->name, m->input->full_name,
         m->output->full_name);
}

static void print_service(const akrcli_service *service) {
  printf("// %s (%s)\n", service->full_name, file_name(service->file));
  printf("service %s {\n", service->proto->name);
  for (size_t i = 0; i < service->n_methods; i++)
    print_rpc(&service->methods[i], 1);
  printf("}\n");
}

static const akrcli_file_proto *enum_file(const akrcli_pool *pool,
                                          const akrcli_enum *e) {
  for (size_t i = 0; i < pool->n_files; i++) {
    const akrcli_file_proto *f = pool->files[i];
    for (size_t j = 0; j < f->n_enum_type; j++)
      if (f->enum_type[j] == e->proto) return f;
  }
  for (size_t i = 0; i < pool->n_msgs; i++)
    for (size_t j = 0; j < pool->msgs[i].proto->n_enum_type; j++)
      if (pool->msgs[i].proto->enum_type[j] == e->proto) return pool->msgs[i].file;
  return NULL;
}

/* --- --json (the shape is documented in docs/CLI.md) ---------------------- */

/* jansson's *_new() setters take the value even when they fail, so a NULL
 * object or value only makes the document incomplete; json_out() checks
 * the document's top before printing. */

/* "type" (a scalar keyword, "message", "enum" or "group") and, for the last
 * three, "typeName". */
static void json_field_type(json_t *o, const akrcli_field *f) {
  const char *kw = akrcli_type_keyword(f->type);
  if (kw) {
    json_object_set_new(o, "type", json_string(kw));
    return;
  }
  int is_enum = f->type == AKRCLI_T_ENUM;
  json_object_set_new(o, "type",
                      json_string(is_enum                     ? "enum"
                                  : f->type == AKRCLI_T_GROUP ? "group"
                                                              : "message"));
  json_object_set_new(o, "typeName",
                      json_string(is_enum ? f->enm->full_name : f->msg->full_name));
}

static json_t *json_field(const akrcli_msg *m, const akrcli_field *f) {
  json_t *o = json_object();
  json_object_set_new(o, "name", json_string(f->name));
  json_object_set_new(o, "number", json_integer(f->number));
  json_object_set_new(o, "jsonName", json_string(f->json_name));
  if (f->is_map) {
    const akrcli_field *k = akrcli_msg_field_by_number(f->msg, 1);
    const akrcli_field *v = akrcli_msg_field_by_number(f->msg, 2);
    json_object_set_new(o, "label", json_string("repeated"));
    json_object_set_new(o, "type", json_string("map"));
    json_t *ko = json_object(), *vo = json_object();
    if (k) json_field_type(ko, k);
    if (v) json_field_type(vo, v);
    json_object_set_new(o, "key", ko);
    json_object_set_new(o, "value", vo);
    return o;
  }
  json_object_set_new(o, "label",
                      json_string(f->repeated   ? "repeated"
                                  : f->required ? "required"
                                                : "optional"));
  json_field_type(o, f);
  json_object_set_new(o, "presence", json_boolean(f->presence));
  if (f->oneof >= 0)
    json_object_set_new(o, "oneof", json_string(m->oneof_names[f->oneof]));
  return o;
}

static json_t *json_message(const akrcli_msg *m) {
  json_t *o = json_object(), *fields = json_array();
  json_object_set_new(o, "kind", json_string("message"));
  json_object_set_new(o, "name", json_string(m->full_name));
  json_object_set_new(o, "file", json_string(file_name(m->file)));
  json_object_set_new(o, "syntax", json_string(m->proto3 ? "proto3" : "proto2"));
  for (size_t i = 0; i < m->n_fields; i++)
    json_array_append_new(fields, json_field(m, &m->fields[i]));
  json_object_set_new(o, "fields", fields);
  return o;
}

/* A method: with `kind` when it is the document, without as a service's. */
static json_t *json_method_of(const akrcli_method *m, int kind) {
  json_t *o = json_object();
  if (kind) json_object_set_new(o, "kind", json_string("method"));
  json_object_set_new(o, "name", json_string(m->wire_name));
  json_object_set_new(o, "requestType", json_string(m->input->full_name));
  json_object_set_new(o, "replyType", json_string(m->output->full_name));
  return o;
}

static json_t *json_service_of(const akrcli_service *service) {
  json_t *o = json_object(), *methods = json_array();
  json_object_set_new(o, "kind", json_string("service"));
  json_object_set_new(o, "name", json_string(service->full_name));
  json_object_set_new(o, "file", json_string(file_name(service->file)));
  for (size_t i = 0; i < service->n_methods; i++)
    json_array_append_new(methods, json_method_of(&service->methods[i], 0));
  json_object_set_new(o, "methods", methods);
  return o;
}

static json_t *json_enum(const akrcli_pool *pool, const akrcli_enum *e) {
  json_t *o = json_object(), *values = json_array();
  json_object_set_new(o, "kind", json_string("enum"));
  json_object_set_new(o, "name", json_string(e->full_name));
  json_object_set_new(o, "file", json_string(file_name(enum_file(pool, e))));
  for (size_t i = 0; i < e->proto->n_value; i++) {
    json_t *v = json_object();
    json_object_set_new(
        v, "name",
        json_string(e->proto->value[i]->name ? e->proto->value[i]->name : "?"));
    json_object_set_new(v, "number", json_integer(e->proto->value[i]->number));
    json_array_append_new(values, v);
  }
  json_object_set_new(o, "values", values);
  return o;
}

/* Prints the document and frees it. Returns an exit status. */
static int json_out(json_t *doc) {
  int rc = AKRCLI_EXIT_OK;
  if (!doc || json_dumpf(doc, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0) {
    fprintf(stderr, "%s describe: out of memory\n", AKRCLI_PROG);
    rc = AKRCLI_EXIT_SOFTWARE;
  } else {
    putchar('\n');
  }
  json_decref(doc);
  return rc;
}

int akrcli_cmd_describe(int argc, char **argv) {
  static const struct option longopts[] = {
      {"help", 0, NULL, 'h'}, {"json", 0, NULL, 'j'}, AKRCLI_SERVER_LONGOPT,
      AKRCLI_DESC_LONGOPTS,   {NULL, 0, NULL, 0},
  };
  akrcli_descopts d = {0};
  akrcli_server srv = {0};
  int opt, as_json = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "t:jh" AKRCLI_DESC_SHORTOPTS, longopts,
                            NULL)) != -1) {
    int taken = akrcli_descopts_take(&d, "describe", opt, optarg);
    if (!taken) taken = akrcli_server_opt_take(&srv, "describe", opt, optarg);
    if (taken < 0) return AKRCLI_EXIT_USAGE;
    if (taken) continue;
    if (opt == 'j') {
      as_json = 1;
      continue;
    }
    if (opt == 'h') {
      printf("%s\n%s\n%s\n%s", usage, akrcli_server_help, akrcli_desc_help,
             akrcli_exit_help);
      return AKRCLI_EXIT_OK;
    }
    fprintf(stderr, "%s", usage);
    return AKRCLI_EXIT_USAGE;
  }
  int npos = argc - optind;
  /* One argument is SOCKET when the descriptors come from the server, NAME
   * when they are given. */
  int offline = d.n_sets || d.n_protos;
  if (npos > 2 || (npos == 0 && !offline)) {
    fprintf(stderr, "%s describe: wants [SOCKET] [NAME]\n%s", AKRCLI_PROG, usage);
    return AKRCLI_EXIT_USAGE;
  }
  srv.socket = npos == 2 || (npos == 1 && !offline) ? argv[optind] : NULL;
  const char *name =
      npos == 2 || (npos == 1 && offline) ? argv[optind + npos - 1] : NULL;
  akrcli_pool pool = {0};
  /* By reflection: every service's files (NAME may be a type no method
   * uses directly, such as a nested message). */
  int rc = akrcli_load_descriptors("describe", &d, &srv, "", &pool);
  if (rc != 0) goto out;
  if (!name && as_json) {
    json_t *doc = json_object(), *services = json_array();
    for (size_t i = 0; i < pool.n_services; i++)
      json_array_append_new(services, json_service_of(&pool.services[i]));
    json_object_set_new(doc, "services", services);
    rc = json_out(doc);
    if (fflush(stdout) != 0) rc = AKRCLI_EXIT_SOFTWARE;
    goto out;
  }
  if (!name) {
    for (size_t i = 0; i < pool.n_services; i++) {
      if (i) printf("\n");
      print_service(&pool.services[i]);
    }
    if (fflush(stdout) != 0) rc = AKRCLI_EXIT_SOFTWARE;
    goto out;
  }

  const akrcli_method *method = akrcli_pool_method(&pool, name);
  const akrcli_service *service = akrcli_pool_service(&pool, name);
  const akrcli_msg *msg = akrcli_pool_message(&pool, name);
  const akrcli_enum *enm = akrcli_pool_enum(&pool, name);
  if (as_json && (service || method || msg || enm)) {
    json_t *doc = NULL;
    if (service) {
      doc = json_service_of(service);
    } else if (method) {
      doc = json_method_of(method, 1);
      json_object_set_new(doc, "request", json_message(method->input));
      json_object_set_new(doc, "reply", json_message(method->output));
    } else if (msg) {
      doc = json_message(msg);
    } else {
      doc = json_enum(&pool, enm);
    }
    rc = json_out(doc);
  } else if (service) {
    print_service(service);
  } else if (method) {
    printf("// %s\n", method->wire_name);
    print_rpc(method, 0);
    printf("\n");
    print_message(&pool, method->input);
    if (method->output != method->input) {
      printf("\n");
      print_message(&pool, method->output);
    }
  } else if (msg) {
    print_message(&pool, msg);
  } else if (enm) {
    printf("// %s (%s)\n", enm->full_name, file_name(enum_file(&pool, enm)));
    print_enum(enm->proto, 0);
  } else {
    fprintf(stderr,
            "%s describe: %s is not a service, method, message or enum of the "
            "descriptors\n",
            AKRCLI_PROG, name);
    rc = AKRCLI_EXIT_DATAERR;
    goto out;
  }
  if (fflush(stdout) != 0) rc = AKRCLI_EXIT_SOFTWARE;
out:
  akrcli_pool_clear(&pool);
  return rc;
}
