/* jsoncodec.c: the dynamic JSON <-> protobuf codec (jsoncodec.h).
 *
 * Decoding goes in two passes. The wire pass turns bytes into "raw" JSON:
 * every message is an object keyed by JSON field name, whatever its type,
 * so that a singular message field that occurs twice on the wire is merged
 * into the same object and a oneof member that comes later replaces the
 * others, as protobuf requires. The render pass then walks the raw tree with
 * the descriptors: it orders fields as declared, gives the well-known types
 * their own JSON forms and adds defaults if asked.
 *
 * Encoding mirrors it: a well-known type's JSON form is first turned into
 * its raw object form, then every message is encoded field by field in
 * field-number order.
 *
 * Limits: nesting depth (messages and groups, also when skipping unknown
 * groups), the size of what is encoded, the number of values decoded.
 */
#include "jsoncodec.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- Growable byte buffer with a size limit --- */

typedef struct buf {
  uint8_t *data;
  size_t len, cap, max;
} buf;

static int buf_reserve(buf *b, size_t more) {
  if (more > b->max || b->len > b->max - more) return -1;
  if (b->len + more <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + more)
    cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
  uint8_t *d = realloc(b->data, cap);
  if (!d) return -1;
  b->data = d;
  b->cap = cap;
  return 0;
}

static int buf_put(buf *b, const void *p, size_t n) {
  if (!n) return 0;
  if (buf_reserve(b, n) < 0) return -1;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

static int buf_str(buf *b, const char *s) {
  return buf_put(b, s, strlen(s));
}

static int buf_varint(buf *b, uint64_t v) {
  uint8_t tmp[10];
  size_t n = 0;
  do {
    tmp[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) tmp[n] |= 0x80;
    n++;
  } while (v);
  return buf_put(b, tmp, n);
}

static int buf_fixed(buf *b, uint64_t v, size_t n) {
  uint8_t tmp[8];
  for (size_t i = 0; i < n; i++)
    tmp[i] = (uint8_t)(v >> (8 * i));
  return buf_put(b, tmp, n);
}

static int buf_tag(buf *b, uint32_t number, int wire_type) {
  return buf_varint(b, ((uint64_t)number << 3) | (uint64_t)wire_type);
}

/* --- Context: options, error message and the path of the current value --- */

typedef struct ctx {
  unsigned max_depth;
  size_t max_encoded;
  size_t max_values;
  int emit_defaults;
  char *err;
  size_t errlen;
  char path[256];
  size_t plen;
  size_t values;
} ctx;

static void ctx_init(ctx *c, const akrcli_codec_options *o, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  c->max_depth = o && o->max_depth ? o->max_depth : AKRCLI_DEFAULT_MAX_DEPTH;
  c->max_encoded = o && o->max_encoded ? o->max_encoded : AKRCLI_DEFAULT_MAX_ENCODED;
  c->max_values = o && o->max_values ? o->max_values : AKRCLI_DEFAULT_MAX_VALUES;
  c->emit_defaults = o ? o->emit_defaults : 0;
  c->err = err;
  c->errlen = errlen;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int
fail(ctx *c, const char *fmt, ...) {
  if (!c->err || !c->errlen) return -1;
  size_t off = 0;
  if (c->plen) {
    int n = snprintf(c->err, c->errlen, "at %s: ", c->path);
    off = n < 0 ? 0 : (size_t)n < c->errlen ? (size_t)n : c->errlen - 1;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err + off, c->errlen - off, fmt, ap);
  va_end(ap);
  return -1;
}

/* Appends to the path; returns the mark to restore with path_pop(). The path
 * is for messages only: it is cut short rather than grown. */
static size_t path_push(ctx *c, const char *fmt, ...) {
  size_t mark = c->plen;
  if (c->plen < sizeof c->path - 1) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->path + c->plen, sizeof c->path - c->plen, fmt, ap);
    va_end(ap);
    if (n > 0) c->plen += (size_t)n;
    if (c->plen > sizeof c->path - 1) c->plen = sizeof c->path - 1;
  }
  return mark;
}

static size_t path_field(ctx *c, const char *name) {
  return path_push(c, c->plen ? ".%s" : "%s", name);
}

static void path_pop(ctx *c, size_t mark) {
  c->plen = mark;
  c->path[mark] = '\0';
}

static int count_value(ctx *c) {
  if (++c->values > c->max_values)
    return fail(c, "more than %zu values in the message", c->max_values);
  return 0;
}

/* --- Base64 (RFC 4648; decoding also takes the URL-safe alphabet and
 * missing padding, as the proto3 JSON mapping requires) --- */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const uint8_t *p, size_t n) {
  if (n > (SIZE_MAX - 1) / 4 * 3 - 3) return NULL;
  char *s = malloc((n + 2) / 3 * 4 + 1);
  if (!s) return NULL;
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    s[o++] = b64chars[v >> 18];
    s[o++] = b64chars[(v >> 12) & 63];
    s[o++] = b64chars[(v >> 6) & 63];
    s[o++] = b64chars[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)p[i] << 16;
    s[o++] = b64chars[v >> 18];
    s[o++] = b64chars[(v >> 12) & 63];
    s[o++] = '=';
    s[o++] = '=';
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
    s[o++] = b64chars[v >> 18];
    s[o++] = b64chars[(v >> 12) & 63];
    s[o++] = b64chars[(v >> 6) & 63];
    s[o++] = '=';
  }
  s[o] = '\0';
  return s;
}

static int b64_value(char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+' || ch == '-') return 62;
  if (ch == '/' || ch == '_') return 63;
  return -1;
}

/* Decodes into a new buffer *ret (malloc'd, at least 1 byte). -1: invalid. */
static int b64_decode(const char *s, size_t n, uint8_t **ret, size_t *ret_len) {
  while (n > 0 && s[n - 1] == '=')
    n--;
  if (n % 4 == 1) return -1;
  uint8_t *out = malloc(n / 4 * 3 + 3);
  if (!out) return -1;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64_value(s[i]);
    if (v < 0) {
      free(out);
      return -1;
    }
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  *ret = out;
  *ret_len = o;
  return 0;
}

/* --- Type helpers --- */

static int wire_type_of(int type) {
  switch (type) {
  case AKRCLI_T_DOUBLE:
  case AKRCLI_T_FIXED64:
  case AKRCLI_T_SFIXED64: return 1;
  case AKRCLI_T_FLOAT:
  case AKRCLI_T_FIXED32:
  case AKRCLI_T_SFIXED32: return 5;
  case AKRCLI_T_STRING:
  case AKRCLI_T_BYTES:
  case AKRCLI_T_MESSAGE: return 2;
  case AKRCLI_T_GROUP: return 3;
  default: return 0;
  }
}

static int is_message(const akrcli_field *f) {
  return f->type == AKRCLI_T_MESSAGE || f->type == AKRCLI_T_GROUP;
}

static const akrcli_field *map_key(const akrcli_field *f) {
  return akrcli_msg_field_by_number(f->msg, 1);
}
static const akrcli_field *map_value(const akrcli_field *f) {
  return akrcli_msg_field_by_number(f->msg, 2);
}

static json_t *string_json(const char *s) {
  return json_stringn(s, strlen(s));
}

static json_t *double_json(double d) {
  if (isnan(d)) return string_json("NaN");
  if (isinf(d)) return string_json(d > 0 ? "Infinity" : "-Infinity");
  return json_real(d);
}

