/* gen.c: what protoc-gen-ackrpc generates, and the checks before it does.
 *
 * The work is in two passes per .proto file: build a model (names, types,
 * policies, source locations) while checking everything that could make the
 * output wrong (streaming, bad or colliding names, missing types, malformed
 * options), then print the files from the model. Printing never fails, so a
 * file is either generated whole or not at all.
 *
 * The names are documented in docs/GENERATOR.md; the rules that make them
 * safe next to protoc-c's are restated where they are enforced.
 */
#include "gen.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ackrpc/options.pb-c.h"
#include "buf.h"
#include "google/protobuf/descriptor.pb-c.h"

#ifndef AKRGEN_VERSION
#error "AKRGEN_VERSION (the ackrpc version) must be defined by the build"
#endif

/* Field numbers of the extensions in proto/ackrpc/options.proto. */
#define AKRGEN_METHOD_POLICY_FIELD 51720u
#define AKRGEN_SERVICE_POLICY_FIELD 51721u
/* include/ackrpc/common.h: ACKRPC_MAX_METHOD_NAME. */
#define AKRGEN_MAX_METHOD_NAME 256
/* Oldest protobuf-c whose API the generated code uses. */
#define AKRGEN_MIN_PROTOBUF_C 1003000

/* Source-file paths of FileDescriptorProto (descriptor.proto): service = 6,
 * ServiceDescriptorProto.method = 2. */
#define PATH_SERVICE 6
#define PATH_METHOD 2

typedef Google__Protobuf__FileDescriptorProto FileProto;
typedef Google__Protobuf__DescriptorProto MessageProto;
typedef Google__Protobuf__ServiceDescriptorProto ServiceProto;
typedef Google__Protobuf__MethodDescriptorProto MethodProto;
typedef Ackrpc__CallerPolicy Policy;

typedef struct location {
  int line, col; /* 1-based; 0 if unknown */
} location;

typedef struct method_model {
  const char *name;            /* M, verbatim */
  const char *member;          /* M, or M_ if M is a C/C++ keyword */
  char *full_name;             /* "pkg.S/M" */
  char *prefix;                /* "P__S_M" */
  char *req_proto, *rep_proto; /* "pkg.Msg" as in the .proto */
  char *req_type, *rep_type;   /* protoc-c's C types */
  char *req_desc, *rep_desc;   /* protoc-c's descriptor objects */
  char *rep_free;              /* protoc-c's free_unpacked function */
  const Policy *policy;        /* its own, else its service's; may be NULL */
  int policy_index;            /* index of the emitted policy, or -1 */
  location loc;
} method_model;

typedef struct service_model {
  const char *name; /* S, verbatim */
  char *full_name;  /* "pkg.S" */
  char *prefix;     /* "P__S" */
  method_model *methods;
  size_t n_methods;
  location loc;
} service_model;

typedef struct file_model {
  const char *proto_name; /* "dir/name.proto" */
  char *stem;             /* "dir/name" */
  char *guard;            /* include guard macro */
  const char *package;    /* may be "" */
  service_model *services;
  size_t n_services;
  Policy **policies; /* distinct decoded policies, freed with the model */
  size_t n_policies;
  /* For reflection: this file and its imports, transitively, dependencies
   * first (protoc's order), each serialized without source code info. */
  const char **desc_names;
  uint8_t **desc_data;
  size_t *desc_len;
  size_t n_descs;
} file_model;

/* Everything one generation run shares: the request and the errors. */
typedef struct context {
  const Akrgen__Plugin__CodeGeneratorRequest *request;
  akrgen_buf errors;
  int fuzz; /* parameter "fuzz": also emit NAME.ackrpc-fuzz.c */
} context;

/* --- Errors --- */

static void error_at(context *cx, const char *file, location loc, const char *fmt, ...)
    AKRGEN_PRINTF(4, 5);

static void error_at(context *cx, const char *file, location loc, const char *fmt,
                     ...) {
  va_list ap;
  if (cx->errors.len) buf_puts(&cx->errors, "\n");
  if (loc.line > 0)
    buf_printf(&cx->errors, "%s:%d:%d: error: ", file, loc.line, loc.col);
  else
    buf_printf(&cx->errors, "%s: error: ", file);
  va_start(ap, fmt);
  buf_vprintf(&cx->errors, fmt, ap);
  va_end(ap);
}

/* --- protoc-c's naming (protobuf-c 1.x, protoc-c/c_helpers.cc), which the
 * generated code must reproduce to name protoc-c's types and objects --- */

/* ToCamel: drop each '_', upper-case the first letter and each letter after
 * a '_'. */
static void to_camel(akrgen_buf *b, const char *s, size_t n) {
  int upper = 1;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '_') {
      upper = 1;
    } else if (upper) {
      buf_printf(b, "%c", (c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c);
      upper = 0;
    } else {
      buf_append(b, &c, 1);
    }
  }
}

/* CamelToLower: lower-case, with '_' before an upper-case letter that
 * follows a non-upper-case character. */
static void camel_to_lower(akrgen_buf *b, const char *s, size_t n) {
  int was_upper = 1;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int is_upper = c >= 'A' && c <= 'Z';
    if (is_upper) {
      if (!was_upper) buf_puts(b, "_");
      c = (char)(c - 'A' + 'a');
    }
    buf_append(b, &c, 1);
    was_upper = is_upper;
  }
}

/* Applies `piece` to each dot-separated piece of `full` (empty pieces
 * skipped), joined with "__": FullNameToC / FullNameToLower. */
static char *map_full_name(const char *full,
                           void (*piece)(akrgen_buf *, const char *, size_t)) {
  akrgen_buf b = {0};
  const char *p = full;
  while (*p) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    if (n) {
      if (b.len) buf_puts(&b, "__");
      piece(&b, p, n);
    }
    p += n + (dot ? 1 : 0);
  }
  return buf_take(&b);
}

/* --- Checks on names --- */

static int is_identifier(const char *s) {
  if (!s || !*s) return 0;
  for (const char *p = s; *p; p++) {
    char c = *p;
    int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(p != s && c >= '0' && c <= '9')) return 0;
  }
  return 1;
}

/* Names that cannot be a struct member in C11 or C++ (keywords, alternative
 * tokens) or that standard headers may define as macros. */
static const char *const reserved_words[] = {
    "NULL",
    "alignas",
    "alignof",
    "and",
    "and_eq",
    "asm",
    "assert",
    "auto",
    "bitand",
    "bitor",
    "bool",
    "break",
    "case",
    "catch",
    "char",
    "char16_t",
    "char32_t",
    "char8_t",
    "class",
    "co_await",
    "co_return",
    "co_yield",
    "compl",
    "concept",
    "const",
    "const_cast",
    "consteval",
    "constexpr",
    "constinit",
    "continue",
    "decltype",
    "default",
    "delete",
    "do",
    "double",
    "dynamic_cast",
    "else",
    "enum",
    "errno",
    "explicit",
    "export",
    "extern",
    "false",
    "float",
    "for",
    "friend",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "mutable",
    "namespace",
    "new",
    "noexcept",
    "not",
    "not_eq",
    "nullptr",
    "offsetof",
    "operator",
    "or",
    "or_eq",
    "private",
    "protected",
    "public",
    "register",
    "reinterpret_cast",
    "requires",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "static_assert",
    "static_cast",
    "stderr",
    "stdin",
    "stdout",
    "struct",
    "switch",
    "template",
    "this",
    "thread_local",
    "throw",
    "true",
    "try",
    "typedef",
    "typeid",
    "typename",
    "union",
    "unsigned",
    "using",
    "virtual",
    "void",
    "volatile",
    "wchar_t",
    "while",
    "xor",
    "xor_eq",
};

