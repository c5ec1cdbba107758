/* utf8.c: UTF-8 in decoded string fields (utf8.h). */
#include "wire/utf8.h"

#include <stdint.h>
#include <string.h>

#define UTF8_MAX_TYPES 64 /* types looked at by akr_message_has_strings() */
#define UTF8_CACHE 16     /* types remembered during one akr_check_utf8() */

/* Plans: what the walk does with a message type. */
#define PLAN_ANY 1u /* a covered string can occur in it or below */
#define PLAN_OWN 2u /* its own string fields are covered */

static int cont(uint8_t b) {
  return (b & 0xc0) == 0x80;
}

/* The sequence led by s[0] >= 0x80 (Unicode 15, table 3-7), with `left`
 * bytes from s[0]: its length, or 0 if it is not well-formed. */
static size_t sequence(const uint8_t *s, size_t left) {
  uint8_t c = s[0], lo = 0x80, hi = 0xbf;
  size_t n;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0; /* overlong below U+0800 */
    if (c == 0xed) hi = 0x9f; /* surrogates U+D800..U+DFFF */
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90; /* overlong below U+10000 */
    if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
  } else {
    return 0; /* a continuation byte, C0, C1, F5..FF */
  }
  if (left < n || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if (!cont(s[i])) return 0;
  return n;
}

int akr_utf8_valid(const void *data, size_t len) {
  const uint8_t *s = data, *end = s + len;
  while (s < end) {
    /* ASCII, eight bytes at a time. */
    while (end - s >= 8) {
      uint64_t w;
      memcpy(&w, s, sizeof w);
      if (w & 0x8080808080808080u) break;
      s += 8;
    }
    while (s < end && *s < 0x80)
      s++;
    /* Then characters up to the next ASCII byte (text in one script). */
    while (s < end && *s >= 0x80) {
      size_t n = sequence(s, (size_t)(end - s));
      if (!n) return 0;
      s += n;
    }
  }
  return 1;
}

/* proto2 if a field is REQUIRED or OPTIONAL (utf8.h says why). */
static int covered(const ProtobufCMessageDescriptor *d) {
  for (unsigned i = 0; i < d->n_fields; i++)
    if (d->fields[i].label == PROTOBUF_C_LABEL_REQUIRED ||
        d->fields[i].label == PROTOBUF_C_LABEL_OPTIONAL)
      return 0;
  return 1;
}

static int own_strings(const ProtobufCMessageDescriptor *d) {
  if (!covered(d)) return 0;
  for (unsigned i = 0; i < d->n_fields; i++)
    if (d->fields[i].type == PROTOBUF_C_TYPE_STRING) return 1;
  return 0;
}

/* Depth first over the types reachable from d. A type seen before has
 * been answered 0 or is on the current path: its answer is being found. */
static int reaches(const ProtobufCMessageDescriptor *d,
                   const ProtobufCMessageDescriptor **seen, unsigned *n) {
  for (unsigned i = 0; i < *n; i++)
    if (seen[i] == d) return 0;
  if (*n == UTF8_MAX_TYPES) return 1; /* too many to tell: assume so */
  seen[(*n)++] = d;
  if (own_strings(d)) return 1;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type == PROTOBUF_C_TYPE_MESSAGE && reaches(f->descriptor, seen, n)) return 1;
  }
  return 0;
}

int akr_message_has_strings(const ProtobufCMessageDescriptor *desc) {
  const ProtobufCMessageDescriptor *seen[UTF8_MAX_TYPES];
  unsigned n = 0;
  return reaches(desc, seen, &n);
}

typedef struct walk {
  unsigned max_depth, n;
  const ProtobufCMessageDescriptor *types[UTF8_CACHE];
  unsigned char plans[UTF8_CACHE];
  akr_utf8_error *ret;
} walk;

static unsigned plan_of(walk *w, const ProtobufCMessageDescriptor *d) {
  for (unsigned i = 0; i < w->n; i++)
    if (w->types[i] == d) return w->plans[i];
  unsigned plan = 0;
  if (own_strings(d))
    plan = PLAN_ANY | PLAN_OWN;
  else if (akr_message_has_strings(d))
    plan = PLAN_ANY;
  if (w->n < UTF8_CACHE) {
    w->types[w->n] = d;
    w->plans[w->n++] = (unsigned char)plan;
  }
  return plan;
}

static int fail(walk *w, const ProtobufCMessageDescriptor *d,
                const ProtobufCFieldDescriptor *f, const char *what) {
  *w->ret = (akr_utf8_error){.message = d, .field = f, .what = what};
  return -1;
}

/* Field f's values in msg, as protobuf-c lays them out: a repeated field
 * is a count and an array of pointers; a singular one a pointer, present
 * in a oneof only when the case names it. Strings and messages are
 * pointers either way (NULL: absent). Returns where the first pointer is;
 * value() reads one (memcpy: the pointers are typed `char *`, `Foo *`). */
static const char *values(const ProtobufCMessage *msg,
                          const ProtobufCFieldDescriptor *f, size_t *ret_n) {
  const char *base = (const char *)msg;
  if (f->label == PROTOBUF_C_LABEL_REPEATED) {
    const char *v;
    memcpy(ret_n, base + f->quantifier_offset, sizeof *ret_n);
    memcpy(&v, base + f->offset, sizeof v);
    return v;
  }
  *ret_n = 1;
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
    uint32_t which;
    memcpy(&which, base + f->quantifier_offset, sizeof which);
    *ret_n = which == f->id;
  }
  return base + f->offset;
}

static const void *value(const char *values, size_t k) {
  const void *p;
  memcpy(&p, values + k * sizeof p, sizeof p);
  return p;
}

static int check_message(walk *w, const ProtobufCMessage *msg, unsigned depth) {
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  unsigned own = plan_of(w, d) & PLAN_OWN;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    int string = f->type == PROTOBUF_C_TYPE_STRING;
    if (string ? !own : f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    if (!string && !(plan_of(w, f->descriptor) & PLAN_ANY)) continue;
    size_t n;
    const char *v = values(msg, f, &n);
    for (size_t k = 0; k < n; k++) {
      const void *p = value(v, k);
      if (!p) continue;
      if (string) {
        if (!akr_utf8_valid(p, strlen(p))) return fail(w, d, f, "invalid UTF-8");
      } else {
        if (depth >= w->max_depth) return fail(w, d, f, "nesting deeper than allowed");
        if (check_message(w, p, depth + 1)) return -1;
      }
    }
  }
  return 0;
}

int akr_check_utf8(const ProtobufCMessage *msg, unsigned max_depth,
                   akr_utf8_error *ret_error) {
  akr_utf8_error e;
  walk w = {.max_depth = max_depth, .ret = &e};
  if (check_message(&w, msg, 1)) {
    *ret_error = e;
    return -1;
  }
  return 0;
}