/* A float as the double whose shortest form is the float's shortest form,
 * so that 0.1f prints as 0.1. */
static json_t *float_json(float f) {
  if (isnan(f) || isinf(f)) return double_json((double)f);
  char tmp[32];
  for (int p = 1; p <= 9; p++) {
    snprintf(tmp, sizeof tmp, "%.*g", p, (double)f);
    if (strtof(tmp, NULL) == f) break;
  }
  double d = strtod(tmp, NULL);
  /* Re-encoding must give the same float back (no double rounding). */
  return json_real((float)d == f ? d : (double)f);
}

static int32_t as_int32(uint64_t raw) {
  uint32_t u = (uint32_t)raw;
  int32_t x;
  memcpy(&x, &u, sizeof x);
  return x;
}

static int64_t as_int64(uint64_t raw) {
  int64_t x;
  memcpy(&x, &raw, sizeof x);
  return x;
}

/* The JSON of a numeric field's value, from its wire bits. */
static json_t *scalar_json(const akrcli_field *f, uint64_t raw) {
  char tmp[32];
  switch (f->type) {
  case AKRCLI_T_DOUBLE: {
    double d;
    memcpy(&d, &raw, sizeof d);
    return double_json(d);
  }
  case AKRCLI_T_FLOAT: {
    uint32_t u = (uint32_t)raw;
    float fl;
    memcpy(&fl, &u, sizeof fl);
    return float_json(fl);
  }
  case AKRCLI_T_INT64:
  case AKRCLI_T_SFIXED64:
    snprintf(tmp, sizeof tmp, "%" PRId64, as_int64(raw));
    return string_json(tmp);
  case AKRCLI_T_SINT64:
    snprintf(tmp, sizeof tmp, "%" PRId64, as_int64((raw >> 1) ^ (0 - (raw & 1))));
    return string_json(tmp);
  case AKRCLI_T_UINT64:
  case AKRCLI_T_FIXED64:
    snprintf(tmp, sizeof tmp, "%" PRIu64, raw);
    return string_json(tmp);
  case AKRCLI_T_INT32:
  case AKRCLI_T_SFIXED32: return json_integer(as_int32(raw));
  case AKRCLI_T_SINT32: {
    uint32_t u = (uint32_t)raw;
    return json_integer(as_int32((u >> 1) ^ (0u - (u & 1))));
  }
  case AKRCLI_T_UINT32:
  case AKRCLI_T_FIXED32: return json_integer((json_int_t)(uint32_t)raw);
  case AKRCLI_T_BOOL: return json_boolean(raw != 0);
  case AKRCLI_T_ENUM: {
    int32_t n = as_int32(raw);
    if (f->enm->null_value) return json_null();
    const char *name = akrcli_enum_name(f->enm, n);
    return name ? string_json(name) : json_integer(n);
  }
  default: return NULL;
  }
}

static int scalar_is_zero(int type, uint64_t raw) {
  switch (type) {
  case AKRCLI_T_FLOAT:
  case AKRCLI_T_INT32:
  case AKRCLI_T_SINT32:
  case AKRCLI_T_UINT32:
  case AKRCLI_T_FIXED32:
  case AKRCLI_T_SFIXED32:
  case AKRCLI_T_ENUM: return (uint32_t)raw == 0;
  default: return raw == 0;
  }
}

/* The default value of a singular field, as JSON (new reference). */
static json_t *default_json(const akrcli_field *f) {
  switch (f->type) {
  case AKRCLI_T_MESSAGE:
  case AKRCLI_T_GROUP: return json_object();
  case AKRCLI_T_STRING:
  case AKRCLI_T_BYTES: return string_json("");
  default: return scalar_json(f, 0);
  }
}

/* --- Wire -> raw JSON --- */

static int read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v) {
  uint64_t r = 0;
  for (unsigned i = 0; i < 10; i++) {
    if (*pos >= len) return -1;
    uint8_t b = p[(*pos)++];
    if (i == 9 && b > 1) return -1;
    r |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *v = r;
      return 0;
    }
  }
  return -1;
}

static int read_fixed(const uint8_t *p, size_t len, size_t *pos, size_t n,
                      uint64_t *v) {
  if (len - *pos < n) return -1;
  uint64_t r = 0;
  for (size_t i = 0; i < n; i++)
    r |= (uint64_t)p[*pos + i] << (8 * i);
  *pos += n;
  *v = r;
  return 0;
}

static int read_len(ctx *c, const uint8_t *p, size_t len, size_t *pos, size_t *ret) {
  uint64_t n;
  if (read_varint(p, len, pos, &n) < 0) return fail(c, "truncated length");
  if (n > len - *pos) return fail(c, "length %" PRIu64 " past the end of the data", n);
  *ret = (size_t)n;
  return 0;
}

/* Skips one field of an unknown number whose tag was just read. */
static int skip_field(ctx *c, const uint8_t *p, size_t len, size_t *pos, int wt,
                      uint32_t number, unsigned depth) {
  uint64_t v;
  size_t n;
  switch (wt) {
  case 0:
    if (read_varint(p, len, pos, &v) < 0) return fail(c, "truncated varint");
    return 0;
  case 1:
  case 5:
    if (len - *pos < (wt == 1 ? 8u : 4u)) return fail(c, "truncated fixed-size value");
    *pos += wt == 1 ? 8 : 4;
    return 0;
  case 2:
    if (read_len(c, p, len, pos, &n) < 0) return -1;
    *pos += n;
    return 0;
  case 3:
    if (depth >= c->max_depth)
      return fail(c, "groups nested deeper than %u", c->max_depth);
    for (;;) {
      uint64_t tag;
      if (read_varint(p, len, pos, &tag) < 0) return fail(c, "unterminated group");
      uint64_t num = tag >> 3;
      if (num == 0 || num > 536870911) return fail(c, "bad field number");
      if ((tag & 7) == 4) {
        if (num != number) return fail(c, "mismatched end of group");
        return 0;
      }
      if (skip_field(c, p, len, pos, (int)(tag & 7), (uint32_t)num, depth + 1) < 0)
        return -1;
    }
  default: return fail(c, "invalid wire type %d", wt);
  }
}

static int dec_message(ctx *c, const akrcli_msg *m, const uint8_t *p, size_t len,
                       json_t *obj, unsigned depth, uint32_t group, size_t *consumed);

/* Sets obj[f] = v (stealing v), dropping the other members of f's oneof. */
static int put(ctx *c, const akrcli_msg *m, const akrcli_field *f, json_t *obj,
               json_t *v) {
  if (!v) return fail(c, "out of memory");
  if (f->oneof >= 0)
    for (size_t i = 0; i < m->n_fields; i++)
      if (m->fields[i].oneof == f->oneof && &m->fields[i] != f)
        json_object_del(obj, m->fields[i].json_name);
  if (json_object_set_new(obj, f->json_name, v) < 0) return fail(c, "out of memory");
  return 0;
}

/* obj[f] as an array (created if absent). */
static json_t *array_at(ctx *c, json_t *obj, const akrcli_field *f) {
  json_t *a = json_object_get(obj, f->json_name);
  if (a && json_is_array(a)) return a;
  a = json_array();
  if (!a || json_object_set_new(obj, f->json_name, a) < 0) {
    fail(c, "out of memory");
    return NULL;
  }
  return a;
}

static int append(ctx *c, json_t *arr, json_t *v) {
  if (!v || json_array_append_new(arr, v) < 0) return fail(c, "out of memory");
  return 0;
}