static int is_reserved(const char *s) {
  for (size_t i = 0; i < sizeof reserved_words / sizeof *reserved_words; i++)
    if (strcmp(s, reserved_words[i]) == 0) return 1;
  return 0;
}

/* Service and method names go verbatim into identifiers joined by '_'
 * ("P__S_M_call"), so a name that contains "__" or starts or ends with '_'
 * could make two different (S, M) pairs produce the same identifier, or
 * produce one in protoc-c's "x__y" space. Returns why it is refused, or
 * NULL. */
static const char *bad_name(const char *s) {
  if (!is_identifier(s)) return "is not a valid C identifier";
  if (strstr(s, "__"))
    return "contains \"__\", which generated names use as a separator";
  if (s[0] == '_' || s[strlen(s) - 1] == '_')
    return "starts or ends with '_', which would make \"__\" in generated names";
  return NULL;
}

/* --- Looking things up in the request --- */

static const FileProto *find_file(const context *cx, const char *name) {
  for (size_t i = 0; i < cx->request->n_proto_file; i++) {
    const FileProto *f = cx->request->proto_file[i];
    if (f && f->name && strcmp(f->name, name) == 0) return f;
  }
  return NULL;
}

/* Nonzero if `rest` (a dotted name below `scope`) names a message among
 * `msgs` or their nested messages. */
static int has_message(MessageProto *const *msgs, size_t n, const char *rest) {
  for (size_t i = 0; i < n; i++) {
    const MessageProto *m = msgs[i];
    if (!m || !m->name) continue;
    size_t len = strlen(m->name);
    if (strncmp(rest, m->name, len) != 0) continue;
    if (rest[len] == '\0') return 1;
    if (rest[len] == '.' &&
        has_message(m->nested_type, m->n_nested_type, rest + len + 1))
      return 1;
  }
  return 0;
}

/* Nonzero if ".pkg.Msg.Nested" is a message of some file of the request. */
static int message_exists(const context *cx, const char *full) {
  if (full[0] != '.') return 0;
  for (size_t i = 0; i < cx->request->n_proto_file; i++) {
    const FileProto *f = cx->request->proto_file[i];
    if (!f) continue;
    const char *pkg = f->package ? f->package : "";
    const char *rest = full + 1;
    size_t plen = strlen(pkg);
    if (plen) {
      if (strncmp(rest, pkg, plen) != 0 || rest[plen] != '.') continue;
      rest += plen + 1;
    }
    if (has_message(f->message_type, f->n_message_type, rest)) return 1;
  }
  return 0;
}

static location find_location(const FileProto *f, int32_t service, int32_t method) {
  location loc = {0, 0};
  const Google__Protobuf__SourceCodeInfo *info = f->source_code_info;
  if (!info) return loc;
  size_t want = method < 0 ? 2 : 4;
  for (size_t i = 0; i < info->n_location; i++) {
    const Google__Protobuf__SourceCodeInfo__Location *l = info->location[i];
    if (!l || l->n_path != want || l->n_span < 3) continue;
    if (l->path[0] != PATH_SERVICE || l->path[1] != service) continue;
    if (method >= 0 && (l->path[2] != PATH_METHOD || l->path[3] != method)) continue;
    if (l->span[0] < 0 || l->span[0] >= INT32_MAX || l->span[1] < 0 ||
        l->span[1] >= INT32_MAX)
      return loc;
    loc.line = l->span[0] + 1;
    loc.col = l->span[1] + 1;
    return loc;
  }
  return loc;
}

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

/* Decodes our extension from the unknown fields protobuf-c kept in a
 * MethodOptions/ServiceOptions message. Several occurrences are merged, as
 * protobuf merges a repeated non-repeated message field. Returns 0 with
 * *ret NULL if absent, -1 if malformed. */
static int read_policy(const ProtobufCMessage *options, uint32_t field, Policy **ret) {
  akrgen_buf payload = {0};
  int found = 0;
  *ret = NULL;
  if (!options) return 0;
  for (unsigned i = 0; i < options->n_unknown_fields; i++) {
    const ProtobufCMessageUnknownField *u = &options->unknown_fields[i];
    if (u->tag != field) continue;
    if (u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) goto bad;
    /* protobuf-c keeps a length-delimited unknown field with its length
     * prefix. */
    uint64_t len;
    size_t used = read_varint(u->data, u->data + u->len, &len);
    if (!used || len != u->len - used) goto bad;
    buf_append(&payload, (const char *)u->data + used, (size_t)len);
    found = 1;
  }
  if (!found) return 0;
  *ret =
      ackrpc__caller_policy__unpack(NULL, payload.len, (const uint8_t *)payload.data);
  buf_free(&payload);
  return *ret ? 0 : -1;
bad:
  buf_free(&payload);
  return -1;
}

/* --- The model --- */

static void add_name(char ***names, size_t *n, size_t *cap, char *name) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 32;
    *names = xrealloc(*names, *cap * sizeof **names);
  }
  (*names)[(*n)++] = name;
}

/* Every identifier the file declares with external linkage or as a type,
 * each with the (service, method) it belongs to, for the collision check. */
typedef struct name_owner {
  const char *name;
  const service_model *service;
  const method_model *method;
} name_owner;

static int compare_owners(const void *a, const void *b) {
  const name_owner *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c) return c;
  /* Stable for equal names: by position in the file. */
  if (x->service != y->service) return x->service < y->service ? -1 : 1;
  if (x->method == y->method) return 0;
  if (!x->method || !y->method) return x->method ? 1 : -1;
  return x->method < y->method ? -1 : 1;
}

