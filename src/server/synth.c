/* synth.c: FileDescriptorProtos made from protobuf-c descriptors (synth.h).
 *
 * What protobuf-c's descriptors tell, and so what the files say: names,
 * numbers, types, labels (a file is proto3 when one of its fields has no
 * label, else proto2; a proto3 scalar with presence is `optional`), oneofs
 * (named oneof_<n>: protobuf-c keeps no oneof names), packing, map entries
 * (a nested "...Entry" type of fields key = 1 and value = 2), enum values.
 * Not told, so not said: proto2 default values, options other than packing,
 * comments. A type nested in a message that no method reaches is put in an
 * empty message of that name. The descriptor.proto field numbers are
 * written here as constants. */
#include "server/synth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#define MAX_TYPES 512

struct akr_synth {
  ackrpc_service *services;
  size_t n_services;
  ackrpc_file_descriptor *files;
  size_t n_files;
  size_t n_real;  /* files[0..n_real): recorded services' own, imported */
  char **strings; /* owned: names and file bytes */
  size_t n_strings;
};

/* --- protobuf encoding -------------------------------------------------- */

typedef struct buf {
  uint8_t *p;
  size_t n, cap;
  int failed;
} buf;

static void put(buf *b, const void *d, size_t n) {
  if (b->failed) return;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + n)
      cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
      b->failed = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void put_varint(buf *b, uint64_t v) {
  uint8_t t[10];
  size_t n = 0;
  do {
    t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  put(b, t, n);
}

static void put_int(buf *b, unsigned field, uint64_t v) {
  put_varint(b, (uint64_t)field << 3);
  put_varint(b, v);
}

static void put_len(buf *b, unsigned field, const void *d, size_t n) {
  put_varint(b, (uint64_t)field << 3 | 2);
  put_varint(b, n);
  put(b, d, n);
}

static void put_str(buf *b, unsigned field, const char *s) {
  put_len(b, field, s, strlen(s));
}

/* Appends `sub` as field `field` and frees it. */
static void put_sub(buf *b, unsigned field, buf *sub) {
  if (sub->failed) b->failed = 1;
  put_len(b, field, sub->p, sub->n);
  free(sub->p);
  *sub = (buf){0};
}

/* Appends ".name" as field `field`. */
static void put_type_name(buf *b, unsigned field, const char *name) {
  size_t n = strlen(name);
  put_varint(b, (uint64_t)field << 3 | 2);
  put_varint(b, n + 1);
  put(b, ".", 1);
  put(b, name, n);
}

/* --- the types reachable from the methods ------------------------------- */

typedef struct node {
  const char *name;    /* full name */
  const char *package; /* protobuf-c's package_name */
  const ProtobufCMessageDescriptor *msg;
  const ProtobufCEnumDescriptor *en; /* neither: an empty enclosing message */
  const ackrpc_service *svc;         /* for a known type: a service serving it */
} node;

typedef struct types {
  node v[MAX_TYPES];
  size_t n;
  int full;
  akr_synth *owner; /* keeps the enclosing messages' names */
} types;

static int find_type(const types *t, const char *name) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i].name, name) == 0) return (int)i;
  return -1;
}

static int add_type(types *t, node nd) {
  if (find_type(t, nd.name) >= 0) return 0;
  if (t->n == MAX_TYPES) {
    t->full = 1;
    return 0;
  }
  t->v[t->n++] = nd;
  return 1;
}

static const char *pkg_of(const char *p) {
  return p ? p : "";
}

/* Adds `d` and the types reachable from it to `t`, except those in `known`
 * (served with a recorded service's real files), which it notes in `used`. */
static void walk(types *t, types *known, types *used,
                 const ProtobufCMessageDescriptor *d, const ackrpc_service *svc) {
  if (!d) return;
  if (known) {
    int k = find_type(known, d->name);
    if (k >= 0) {
      add_type(used, known->v[k]);
      return;
    }
  }
  if (!add_type(t, (node){d->name, pkg_of(d->package_name), d, NULL, svc})) return;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) walk(t, known, used, f->descriptor, svc);
    if (f->type == PROTOBUF_C_TYPE_ENUM && f->descriptor) {
      const ProtobufCEnumDescriptor *e = f->descriptor;
      int k = known ? find_type(known, e->name) : -1;
      if (k >= 0)
        add_type(used, known->v[k]);
      else
        add_type(t, (node){e->name, pkg_of(e->package_name), NULL, e, svc});
    }
  }
}