/* The JSON object key of a map key value (raw JSON, or NULL: the default). */
static json_t *map_key_string(const akrcli_field *kf, json_t *k) {
  if (!k) k = NULL;
  char tmp[32];
  switch (kf->type) {
  case AKRCLI_T_STRING: return k ? json_incref(k) : string_json("");
  case AKRCLI_T_BOOL: return string_json(k && json_is_true(k) ? "true" : "false");
  default:
    if (!k) return string_json("0");
    if (json_is_string(k)) return json_incref(k);
    snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(k));
    return string_json(tmp);
  }
}

static int dec_map_entry(ctx *c, const akrcli_field *f, const uint8_t *p, size_t n,
                         json_t *obj, unsigned depth) {
  const akrcli_field *kf = map_key(f), *vf = map_value(f);
  if (!kf || !vf)
    return fail(c, "map entry %s lacks its key or value", f->msg->full_name);
  json_t *entry = json_object();
  if (!entry) return fail(c, "out of memory");
  json_t *map = json_object_get(obj, f->json_name);
  if (!map || !json_is_object(map)) {
    map = json_object();
    if (!map || json_object_set_new(obj, f->json_name, map) < 0) {
      json_decref(entry);
      return fail(c, "out of memory");
    }
  }
  int rc = -1;
  size_t used;
  if (dec_message(c, f->msg, p, n, entry, depth + 1, 0, &used) < 0) goto out;
  json_t *key = map_key_string(kf, json_object_get(entry, kf->json_name));
  json_t *val = json_object_get(entry, vf->json_name);
  val = val ? json_incref(val) : default_json(vf);
  if (!key || !val) {
    json_decref(key);
    json_decref(val);
    fail(c, "out of memory");
    goto out;
  }
  rc = json_object_setn_new(map, json_string_value(key), json_string_length(key), val);
  json_decref(key);
  if (rc < 0) fail(c, "out of memory");
out:
  json_decref(entry);
  return rc;
}

static int dec_field(ctx *c, const akrcli_msg *m, const akrcli_field *f,
                     const uint8_t *p, size_t len, size_t *pos, int wt, json_t *obj,
                     unsigned depth) {
  int want = wire_type_of(f->type);
  uint64_t raw = 0;
  size_t n = 0;
  if (f->repeated && wt == 2 && want != 2 && want != 3) {
    /* Packed: accepted for every repeated scalar, packed or not. */
    if (read_len(c, p, len, pos, &n) < 0) return -1;
    const uint8_t *q = p + *pos;
    size_t qpos = 0;
    *pos += n;
    if (n == 0) return 0; /* an empty run: no elements, no field */
    json_t *arr = array_at(c, obj, f);
    if (!arr) return -1;
    while (qpos < n) {
      int bad = want == 0   ? read_varint(q, n, &qpos, &raw)
                : want == 1 ? read_fixed(q, n, &qpos, 8, &raw)
                            : read_fixed(q, n, &qpos, 4, &raw);
      if (bad < 0) return fail(c, "truncated packed value");
      if (count_value(c) < 0 || append(c, arr, scalar_json(f, raw)) < 0) return -1;
    }
    return 0;
  }
  if (wt != want)
    return fail(c, "wire type %d where field %u (%s) has wire type %d", wt, f->number,
                f->name, want);
  if (count_value(c) < 0) return -1;
  switch (want) {
  case 0:
    if (read_varint(p, len, pos, &raw) < 0) return fail(c, "truncated varint");
    break;
  case 1:
  case 5:
    if (read_fixed(p, len, pos, want == 1 ? 8 : 4, &raw) < 0)
      return fail(c, "truncated fixed-size value");
    break;
  case 2:
    if (read_len(c, p, len, pos, &n) < 0) return -1;
    break;
  default: break;
  }

  if (want == 0 || want == 1 || want == 5) {
    json_t *v = scalar_json(f, raw);
    if (f->repeated) {
      json_t *arr = array_at(c, obj, f);
      return arr ? append(c, arr, v) : -1;
    }
    if (!f->presence && scalar_is_zero(f->type, raw)) {
      /* The default: absent in proto3's JSON (a later zero replaces an
       * earlier value, as it does in protobuf). */
      json_decref(v);
      json_object_del(obj, f->json_name);
      return 0;
    }
    return put(c, m, f, obj, v);
  }

  const uint8_t *data = p + *pos;
  if (want == 2) *pos += n;
  json_t *v = NULL;
  if (f->type == AKRCLI_T_STRING) {
    v = json_stringn((const char *)data, n);
    if (!v) return fail(c, "string field %s is not valid UTF-8", f->name);
  } else if (f->type == AKRCLI_T_BYTES) {
    char *s = b64_encode(data, n);
    v = s ? string_json(s) : NULL;
    free(s);
  } else if (f->is_map) {
    return dec_map_entry(c, f, data, n, obj, depth);
  } else {
    /* A message or a group: a singular one merges into what is there. */
    json_t *existing = f->repeated ? NULL : json_object_get(obj, f->json_name);
    v = existing && json_is_object(existing) ? json_incref(existing) : json_object();
    if (!v) return fail(c, "out of memory");
    size_t used = 0;
    int rc = f->type == AKRCLI_T_GROUP
                 ? dec_message(c, f->msg, p + *pos, len - *pos, v, depth + 1, f->number,
                               &used)
                 : dec_message(c, f->msg, data, n, v, depth + 1, 0, &used);
    if (rc < 0) {
      json_decref(v);
      return -1;
    }
    if (f->type == AKRCLI_T_GROUP) *pos += used;
  }
  if (f->repeated) {
    json_t *arr = array_at(c, obj, f);
    if (!arr) {
      json_decref(v);
      return -1;
    }
    return append(c, arr, v);
  }
  if (!f->presence && (f->type == AKRCLI_T_STRING || f->type == AKRCLI_T_BYTES) &&
      n == 0) {
    json_decref(v);
    json_object_del(obj, f->json_name);
    return 0;
  }
  return put(c, m, f, obj, v);
}

/* Decodes fields into obj until the end of the data or, for a group, until
 * its end tag (then *consumed counts the bytes up to and including it). */
static int dec_message(ctx *c, const akrcli_msg *m, const uint8_t *p, size_t len,
                       json_t *obj, unsigned depth, uint32_t group, size_t *consumed) {
  if (depth > c->max_depth)
    return fail(c, "messages nested deeper than %u", c->max_depth);
  size_t pos = 0;
  while (pos < len) {
    uint64_t tag;
    if (read_varint(p, len, &pos, &tag) < 0) return fail(c, "truncated tag");
    uint64_t num = tag >> 3;
    int wt = (int)(tag & 7);
    if (num == 0 || num > 536870911) return fail(c, "bad field number %" PRIu64, num);
    if (wt == 4) {
      if (group && num == group) {
        *consumed = pos;
        return 0;
      }
      return fail(c, "unexpected end of group %" PRIu64, num);
    }
    const akrcli_field *f = akrcli_msg_field_by_number(m, (uint32_t)num);
    if (!f) {
      if (skip_field(c, p, len, &pos, wt, (uint32_t)num, depth) < 0) return -1;
      continue;
    }
    size_t mark = path_field(c, f->json_name);
    if (dec_field(c, m, f, p, len, &pos, wt, obj, depth) < 0) return -1;
    path_pop(c, mark);
  }
  if (group) return fail(c, "unterminated group");
  *consumed = pos;
  return 0;
}