static void check_collisions(context *cx, const file_model *fm) {
  static const char *const service_suffixes[] = {"_handlers", "_register", "_service",
                                                 "_methods"};
  static const char *const method_suffixes[] = {"_method", "_call", "_call_async",
                                                "_done_fn"};
  char **names = NULL;
  size_t n = 0, cap = 0;
  name_owner *owners;
  size_t n_owners = 0;
  for (size_t s = 0; s < fm->n_services; s++) {
    const service_model *sm = &fm->services[s];
    for (size_t k = 0; k < 4; k++)
      add_name(&names, &n, &cap, xasprintf("%s%s", sm->prefix, service_suffixes[k]));
    for (size_t m = 0; m < sm->n_methods; m++)
      for (size_t k = 0; k < 4; k++)
        add_name(&names, &n, &cap,
                 xasprintf("%s%s", sm->methods[m].prefix, method_suffixes[k]));
  }
  owners = xmalloc((n ? n : 1) * sizeof *owners);
  for (size_t s = 0, i = 0; s < fm->n_services; s++) {
    const service_model *sm = &fm->services[s];
    for (size_t k = 0; k < 4; k++)
      owners[n_owners++] = (name_owner){names[i++], sm, NULL};
    for (size_t m = 0; m < sm->n_methods; m++)
      for (size_t k = 0; k < 4; k++)
        owners[n_owners++] = (name_owner){names[i++], sm, &sm->methods[m]};
  }
  qsort(owners, n_owners, sizeof *owners, compare_owners);
  /* One error per colliding pair of owners, at its first name in order. */
  const void **reported = xmalloc(4 * (n_owners ? n_owners : 1) * sizeof *reported);
  size_t n_reported = 0;
  for (size_t i = 1; i < n_owners; i++) {
    const name_owner *a = &owners[i - 1], *b = &owners[i];
    if (strcmp(a->name, b->name) != 0) continue;
    int seen = 0;
    for (size_t r = 0; r < n_reported && !seen; r += 4)
      seen = reported[r] == a->service && reported[r + 1] == a->method &&
             reported[r + 2] == b->service && reported[r + 3] == b->method;
    if (seen) continue;
    reported[n_reported++] = a->service;
    reported[n_reported++] = a->method;
    reported[n_reported++] = b->service;
    reported[n_reported++] = b->method;
    /* Report at the later of the two in the file. */
    const name_owner *late = b, *early = a;
    location la = late->method ? late->method->loc : late->service->loc;
    location le = early->method ? early->method->loc : early->service->loc;
    if (la.line < le.line || (la.line == le.line && la.col < le.col)) {
      late = a;
      early = b;
      la = le;
    }
    akrgen_buf who = {0};
    buf_printf(&who, "service %s", early->service->name);
    if (early->method) buf_printf(&who, " method %s", early->method->name);
    char *w = buf_take(&who);
    if (late->method)
      error_at(cx, fm->proto_name, la,
               "service %s method %s: generated name '%s' is also generated for %s; "
               "rename one of them",
               late->service->name, late->method->name, late->name, w);
    else
      error_at(cx, fm->proto_name, la,
               "service %s: generated name '%s' is also generated for %s; rename one "
               "of them",
               late->service->name, late->name, w);
    free(w);
  }
  free(reported);
  free(owners);
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

static void type_names(const char *full, char **ret_proto, char **ret_type,
                       char **ret_desc, char **ret_free) {
  char *lower = map_full_name(full, camel_to_lower);
  *ret_proto = xstrdup(full + 1);
  *ret_type = map_full_name(full, to_camel);
  *ret_desc = xasprintf("%s__descriptor", lower);
  if (ret_free) *ret_free = xasprintf("%s__free_unpacked", lower);
  free(lower);
}

/* Returns the index of `p` in fm->policies, adding it (taking ownership). */
static int keep_policy(file_model *fm, Policy *p) {
  fm->policies = xrealloc(fm->policies, (fm->n_policies + 1) * sizeof *fm->policies);
  fm->policies[fm->n_policies] = p;
  return (int)fm->n_policies++;
}

static void build_method(context *cx, file_model *fm, service_model *sm,
                         const ServiceProto *sp, size_t si, size_t mi,
                         const FileProto *f, const Policy *service_policy,
                         int service_policy_index) {
  const MethodProto *mp = sp->method[mi];
  method_model *mm = &sm->methods[mi];
  const char *why;
  mm->loc = find_location(f, (int32_t)si, (int32_t)mi);
  mm->policy_index = -1;
  mm->name = mp && mp->name ? mp->name : "";
  if (!mp) {
    error_at(cx, fm->proto_name, mm->loc, "service %s: a method is missing", sm->name);
    return;
  }
  if ((why = bad_name(mm->name))) {
    error_at(cx, fm->proto_name, mm->loc, "service %s method '%s': the name %s",
             sm->name, mm->name, why);
    return;
  }
  mm->member = is_reserved(mm->name) ? xasprintf("%s_", mm->name) : xstrdup(mm->name);
  mm->prefix = xasprintf("%s_%s", sm->prefix, mm->name);
  mm->full_name = xasprintf("%s/%s", sm->full_name, mm->name);
  if (mp->has_client_streaming && mp->client_streaming)
    error_at(cx, fm->proto_name, mm->loc,
             "service %s method %s: client streaming is not supported (ack RPC is "
             "unary: one request, one reply)",
             sm->name, mm->name);
  if (mp->has_server_streaming && mp->server_streaming)
    error_at(cx, fm->proto_name, mm->loc,
             "service %s method %s: server streaming is not supported (ack RPC is "
             "unary: one request, one reply)",
             sm->name, mm->name);
  if (strlen(mm->full_name) > AKRGEN_MAX_METHOD_NAME)
    error_at(cx, fm->proto_name, mm->loc,
             "service %s method %s: the full method name '%s' is longer than %d bytes",
             sm->name, mm->name, mm->full_name, AKRGEN_MAX_METHOD_NAME);
  if (!mp->input_type || !message_exists(cx, mp->input_type) || !mp->output_type ||
      !message_exists(cx, mp->output_type)) {
    error_at(cx, fm->proto_name, mm->loc,
             "service %s method %s: its request or reply type is not a message protoc "
             "described",
             sm->name, mm->name);
    return;
  }
  type_names(mp->input_type, &mm->req_proto, &mm->req_type, &mm->req_desc, NULL);
  type_names(mp->output_type, &mm->rep_proto, &mm->rep_type, &mm->rep_desc,
             &mm->rep_free);

  Policy *own;
  if (read_policy((const ProtobufCMessage *)mp->options, AKRGEN_METHOD_POLICY_FIELD,
                  &own) < 0) {
    error_at(cx, fm->proto_name, mm->loc,
             "service %s method %s: option (ackrpc.method_policy) is malformed",
             sm->name, mm->name);
    return;
  }
  if (own) {
    mm->policy = own;
    mm->policy_index = keep_policy(fm, own);
  } else {
    mm->policy = service_policy;
    mm->policy_index = service_policy_index;
  }
}

static void build_service(context *cx, file_model *fm, const FileProto *f, size_t si) {
  const ServiceProto *sp = f->service[si];
  service_model *sm = &fm->services[si];
  const char *pkg = fm->package;
  const char *why;
  sm->loc = find_location(f, (int32_t)si, -1);
  sm->name = sp && sp->name ? sp->name : "";
  if (!sp) {
    error_at(cx, fm->proto_name, sm->loc, "a service is missing");
    return;
  }
  if ((why = bad_name(sm->name))) {
    error_at(cx, fm->proto_name, sm->loc, "service '%s': the name %s", sm->name, why);
    return;
  }
  char *p = map_full_name(pkg, camel_to_lower);
  sm->prefix = *p ? xasprintf("%s__%s", p, sm->name) : xstrdup(sm->name);
  free(p);
  sm->full_name = *pkg ? xasprintf("%s.%s", pkg, sm->name) : xstrdup(sm->name);
  if (sp->n_method == 0) {
    error_at(cx, fm->proto_name, sm->loc,
             "service %s: has no methods (a C struct cannot be empty); add one or "
             "remove the service",
             sm->name);
    return;
  }
  Policy *policy;
  int policy_index = -1;
  if (read_policy((const ProtobufCMessage *)sp->options, AKRGEN_SERVICE_POLICY_FIELD,
                  &policy) < 0) {
    error_at(cx, fm->proto_name, sm->loc,
             "service %s: option (ackrpc.service_policy) is malformed", sm->name);
    return;
  }
  if (policy) policy_index = keep_policy(fm, policy);
  sm->n_methods = sp->n_method;
  sm->methods = xmalloc(sp->n_method * sizeof *sm->methods);
  memset(sm->methods, 0, sp->n_method * sizeof *sm->methods);
  for (size_t mi = 0; mi < sp->n_method; mi++)
    build_method(cx, fm, sm, sp, si, mi, f, policy, policy_index);
}

/* protoc-c's FilenameIdentifier: alphanumerics kept, anything else as
 * "_<hex>", so distinct paths give distinct guards. */
static char *guard_for(const char *proto_name) {
  akrgen_buf b = {0};
  buf_puts(&b, "ACKRPC_GEN_");
  for (const unsigned char *p = (const unsigned char *)proto_name; *p; p++) {
    if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
        (*p >= 'A' && *p <= 'Z'))
      buf_append(&b, (const char *)p, 1);
    else
      buf_printf(&b, "_%x", *p);
  }
  buf_puts(&b, "_H");
  return buf_take(&b);
}

