/* names.c: protoc-c's naming, ours, and the checks on ours (names.h).
 *
 * The rules that make our names safe next to protoc-c's are in
 * docs/GENERATOR.md ("Why these names cannot clash"); each is restated
 * where it is enforced. */
#include "names.h"

#include <stdlib.h>
#include <string.h>

/* --- protoc-c's naming (protobuf-c 1.x, protoc-c/c_helpers.cc) --- */

/* ToCamel: drop each '_', upper-case the first letter and each letter after
 * a '_'. */
static void to_camel(akrgen_buf *b, const char *s, size_t n) {
  int upper = 1;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '_') {
      upper = 1;
      continue;
    }
    if (upper && c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    buf_append(b, &c, 1);
    upper = 0;
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

void akrgen_type_names(const char *full, akrgen_type *ret) {
  ret->proto = xstrdup(full[0] == '.' ? full + 1 : full);
  ret->c = map_full_name(full, to_camel);
  ret->lower = map_full_name(full, camel_to_lower);
}

char *akrgen_package_prefix(const char *package) {
  return map_full_name(package, camel_to_lower);
}

/* --- Checks on our names --- */

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

int akrgen_is_reserved(const char *s) {
  for (size_t i = 0; i < sizeof reserved_words / sizeof *reserved_words; i++)
    if (strcmp(s, reserved_words[i]) == 0) return 1;
  return 0;
}

/* Service and method names go verbatim into identifiers joined by '_'
 * ("P__S_M_call"), so a name that contains "__" or starts or ends with '_'
 * could make two different (S, M) pairs produce the same identifier, or
 * produce one in protoc-c's "x__y" space. */
const char *akrgen_bad_name(const char *s) {
  if (!is_identifier(s)) return "is not a valid C identifier";
  if (strstr(s, "__"))
    return "contains \"__\", which generated names use as a separator";
  if (s[0] == '_' || s[strlen(s) - 1] == '_')
    return "starts or ends with '_', which would make \"__\" in generated names";
  return NULL;
}

/* protoc-c's FilenameIdentifier: alphanumerics kept, anything else as
 * "_<hex>", so distinct paths give distinct guards. */
char *akrgen_guard(const char *proto_name) {
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

/* --- Collisions: (A_B, C) and (A, B_C) both give A_B_C_call --- */

/* The suffixes of every name emitted per service and per method (types,
 * functions, objects and macros alike). */
static const char *const service_suffixes[] = {"_handlers", "_register", "_service",
                                               "_methods"};
static const char *const method_suffixes[] = {"_method", "_call", "_call_async",
                                              "_done_fn"};
#define N_SUFFIXES 4

/* A generated name and the service (and method, or NULL) it belongs to. */
typedef struct owner {
  char *name;
  const akrgen_service *service;
  const akrgen_method *method;
} owner;

static int compare_owners(const void *a, const void *b) {
  const owner *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c) return c;
  /* Stable for equal names: by position in the file. */
  if (x->service != y->service) return x->service < y->service ? -1 : 1;
  if (x->method == y->method) return 0;
  if (!x->method || !y->method) return x->method ? 1 : -1;
  return x->method < y->method ? -1 : 1;
}

static size_t collect_names(const akrgen_model *m, owner **ret) {
  size_t n = 0;
  for (size_t s = 0; s < m->n_services; s++)
    n += N_SUFFIXES * (1 + m->services[s].n_methods);
  owner *o = xmalloc((n ? n : 1) * sizeof *o);
  size_t k = 0;
  for (size_t s = 0; s < m->n_services; s++) {
    const akrgen_service *sv = &m->services[s];
    for (size_t i = 0; i < N_SUFFIXES; i++)
      o[k++] = (owner){xasprintf("%s%s", sv->prefix, service_suffixes[i]), sv, NULL};
    for (size_t j = 0; j < sv->n_methods; j++) {
      const akrgen_method *me = &sv->methods[j];
      for (size_t i = 0; i < N_SUFFIXES; i++)
        o[k++] = (owner){xasprintf("%s%s", me->prefix, method_suffixes[i]), sv, me};
    }
  }
  qsort(o, n, sizeof *o, compare_owners);
  *ret = o;
  return n;
}

static akrgen_loc owner_loc(const owner *o) {
  return o->method ? o->method->loc : o->service->loc;
}

/* Reports the collision of `a` and `b` at the later of the two. */
static void report(const akrgen_model *m, const owner *a, const owner *b,
                   akrgen_buf *errors) {
  akrgen_loc la = owner_loc(a), lb = owner_loc(b);
  if (lb.line < la.line || (lb.line == la.line && lb.col < la.col)) {
    const owner *t = a;
    a = b;
    b = t;
  }
  akrgen_buf who = {0};
  buf_printf(&who, "service %s", a->service->name);
  if (a->method) buf_printf(&who, " method %s", a->method->name);
  if (b->method)
    akrgen_error(errors, m->proto_name, owner_loc(b),
                 "service %s method %s: generated name '%s' is also generated for %s; "
                 "rename one of them",
                 b->service->name, b->method->name, b->name, who.data);
  else
    akrgen_error(errors, m->proto_name, owner_loc(b),
                 "service %s: generated name '%s' is also generated for %s; rename one "
                 "of them",
                 b->service->name, b->name, who.data);
  buf_free(&who);
}

static int same_owners(const owner *a, const owner *b, const owner *c, const owner *d) {
  return a->service == c->service && a->method == c->method &&
         b->service == d->service && b->method == d->method;
}

void akrgen_check_collisions(const akrgen_model *m, akrgen_buf *errors) {
  owner *o;
  size_t n = collect_names(m, &o);
  /* One error per colliding pair of owners, at its first name in order:
   * `seen` holds the index of the first of each reported pair. */
  size_t *seen = xmalloc((n ? n : 1) * sizeof *seen), n_seen = 0;
  for (size_t i = 1; i < n; i++) {
    if (strcmp(o[i - 1].name, o[i].name) != 0) continue;
    int again = 0;
    for (size_t r = 0; r < n_seen && !again; r++)
      again = same_owners(&o[seen[r]], &o[seen[r] + 1], &o[i - 1], &o[i]);
    if (again) continue;
    seen[n_seen++] = i - 1;
    report(m, &o[i - 1], &o[i], errors);
  }
  free(seen);
  for (size_t i = 0; i < n; i++)
    free(o[i].name);
  free(o);
}