/* --- Raw JSON -> JSON (render) --- */

static json_t *render_msg(ctx *c, const akrcli_msg *m, json_t *raw, unsigned depth);

/* Renders one value of field f (an element, a map value or a singular
 * value): messages are rendered, scalars are taken as they are. */
static json_t *render_value(ctx *c, const akrcli_field *f, json_t *v, unsigned depth) {
  if (is_message(f)) return render_msg(c, f->msg, v, depth + 1);
  return json_incref(v);
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

#define TS_MIN INT64_C(-62135596800) /* 0001-01-01T00:00:00Z */
#define TS_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */
#define DUR_MAX INT64_C(315576000000)

/* Reads seconds (field 1, int64) and nanos (field 2, int32) of a raw
 * Timestamp or Duration. */
static int seconds_nanos(ctx *c, const akrcli_msg *m, json_t *raw, int64_t *s,
                         int32_t *ns) {
  const akrcli_field *fs = akrcli_msg_field_by_number(m, 1);
  const akrcli_field *fn = akrcli_msg_field_by_number(m, 2);
  if (!fs || !fn) return fail(c, "%s lacks seconds or nanos", m->full_name);
  json_t *js = json_object_get(raw, fs->json_name),
         *jn = json_object_get(raw, fn->json_name);
  *s = js && json_is_string(js) ? strtoll(json_string_value(js), NULL, 10) : 0;
  *ns = jn && json_is_integer(jn) ? (int32_t)json_integer_value(jn) : 0;
  return 0;
}

static void frac_digits(char *out, size_t size, int32_t nanos) {
  if (nanos == 0)
    out[0] = '\0';
  else if (nanos % 1000000 == 0)
    snprintf(out, size, ".%03d", nanos / 1000000);
  else if (nanos % 1000 == 0)
    snprintf(out, size, ".%06d", nanos / 1000);
  else
    snprintf(out, size, ".%09d", nanos);
}

static json_t *render_timestamp(ctx *c, const akrcli_msg *m, json_t *raw) {
  int64_t s;
  int32_t ns;
  if (seconds_nanos(c, m, raw, &s, &ns) < 0) return NULL;
  if (s < TS_MIN || s > TS_MAX || ns < 0 || ns > 999999999) {
    fail(c, "Timestamp out of range (%" PRId64 " s, %d ns)", s, ns);
    return NULL;
  }
  int64_t days = s >= 0 ? s / 86400 : -((-s + 86399) / 86400);
  int64_t rem = s - days * 86400, y;
  unsigned mo, d;
  civil_from_days(days, &y, &mo, &d);
  char frac[16], out[64];
  frac_digits(frac, sizeof frac, ns);
  snprintf(out, sizeof out, "%04d-%02u-%02uT%02d:%02d:%02d%sZ", (int)y, mo, d,
           (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), frac);
  return string_json(out);
}

static json_t *render_duration(ctx *c, const akrcli_msg *m, json_t *raw) {
  int64_t s;
  int32_t ns;
  if (seconds_nanos(c, m, raw, &s, &ns) < 0) return NULL;
  if (s < -DUR_MAX || s > DUR_MAX || ns < -999999999 || ns > 999999999 ||
      (s > 0 && ns < 0) || (s < 0 && ns > 0)) {
    fail(c, "Duration out of range (%" PRId64 " s, %d ns)", s, ns);
    return NULL;
  }
  char frac[16], out[64];
  frac_digits(frac, sizeof frac, ns < 0 ? -ns : ns);
  snprintf(out, sizeof out, "%s%" PRId64 "%ss", s < 0 || ns < 0 ? "-" : "",
           s < 0 ? -s : s, frac);
  return string_json(out);
}

static json_t *render_field_mask(ctx *c, const akrcli_msg *m, json_t *raw) {
  const akrcli_field *fp = akrcli_msg_field_by_number(m, 1);
  json_t *paths = fp ? json_object_get(raw, fp->json_name) : NULL;
  buf b = {.max = c->max_encoded};
  size_t i;
  json_t *p;
  json_array_foreach(paths, i, p) {
    const char *s = json_string_value(p);
    if (i && buf_put(&b, ",", 1) < 0) goto oom;
    for (int up = 0; s && *s; s++) {
      if (*s == '_') {
        up = 1;
        continue;
      }
      char ch = up && *s >= 'a' && *s <= 'z' ? (char)(*s - 'a' + 'A') : *s;
      up = 0;
      if (buf_put(&b, &ch, 1) < 0) goto oom;
    }
  }
  json_t *out = json_stringn(b.data ? (const char *)b.data : "", b.len);
  free(b.data);
  if (!out) fail(c, "bad FieldMask path");
  return out;
oom:
  free(b.data);
  fail(c, "out of memory");
  return NULL;
}

static json_t *render_wkt(ctx *c, const akrcli_msg *m, json_t *raw, unsigned depth) {
  switch (m->wkt) {
  case AKRCLI_WKT_TIMESTAMP: return render_timestamp(c, m, raw);
  case AKRCLI_WKT_DURATION: return render_duration(c, m, raw);
  case AKRCLI_WKT_FIELD_MASK: return render_field_mask(c, m, raw);
  case AKRCLI_WKT_WRAPPER: {
    const akrcli_field *vf = akrcli_msg_field_by_number(m, 1);
    if (!vf) break;
    json_t *v = json_object_get(raw, vf->json_name);
    return v ? json_incref(v) : default_json(vf);
  }
  case AKRCLI_WKT_STRUCT: {
    const akrcli_field *ff = akrcli_msg_field_by_number(m, 1);
    if (!ff || !ff->is_map || !map_value(ff)->msg) break;
    json_t *out = json_object();
    json_t *fields = json_object_get(raw, ff->json_name);
    const char *k;
    size_t klen;
    json_t *v;
    void *tmp;
    json_object_keylen_foreach_safe(fields, tmp, k, klen, v) {
      json_t *r = render_msg(c, map_value(ff)->msg, v, depth + 1);
      if (!r || !out || json_object_setn_new(out, k, klen, r) < 0) {
        json_decref(out);
        if (r) fail(c, "out of memory");
        return NULL;
      }
    }
    if (!out) fail(c, "out of memory");
    return out;
  }
  case AKRCLI_WKT_LIST_VALUE: {
    const akrcli_field *vf = akrcli_msg_field_by_number(m, 1);
    if (!vf || !vf->msg) break;
    json_t *out = json_array();
    json_t *vals = json_object_get(raw, vf->json_name);
    size_t i;
    json_t *v;
    json_array_foreach(vals, i, v) {
      json_t *r = render_msg(c, vf->msg, v, depth + 1);
      if (!r || !out || json_array_append_new(out, r) < 0) {
        json_decref(out);
        if (r) fail(c, "out of memory");
        return NULL;
      }
    }
    if (!out) fail(c, "out of memory");
    return out;
  }
  case AKRCLI_WKT_VALUE: {
    for (size_t i = 0; i < m->n_fields; i++) {
      const akrcli_field *f = &m->fields[i];
      json_t *v = json_object_get(raw, f->json_name);
      if (!v) continue;
      if (f->type == AKRCLI_T_ENUM) return json_null();
      return render_value(c, f, v, depth);
    }
    return json_null();
  }
  default: break;
  }
  fail(c, "%s does not have the fields of the well-known type", m->full_name);
  return NULL;
}

static json_t *render_msg(ctx *c, const akrcli_msg *m, json_t *raw, unsigned depth) {
  if (depth > c->max_depth) {
    fail(c, "messages nested deeper than %u", c->max_depth);
    return NULL;
  }
  if (!json_is_object(raw)) {
    fail(c, "internal: %s is not an object", m->full_name);
    return NULL;
  }
  if (m->wkt != AKRCLI_WKT_NONE) return render_wkt(c, m, raw, depth);
  json_t *out = json_object();
  if (!out) goto oom;
  for (size_t i = 0; i < m->n_fields; i++) {
    const akrcli_field *f = &m->fields[i];
    json_t *v = json_object_get(raw, f->json_name), *r = NULL;
    if (!v) {
      if (!c->emit_defaults || f->presence) continue;
      r = f->is_map ? json_object() : f->repeated ? json_array() : default_json(f);
      if (!r || json_object_set_new(out, f->json_name, r) < 0) goto oom;
      continue;
    }
    /* An empty repeated field or map is not printed (it is the default). */
    if (!c->emit_defaults && (f->is_map || f->repeated) &&
        (json_is_array(v) ? json_array_size(v) : json_object_size(v)) == 0)
      continue;
    size_t mark = path_field(c, f->json_name);
    if (f->is_map) {
      const akrcli_field *vf = map_value(f);
      r = json_object();
      const char *k;
      size_t klen;
      json_t *e;
      void *tmp;
      json_object_keylen_foreach_safe(v, tmp, k, klen, e) {
        json_t *x = render_value(c, vf, e, depth);
        if (!x || !r || json_object_setn_new(r, k, klen, x) < 0) {
          json_decref(r);
          json_decref(out);
          if (x) fail(c, "out of memory");
          return NULL;
        }
      }
    } else if (f->repeated) {
      r = json_array();
      size_t j;
      json_t *e;
      json_array_foreach(v, j, e) {
        json_t *x = render_value(c, f, e, depth);
        if (!x || !r || json_array_append_new(r, x) < 0) {
          json_decref(r);
          json_decref(out);
          if (x) fail(c, "out of memory");
          return NULL;
        }
      }
    } else {
      r = render_value(c, f, v, depth);
    }
    if (!r) {
      json_decref(out);
      return NULL;
    }
    path_pop(c, mark);
    if (json_object_set_new(out, f->json_name, r) < 0) goto oom;
  }
  return out;
oom:
  json_decref(out);
  fail(c, "out of memory");
  return NULL;
}

int akrcli_wire_to_json(const akrcli_msg *msg, const uint8_t *data, size_t len,
                        const akrcli_codec_options *options, json_t **ret_json,
                        char *err, size_t errlen) {
  ctx c;
  ctx_init(&c, options, err, errlen);
  json_t *raw = json_object();
  if (!raw) return fail(&c, "out of memory");
  size_t used;
  if (dec_message(&c, msg, data ? data : (const uint8_t *)"", len, raw, 1, 0, &used) <
      0) {
    json_decref(raw);
    return -1;
  }
  json_t *out = render_msg(&c, msg, raw, 1);
  json_decref(raw);
  if (!out) return -1;
  *ret_json = out;
  return 0;
}

/* --- JSON -> wire --- */

static int enc_msg(ctx *c, const akrcli_msg *m, json_t *v, buf *b, unsigned depth);

static const char *json_kind(json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER:
  case JSON_REAL: return "a number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  default: return "null";
  }
}