/* Marks `f` and everything it imports in `want` (indexes of the request's
 * proto_file). Bounded: a file is visited once. */
static void mark_deps(const context *cx, const FileProto *f, unsigned char *want) {
  for (size_t i = 0; i < cx->request->n_proto_file; i++) {
    if (cx->request->proto_file[i] != f) continue;
    if (want[i]) return;
    want[i] = 1;
  }
  for (size_t d = 0; d < f->n_dependency; d++) {
    const FileProto *dep = f->dependency[d] ? find_file(cx, f->dependency[d]) : NULL;
    if (dep) mark_deps(cx, dep, want);
  }
}

/* Serializes the file and its transitive imports for reflection, in the
 * request's order, which protoc makes topological (imports first). Source
 * code info is left out: reflection needs the schema, not the comments and
 * spans. */
static void collect_descriptors(const context *cx, file_model *fm, const FileProto *f) {
  size_t n = cx->request->n_proto_file;
  unsigned char *want = xmalloc(n ? n : 1);
  memset(want, 0, n ? n : 1);
  mark_deps(cx, f, want);
  for (size_t i = 0; i < n; i++)
    fm->n_descs += want[i];
  fm->desc_names = xmalloc((fm->n_descs ? fm->n_descs : 1) * sizeof *fm->desc_names);
  fm->desc_data = xmalloc((fm->n_descs ? fm->n_descs : 1) * sizeof *fm->desc_data);
  fm->desc_len = xmalloc((fm->n_descs ? fm->n_descs : 1) * sizeof *fm->desc_len);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!want[i]) continue;
    FileProto *p = cx->request->proto_file[i];
    Google__Protobuf__SourceCodeInfo *info = p->source_code_info;
    p->source_code_info = NULL;
    size_t len = google__protobuf__file_descriptor_proto__get_packed_size(p);
    uint8_t *data = xmalloc(len ? len : 1);
    google__protobuf__file_descriptor_proto__pack(p, data);
    p->source_code_info = info;
    fm->desc_names[k] = p->name ? p->name : "";
    fm->desc_data[k] = data;
    fm->desc_len[k] = len;
    k++;
  }
  free(want);
}

/* Returns 0 if the model is complete, -1 if errors were reported. */
static int build_file(context *cx, file_model *fm, const char *name) {
  size_t errors_before = cx->errors.len;
  const FileProto *f = find_file(cx, name);
  memset(fm, 0, sizeof *fm);
  fm->proto_name = name;
  if (!f) {
    error_at(cx, name, (location){0, 0}, "protoc sent no description of this file");
    return -1;
  }
  size_t n = strlen(name);
  if (n > 6 && strcmp(name + n - 6, ".proto") == 0) n -= 6;
  fm->stem = xasprintf("%.*s", (int)n, name);
  fm->guard = guard_for(name);
  fm->package = f->package ? f->package : "";
  for (const char *p = fm->package; *p; p++) {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '_' || *p == '.')) {
      error_at(cx, name, (location){0, 0}, "package '%s' is not a dotted identifier",
               fm->package);
      return -1;
    }
  }
  fm->n_services = f->n_service;
  fm->services = xmalloc((f->n_service ? f->n_service : 1) * sizeof *fm->services);
  memset(fm->services, 0, (f->n_service ? f->n_service : 1) * sizeof *fm->services);
  for (size_t si = 0; si < f->n_service; si++)
    build_service(cx, fm, f, si);
  if (cx->errors.len != errors_before) return -1;
  check_collisions(cx, fm);
  if (cx->errors.len != errors_before) return -1;
  if (fm->n_services) collect_descriptors(cx, fm, f);
  return 0;
}

static void free_file(file_model *fm) {
  for (size_t s = 0; s < fm->n_services; s++) {
    service_model *sm = &fm->services[s];
    for (size_t m = 0; m < sm->n_methods; m++) {
      method_model *mm = &sm->methods[m];
      free((char *)mm->member);
      free(mm->full_name);
      free(mm->prefix);
      free(mm->req_proto);
      free(mm->rep_proto);
      free(mm->req_type);
      free(mm->rep_type);
      free(mm->req_desc);
      free(mm->rep_desc);
      free(mm->rep_free);
    }
    free(sm->methods);
    free(sm->full_name);
    free(sm->prefix);
  }
  free(fm->services);
  for (size_t i = 0; i < fm->n_policies; i++)
    ackrpc__caller_policy__free_unpacked(fm->policies[i], NULL);
  free(fm->policies);
  for (size_t i = 0; i < fm->n_descs; i++)
    free(fm->desc_data[i]);
  free(fm->desc_names);
  free(fm->desc_data);
  free(fm->desc_len);
  free(fm->stem);
  free(fm->guard);
}

/* --- Printing --- */

static void banner(akrgen_buf *b, const file_model *fm, const char *what) {
  buf_printf(b,
             "/* Generated by protoc-gen-ackrpc %s from %s. DO NOT EDIT.\n"
             " *\n"
             " * %s\n"
             " * Naming scheme and usage: docs/GENERATOR.md of ackrpc. */\n",
             AKRGEN_VERSION, fm->proto_name, what);
}

static void print_policy_comment(akrgen_buf *b, const Policy *p) {
  int first = 1;
  buf_puts(b, "callers admitted: ");
  if (p->same_uid) {
    buf_puts(b, "same uid as the server");
    first = 0;
  }
  if (p->n_uids) {
    buf_printf(b, "%suids", first ? "" : ", ");
    for (size_t i = 0; i < p->n_uids; i++)
      buf_printf(b, " %u", (unsigned)p->uids[i]);
    first = 0;
  }
  if (p->n_gids) {
    buf_printf(b, "%sgids", first ? "" : ", ");
    for (size_t i = 0; i < p->n_gids; i++)
      buf_printf(b, " %u", (unsigned)p->gids[i]);
    first = 0;
  }
  if (p->n_groups) {
    buf_printf(b, "%sgroups", first ? "" : ", ");
    for (size_t i = 0; i < p->n_groups; i++) {
      buf_puts(b, " ");
      /* Inside a comment: keep it printable and unable to close it. */
      for (const char *c = p->groups[i] ? p->groups[i] : ""; *c; c++)
        buf_printf(b, "%c",
                   (*c >= 0x20 && *c < 0x7f && *c != '*' && *c != '/') ? *c : '?');
    }
    first = 0;
  }
  if (first) buf_puts(b, "anyone (an empty policy)");
}