static char *keep(akr_synth *s, char *str) {
  if (!str) return NULL;
  char **v = realloc(s->strings, (s->n_strings + 1) * sizeof *v);
  if (!v) {
    free(str);
    return NULL;
  }
  s->strings = v;
  v[s->n_strings++] = str;
  return str;
}

static char *dup_n(akr_synth *s, const char *p, size_t n) {
  char *c = malloc(n + 1);
  if (c) {
    memcpy(c, p, n);
    c[n] = 0;
  }
  return keep(s, c);
}

/* The length of the name of the type enclosing `name` within its package
 * (0: none, a top-level type). */
static size_t parent_len(const node *nd) {
  size_t pl = strlen(nd->package);
  const char *rest = nd->name + (pl ? pl + 1 : 0);
  const char *dot = strrchr(rest, '.');
  return dot ? (size_t)(dot - nd->name) : 0;
}

/* Adds the enclosing messages no method reaches. 0 on E_NOMEM. */
static int add_parents(types *t) {
  for (size_t i = 0; i < t->n; i++) {
    size_t len = parent_len(&t->v[i]);
    if (!len) continue;
    char *name = dup_n(t->owner, t->v[i].name, len);
    if (!name) return 0;
    add_type(t, (node){name, t->v[i].package, NULL, NULL, NULL});
  }
  return 1;
}

static int is_child(const node *child, const char *parent) {
  size_t len = parent_len(child);
  return len && len == strlen(parent) && strncmp(child->name, parent, len) == 0;
}

static const char *short_name(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot ? dot + 1 : name;
}

/* --- encoding the types ------------------------------------------------- */

/* FieldDescriptorProto.Type by ProtobufCType. */
static const uint8_t field_type[] = {
    [PROTOBUF_C_TYPE_INT32] = 5,     [PROTOBUF_C_TYPE_SINT32] = 17,
    [PROTOBUF_C_TYPE_SFIXED32] = 15, [PROTOBUF_C_TYPE_INT64] = 3,
    [PROTOBUF_C_TYPE_SINT64] = 18,   [PROTOBUF_C_TYPE_SFIXED64] = 16,
    [PROTOBUF_C_TYPE_UINT32] = 13,   [PROTOBUF_C_TYPE_FIXED32] = 7,
    [PROTOBUF_C_TYPE_UINT64] = 4,    [PROTOBUF_C_TYPE_FIXED64] = 6,
    [PROTOBUF_C_TYPE_FLOAT] = 2,     [PROTOBUF_C_TYPE_DOUBLE] = 1,
    [PROTOBUF_C_TYPE_BOOL] = 8,      [PROTOBUF_C_TYPE_ENUM] = 14,
    [PROTOBUF_C_TYPE_STRING] = 9,    [PROTOBUF_C_TYPE_BYTES] = 12,
    [PROTOBUF_C_TYPE_MESSAGE] = 11,
};

static void enc_enum(buf *out, unsigned field, const ProtobufCEnumDescriptor *e) {
  buf b = {0};
  put_str(&b, 1, e->short_name);
  for (unsigned i = 0; i < e->n_values; i++) {
    buf v = {0};
    put_str(&v, 1, e->values[i].name);
    put_int(&v, 2, (uint64_t)(int64_t)e->values[i].value);
    put_sub(&b, 2, &v);
  }
  put_sub(out, field, &b);
}

/* The oneof index of each field (-1: none): protobuf-c's oneof members
 * share a quantifier offset; proto3 `optional` scalars get a synthetic
 * oneof each, after the real ones. Writes the declarations into `m`. */