/* Parses a decimal integer string ("-12"); -1 if it is not one, -2 if it is
 * one beyond 64 bits. */
static int parse_int_string(const char *s, size_t n, int *neg, uint64_t *mag) {
  size_t i = 0;
  *neg = 0;
  if (i < n && s[i] == '-') {
    *neg = 1;
    i++;
  }
  if (i == n) return -1;
  for (size_t j = i; j < n; j++)
    if (s[j] < '0' || s[j] > '9') return -1;
  uint64_t v = 0;
  for (; i < n; i++) {
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return -2; /* digits, but too many */
    v = v * 10 + d;
  }
  *mag = v;
  return 0;
}

/* A JSON integer (number or string) as sign and magnitude. */
static int json_int(ctx *c, json_t *v, int *neg, uint64_t *mag) {
  if (json_is_integer(v)) {
    json_int_t x = json_integer_value(v);
    *neg = x < 0;
    *mag = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    return 0;
  }
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d != floor(d)) return fail(c, "%.17g is not an integer", d);
    if (fabs(d) >= 18446744073709551616.0) return fail(c, "%.17g is out of range", d);
    *neg = d < 0;
    *mag = (uint64_t)fabs(d);
    return 0;
  }
  if (json_is_string(v)) {
    int r = parse_int_string(json_string_value(v), json_string_length(v), neg, mag);
    if (r == -2) return fail(c, "\"%s\" is out of range", json_string_value(v));
    if (r < 0) return fail(c, "\"%s\" is not an integer", json_string_value(v));
    if (*neg && *mag == 0) *neg = 0;
    return 0;
  }
  return fail(c, "expected an integer, got %s", json_kind(v));
}

static int json_signed(ctx *c, json_t *v, int64_t lo, int64_t hi, int64_t *out) {
  int neg;
  uint64_t mag;
  if (json_int(c, v, &neg, &mag) < 0) return -1;
  uint64_t lim = neg ? (uint64_t)0 - (uint64_t)lo : (uint64_t)hi;
  if (mag > lim)
    return fail(c, "integer out of range [%" PRId64 ", %" PRId64 "]", lo, hi);
  *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
  if (neg && mag == (uint64_t)1 << 63) *out = INT64_MIN;
  return 0;
}

static int json_unsigned(ctx *c, json_t *v, uint64_t hi, uint64_t *out) {
  int neg;
  uint64_t mag;
  if (json_int(c, v, &neg, &mag) < 0) return -1;
  if (neg || mag > hi) return fail(c, "integer out of range [0, %" PRIu64 "]", hi);
  *out = mag;
  return 0;
}

static int json_double(ctx *c, json_t *v, double *out) {
  if (json_is_number(v)) {
    *out = json_number_value(v);
    return 0;
  }
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    if (strcmp(s, "NaN") == 0) {
      *out = NAN;
      return 0;
    }
    if (strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0) {
      *out = s[0] == '-' ? -INFINITY : INFINITY;
      return 0;
    }
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*s && *end == '\0' && (size_t)(end - s) == json_string_length(v) &&
        (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) && isfinite(d)) {
      *out = d;
      return 0;
    }
    return fail(c, "\"%s\" is not a number", s);
  }
  return fail(c, "expected a number, got %s", json_kind(v));
}

/* A numeric field's value as its wire bits (zig-zag and sign extension
 * done). */
