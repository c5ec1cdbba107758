/* descpool.c: the descriptor pool (descpool.h): decoding FileDescriptorSets
 * with protobuf-c, indexing their types by full name and resolving each
 * field's type once, so that the codec never searches by name. */
#include "descpool.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem/budget.h"
#include "wire/depth.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* "a" + "." + "b", or "b" when a is empty. NULL on allocation failure. */
static char *join_name(const char *prefix, const char *name) {
  size_t a = prefix ? strlen(prefix) : 0, b = strlen(name);
  char *s = malloc(a + b + 2);
  if (!s) return NULL;
  if (a) {
    memcpy(s, prefix, a);
    s[a++] = '.';
  }
  memcpy(s + a, name, b + 1);
  return s;
}

static const char *strip_dot(const char *name) {
  return name && name[0] == '.' ? name + 1 : name;
}

/* --- Limits on decoding: a set may come from a server (reflection) --- */

/* Decodes a FileDescriptorSet within the limits of descpool.h. */
static Google__Protobuf__FileDescriptorSet *decode_set(const uint8_t *data, size_t len,
                                                       char *err, size_t errlen) {
  /* protobuf-c recurses once per level without a limit: the nesting is
   * checked first, without allocating (src/wire/depth.c, shared with the
   * library). */
  if (akr_check_depth(&google__protobuf__file_descriptor_set__descriptor, data, len,
                      AKRCLI_MAX_DESCRIPTOR_DEPTH) != 0) {
    set_err(err, errlen, "descriptors nested deeper than %u levels",
            AKRCLI_MAX_DESCRIPTOR_DEPTH);
    return NULL;
  }
  akr_budget b;
  akr_budget_init(&b, AKRCLI_DESCRIPTOR_DECODE_BUDGET(len));
  Google__Protobuf__FileDescriptorSet *set =
      google__protobuf__file_descriptor_set__unpack(&b.pc, len, data);
  if (!set)
    set_err(err, errlen, "%s",
            b.refused ? "descriptors that need too much memory to decode"
                      : "not a serialized google.protobuf.FileDescriptorSet");
  return set;
}

int akrcli_pool_add_set(akrcli_pool *pool, const uint8_t *data, size_t len, char *err,
                        size_t errlen) {
  if (pool->built) {
    set_err(err, errlen, "internal: descriptor pool already built");
    return -1;
  }
  if (len > AKRCLI_MAX_DESCRIPTOR_SET) {
    set_err(err, errlen, "descriptor set larger than %u bytes",
            (unsigned)AKRCLI_MAX_DESCRIPTOR_SET);
    return -1;
  }
  if (pool->n_sets >= AKRCLI_MAX_POOL_SETS) {
    set_err(err, errlen, "more than %d descriptor sets", AKRCLI_MAX_POOL_SETS);
    return -1;
  }
  Google__Protobuf__FileDescriptorSet *set = decode_set(data, len, err, errlen);
  if (!set) return -1;
  Google__Protobuf__FileDescriptorSet **sets =
      realloc(pool->sets, (pool->n_sets + 1) * sizeof *sets);
  const akrcli_file_proto **files =
      sets ? realloc(pool->files, (pool->n_files + set->n_file) * sizeof *files) : NULL;
  if (sets) pool->sets = sets;
  if (!files) {
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    set_err(err, errlen, "out of memory");
    return -1;
  }
  pool->files = files;
  pool->sets[pool->n_sets++] = set;
  for (size_t i = 0; i < set->n_file; i++) {
    const akrcli_file_proto *f = set->file[i];
    if (!f->name) {
      set_err(err, errlen, "a file in the descriptor set has no name");
      return -1;
    }
    int dup = 0;
    for (size_t j = 0; j < pool->n_files && !dup; j++)
      dup = strcmp(pool->files[j]->name, f->name) == 0;
    if (!dup) pool->files[pool->n_files++] = f;
  }
  return 0;
}

/* --- Building --- */

static size_t count_msgs(const akrcli_msg_proto *m, size_t *enums) {
  size_t n = 1;
  *enums += m->n_enum_type;
  for (size_t i = 0; i < m->n_nested_type; i++)
    n += count_msgs(m->nested_type[i], enums);
  return n;
}

static int is_proto3(const akrcli_file_proto *f) {
  return f->syntax && strcmp(f->syntax, "proto3") == 0;
}