static void oneofs(buf *m, const ProtobufCMessageDescriptor *d, int proto3, int *idx) {
  unsigned n = 0;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    idx[i] = -1;
    if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) continue;
    for (unsigned j = 0; j < i && idx[i] < 0; j++)
      if ((d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
          d->fields[j].quantifier_offset == f->quantifier_offset)
        idx[i] = idx[j];
    if (idx[i] >= 0) continue;
    char name[24] = "oneof_";
    unsigned k = n, p = 6;
    char digits[12];
    unsigned nd = 0;
    do {
      digits[nd++] = (char)('0' + k % 10);
      k /= 10;
    } while (k);
    while (nd)
      name[p++] = digits[--nd];
    name[p] = 0;
    buf o = {0};
    put_str(&o, 1, name);
    put_sub(m, 8, &o);
    idx[i] = (int)n++;
  }
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (!proto3 || idx[i] >= 0 || f->label != PROTOBUF_C_LABEL_OPTIONAL ||
        f->type == PROTOBUF_C_TYPE_MESSAGE)
      continue;
    buf o = {0};
    put_varint(&o, 1 << 3 | 2);
    put_varint(&o, strlen(f->name) + 1);
    put(&o, "_", 1);
    put(&o, f->name, strlen(f->name));
    put_sub(m, 8, &o);
    idx[i] = (int)n++;
  }
}

static void enc_field(buf *m, const ProtobufCFieldDescriptor *f, int proto3,
                      int oneof) {
  buf b = {0};
  put_str(&b, 1, f->name);
  put_int(&b, 3, f->id);
  put_int(&b, 4,
          f->label == PROTOBUF_C_LABEL_REQUIRED   ? 2
          : f->label == PROTOBUF_C_LABEL_REPEATED ? 3
                                                  : 1);
  put_int(&b, 5, f->type < sizeof field_type ? field_type[f->type] : 0);
  if ((f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_ENUM) &&
      f->descriptor)
    put_type_name(&b, 6,
                  f->type == PROTOBUF_C_TYPE_MESSAGE
                      ? ((const ProtobufCMessageDescriptor *)f->descriptor)->name
                      : ((const ProtobufCEnumDescriptor *)f->descriptor)->name);
  if (f->label == PROTOBUF_C_LABEL_REPEATED && f->type != PROTOBUF_C_TYPE_STRING &&
      f->type != PROTOBUF_C_TYPE_BYTES && f->type != PROTOBUF_C_TYPE_MESSAGE) {
    buf o = {0};
    put_int(&o, 2, (f->flags & PROTOBUF_C_FIELD_FLAG_PACKED) != 0);
    put_sub(&b, 8, &o);
  }
  if (oneof >= 0) put_int(&b, 9, (uint64_t)oneof);
  if (proto3 && oneof >= 0 && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
    put_int(&b, 17, 1);
  put_sub(m, 2, &b);
}

static int is_map_entry(const node *nd) {
  const ProtobufCMessageDescriptor *d = nd->msg;
  size_t n = strlen(d->short_name);
  return parent_len(nd) && n > 5 && strcmp(d->short_name + n - 5, "Entry") == 0 &&
         d->n_fields == 2 && d->fields[0].id == 1 && d->fields[1].id == 2 &&
         strcmp(d->fields[0].name, "key") == 0 &&
         strcmp(d->fields[1].name, "value") == 0;
}

static void enc_message(buf *out, unsigned field, const types *t, size_t at,
                        int proto3) {
  const node *nd = &t->v[at];
  buf m = {0};
  put_str(&m, 1, short_name(nd->name));
  if (nd->msg) {
    int idx[nd->msg->n_fields ? nd->msg->n_fields : 1];
    oneofs(&m, nd->msg, proto3, idx);
    for (unsigned i = 0; i < nd->msg->n_fields; i++)
      enc_field(&m, &nd->msg->fields[i], proto3, idx[i]);
    if (is_map_entry(nd)) {
      buf o = {0};
      put_int(&o, 7, 1);
      put_sub(&m, 7, &o);
    }
  }
  for (size_t i = 0; i < t->n; i++) {
    if (!is_child(&t->v[i], nd->name)) continue;
    if (t->v[i].en)
      enc_enum(&m, 4, t->v[i].en);
    else
      enc_message(&m, 3, t, i, proto3);
  }
  put_sub(out, field, &m);
}

/* --- files and services ------------------------------------------------- */

/* The methods of one service (registered without a record). */
typedef struct group {
  const char *name; /* "package.Service" (kept) */
  size_t len;       /* of the package part */
  ackrpc_method *methods;
  size_t n;
} group;

typedef struct plan {
  types t;
  types known; /* the types recorded services serve real files for */
  types used;  /* those of them the synthesized types refer to */
  const char *pkgs[MAX_TYPES];
  size_t n_pkgs;
  group *groups;
  size_t n_groups;
} plan;

static void add_pkg(plan *pl, const char *pkg, size_t len) {
  for (size_t i = 0; i < pl->n_pkgs; i++)
    if (strlen(pl->pkgs[i]) == len && strncmp(pl->pkgs[i], pkg, len) == 0) return;
  if (pl->n_pkgs < MAX_TYPES) pl->pkgs[pl->n_pkgs++] = dup_n(pl->t.owner, pkg, len);
}

/* Whether package `a`'s types refer to a type of package `b`. */
static int pkg_uses(const plan *pl, const char *a, const char *b) {
  for (size_t i = 0; i < pl->t.n; i++) {
    const ProtobufCMessageDescriptor *d = pl->t.v[i].msg;
    if (!d || strcmp(pl->t.v[i].package, a) != 0) continue;
    for (unsigned k = 0; k < d->n_fields; k++) {
      const ProtobufCFieldDescriptor *f = &d->fields[k];
      const char *p = NULL;
      if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor)
        p = ((const ProtobufCMessageDescriptor *)f->descriptor)->package_name;
      if (f->type == PROTOBUF_C_TYPE_ENUM && f->descriptor)
        p = ((const ProtobufCEnumDescriptor *)f->descriptor)->package_name;
      if (p && strcmp(pkg_of(p), b) == 0) return 1;
    }
  }
  for (size_t g = 0; g < pl->n_groups; g++) {
    const group *gr = &pl->groups[g];
    if (strlen(a) != gr->len || strncmp(gr->name, a, gr->len) != 0) continue;
    for (size_t m = 0; m < gr->n; m++)
      if (strcmp(pkg_of(gr->methods[m].request->package_name), b) == 0 ||
          strcmp(pkg_of(gr->methods[m].reply->package_name), b) == 0)
        return 1;
  }
  return 0;
}