static int json_to_raw(ctx *c, const akrcli_field *f, json_t *v, uint64_t *raw) {
  int64_t s;
  double d;
  switch (f->type) {
  case AKRCLI_T_INT32:
  case AKRCLI_T_SFIXED32:
  case AKRCLI_T_SINT32:
    if (json_signed(c, v, INT32_MIN, INT32_MAX, &s) < 0) return -1;
    if (f->type == AKRCLI_T_INT32)
      *raw = (uint64_t)s;
    else if (f->type == AKRCLI_T_SFIXED32)
      *raw = (uint32_t)s;
    else
      *raw = ((uint32_t)s << 1) ^ (s < 0 ? UINT32_MAX : 0u);
    return 0;
  case AKRCLI_T_INT64:
  case AKRCLI_T_SFIXED64:
  case AKRCLI_T_SINT64:
    if (json_signed(c, v, INT64_MIN, INT64_MAX, &s) < 0) return -1;
    *raw = f->type == AKRCLI_T_SINT64 ? ((uint64_t)s << 1) ^ (s < 0 ? UINT64_MAX : 0u)
                                      : (uint64_t)s;
    return 0;
  case AKRCLI_T_UINT32:
  case AKRCLI_T_FIXED32: return json_unsigned(c, v, UINT32_MAX, raw);
  case AKRCLI_T_UINT64:
  case AKRCLI_T_FIXED64: return json_unsigned(c, v, UINT64_MAX, raw);
  case AKRCLI_T_BOOL:
    if (!json_is_boolean(v))
      return fail(c, "expected true or false, got %s", json_kind(v));
    *raw = json_is_true(v);
    return 0;
  case AKRCLI_T_ENUM:
    if (json_is_string(v)) {
      int32_t n;
      if (akrcli_enum_number(f->enm, json_string_value(v), &n) < 0)
        return fail(c, "\"%s\" is not a value of enum %s", json_string_value(v),
                    f->enm->full_name);
      *raw = (uint64_t)(int64_t)n;
      return 0;
    }
    if (json_is_null(v) && f->enm->null_value) {
      *raw = 0;
      return 0;
    }
    if (json_signed(c, v, INT32_MIN, INT32_MAX, &s) < 0) return -1;
    *raw = (uint64_t)s;
    return 0;
  case AKRCLI_T_DOUBLE:
    if (json_double(c, v, &d) < 0) return -1;
    memcpy(raw, &d, sizeof d);
    return 0;
  case AKRCLI_T_FLOAT: {
    if (json_double(c, v, &d) < 0) return -1;
    if (isfinite(d) && (d > FLT_MAX || d < -FLT_MAX))
      return fail(c, "%g is out of range for a float", d);
    float fl = (float)d;
    uint32_t bits;
    memcpy(&bits, &fl, sizeof bits);
    *raw = bits;
    return 0;
  }
  default: return fail(c, "internal: not a numeric type");
  }
}

static int put_raw(ctx *c, buf *b, int want, uint64_t raw) {
  int rc = want == 0 ? buf_varint(b, raw) : buf_fixed(b, raw, want == 1 ? 8 : 4);
  return rc < 0 ? fail(c, "encoded message larger than %zu bytes", c->max_encoded) : 0;
}

static int enc_len_prefixed(ctx *c, buf *b, uint32_t number, const uint8_t *p,
                            size_t n) {
  if (buf_tag(b, number, 2) < 0 || buf_varint(b, n) < 0 || buf_put(b, p, n) < 0)
    return fail(c, "encoded message larger than %zu bytes", c->max_encoded);
  return 0;
}

/* Encodes one value of f (singular, element or map part) with its tag.
 * skip_default: leave out a default value (proto3 fields without presence). */
static int enc_single(ctx *c, const akrcli_field *f, json_t *v, buf *b, unsigned depth,
                      int skip_default) {
  if (json_is_null(v) && !(is_message(f) && f->msg->wkt == AKRCLI_WKT_VALUE) &&
      !(f->type == AKRCLI_T_ENUM && f->enm->null_value))
    return fail(c, "null is not allowed here");
  switch (f->type) {
  case AKRCLI_T_MESSAGE: {
    buf sub = {.max = c->max_encoded};
    int rc = enc_msg(c, f->msg, v, &sub, depth + 1);
    if (rc == 0) rc = enc_len_prefixed(c, b, f->number, sub.data, sub.len);
    free(sub.data);
    return rc;
  }
  case AKRCLI_T_GROUP:
    if (buf_tag(b, f->number, 3) < 0) return fail(c, "encoded message too large");
    if (enc_msg(c, f->msg, v, b, depth + 1) < 0) return -1;
    if (buf_tag(b, f->number, 4) < 0) return fail(c, "encoded message too large");
    return 0;
  case AKRCLI_T_STRING:
    if (!json_is_string(v)) return fail(c, "expected a string, got %s", json_kind(v));
    if (skip_default && json_string_length(v) == 0) return 0;
    return enc_len_prefixed(c, b, f->number, (const uint8_t *)json_string_value(v),
                            json_string_length(v));
  case AKRCLI_T_BYTES: {
    if (!json_is_string(v))
      return fail(c, "expected base64 in a string, got %s", json_kind(v));
    uint8_t *bytes;
    size_t n;
    if (b64_decode(json_string_value(v), json_string_length(v), &bytes, &n) < 0)
      return fail(c, "not valid base64");
    int rc = skip_default && n == 0 ? 0 : enc_len_prefixed(c, b, f->number, bytes, n);
    free(bytes);
    return rc;
  }
  default: {
    uint64_t raw;
    if (json_to_raw(c, f, v, &raw) < 0) return -1;
    if (skip_default && scalar_is_zero(f->type, raw)) return 0;
    int want = wire_type_of(f->type);
    if (buf_tag(b, f->number, want) < 0) return fail(c, "encoded message too large");
    return put_raw(c, b, want, raw);
  }
  }
}

/* A map key from its JSON object key. */
static int enc_map_key(ctx *c, const akrcli_field *kf, const char *k, size_t klen,
                       buf *b) {
  if (kf->type == AKRCLI_T_STRING)
    return enc_len_prefixed(c, b, kf->number, (const uint8_t *)k, klen);
  json_t *v;
  if (kf->type == AKRCLI_T_BOOL) {
    if (klen == 4 && memcmp(k, "true", 4) == 0)
      v = json_true();
    else if (klen == 5 && memcmp(k, "false", 5) == 0)
      v = json_false();
    else
      return fail(c, "map key \"%s\" is not true or false", k);
  } else {
    v = json_stringn(k, klen);
    if (!v) return fail(c, "out of memory");
  }
  int rc = enc_single(c, kf, v, b, 0, 0);
  json_decref(v);
  return rc;
}

static int enc_field(ctx *c, const akrcli_field *f, json_t *v, buf *b, unsigned depth) {
  if (f->is_map) {
    if (!json_is_object(v))
      return fail(c, "expected an object (a map), got %s", json_kind(v));
    const akrcli_field *kf = map_key(f), *vf = map_value(f);
    if (!kf || !vf)
      return fail(c, "map entry %s lacks its key or value", f->msg->full_name);
    const char *k;
    size_t klen;
    json_t *e;
    void *tmp;
    json_object_keylen_foreach_safe(v, tmp, k, klen, e) {
      size_t mark = path_push(c, "[\"%.40s\"]", k);
      buf entry = {.max = c->max_encoded};
      int rc = enc_map_key(c, kf, k, klen, &entry);
      if (rc == 0) rc = enc_single(c, vf, e, &entry, depth + 1, 0);
      if (rc == 0) rc = enc_len_prefixed(c, b, f->number, entry.data, entry.len);
      free(entry.data);
      if (rc < 0) return -1;
      path_pop(c, mark);
    }
    return 0;
  }
  if (f->repeated) {
    if (!json_is_array(v)) return fail(c, "expected an array, got %s", json_kind(v));
    size_t i;
    json_t *e;
    if (f->packed) {
      if (json_array_size(v) == 0) return 0;
      buf packed = {.max = c->max_encoded};
      int want = wire_type_of(f->type);
      json_array_foreach(v, i, e) {
        size_t mark = path_push(c, "[%zu]", i);
        uint64_t raw;
        if (json_to_raw(c, f, e, &raw) < 0 || put_raw(c, &packed, want, raw) < 0) {
          free(packed.data);
          return -1;
        }
        path_pop(c, mark);
      }
      int rc = enc_len_prefixed(c, b, f->number, packed.data, packed.len);
      free(packed.data);
      return rc;
    }
    json_array_foreach(v, i, e) {
      size_t mark = path_push(c, "[%zu]", i);
      if (enc_single(c, f, e, b, depth, 0) < 0) return -1;
      path_pop(c, mark);
    }
    return 0;
  }
  return enc_single(c, f, v, b, depth, !f->presence);
}