/* Said once per header rather than at each method. */
static const char usage_comment[] =
    "\n"
    "/* For each method M of service S (P__: the package, lower-case, with \".\"\n"
    " * as \"__\"; absent if the file has no package):\n"
    " *\n"
    " * P__S_M_call(client, request, &reply, options, result)\n"
    " *   blocking call (ackrpc_client_call()); returns the call's status. On OK,\n"
    " *   *ret_reply (if ret_reply is not NULL) receives the decoded reply, which\n"
    " *   the caller frees with its protoc-c free_unpacked function (named at\n"
    " *   each method below); otherwise *ret_reply is untouched. ret_result may\n"
    " *   be NULL; if not, it must be zeroed before and cleared after\n"
    " *   (ackrpc_result_clear()).\n"
    " * P__S_M_call_async(client, base, request, options, done, user)\n"
    " *   asynchronous call on `base` (ackrpc_client_call_async()): on OK, `done`\n"
    " *   runs exactly once, later, on the thread running `base`; on an error it\n"
    " *   never runs. Errors: E_INVAL (NULL done or argument), E_NOMEM.\n"
    " * P__S_M_done_fn: done(status, reply, result, user): `reply` is the decoded\n"
    " *   reply or NULL; it belongs to the library, unless the callback takes it\n"
    " *   by setting result->reply to NULL (then frees it with free_unpacked).\n"
    " */\n";