static char *file_name(akr_synth *s, const char *pkg) {
  size_t n = strlen(pkg);
  char *name = malloc(sizeof "ackrpc-synth/" + n + sizeof ".proto");
  if (name) {
    memcpy(name, "ackrpc-synth/", 13);
    memcpy(name + 13, n ? pkg : "_", n ? n : 1);
    strcpy(name + 13 + (n ? n : 1), ".proto");
  }
  return keep(s, name);
}

static void enc_service(buf *f, const group *g) {
  buf sv = {0};
  put_str(&sv, 1, short_name(g->name));
  for (size_t m = 0; m < g->n; m++) {
    buf md = {0};
    const char *slash = strrchr(g->methods[m].name, '/');
    put_str(&md, 1, slash + 1);
    put_type_name(&md, 2, g->methods[m].request->name);
    put_type_name(&md, 3, g->methods[m].reply->name);
    put_sub(&sv, 2, &md);
  }
  put_sub(f, 6, &sv);
}

/* One package's file into s->files[s->n_files]. 0 on E_NOMEM. */
static int enc_file(akr_synth *s, const plan *pl, const char *pkg) {
  const types *t = &pl->t;
  int proto3 = 0;
  for (size_t i = 0; i < t->n; i++)
    if (t->v[i].msg && strcmp(t->v[i].package, pkg) == 0)
      for (unsigned k = 0; k < t->v[i].msg->n_fields; k++)
        proto3 |= t->v[i].msg->fields[k].label == PROTOBUF_C_LABEL_NONE;
  char *name = file_name(s, pkg);
  if (!name) return 0;
  buf f = {0};
  put_str(&f, 1, name);
  if (*pkg) put_str(&f, 2, pkg);
  for (size_t i = 0; i < s->n_real; i++)
    put_str(&f, 3, s->files[i].name);
  for (size_t i = 0; i < pl->n_pkgs; i++) {
    if (strcmp(pl->pkgs[i], pkg) == 0 || !pkg_uses(pl, pkg, pl->pkgs[i])) continue;
    char *dep = file_name(s, pl->pkgs[i]);
    if (!dep) f.failed = 1;
    if (dep) put_str(&f, 3, dep);
  }
  for (size_t i = 0; i < t->n; i++) {
    if (strcmp(t->v[i].package, pkg) != 0 || parent_len(&t->v[i])) continue;
    if (t->v[i].en)
      enc_enum(&f, 5, t->v[i].en);
    else
      enc_message(&f, 4, t, i, proto3);
  }
  for (size_t g = 0; g < pl->n_groups; g++)
    if (pl->groups[g].len == strlen(pkg) &&
        strncmp(pl->groups[g].name, pkg, pl->groups[g].len) == 0)
      enc_service(&f, &pl->groups[g]);
  put_str(&f, 12, proto3 ? "proto3" : "proto2");
  if (f.failed || !keep(s, (char *)f.p)) {
    if (f.failed) free(f.p);
    return 0;
  }
  s->files[s->n_files++] = (ackrpc_file_descriptor){name, f.p, f.n};
  return 1;
}

