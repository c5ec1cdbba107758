/* model.c: from protoc's request to the model of one .proto file (model.h),
 * checking on the way everything that could make the output wrong:
 * streaming, bad or colliding names, missing types, malformed options. A
 * file with any problem gets errors and no model, so the emitters never
 * fail and a file is generated whole or not at all.
 *
 * Not here: protoc-c's and our naming rules (names.c), lookups in the
 * descriptors (proto.c), the reflection set (descset.c). */
#include "model.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ackrpc/options.pb-c.h"
#include "descset.h"
#include "names.h"
#include "proto.h"

/* Field numbers of the extensions in proto/ackrpc/options.proto. */
#define METHOD_POLICY_FIELD 51720u
#define SERVICE_POLICY_FIELD 51721u
/* include/ackrpc/common.h: ACKRPC_MAX_METHOD_NAME. */
#define MAX_METHOD_NAME 256

void akrgen_error(akrgen_buf *errors, const char *file, akrgen_loc loc, const char *fmt,
                  ...) {
  va_list ap;
  if (errors->len) buf_puts(errors, "\n");
  if (loc.line > 0)
    buf_printf(errors, "%s:%d:%d: error: ", file, loc.line, loc.col);
  else
    buf_printf(errors, "%s: error: ", file);
  va_start(ap, fmt);
  buf_vprintf(errors, fmt, ap);
  va_end(ap);
}

/* One build: where the model comes from and where errors go. */
typedef struct builder {
  const akrgen_request *request;
  const akrgen_file_proto *file;
  akrgen_model *model;
  akrgen_buf *errors;
} builder;

/* --- Policies: ackrpc.method_policy and ackrpc.service_policy --- */

/* Reads a base-128 varint from [p, end); returns bytes used or 0. */
static size_t read_varint(const uint8_t *p, const uint8_t *end, uint64_t *ret) {
  uint64_t v = 0;
  for (size_t i = 0; i < 10 && p + i < end; i++) {
    v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (!(p[i] & 0x80)) {
      *ret = v;
      return i + 1;
    }
  }
  return 0;
}

/* Gathers the payloads of extension `field` from the unknown fields
 * protobuf-c kept in an options message (several occurrences merge, as
 * protobuf merges a non-repeated message field). Returns the number found,
 * or -1 if one is malformed. */
static int gather_extension(const ProtobufCMessage *options, uint32_t field,
                            akrgen_buf *payload) {
  int found = 0;
  for (unsigned i = 0; options && i < options->n_unknown_fields; i++) {
    const ProtobufCMessageUnknownField *u = &options->unknown_fields[i];
    if (u->tag != field) continue;
    if (u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) return -1;
    /* protobuf-c keeps a length-delimited unknown field with its length
     * prefix. */
    uint64_t len;
    size_t used = read_varint(u->data, u->data + u->len, &len);
    if (!used || len != u->len - used) return -1;
    buf_append(payload, (const char *)u->data + used, (size_t)len);
    found++;
  }
  return found;
}

static uint32_t *copy_ids(const uint32_t *ids, size_t n) {
  uint32_t *c = xmalloc((n ? n : 1) * sizeof *c);
  if (n) memcpy(c, ids, n * sizeof *c);
  return c;
}

/* Appends the plain copy of `p` to the model's policies; returns its index. */
static int add_policy(akrgen_model *m, const Ackrpc__CallerPolicy *p) {
  m->policies = xrealloc(m->policies, (m->n_policies + 1) * sizeof *m->policies);
  akrgen_policy *q = &m->policies[m->n_policies];
  q->same_uid = p->same_uid ? 1 : 0;
  q->uids = copy_ids(p->uids, p->n_uids);
  q->n_uids = p->n_uids;
  q->gids = copy_ids(p->gids, p->n_gids);
  q->n_gids = p->n_gids;
  q->groups = xmalloc((p->n_groups ? p->n_groups : 1) * sizeof *q->groups);
  q->n_groups = p->n_groups;
  for (size_t i = 0; i < p->n_groups; i++)
    q->groups[i] = xstrdup(p->groups[i] ? p->groups[i] : "");
  return (int)m->n_policies++;
}

/* Sets *ret_index to the index of the policy that `options` holds in
 * `field`, or -1 if none. Returns -1 if it is malformed, else 0. */