static int add_enum(akrcli_pool *pool, const akrcli_file_proto *f, const char *scope,
                    const akrcli_enum_proto *e) {
  if (!e->name) return -1;
  akrcli_enum *out = &pool->enums[pool->n_enums];
  out->full_name = join_name(scope, e->name);
  if (!out->full_name) return -1;
  out->proto = e;
  out->closed = !is_proto3(f);
  out->null_value = strcmp(out->full_name, "google.protobuf.NullValue") == 0;
  pool->n_enums++;
  return 0;
}

static int add_msgs(akrcli_pool *pool, const akrcli_file_proto *f, const char *scope,
                    const akrcli_msg_proto *m) {
  if (!m->name) return -1;
  akrcli_msg *out = &pool->msgs[pool->n_msgs];
  out->full_name = join_name(scope, m->name);
  if (!out->full_name) return -1;
  out->proto = m;
  out->file = f;
  out->proto3 = is_proto3(f);
  out->map_entry = m->options && m->options->has_map_entry && m->options->map_entry;
  pool->n_msgs++;
  const char *me = out->full_name;
  for (size_t i = 0; i < m->n_enum_type; i++)
    if (add_enum(pool, f, me, m->enum_type[i]) < 0) return -1;
  for (size_t i = 0; i < m->n_nested_type; i++)
    if (add_msgs(pool, f, me, m->nested_type[i]) < 0) return -1;
  return 0;
}

static int cmp_msg(const void *a, const void *b) {
  return strcmp(((const akrcli_msg *)a)->full_name, ((const akrcli_msg *)b)->full_name);
}
static int cmp_enum(const void *a, const void *b) {
  return strcmp(((const akrcli_enum *)a)->full_name,
                ((const akrcli_enum *)b)->full_name);
}

/* protobuf's ToJsonName: drop each '_' and upper-case the letter after it. */
static char *json_name_of(const char *name) {
  size_t n = strlen(name);
  char *s = malloc(n + 1);
  if (!s) return NULL;
  size_t o = 0;
  int upper = 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (c == '_') {
      upper = 1;
      continue;
    }
    if (upper && c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    upper = 0;
    s[o++] = c;
  }
  s[o] = '\0';
  return s;
}

static akrcli_wkt wkt_of(const char *full) {
  static const struct {
    const char *name;
    akrcli_wkt wkt;
  } table[] = {
      {"google.protobuf.Timestamp", AKRCLI_WKT_TIMESTAMP},
      {"google.protobuf.Duration", AKRCLI_WKT_DURATION},
      {"google.protobuf.DoubleValue", AKRCLI_WKT_WRAPPER},
      {"google.protobuf.FloatValue", AKRCLI_WKT_WRAPPER},
      {"google.protobuf.Int64Value", AKRCLI_WKT_WRAPPER},
      {"google.protobuf.UInt64Value", AKRCLI_WKT_WRAPPER},
      {"google.protobuf.Int32Value", AKRCLI_WKT_WRAPPER},
      {"google.protobuf.UInt32Value", AKRCLI_WKT_WRAPPER},
      {"google.protobuf.BoolValue", AKRCLI_WKT_WRAPPER},
      {"google.protobuf.StringValue", AKRCLI_WKT_WRAPPER},
      {"google.protobuf.BytesValue", AKRCLI_WKT_WRAPPER},
      {"google.protobuf.Struct", AKRCLI_WKT_STRUCT},
      {"google.protobuf.Value", AKRCLI_WKT_VALUE},
      {"google.protobuf.ListValue", AKRCLI_WKT_LIST_VALUE},
      {"google.protobuf.FieldMask", AKRCLI_WKT_FIELD_MASK},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(table[i].name, full) == 0) return table[i].wkt;
  return AKRCLI_WKT_NONE;
}