/* The files, each after the files it imports (as far as imports do not go
 * round in a circle). 0 on E_NOMEM. */
static int enc_files(akr_synth *s, const plan *pl) {
  size_t max = pl->n_pkgs;
  for (size_t i = 0; i < pl->used.n; i++)
    max += pl->used.v[i].svc->n_files;
  s->files = calloc(max ? max : 1, sizeof *s->files);
  unsigned char done[MAX_TYPES] = {0};
  if (!s->files) return 0;
  /* The real files the synthesized types refer to come first. */
  for (size_t i = 0; i < pl->used.n; i++)
    for (size_t k = 0; k < pl->used.v[i].svc->n_files; k++) {
      const ackrpc_file_descriptor *f = &pl->used.v[i].svc->files[k];
      int seen = 0;
      for (size_t j = 0; j < s->n_files && !seen; j++)
        seen = strcmp(s->files[j].name, f->name) == 0;
      if (!seen) s->files[s->n_files++] = *f;
    }
  s->n_real = s->n_files;
  for (size_t round = 0; round < pl->n_pkgs; round++) {
    size_t pick = pl->n_pkgs;
    for (size_t i = 0; i < pl->n_pkgs && pick == pl->n_pkgs; i++) {
      if (done[i]) continue;
      int ready = 1;
      for (size_t j = 0; j < pl->n_pkgs && ready; j++)
        ready = done[j] || j == i || !pkg_uses(pl, pl->pkgs[i], pl->pkgs[j]);
      if (ready) pick = i;
    }
    for (size_t i = 0; i < pl->n_pkgs && pick == pl->n_pkgs; i++)
      if (!done[i]) pick = i;
    done[pick] = 1;
    if (!enc_file(s, pl, pl->pkgs[pick])) return 0;
  }
  return 1;
}

static int recorded(const akr_registry *reg, const char *method) {
  for (size_t i = 0; i < reg->n_services; i++)
    for (size_t k = 0; k < reg->services[i]->n_methods; k++)
      if (strcmp(reg->services[i]->methods[k].name, method) == 0) return 1;
  return 0;
}