static int read_policy(akrgen_model *m, const ProtobufCMessage *options, uint32_t field,
                       int *ret_index) {
  akrgen_buf payload = {0};
  int found = gather_extension(options, field, &payload);
  Ackrpc__CallerPolicy *p = NULL;
  *ret_index = -1;
  if (found > 0)
    p = ackrpc__caller_policy__unpack(NULL, payload.len, (const uint8_t *)payload.data);
  buf_free(&payload);
  if (found < 0 || (found > 0 && !p)) return -1;
  if (p) {
    *ret_index = add_policy(m, p);
    ackrpc__caller_policy__free_unpacked(p, NULL);
  }
  return 0;
}

/* --- Services and methods --- */

/* The method's types and policy; `mp` passed the name checks. */
static void method_types(builder *b, const akrgen_service *sv, akrgen_method *me,
                         const Google__Protobuf__MethodDescriptorProto *mp,
                         int service_policy) {
  const char *file = b->model->proto_name;
  if (!mp->input_type || !akrgen_message_exists(b->request, mp->input_type) ||
      !mp->output_type || !akrgen_message_exists(b->request, mp->output_type)) {
    akrgen_error(b->errors, file, me->loc,
                 "service %s method %s: its request or reply type is not a message "
                 "protoc described",
                 sv->name, me->name);
    return;
  }
  akrgen_type_names(mp->input_type, &me->request);
  akrgen_type_names(mp->output_type, &me->reply);
  akrgen_fdfields_check(b->request, b->model, sv, me, mp->input_type, mp->output_type,
                        b->errors);
  if (read_policy(b->model, (const ProtobufCMessage *)mp->options, METHOD_POLICY_FIELD,
                  &me->policy) < 0) {
    akrgen_error(b->errors, file, me->loc,
                 "service %s method %s: option (ackrpc.method_policy) is malformed",
                 sv->name, me->name);
    return;
  }
  if (me->policy < 0) me->policy = service_policy; /* its own replaces the service's */
}

static void build_method(builder *b, const akrgen_service *sv, size_t si, size_t mi,
                         int service_policy) {
  const Google__Protobuf__MethodDescriptorProto *mp = b->file->service[si]->method[mi];
  akrgen_method *me = &sv->methods[mi];
  const char *file = b->model->proto_name, *why;
  me->loc = akrgen_find_location(b->file, (int32_t)si, (int32_t)mi);
  me->policy = -1;
  me->name = xstrdup(mp && mp->name ? mp->name : "");
  if (!mp) {
    akrgen_error(b->errors, file, me->loc, "service %s: a method is missing", sv->name);
    return;
  }
  if ((why = akrgen_bad_name(me->name))) {
    akrgen_error(b->errors, file, me->loc, "service %s method '%s': the name %s",
                 sv->name, me->name, why);
    return;
  }
  me->member =
      akrgen_is_reserved(me->name) ? xasprintf("%s_", me->name) : xstrdup(me->name);
  me->prefix = xasprintf("%s_%s", sv->prefix, me->name);
  me->full_name = xasprintf("%s/%s", sv->full_name, me->name);
  if (mp->has_client_streaming && mp->client_streaming)
    akrgen_error(b->errors, file, me->loc,
                 "service %s method %s: client streaming is not supported (ack RPC is "
                 "unary: one request, one reply)",
                 sv->name, me->name);
  if (mp->has_server_streaming && mp->server_streaming)
    akrgen_error(b->errors, file, me->loc,
                 "service %s method %s: server streaming is not supported (ack RPC is "
                 "unary: one request, one reply)",
                 sv->name, me->name);
  if (strlen(me->full_name) > MAX_METHOD_NAME)
    akrgen_error(b->errors, file, me->loc,
                 "service %s method %s: the full method name '%s' is longer than %d "
                 "bytes",
                 sv->name, me->name, me->full_name, MAX_METHOD_NAME);
  method_types(b, sv, me, mp, service_policy);
}