static int enc_plain(ctx *c, const akrcli_msg *m, json_t *obj, buf *b, unsigned depth) {
  if (!json_is_object(obj))
    return fail(c, "expected an object (message %s), got %s", m->full_name,
                json_kind(obj));
  const char *k;
  size_t klen;
  json_t *v;
  void *tmp;
  json_object_keylen_foreach_safe(obj, tmp, k, klen, v) {
    if (!akrcli_msg_field_by_key(m, k, klen))
      return fail(c, "unknown field \"%.*s\" in message %s",
                  (int)(klen > 80 ? 80 : klen), k, m->full_name);
  }
  const akrcli_field *oneof_set[64] = {0};
  for (size_t i = 0; i < m->n_fields; i++) {
    const akrcli_field *f = &m->fields[m->by_number[i]];
    json_t *a = json_object_get(obj, f->json_name);
    json_t *n = strcmp(f->name, f->json_name) ? json_object_get(obj, f->name) : NULL;
    if (a && n)
      return fail(c, "field %s given twice (as %s and %s)", f->name, f->json_name,
                  f->name);
    v = a ? a : n;
    int value_null =
        v && json_is_null(v) &&
        !(!f->repeated && is_message(f) && f->msg->wkt == AKRCLI_WKT_VALUE);
    if (!v || value_null) {
      if (f->required)
        return fail(c, "missing required field %s of %s", f->name, m->full_name);
      continue;
    }
    if (f->oneof >= 0 && f->oneof < 64) {
      if (oneof_set[f->oneof])
        return fail(c, "oneof %s of %s: both %s and %s are set",
                    m->oneof_names[f->oneof], m->full_name,
                    oneof_set[f->oneof]->json_name, f->json_name);
      oneof_set[f->oneof] = f;
    }
    size_t mark = path_field(c, f->json_name);
    if (enc_field(c, f, v, b, depth) < 0) return -1;
    path_pop(c, mark);
  }
  return 0;
}

/* snake_case from lowerCamelCase (FieldMask paths). */
static json_t *snake_path(const char *s, size_t n) {
  char *out = malloc(n * 2 + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] >= 'A' && s[i] <= 'Z') {
      out[o++] = '_';
      out[o++] = (char)(s[i] - 'A' + 'a');
    } else {
      out[o++] = s[i];
    }
  }
  json_t *v = json_stringn(out, o);
  free(out);
  return v;
}

static int digits(const char *s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 0;
}

/* ".123" (1 to 9 digits) as nanoseconds; *len gets the characters used. */
static int parse_frac(const char *s, int32_t *nanos, size_t *len) {
  *nanos = 0;
  *len = 0;
  if (s[0] != '.') return 0;
  size_t i = 1;
  int32_t v = 0;
  while (s[i] >= '0' && s[i] <= '9') {
    if (i > 9) return -1;
    v = v * 10 + (s[i] - '0');
    i++;
  }
  if (i == 1) return -1;
  for (size_t k = i; k <= 9; k++)
    v *= 10;
  *nanos = v;
  *len = i;
  return 0;
}

static int parse_timestamp(const char *s, int64_t *secs, int32_t *nanos) {
  int y, mo, d, h, mi, se;
  size_t n = strlen(s), fl;
  if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
      s[13] != ':' || s[16] != ':')
    return -1;
  if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
      digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
    return -1;
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
      (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || se > 59)
    return -1;
  if (parse_frac(s + 19, nanos, &fl) < 0) return -1;
  const char *z = s + 19 + fl;
  int64_t off = 0;
  if ((z[0] == 'Z' || z[0] == 'z') && z[1] == '\0') {
    off = 0;
  } else if ((z[0] == '+' || z[0] == '-') && strlen(z) == 6 && z[3] == ':') {
    int oh, om;
    if (digits(z + 1, 2, &oh) || digits(z + 4, 2, &om) || oh > 23 || om > 59) return -1;
    off = (z[0] == '-' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
  } else {
    return -1;
  }
  *secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
          se - off;
  return *secs < TS_MIN || *secs > TS_MAX ? -1 : 0;
}

static int parse_duration(const char *s, int64_t *secs, int32_t *nanos) {
  int neg = s[0] == '-';
  const char *p = s + neg;
  size_t i = 0;
  int64_t v = 0;
  while (p[i] >= '0' && p[i] <= '9') {
    if (i >= 12) return -1;
    v = v * 10 + (p[i] - '0');
    i++;
  }
  if (i == 0) return -1;
  size_t fl;
  if (parse_frac(p + i, nanos, &fl) < 0) return -1;
  if (strcmp(p + i + fl, "s") != 0 || v > DUR_MAX) return -1;
  *secs = neg ? -v : v;
  if (neg) *nanos = -*nanos;
  return 0;
}

/* A well-known type's JSON form as its raw object (new reference), or NULL
 * after fail(). */