static int resolve_msg(akrcli_pool *pool, akrcli_msg *m, char *err, size_t errlen) {
  const akrcli_msg_proto *p = m->proto;
  m->fields = calloc(p->n_field ? p->n_field : 1, sizeof *m->fields);
  m->by_number = calloc(p->n_field ? p->n_field : 1, sizeof *m->by_number);
  m->oneof_names =
      calloc(p->n_oneof_decl ? p->n_oneof_decl : 1, sizeof *m->oneof_names);
  if (!m->fields || !m->by_number || !m->oneof_names) {
    set_err(err, errlen, "out of memory");
    return -1;
  }
  /* Real oneofs come first in oneof_decl (synthetic ones, for proto3
   * optional, are declared after them); map each declared index to a real
   * one or -1. */
  int synthetic[64] = {0};
  if (p->n_oneof_decl > 64) {
    set_err(err, errlen, "%s: more than 64 oneofs", m->full_name);
    return -1;
  }
  for (size_t i = 0; i < p->n_field; i++) {
    const akrcli_field_proto *fp = p->field[i];
    if (fp->has_proto3_optional && fp->proto3_optional && fp->has_oneof_index &&
        fp->oneof_index >= 0 && (size_t)fp->oneof_index < p->n_oneof_decl)
      synthetic[fp->oneof_index] = 1;
  }
  int real_index[64];
  for (size_t i = 0; i < p->n_oneof_decl; i++) {
    real_index[i] = -1;
    if (!synthetic[i]) {
      real_index[i] = (int)m->n_oneofs;
      m->oneof_names[m->n_oneofs++] =
          p->oneof_decl[i]->name ? p->oneof_decl[i]->name : "";
    }
  }
  for (size_t i = 0; i < p->n_field; i++) {
    const akrcli_field_proto *fp = p->field[i];
    akrcli_field *f = &m->fields[i];
    m->n_fields = i + 1;
    f->proto = fp;
    f->name = fp->name ? fp->name : "";
    f->json_name = fp->json_name && fp->json_name[0] ? strdup(fp->json_name)
                                                     : json_name_of(f->name);
    if (!f->json_name) {
      set_err(err, errlen, "out of memory");
      return -1;
    }
    if (!fp->has_number || fp->number < 1 || fp->number > 536870911) {
      set_err(err, errlen, "%s.%s: bad field number", m->full_name, f->name);
      return -1;
    }
    f->number = (uint32_t)fp->number;
    f->type = fp->has_type ? (int)fp->type : 0;
    f->repeated =
        fp->label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED;
    f->required =
        fp->label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED;
    f->oneof = -1;
    if (fp->has_oneof_index) {
      if (fp->oneof_index < 0 || (size_t)fp->oneof_index >= p->n_oneof_decl) {
        set_err(err, errlen, "%s.%s: bad oneof index", m->full_name, f->name);
        return -1;
      }
      f->oneof = real_index[fp->oneof_index];
    }
    if (f->type == AKRCLI_T_MESSAGE || f->type == AKRCLI_T_GROUP ||
        f->type == AKRCLI_T_ENUM || (f->type == 0 && fp->type_name)) {
      const char *tn = fp->type_name;
      const akrcli_msg *target = tn ? akrcli_pool_message(pool, tn) : NULL;
      const akrcli_enum *etarget = tn && !target ? akrcli_pool_enum(pool, tn) : NULL;
      if (f->type == 0) f->type = target ? AKRCLI_T_MESSAGE : AKRCLI_T_ENUM;
      if (f->type == AKRCLI_T_ENUM ? !etarget : !target) {
        set_err(err, errlen,
                "type %s of field %s.%s is not in the descriptors (build the set "
                "with --include_imports)",
                tn ? tn : "(none)", m->full_name, f->name);
        return -1;
      }
      f->msg = target;
      f->enm = etarget;
    } else if (!akrcli_type_keyword(f->type)) {
      set_err(err, errlen, "%s.%s: unknown field type %d", m->full_name, f->name,
              f->type);
      return -1;
    }
    int scalar = f->type != AKRCLI_T_MESSAGE && f->type != AKRCLI_T_GROUP &&
                 f->type != AKRCLI_T_STRING && f->type != AKRCLI_T_BYTES;
    if (f->repeated && scalar) {
      if (fp->options && fp->options->has_packed)
        f->packed = fp->options->packed;
      else
        f->packed = m->proto3;
    }
    f->is_map = f->repeated && f->type == AKRCLI_T_MESSAGE && f->msg->map_entry;
    f->presence =
        !f->repeated && (f->type == AKRCLI_T_MESSAGE || f->type == AKRCLI_T_GROUP ||
                         fp->has_oneof_index || !m->proto3);
  }
  /* Insertion sort: messages have few fields, and most are in order. */
  for (size_t i = 0; i < m->n_fields; i++) {
    size_t j = i;
    while (j > 0 && m->fields[m->by_number[j - 1]].number > m->fields[i].number) {
      m->by_number[j] = m->by_number[j - 1];
      j--;
    }
    m->by_number[j] = i;
  }
  for (size_t i = 1; i < m->n_fields; i++)
    if (m->fields[m->by_number[i]].number == m->fields[m->by_number[i - 1]].number) {
      set_err(err, errlen, "%s: field number %u used twice", m->full_name,
              m->fields[m->by_number[i]].number);
      return -1;
    }
  m->wkt = wkt_of(m->full_name);
  return 0;
}