static void build_service(builder *b, const char *package, size_t si) {
  const Google__Protobuf__ServiceDescriptorProto *sp = b->file->service[si];
  akrgen_service *sv = &b->model->services[si];
  const char *file = b->model->proto_name, *why;
  sv->loc = akrgen_find_location(b->file, (int32_t)si, -1);
  sv->name = xstrdup(sp && sp->name ? sp->name : "");
  if (!sp) {
    akrgen_error(b->errors, file, sv->loc, "a service is missing");
    return;
  }
  if ((why = akrgen_bad_name(sv->name))) {
    akrgen_error(b->errors, file, sv->loc, "service '%s': the name %s", sv->name, why);
    return;
  }
  char *p = akrgen_package_prefix(package);
  sv->prefix = *p ? xasprintf("%s__%s", p, sv->name) : xstrdup(sv->name);
  free(p);
  sv->full_name = *package ? xasprintf("%s.%s", package, sv->name) : xstrdup(sv->name);
  if (sp->n_method == 0) {
    akrgen_error(b->errors, file, sv->loc,
                 "service %s: has no methods (a C struct cannot be empty); add one or "
                 "remove the service",
                 sv->name);
    return;
  }
  int policy;
  if (read_policy(b->model, (const ProtobufCMessage *)sp->options, SERVICE_POLICY_FIELD,
                  &policy) < 0) {
    akrgen_error(b->errors, file, sv->loc,
                 "service %s: option (ackrpc.service_policy) is malformed", sv->name);
    return;
  }
  sv->n_methods = sp->n_method;
  sv->methods = xmalloc(sp->n_method * sizeof *sv->methods);
  memset(sv->methods, 0, sp->n_method * sizeof *sv->methods);
  for (size_t mi = 0; mi < sp->n_method; mi++)
    build_method(b, sv, si, mi, policy);
}

static int is_dotted_identifier(const char *s) {
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '_' || *p == '.'))
      return 0;
  return 1;
}

int akrgen_model_build(const akrgen_request *request, const char *proto_name,
                       akrgen_model *ret, akrgen_buf *errors) {
  size_t errors_before = errors->len;
  builder b = {request, akrgen_find_file(request, proto_name), ret, errors};
  memset(ret, 0, sizeof *ret);
  ret->proto_name = xstrdup(proto_name);
  if (!b.file) {
    akrgen_error(errors, proto_name, (akrgen_loc){0, 0},
                 "protoc sent no description of this file");
    return -1;
  }
  size_t n = strlen(proto_name);
  if (n > 6 && strcmp(proto_name + n - 6, ".proto") == 0) n -= 6;
  ret->stem = xasprintf("%.*s", (int)n, proto_name);
  ret->guard = akrgen_guard(proto_name);
  const char *package = b.file->package ? b.file->package : "";
  if (!is_dotted_identifier(package)) {
    akrgen_error(errors, proto_name, (akrgen_loc){0, 0},
                 "package '%s' is not a dotted identifier", package);
    return -1;
  }
  size_t ns = b.file->n_service;
  ret->services = xmalloc((ns ? ns : 1) * sizeof *ret->services);
  memset(ret->services, 0, (ns ? ns : 1) * sizeof *ret->services);
  ret->n_services = ns;
  for (size_t si = 0; si < ns; si++)
    build_service(&b, package, si);
  if (errors->len == errors_before) akrgen_check_collisions(ret, errors);
  if (errors->len != errors_before) return -1;
  if (ns) akrgen_descset_collect(request, b.file, ret);
  if (ns) akrgen_sensitive_collect(request, ret);
  return 0;
}

static void free_type(akrgen_type *t) {
  free(t->proto);
  free(t->c);
  free(t->lower);
}

static void free_service(akrgen_service *sv) {
  for (size_t m = 0; m < sv->n_methods; m++) {
    akrgen_method *me = &sv->methods[m];
    free(me->name);
    free(me->member);
    free(me->full_name);
    free(me->prefix);
    free_type(&me->request);
    free_type(&me->reply);
  }
  free(sv->methods);
  free(sv->name);
  free(sv->full_name);
  free(sv->prefix);
}

void akrgen_model_free(akrgen_model *m) {
  for (size_t s = 0; s < m->n_services; s++)
    free_service(&m->services[s]);
  free(m->services);
  for (size_t i = 0; i < m->n_policies; i++) {
    for (size_t g = 0; g < m->policies[i].n_groups; g++)
      free(m->policies[i].groups[g]);
    free(m->policies[i].groups);
    free(m->policies[i].uids);
    free(m->policies[i].gids);
  }
  free(m->policies);
  for (size_t i = 0; i < m->n_sensitive; i++) {
    free_type(&m->sensitive[i].message);
    free(m->sensitive[i].field);
  }
  free(m->sensitive);
  for (size_t i = 0; i < m->n_files; i++) {
    free(m->files[i].name);
    free(m->files[i].data);
  }
  free(m->files);
  free(m->proto_name);
  free(m->stem);
  free(m->guard);
  memset(m, 0, sizeof *m);
}