static void print_header(akrgen_buf *b, const file_model *fm) {
  banner(b, fm,
         "Typed client stubs and server handler tables for the services of this\n"
         " * file, over libackrpc; the message types are protoc-c's.");
  buf_printf(b, "#ifndef %s\n#define %s\n\n", fm->guard, fm->guard);
  buf_puts(b, "#include <stddef.h>\n#include <string.h>\n\n"
              "#include <ackrpc/ackrpc.h>\n#include <protobuf-c/protobuf-c.h>\n\n");
  buf_printf(b, "#include \"%s.pb-c.h\"\n\n", fm->stem);
  buf_printf(
      b,
      "#if !defined(ACKRPC_VERSION_MAJOR) || ACKRPC_VERSION_MAJOR != %d || "
      "ACKRPC_VERSION_MINOR != %d\n"
      "#error \"%s.ackrpc.h was generated by protoc-gen-ackrpc %s, which does not "
      "match these libackrpc headers: regenerate it with the protoc-gen-ackrpc of "
      "this libackrpc.\"\n"
      "#endif\n",
      AKRGEN_VERSION_MAJOR, AKRGEN_VERSION_MINOR, fm->stem, AKRGEN_VERSION);
  buf_printf(
      b,
      "#if !defined(PROTOBUF_C_VERSION_NUMBER) || PROTOBUF_C_VERSION_NUMBER < %d\n"
      "#error \"%s.ackrpc.h needs protobuf-c %d.%d.%d or newer.\"\n"
      "#endif\n\n",
      AKRGEN_MIN_PROTOBUF_C, fm->stem, AKRGEN_MIN_PROTOBUF_C / 1000000,
      AKRGEN_MIN_PROTOBUF_C / 1000 % 1000, AKRGEN_MIN_PROTOBUF_C % 1000);
  buf_puts(b, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n");
  if (fm->n_services) buf_puts(b, usage_comment);
  if (fm->n_services == 0) buf_puts(b, "\n/* This file declares no services. */\n");

  for (size_t s = 0; s < fm->n_services; s++) {
    const service_model *sm = &fm->services[s];
    const char *P = sm->prefix;
    buf_printf(b, "\n/* --- service %s --- */\n\n", sm->full_name);
    buf_puts(b,
             "/* What the wire and reflection know of each method: its full name and\n"
             " * the protoc-c descriptors of its request and reply. */\n");
    for (size_t m = 0; m < sm->n_methods; m++)
      buf_printf(b, "extern const ackrpc_method %s_method;\n", sm->methods[m].prefix);
    buf_printf(b,
               "/* The same, in .proto order, and the service that lists them. */\n"
               "extern const ackrpc_method %s_methods[%zu];\n"
               "extern const ackrpc_service %s_service;\n\n",
               P, sm->n_methods, P);

    buf_printf(
        b,
        "/* The server side: one handler per method. A handler gets the decoded\n"
        " * request (owned by the call, valid until the call is answered) and must\n"
        " * answer the call once, with ackrpc_call_reply(), now or later. A NULL\n"
        " * handler answers UNIMPLEMENTED. */\n"
        "typedef struct %s_handlers {\n",
        P);
    for (size_t m = 0; m < sm->n_methods; m++) {
      const method_model *mm = &sm->methods[m];
      buf_printf(b,
                 "  /* rpc %s(%s) returns (%s) */\n"
                 "  void (*%s)(ackrpc_call *call, const %s *request, void *user);\n",
                 mm->name, mm->req_proto, mm->rep_proto, mm->member, mm->req_type);
    }
    buf_printf(b, "} %s_handlers;\n\n", P);
    buf_printf(
        b,
        "/* Registers the service's methods on `server` (before its loop runs),\n"
        " * with `handlers` (copied) and `user` (passed to every handler), and\n"
        " * installs the caller policies the .proto declares. The server frees the\n"
        " * copy when it is freed. On error some methods may already be registered:\n"
        " * free the server. Errors: those of ackrpc_server_add_method() and\n"
        " * ackrpc_server_set_method_policy() (NOT_FOUND: a group name of a policy\n"
        " * is unknown), E_INVAL (NULL argument), E_NOMEM. */\n"
        "ackrpc_status %s_register(ackrpc_server *server, const %s_handlers "
        "*handlers,\n"
        "    void *user);\n",
        P, P);

    for (size_t m = 0; m < sm->n_methods; m++) {
      const method_model *mm = &sm->methods[m];
      buf_printf(b, "\n/* rpc %s(%s) returns (%s)", mm->name, mm->req_proto,
                 mm->rep_proto);
      if (mm->policy) {
        buf_puts(b, "\n * ");
        print_policy_comment(b, mm->policy);
      }
      buf_printf(b, "\n * reply freed with %s(reply, NULL) */\n", mm->rep_free);
      buf_printf(
          b,
          "static inline ackrpc_status %s_call(ackrpc_client *client,\n"
          "    const %s *request, %s **ret_reply,\n"
          "    const ackrpc_call_options *options, ackrpc_result *ret_result) {\n"
          "  ackrpc_result local;\n"
          "  ackrpc_result *result = ret_result != NULL ? ret_result : &local;\n"
          "  ackrpc_status status;\n"
          "  if (result == &local) memset(&local, 0, sizeof local);\n"
          "  status = ackrpc_client_call(client, &%s_method,\n"
          "      (const ProtobufCMessage *)request, options, result);\n"
          "  if (status == ACKRPC_OK && ret_reply != NULL) {\n"
          "    *ret_reply = (%s *)result->reply;\n"
          "    result->reply = NULL;\n"
          "  }\n"
          "  if (result == &local) ackrpc_result_clear(&local);\n"
          "  return status;\n"
          "}\n\n",
          mm->prefix, mm->req_type, mm->rep_type, mm->prefix, mm->rep_type);
      buf_printf(b,
                 "typedef void (*%s_done_fn)(ackrpc_status status, %s *reply,\n"
                 "    ackrpc_result *result, void *user);\n\n",
                 mm->prefix, mm->rep_type);
      buf_printf(
          b,
          "ackrpc_status %s_call_async(ackrpc_client *client,\n"
          "    struct event_base *base, const %s *request,\n"
          "    const ackrpc_call_options *options, %s_done_fn done, void *user);\n",
          mm->prefix, mm->req_type, mm->prefix);
    }
  }
  buf_printf(b, "\n#ifdef __cplusplus\n}\n#endif\n\n#endif /* %s */\n", fm->guard);
}

static void print_method_init(akrgen_buf *b, const method_model *mm) {
  buf_puts(b, "{\"");
  buf_c_string(b, mm->full_name);
  buf_printf(b, "\", &%s, &%s}", mm->req_desc, mm->rep_desc);
}

static void print_id_array(akrgen_buf *b, const char *type, const char *name,
                           const uint32_t *v, size_t n) {
  buf_printf(b, "static const %s %s[%zu] = {", type, name, n);
  for (size_t i = 0; i < n; i++)
    buf_printf(b, "%s%uu", i ? ", " : "", (unsigned)v[i]);
  buf_puts(b, "};\n");
}

static void print_policies(akrgen_buf *b, const file_model *fm) {
  if (!fm->n_policies) return;
  buf_puts(b, "\n/* Caller policies declared with ackrpc/options.proto. */\n");
  for (size_t i = 0; i < fm->n_policies; i++) {
    const Policy *p = fm->policies[i];
    char name[64];
    if (p->n_uids) {
      snprintf(name, sizeof name, "akrgen_policy_%zu_uids", i);
      print_id_array(b, "uid_t", name, p->uids, p->n_uids);
    }
    if (p->n_gids) {
      snprintf(name, sizeof name, "akrgen_policy_%zu_gids", i);
      print_id_array(b, "gid_t", name, p->gids, p->n_gids);
    }
    if (p->n_groups) {
      buf_printf(b, "static const char *const akrgen_policy_%zu_groups[%zu] = {", i,
                 p->n_groups);
      for (size_t g = 0; g < p->n_groups; g++) {
        buf_puts(b, g ? ", \"" : "\"");
        buf_c_string(b, p->groups[g] ? p->groups[g] : "");
        buf_puts(b, "\"");
      }
      buf_puts(b, "};\n");
    }
    buf_printf(b, "/* ");
    print_policy_comment(b, p);
    buf_printf(b, " */\nstatic const ackrpc_policy akrgen_policy_%zu = {\n", i);
    buf_printf(b, "    .same_uid = %d,\n", p->same_uid ? 1 : 0);
    if (p->n_uids)
      buf_printf(b, "    .uids = akrgen_policy_%zu_uids,\n    .n_uids = %zu,\n", i,
                 p->n_uids);
    if (p->n_gids)
      buf_printf(b, "    .gids = akrgen_policy_%zu_gids,\n    .n_gids = %zu,\n", i,
                 p->n_gids);
    if (p->n_groups)
      buf_printf(b,
                 "    .group_names = akrgen_policy_%zu_groups,\n"
                 "    .n_group_names = %zu,\n",
                 i, p->n_groups);
    buf_puts(b, "};\n");
  }
}

/* The descriptors of collect_descriptors(), as C arrays. */
static void print_descriptors(akrgen_buf *b, const file_model *fm) {
  buf_puts(b, "\n/* What reflection serves for the services of this file: the\n"
              " * serialized google.protobuf.FileDescriptorProto of this file and of\n"
              " * every file it imports, transitively, dependencies first, without\n"
              " * source code info (ackrpc_service.files). */\n");
  for (size_t i = 0; i < fm->n_descs; i++) {
    buf_printf(b, "static const uint8_t akrgen_file_%zu[%zu] = {", i,
               fm->desc_len[i] ? fm->desc_len[i] : 1);
    for (size_t j = 0; j < fm->desc_len[i]; j++)
      buf_printf(b, "%s0x%02x,", j % 16 ? "" : "\n    ", fm->desc_data[i][j]);
    if (!fm->desc_len[i]) buf_puts(b, "0");
    buf_puts(b, "\n};\n");
  }
  buf_printf(b, "static const ackrpc_file_descriptor akrgen_files[%zu] = {\n",
             fm->n_descs);
  for (size_t i = 0; i < fm->n_descs; i++) {
    buf_puts(b, "    {\"");
    buf_c_string(b, fm->desc_names[i]);
    buf_printf(b, "\", akrgen_file_%zu, %zu},\n", i, fm->desc_len[i]);
  }
  buf_puts(b, "};\n");
}

static void print_source(akrgen_buf *b, const file_model *fm) {
  banner(b, fm, "Method tables, handler registration and asynchronous stubs.");
  buf_puts(b, "#include <stdio.h>\n#include <stdlib.h>\n\n");
  buf_printf(b, "#include \"%s.ackrpc.h\"\n", fm->stem);
  if (fm->n_services == 0) {
    buf_puts(b, "\n/* This file declares no services. */\n");
    return;
  }
  print_policies(b, fm);
  print_descriptors(b, fm);
  buf_puts(b, "\n/* The handler of a method whose handler is NULL. */\n"
              "static void akrgen_unimplemented(ackrpc_call *call,\n"
              "    const ProtobufCMessage *request, void *user) {\n"
              "  char message[ACKRPC_MAX_METHOD_NAME + 64];\n"
              "  (void)request;\n"
              "  (void)user;\n"
              "  snprintf(message, sizeof message,\n"
              "      \"method %s is not implemented by this server\",\n"
              "      ackrpc_call_method(call));\n"
              "  ackrpc_call_reply(call, ACKRPC_UNIMPLEMENTED, message, NULL);\n"
              "}\n");

  for (size_t s = 0; s < fm->n_services; s++) {
    const service_model *sm = &fm->services[s];
    const char *P = sm->prefix;
    buf_printf(b, "\n/* --- service %s --- */\n\n", sm->full_name);
    for (size_t m = 0; m < sm->n_methods; m++) {
      buf_printf(b, "const ackrpc_method %s_method = ", sm->methods[m].prefix);
      print_method_init(b, &sm->methods[m]);
      buf_puts(b, ";\n");
    }
    buf_printf(b, "\nconst ackrpc_method %s_methods[%zu] = {\n", P, sm->n_methods);
    for (size_t m = 0; m < sm->n_methods; m++) {
      buf_puts(b, "    ");
      print_method_init(b, &sm->methods[m]);
      buf_puts(b, ",\n");
    }
    buf_puts(b, "};\n\n");
    buf_printf(b, "const ackrpc_service %s_service = {\"", P);
    buf_c_string(b, sm->full_name);
    buf_printf(b, "\", %s_methods, %zu, akrgen_files, %zu};\n\n", P, sm->n_methods,
               fm->n_descs);

    buf_printf(b,
               "/* What %s_register() gives the server: the handlers and the\n"
               " * user pointer, freed with the server. */\n"
               "typedef struct akrgen_binding_%zu {\n"
               "  %s_handlers handlers;\n"
               "  void *user;\n"
               "} akrgen_binding_%zu;\n",
               P, s, P, s);
    for (size_t m = 0; m < sm->n_methods; m++) {
      const method_model *mm = &sm->methods[m];
      buf_printf(
          b,
          "\nstatic void akrgen_handle_%zu_%zu(ackrpc_call *call,\n"
          "    const ProtobufCMessage *request, void *user) {\n"
          "  const akrgen_binding_%zu *binding = (const akrgen_binding_%zu *)user;\n"
          "  binding->handlers.%s(call, (const %s *)request, binding->user);\n"
          "}\n",
          s, m, s, s, mm->member, mm->req_type);
    }
    buf_printf(
        b,
        "\nackrpc_status %s_register(ackrpc_server *server, const %s_handlers "
        "*handlers,\n"
        "    void *user) {\n"
        "  akrgen_binding_%zu *binding;\n"
        "  ackrpc_status status;\n"
        "  if (server == NULL || handlers == NULL) return ACKRPC_E_INVAL;\n"
        "  binding = (akrgen_binding_%zu *)malloc(sizeof *binding);\n"
        "  if (binding == NULL) return ACKRPC_E_NOMEM;\n"
        "  binding->handlers = *handlers;\n"
        "  binding->user = user;\n"
        "  /* First, so that the binding goes with the server whatever happens. */\n"
        "  status = ackrpc_server_add_cleanup(server, free, binding);\n"
        "  if (status != ACKRPC_OK) {\n"
        "    free(binding);\n"
        "    return status;\n"
        "  }\n"
        "  /* For reflection: the service, its methods and its descriptors. */\n"
        "  status = ackrpc_server_add_service_info(server, &%s_service);\n"
        "  if (status != ACKRPC_OK) return status;\n",
        P, P, s, s, P);
    for (size_t m = 0; m < sm->n_methods; m++) {
      const method_model *mm = &sm->methods[m];
      buf_printf(
          b,
          "  status = ackrpc_server_add_method(server, &%s_method,\n"
          "      handlers->%s != NULL ? akrgen_handle_%zu_%zu : akrgen_unimplemented,\n"
          "      binding);\n"
          "  if (status != ACKRPC_OK) return status;\n",
          mm->prefix, mm->member, s, m);
      if (mm->policy_index >= 0)
        buf_printf(
            b,
            "  status = ackrpc_server_set_method_policy(server, %s_method.name,\n"
            "      &akrgen_policy_%d);\n"
            "  if (status != ACKRPC_OK) return status;\n",
            mm->prefix, mm->policy_index);
    }
    buf_puts(b, "  return ACKRPC_OK;\n}\n");

    for (size_t m = 0; m < sm->n_methods; m++) {
      const method_model *mm = &sm->methods[m];
      buf_printf(
          b,
          "\ntypedef struct akrgen_async_%zu_%zu {\n"
          "  %s_done_fn done;\n"
          "  void *user;\n"
          "} akrgen_async_%zu_%zu;\n\n"
          "static void akrgen_async_done_%zu_%zu(ackrpc_result *result, void *arg) {\n"
          "  akrgen_async_%zu_%zu async = *(akrgen_async_%zu_%zu *)arg;\n"
          "  free(arg);\n"
          "  async.done(result->status, (%s *)result->reply, result, async.user);\n"
          "}\n\n"
          "ackrpc_status %s_call_async(ackrpc_client *client,\n"
          "    struct event_base *base, const %s *request,\n"
          "    const ackrpc_call_options *options, %s_done_fn done, void *user) {\n"
          "  akrgen_async_%zu_%zu *async;\n"
          "  ackrpc_status status;\n"
          "  if (done == NULL) return ACKRPC_E_INVAL;\n"
          "  async = (akrgen_async_%zu_%zu *)malloc(sizeof *async);\n"
          "  if (async == NULL) return ACKRPC_E_NOMEM;\n"
          "  async->done = done;\n"
          "  async->user = user;\n"
          "  status = ackrpc_client_call_async(client, base, &%s_method,\n"
          "      (const ProtobufCMessage *)request, options,\n"
          "      akrgen_async_done_%zu_%zu, async);\n"
          "  if (status != ACKRPC_OK) free(async);\n"
          "  return status;\n"
          "}\n",
          s, m, mm->prefix, s, m, s, m, s, m, s, m, mm->rep_type, mm->prefix,
          mm->req_type, mm->prefix, s, m, s, m, mm->prefix, s, m);
    }
  }
}

static void print_fuzz(akrgen_buf *b, const file_model *fm) {
  banner(
      b, fm,
      "A libFuzzer entry for the services of this file: each input is written\n"
      " * as the bytes of one connection to a server that has every service\n"
      " * registered, with handlers that answer a default reply, through the real\n"
      " * socket and framing code. ackrpc_generate() builds it when\n"
      " * ACKRPC_GENERATE_FUZZ is ON; libFuzzer (or a replay main) supplies main().");
  buf_puts(b, "#ifndef _GNU_SOURCE\n#define _GNU_SOURCE 1\n#endif\n\n"
              "#include <errno.h>\n#include <fcntl.h>\n#include <stdint.h>\n"
              "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
              "#include <sys/socket.h>\n#include <sys/un.h>\n#include <unistd.h>\n\n"
              "#include <event2/event.h>\n\n");
  buf_printf(b, "#include \"%s.ackrpc.h\"\n\n", fm->stem);
  buf_puts(b, "int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);\n");

  for (size_t s = 0; s < fm->n_services; s++) {
    const service_model *sm = &fm->services[s];
    for (size_t m = 0; m < sm->n_methods; m++) {
      const method_model *mm = &sm->methods[m];
      buf_printf(
          b,
          "\n/* %s: walks the decoded request, answers a default reply. */\n"
          "static void akrgen_fuzz_%zu_%zu(ackrpc_call *call, const %s *request,\n"
          "    void *user) {\n"
          "  %s reply;\n"
          "  (void)user;\n"
          "  (void)protobuf_c_message_get_packed_size(\n"
          "      (const ProtobufCMessage *)request);\n"
          "  protobuf_c_message_init(&%s, &reply);\n"
          "  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);\n"
          "}\n",
          mm->full_name, s, m, mm->req_type, mm->rep_type, mm->rep_desc);
    }
  }

  buf_puts(
      b, "\n/* The server, created once per process on an abstract address. */\n"
         "static ackrpc_server *akrgen_fuzz_server;\n"
         "static struct sockaddr_un akrgen_fuzz_addr;\n"
         "static socklen_t akrgen_fuzz_addr_len;\n\n"
         "static void akrgen_fuzz_setup(void) {\n"
         "  char address[64];\n"
         "  ackrpc_server_options options;\n"
         "  memset(&options, 0, sizeof options);\n"
         "  snprintf(address, sizeof address, \"@ackrpc-fuzz-%ld\", (long)getpid());\n"
         "  options.address = address;\n"
         "  options.read_timeout_ms = 2000;\n"
         "  options.log = ackrpc_log_discard;\n"
         "  if (ackrpc_server_new(&options, &akrgen_fuzz_server) != ACKRPC_OK) "
         "abort();\n");
  for (size_t s = 0; s < fm->n_services; s++) {
    const service_model *sm = &fm->services[s];
    buf_printf(b, "  {\n    %s_handlers h;\n    memset(&h, 0, sizeof h);\n",
               sm->prefix);
    for (size_t m = 0; m < sm->n_methods; m++)
      buf_printf(b, "    h.%s = akrgen_fuzz_%zu_%zu;\n", sm->methods[m].member, s, m);
    buf_printf(
        b,
        "    if (%s_register(akrgen_fuzz_server, &h, NULL) != ACKRPC_OK) abort();\n"
        "  }\n",
        sm->prefix);
  }
  buf_puts(
      b,
      "  memset(&akrgen_fuzz_addr, 0, sizeof akrgen_fuzz_addr);\n"
      "  akrgen_fuzz_addr.sun_family = AF_UNIX;\n"
      "  memcpy(akrgen_fuzz_addr.sun_path + 1, address + 1, strlen(address) - 1);\n"
      "  akrgen_fuzz_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +\n"
      "                                     strlen(address));\n"
      "}\n\n"
      "/* One connection: the client end is driven by events on the server's loop,\n"
      " * so one thread runs both ends. */\n"
      "typedef struct akrgen_fuzz_conn {\n"
      "  int fd;\n"
      "  const uint8_t *data;\n"
      "  size_t size, sent;\n"
      "  int closed;\n"
      "  struct event *ev;\n"
      "} akrgen_fuzz_conn;\n\n"
      "static void akrgen_fuzz_io(evutil_socket_t fd, short what, void *arg) {\n"
      "  akrgen_fuzz_conn *c = (akrgen_fuzz_conn *)arg;\n"
      "  if (what & EV_WRITE) {\n"
      "    while (c->sent < c->size) {\n"
      "      ssize_t n = send(fd, c->data + c->sent, c->size - c->sent, "
      "MSG_NOSIGNAL);\n"
      "      if (n > 0) {\n"
      "        c->sent += (size_t)n;\n"
      "      } else if (n < 0 && errno == EAGAIN) {\n"
      "        return;\n"
      "      } else {\n"
      "        break; /* the server closed first (it may refuse early) */\n"
      "      }\n"
      "    }\n"
      "    shutdown(fd, SHUT_WR);\n"
      "    event_del(c->ev);\n"
      "    event_assign(c->ev, event_get_base(c->ev), fd, EV_READ | EV_PERSIST,\n"
      "                 akrgen_fuzz_io, c);\n"
      "    event_add(c->ev, NULL);\n"
      "    return;\n"
      "  }\n"
      "  for (;;) {\n"
      "    char sink[4096];\n"
      "    ssize_t n = recv(fd, sink, sizeof sink, 0);\n"
      "    if (n > 0) continue;\n"
      "    if (n < 0 && errno == EAGAIN) return;\n"
      "    c->closed = 1; /* EOF or error: the call is over */\n"
      "    event_del(c->ev);\n"
      "    event_base_loopbreak(event_get_base(c->ev));\n"
      "    return;\n"
      "  }\n"
      "}\n\n"
      "int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {\n"
      "  akrgen_fuzz_conn c;\n"
      "  struct event_base *base;\n"
      "  if (akrgen_fuzz_server == NULL) akrgen_fuzz_setup();\n"
      "  base = ackrpc_server_base(akrgen_fuzz_server);\n"
      "  memset(&c, 0, sizeof c);\n"
      "  c.data = data;\n"
      "  c.size = size;\n"
      "  c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);\n"
      "  if (c.fd < 0) abort();\n"
      "  /* The listening socket has a backlog: connect() completes at once. */\n"
      "  if (connect(c.fd, (const struct sockaddr *)&akrgen_fuzz_addr,\n"
      "              akrgen_fuzz_addr_len) != 0)\n"
      "    abort();\n"
      "  c.ev = event_new(base, c.fd, EV_WRITE | EV_PERSIST, akrgen_fuzz_io, &c);\n"
      "  if (c.ev == NULL || event_add(c.ev, NULL) != 0) abort();\n"
      "  while (!c.closed)\n"
      "    if (event_base_loop(base, EVLOOP_ONCE) < 0) abort();\n"
      "  event_free(c.ev);\n"
      "  close(c.fd);\n"
      "  return 0;\n"
      "}\n");
}

/* --- Entry point --- */

static void add_file(akrgen_output *out, char *name, char *content) {
  out->files = xrealloc(out->files, (out->n_files + 1) * sizeof *out->files);
  out->files[out->n_files].name = name;
  out->files[out->n_files].content = content;
  out->n_files++;
}

static int parse_parameter(context *cx, const char *param) {
  const char *p = param ? param : "";
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (n == 4 && strncmp(p, "fuzz", 4) == 0) {
      cx->fuzz = 1;
    } else if (n) {
      if (cx->errors.len) buf_puts(&cx->errors, "\n");
      buf_printf(&cx->errors,
                 "protoc-gen-ackrpc: error: unknown parameter '%.*s' (known: fuzz)",
                 (int)n, p);
      return -1;
    }
    p += n + (comma ? 1 : 0);
  }
  return 0;
}