int akrcli_pool_build(akrcli_pool *pool, char *err, size_t errlen) {
  if (pool->built) return 0;
  size_t nm = 0, ne = 0, ns = 0;
  for (size_t i = 0; i < pool->n_files; i++) {
    const akrcli_file_proto *f = pool->files[i];
    ne += f->n_enum_type;
    ns += f->n_service;
    for (size_t j = 0; j < f->n_message_type; j++)
      nm += count_msgs(f->message_type[j], &ne);
  }
  pool->msgs = calloc(nm ? nm : 1, sizeof *pool->msgs);
  pool->enums = calloc(ne ? ne : 1, sizeof *pool->enums);
  pool->services = calloc(ns ? ns : 1, sizeof *pool->services);
  if (!pool->msgs || !pool->enums || !pool->services) {
    set_err(err, errlen, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < pool->n_files; i++) {
    const akrcli_file_proto *f = pool->files[i];
    const char *pkg = f->package && f->package[0] ? f->package : NULL;
    for (size_t j = 0; j < f->n_enum_type; j++)
      if (add_enum(pool, f, pkg, f->enum_type[j]) < 0) goto bad_names;
    for (size_t j = 0; j < f->n_message_type; j++)
      if (add_msgs(pool, f, pkg, f->message_type[j]) < 0) goto bad_names;
  }
  qsort(pool->msgs, pool->n_msgs, sizeof *pool->msgs, cmp_msg);
  qsort(pool->enums, pool->n_enums, sizeof *pool->enums, cmp_enum);
  for (size_t i = 1; i < pool->n_msgs; i++)
    if (strcmp(pool->msgs[i].full_name, pool->msgs[i - 1].full_name) == 0) {
      set_err(err, errlen, "message %s is defined twice", pool->msgs[i].full_name);
      return -1;
    }
  for (size_t i = 0; i < pool->n_msgs; i++)
    if (resolve_msg(pool, &pool->msgs[i], err, errlen) < 0) return -1;
  for (size_t i = 0; i < pool->n_files; i++) {
    const akrcli_file_proto *f = pool->files[i];
    const char *pkg = f->package && f->package[0] ? f->package : NULL;
    for (size_t j = 0; j < f->n_service; j++) {
      const akrcli_service_proto *sp = f->service[j];
      if (!sp->name) goto bad_names;
      akrcli_service *s = &pool->services[pool->n_services++];
      s->proto = sp;
      s->file = f;
      s->full_name = join_name(pkg, sp->name);
      s->methods = calloc(sp->n_method ? sp->n_method : 1, sizeof *s->methods);
      if (!s->full_name || !s->methods) {
        set_err(err, errlen, "out of memory");
        return -1;
      }
      for (size_t k = 0; k < sp->n_method; k++) {
        const akrcli_method_proto *mp = sp->method[k];
        akrcli_method *m = &s->methods[s->n_methods];
        if (!mp->name) goto bad_names;
        m->proto = mp;
        size_t len = strlen(s->full_name) + strlen(mp->name) + 2;
        m->wire_name = malloc(len);
        if (!m->wire_name) {
          set_err(err, errlen, "out of memory");
          return -1;
        }
        s->n_methods++;
        snprintf(m->wire_name, len, "%s/%s", s->full_name, mp->name);
        m->input = mp->input_type ? akrcli_pool_message(pool, mp->input_type) : NULL;
        m->output = mp->output_type ? akrcli_pool_message(pool, mp->output_type) : NULL;
        if (!m->input || !m->output) {
          set_err(err, errlen,
                  "the request or reply type of %s is not in the descriptors (build "
                  "the set with --include_imports)",
                  m->wire_name);
          return -1;
        }
      }
    }
  }
  pool->built = 1;
  return 0;
bad_names:
  set_err(err, errlen, "the descriptor set has an unnamed type, service or method");
  return -1;
}

void akrcli_pool_clear(akrcli_pool *pool) {
  if (!pool) return;
  for (size_t i = 0; i < pool->n_msgs; i++) {
    akrcli_msg *m = &pool->msgs[i];
    for (size_t j = 0; j < m->n_fields; j++)
      free(m->fields[j].json_name);
    free(m->fields);
    free(m->by_number);
    free(m->oneof_names);
    free(m->full_name);
  }
  for (size_t i = 0; i < pool->n_enums; i++)
    free(pool->enums[i].full_name);
  for (size_t i = 0; i < pool->n_services; i++) {
    akrcli_service *s = &pool->services[i];
    for (size_t j = 0; j < s->n_methods; j++)
      free(s->methods[j].wire_name);
    free(s->methods);
    free(s->full_name);
  }
  free(pool->msgs);
  free(pool->enums);
  free(pool->services);
  free(pool->files);
  for (size_t i = 0; i < pool->n_sets; i++)
    google__protobuf__file_descriptor_set__free_unpacked(pool->sets[i], NULL);
  free(pool->sets);
  memset(pool, 0, sizeof *pool);
}

/* --- Lookups --- */

const akrcli_msg *akrcli_pool_message(const akrcli_pool *pool, const char *name) {
  name = strip_dot(name);
  size_t lo = 0, hi = pool->n_msgs;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(name, pool->msgs[mid].full_name);
    if (c == 0) return &pool->msgs[mid];
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

const akrcli_enum *akrcli_pool_enum(const akrcli_pool *pool, const char *name) {
  name = strip_dot(name);
  size_t lo = 0, hi = pool->n_enums;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(name, pool->enums[mid].full_name);
    if (c == 0) return &pool->enums[mid];
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

const akrcli_service *akrcli_pool_service(const akrcli_pool *pool, const char *name) {
  name = strip_dot(name);
  for (size_t i = 0; i < pool->n_services; i++)
    if (strcmp(pool->services[i].full_name, name) == 0) return &pool->services[i];
  return NULL;
}

const akrcli_method *akrcli_pool_method(const akrcli_pool *pool, const char *name) {
  name = strip_dot(name);
  for (size_t i = 0; i < pool->n_services; i++) {
    const akrcli_service *s = &pool->services[i];
    size_t n = strlen(s->full_name);
    if (strncmp(name, s->full_name, n) != 0 || (name[n] != '/' && name[n] != '.'))
      continue;
    for (size_t j = 0; j < s->n_methods; j++)
      if (strcmp(name + n + 1, s->methods[j].proto->name) == 0) return &s->methods[j];
  }
  return NULL;
}

const akrcli_field *akrcli_msg_field_by_number(const akrcli_msg *msg, uint32_t number) {
  size_t lo = 0, hi = msg->n_fields;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const akrcli_field *f = &msg->fields[msg->by_number[mid]];
    if (f->number == number) return f;
    if (number < f->number)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

const akrcli_field *akrcli_msg_field_by_key(const akrcli_msg *msg, const char *key,
                                            size_t len) {
  for (size_t i = 0; i < msg->n_fields; i++) {
    const akrcli_field *f = &msg->fields[i];
    if ((strlen(f->json_name) == len && memcmp(f->json_name, key, len) == 0) ||
        (strlen(f->name) == len && memcmp(f->name, key, len) == 0))
      return f;
  }
  return NULL;
}

const char *akrcli_enum_name(const akrcli_enum *e, int32_t number) {
  for (size_t i = 0; i < e->proto->n_value; i++)
    if (e->proto->value[i]->number == number && e->proto->value[i]->name)
      return e->proto->value[i]->name;
  return NULL;
}

int akrcli_enum_number(const akrcli_enum *e, const char *name, int32_t *ret_number) {
  for (size_t i = 0; i < e->proto->n_value; i++)
    if (e->proto->value[i]->name && strcmp(e->proto->value[i]->name, name) == 0) {
      *ret_number = e->proto->value[i]->number;
      return 0;
    }
  return -1;
}

const char *akrcli_type_keyword(int type) {
  switch (type) {
  case AKRCLI_T_DOUBLE: return "double";
  case AKRCLI_T_FLOAT: return "float";
  case AKRCLI_T_INT64: return "int64";
  case AKRCLI_T_UINT64: return "uint64";
  case AKRCLI_T_INT32: return "int32";
  case AKRCLI_T_FIXED64: return "fixed64";
  case AKRCLI_T_FIXED32: return "fixed32";
  case AKRCLI_T_BOOL: return "bool";
  case AKRCLI_T_STRING: return "string";
  case AKRCLI_T_BYTES: return "bytes";
  case AKRCLI_T_UINT32: return "uint32";
  case AKRCLI_T_SFIXED32: return "sfixed32";
  case AKRCLI_T_SFIXED64: return "sfixed64";
  case AKRCLI_T_SINT32: return "sint32";
  case AKRCLI_T_SINT64: return "sint64";
  default: return NULL;
  }
}