/* Groups the methods no record covers by service, in registration order. */
static int make_groups(akr_synth *s, const akr_registry *reg, plan *pl) {
  for (size_t i = 0; i < reg->n_services; i++)
    for (size_t k = 0; reg->services[i]->n_files && k < reg->services[i]->n_methods;
         k++) {
      walk(&pl->known, NULL, NULL, reg->services[i]->methods[k].request,
           reg->services[i]);
      walk(&pl->known, NULL, NULL, reg->services[i]->methods[k].reply,
           reg->services[i]);
    }
  pl->groups = calloc(reg->n_methods ? reg->n_methods : 1, sizeof *pl->groups);
  if (!pl->groups) return 0;
  for (unsigned seq = 0; seq < reg->seq; seq++) {
    const akr_method_entry *e = NULL;
    for (size_t i = 0; i < reg->cap && !e; i++)
      if (reg->methods[i].m.name && reg->methods[i].seq == seq) e = &reg->methods[i];
    if (!e || recorded(reg, e->m.name)) continue;
    size_t svc_len = (size_t)(strrchr(e->m.name, '/') - e->m.name);
    group *g = NULL;
    for (size_t i = 0; i < pl->n_groups && !g; i++)
      if (strlen(pl->groups[i].name) == svc_len &&
          strncmp(pl->groups[i].name, e->m.name, svc_len) == 0)
        g = &pl->groups[i];
    if (!g) {
      g = &pl->groups[pl->n_groups++];
      g->name = dup_n(s, e->m.name, svc_len);
      if (!g->name) return 0;
      const char *dot = strrchr(g->name, '.');
      g->len = dot ? (size_t)(dot - g->name) : 0;
      g->methods = calloc(reg->n_methods, sizeof *g->methods);
      if (!keep(s, (char *)g->methods)) return 0;
    }
    g->methods[g->n++] = e->m;
    walk(&pl->t, &pl->known, &pl->used, e->m.request, NULL);
    walk(&pl->t, &pl->known, &pl->used, e->m.reply, NULL);
  }
  return !pl->t.full && !pl->known.full && !pl->used.full;
}

void akr_synth_free(akr_synth *s) {
  if (!s) return;
  for (size_t i = 0; i < s->n_strings; i++)
    free(s->strings[i]);
  free(s->strings);
  free(s->services);
  free(s->files);
  free(s);
}

/* Records the groups as services, each with all the files. */
static ackrpc_status record(akr_registry *reg, akr_synth *s, const plan *pl) {
  s->services = calloc(pl->n_groups ? pl->n_groups : 1, sizeof *s->services);
  if (!s->services) return ACKRPC_E_NOMEM;
  for (size_t g = 0; g < pl->n_groups; g++)
    s->services[s->n_services++] =
        (ackrpc_service){pl->groups[g].name, pl->groups[g].methods, pl->groups[g].n,
                         s->files, s->n_files};
  for (size_t g = 0; g < s->n_services; g++) {
    ackrpc_status st = akr_registry_add_service(reg, &s->services[g], 0);
    if (st != ACKRPC_OK) return st;
  }
  return ACKRPC_OK;
}

ackrpc_status akr_synth_services(akr_registry *reg, akr_synth **synth) {
  if (*synth) return ACKRPC_OK;
  akr_synth *s = calloc(1, sizeof *s);
  plan *pl = calloc(1, sizeof *pl);
  if (!s || !pl) {
    free(s);
    free(pl);
    return ACKRPC_E_NOMEM;
  }
  pl->t.owner = s;
  int ok = make_groups(s, reg, pl) && add_parents(&pl->t);
  for (size_t i = 0; ok && i < pl->t.n; i++)
    add_pkg(pl, pl->t.v[i].package, strlen(pl->t.v[i].package));
  for (size_t g = 0; ok && g < pl->n_groups; g++)
    add_pkg(pl, pl->groups[g].name, pl->groups[g].len);
  for (size_t i = 0; ok && i < pl->n_pkgs; i++)
    ok = pl->pkgs[i] != NULL;
  ok = ok && enc_files(s, pl);
  size_t n_before = reg->n_services;
  ackrpc_status st = ok ? record(reg, s, pl) : ACKRPC_E_NOMEM;
  free(pl->groups);
  free(pl);
  if (st != ACKRPC_OK) {
    reg->n_services = n_before; /* forget the records made */
    akr_synth_free(s);
    return st;
  }
  *synth = s;
  return ACKRPC_OK;
}