void akrgen_generate(const Akrgen__Plugin__CodeGeneratorRequest *request,
                     akrgen_output *ret) {
  context cx = {request, {0}, 0};
  akrgen_output out = {0};
  if (parse_parameter(&cx, request->parameter) == 0) {
    for (size_t i = 0; i < request->n_file_to_generate; i++) {
      const char *name = request->file_to_generate[i];
      file_model fm;
      if (!name) continue;
      if (build_file(&cx, &fm, name) == 0 && !cx.errors.len) {
        akrgen_buf h = {0}, c = {0};
        print_header(&h, &fm);
        print_source(&c, &fm);
        add_file(&out, xasprintf("%s.ackrpc.h", fm.stem), buf_take(&h));
        add_file(&out, xasprintf("%s.ackrpc.c", fm.stem), buf_take(&c));
        if (cx.fuzz) {
          akrgen_buf z = {0};
          print_fuzz(&z, &fm);
          add_file(&out, xasprintf("%s.ackrpc-fuzz.c", fm.stem), buf_take(&z));
        }
      }
      free_file(&fm);
    }
  }
  if (cx.errors.len) {
    akrgen_output_free(&out);
    out.error = buf_take(&cx.errors);
  }
  *ret = out;
}

void akrgen_output_free(akrgen_output *output) {
  for (size_t i = 0; i < output->n_files; i++) {
    free(output->files[i].name);
    free(output->files[i].content);
  }
  free(output->files);
  free(output->error);
  memset(output, 0, sizeof *output);
}