static json_t *wkt_to_raw(ctx *c, const akrcli_msg *m, json_t *v) {
  const akrcli_field *f1 = akrcli_msg_field_by_number(m, 1);
  const akrcli_field *f2 = akrcli_msg_field_by_number(m, 2);
  if (!f1) {
    fail(c, "%s does not have the fields of the well-known type", m->full_name);
    return NULL;
  }
  json_t *raw = json_object();
  if (!raw) {
    fail(c, "out of memory");
    return NULL;
  }
  int rc = 0;
  switch (m->wkt) {
  case AKRCLI_WKT_TIMESTAMP:
  case AKRCLI_WKT_DURATION: {
    int64_t s;
    int32_t ns;
    if (!f2 || !json_is_string(v)) {
      fail(c, "expected a %s string, got %s",
           m->wkt == AKRCLI_WKT_TIMESTAMP ? "RFC 3339 timestamp"
                                          : "duration (\"1.5s\")",
           json_kind(v));
      goto bad;
    }
    if ((m->wkt == AKRCLI_WKT_TIMESTAMP ? parse_timestamp : parse_duration)(
            json_string_value(v), &s, &ns) < 0) {
      fail(c, "\"%s\" is not a valid %s", json_string_value(v),
           m->wkt == AKRCLI_WKT_TIMESTAMP ? "timestamp" : "duration");
      goto bad;
    }
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%" PRId64, s);
    rc = json_object_set_new(raw, f1->json_name, string_json(tmp));
    if (rc == 0) rc = json_object_set_new(raw, f2->json_name, json_integer(ns));
    break;
  }
  case AKRCLI_WKT_WRAPPER: rc = json_object_set(raw, f1->json_name, v); break;
  case AKRCLI_WKT_FIELD_MASK: {
    if (!json_is_string(v)) {
      fail(c, "expected a field mask string (\"a.b,c\"), got %s", json_kind(v));
      goto bad;
    }
    json_t *paths = json_array();
    rc = json_object_set_new(raw, f1->json_name, paths);
    const char *s = json_string_value(v), *end = s + json_string_length(v);
    /* "" is no path; otherwise every comma separates two paths (empty ones
     * included, so that printing gives the same text back). */
    while (rc == 0 && paths && s < end + (json_string_length(v) > 0)) {
      const char *comma = memchr(s, ',', (size_t)(end - s));
      size_t n = comma ? (size_t)(comma - s) : (size_t)(end - s);
      rc = json_array_append_new(paths, snake_path(s, n));
      if (!comma) break;
      s = comma + 1;
    }
    break;
  }
  case AKRCLI_WKT_STRUCT:
    if (!json_is_object(v)) {
      fail(c, "expected an object (google.protobuf.Struct), got %s", json_kind(v));
      goto bad;
    }
    rc = json_object_set(raw, f1->json_name, v);
    break;
  case AKRCLI_WKT_LIST_VALUE:
    if (!json_is_array(v)) {
      fail(c, "expected an array (google.protobuf.ListValue), got %s", json_kind(v));
      goto bad;
    }
    rc = json_object_set(raw, f1->json_name, v);
    break;
  case AKRCLI_WKT_VALUE: {
    /* null_value 1, number_value 2, string_value 3, bool_value 4,
     * struct_value 5, list_value 6. */
    uint32_t num = json_is_null(v)      ? 1
                   : json_is_number(v)  ? 2
                   : json_is_string(v)  ? 3
                   : json_is_boolean(v) ? 4
                   : json_is_object(v)  ? 5
                                        : 6;
    const akrcli_field *f = akrcli_msg_field_by_number(m, num);
    if (!f) {
      fail(c, "%s lacks field %u", m->full_name, num);
      goto bad;
    }
    rc = json_object_set_new(raw, f->json_name,
                             num == 1 ? string_json("NULL_VALUE") : json_incref(v));
    break;
  }
  default: break;
  }
  if (rc < 0) {
    fail(c, "out of memory");
    goto bad;
  }
  return raw;
bad:
  json_decref(raw);
  return NULL;
}

static int enc_msg(ctx *c, const akrcli_msg *m, json_t *v, buf *b, unsigned depth) {
  if (depth > c->max_depth)
    return fail(c, "messages nested deeper than %u", c->max_depth);
  if (m->wkt == AKRCLI_WKT_NONE) return enc_plain(c, m, v, b, depth);
  json_t *raw = wkt_to_raw(c, m, v);
  if (!raw) return -1;
  int rc = enc_plain(c, m, raw, b, depth);
  json_decref(raw);
  return rc;
}

int akrcli_json_to_wire(const akrcli_msg *msg, json_t *json,
                        const akrcli_codec_options *options, uint8_t **ret_data,
                        size_t *ret_len, char *err, size_t errlen) {
  ctx c;
  ctx_init(&c, options, err, errlen);
  buf b = {.max = c.max_encoded};
  if (enc_msg(&c, msg, json, &b, 1) < 0) {
    free(b.data);
    return -1;
  }
  *ret_data = b.data;
  *ret_len = b.len;
  return 0;
}

/* --- JSON text --- */

json_t *akrcli_json_parse(const char *text, size_t len, char *err, size_t errlen) {
  if (len > AKRCLI_MAX_JSON_TEXT) {
    snprintf(err, errlen, "JSON text larger than %u bytes",
             (unsigned)AKRCLI_MAX_JSON_TEXT);
    return NULL;
  }
  json_error_t je;
  json_t *v = json_loadb(
      text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
  if (!v) snprintf(err, errlen, "line %d column %d: %s", je.line, je.column, je.text);
  return v;
}

static int dump_string(buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (buf_put(b, "\"", 1) < 0) return -1;
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    char esc[7] = {0};
    if (ch == '"' || ch == '\\') {
      esc[0] = '\\';
      esc[1] = (char)ch;
    } else if (ch < 0x20) {
      const char *named = ch == '\n'   ? "\\n"
                          : ch == '\t' ? "\\t"
                          : ch == '\r' ? "\\r"
                          : ch == '\b' ? "\\b"
                          : ch == '\f' ? "\\f"
                                       : NULL;
      if (named)
        memcpy(esc, named, 2);
      else {
        memcpy(esc, "\\u00", 4);
        esc[4] = hex[ch >> 4];
        esc[5] = hex[ch & 15];
      }
    } else {
      continue;
    }
    if (buf_put(b, s + start, i - start) < 0 || buf_str(b, esc) < 0) return -1;
    start = i + 1;
  }
  if (buf_put(b, s + start, n - start) < 0) return -1;
  return buf_put(b, "\"", 1);
}

static int dump_indent(buf *b, int pretty, unsigned level) {
  if (!pretty) return 0;
  if (buf_put(b, "\n", 1) < 0) return -1;
  for (unsigned i = 0; i < level; i++)
    if (buf_put(b, "  ", 2) < 0) return -1;
  return 0;
}

static int dump_value(buf *b, json_t *v, int pretty, unsigned level) {
  char tmp[40];
  if (level > AKRCLI_MAX_JSON_DEPTH) return -1; /* the recursion's bound */
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    if (json_object_size(v) == 0) return buf_str(b, "{}");
    if (buf_put(b, "{", 1) < 0) return -1;
    const char *k;
    size_t klen, i = 0;
    json_t *e;
    void *t;
    json_object_keylen_foreach_safe(v, t, k, klen, e) {
      if ((i++ && buf_put(b, ",", 1) < 0) || dump_indent(b, pretty, level + 1) < 0 ||
          dump_string(b, k, klen) < 0 || buf_str(b, pretty ? ": " : ":") < 0 ||
          dump_value(b, e, pretty, level + 1) < 0)
        return -1;
    }
    if (dump_indent(b, pretty, level) < 0) return -1;
    return buf_put(b, "}", 1);
  }
  case JSON_ARRAY: {
    if (json_array_size(v) == 0) return buf_str(b, "[]");
    if (buf_put(b, "[", 1) < 0) return -1;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
      if ((i && buf_put(b, ",", 1) < 0) || dump_indent(b, pretty, level + 1) < 0 ||
          dump_value(b, e, pretty, level + 1) < 0)
        return -1;
    }
    if (dump_indent(b, pretty, level) < 0) return -1;
    return buf_put(b, "]", 1);
  }
  case JSON_STRING: return dump_string(b, json_string_value(v), json_string_length(v));
  case JSON_INTEGER:
    snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return buf_str(b, tmp);
  case JSON_REAL: {
    double d = json_real_value(v);
    for (int p = 1; p <= 17; p++) {
      snprintf(tmp, sizeof tmp, "%.*g", p, d);
      if (strtod(tmp, NULL) == d) break;
    }
    return buf_str(b, tmp);
  }
  case JSON_TRUE: return buf_str(b, "true");
  case JSON_FALSE: return buf_str(b, "false");
  default: return buf_str(b, "null");
  }
}

char *akrcli_json_dump(json_t *json, int pretty) {
  buf b = {.max = SIZE_MAX / 2};
  if (dump_value(&b, json, pretty, 0) < 0 || buf_put(&b, "", 1) < 0) {
    free(b.data);
    return NULL;
  }
  return (char *)b.data;
}
