/* redact.c: sensitive fields (redact.h). The body is walked in its wire
 * format, field by field, with the type's descriptors: a sensitive field is
 * dropped, an embedded message is walked and re-emitted with its new
 * length, every other field is copied as it is. Decoding into messages and
 * encoding again would also work, but it allocates per field and would
 * reorder unknown fields. */
#include "server/redact.h"

#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"
#include "wire/pb.h"

struct akr_redact_set {
  ackrpc_sensitive_field *v;
  size_t n, cap;
};

ackrpc_status ackrpc_server_add_sensitive_fields(ackrpc_server *server,
                                                 const ackrpc_sensitive_field *fields,
                                                 size_t n) {
  if (!server) return ACKRPC_E_INVAL;
  return akr_redact_add(&server->redact, fields, n);
}

static int marked(const akr_redact_set *set, const ProtobufCMessageDescriptor *type,
                  uint32_t number) {
  for (size_t i = 0; i < set->n; i++)
    if (set->v[i].message == type && set->v[i].number == number) return 1;
  return 0;
}

ackrpc_status akr_redact_add(akr_redact_set **setp,
                             const ackrpc_sensitive_field *fields, size_t n) {
  if (n && !fields) return ACKRPC_E_INVAL;
  for (size_t i = 0; i < n; i++)
    if (!fields[i].message) return ACKRPC_E_INVAL;
  if (!n) return ACKRPC_OK;
  akr_redact_set *set = *setp;
  int made = !set;
  if (made && !(set = calloc(1, sizeof *set))) return ACKRPC_E_NOMEM;
  if (set->n + n > set->cap) {
    size_t cap = set->n + n + 16;
    ackrpc_sensitive_field *v = realloc(set->v, cap * sizeof *v);
    if (!v) {
      if (made) free(set);
      return ACKRPC_E_NOMEM;
    }
    set->v = v;
    set->cap = cap;
  }
  for (size_t i = 0; i < n; i++)
    if (!marked(set, fields[i].message, fields[i].number)) set->v[set->n++] = fields[i];
  *setp = set;
  return ACKRPC_OK;
}

void akr_redact_free(akr_redact_set *set) {
  if (!set) return;
  free(set->v);
  free(set);
}

/* --- the walk ---------------------------------------------------------- */

typedef struct out {
  uint8_t *p;
  size_t len, cap;
} out;

static int put(out *o, const uint8_t *p, size_t n) {
  if (o->len + n > o->cap) {
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + n)
      cap *= 2;
    uint8_t *q = realloc(o->p, cap);
    if (!q) return -1;
    o->p = q;
    o->cap = cap;
  }
  if (n) memcpy(o->p + o->len, p, n);
  o->len += n;
  return 0;
}

static int put_varint(out *o, uint64_t v) {
  uint8_t b[10];
  return put(o, b, (size_t)(akr_put_varint(b, v) - b));
}

/* Whether `type`, or a message type reachable from it, has a sensitive
 * field (walking at most 256 types). */
static int may_hold(const akr_redact_set *set, const ProtobufCMessageDescriptor *type,
                    const ProtobufCMessageDescriptor **seen, size_t *n_seen) {
  if (!type) return 0;
  for (size_t i = 0; i < *n_seen; i++)
    if (seen[i] == type) return 0;
  if (*n_seen == 256) return 1; /* too many to tell: walk the body */
  seen[(*n_seen)++] = type;
  for (unsigned i = 0; i < type->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &type->fields[i];
    if (marked(set, type, f->id)) return 1;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
        may_hold(set, f->descriptor, seen, n_seen))
      return 1;
  }
  return 0;
}

/* Copies the fields of body[0, len) into `o`, without the sensitive ones;
 * counts those left out in *removed. 0, or -1. */
static int walk(const akr_redact_set *set, const ProtobufCMessageDescriptor *type,
                const uint8_t *body, size_t len, unsigned depth, out *o,
                size_t *removed) {
  if (depth > AKR_REDACT_MAX_DEPTH) return -1;
  const uint8_t *p = body, *end = body + len;
  while (p < end) {
    const uint8_t *start = p, *value = NULL;
    uint64_t tag, value_len = 0;
    if (akr_next_field(&p, end, &tag, &value, &value_len) != 0) return -1;
    uint64_t number = tag >> 3;
    unsigned wt = (unsigned)(tag & 7);
    if (wt == 3 || wt == 4 || number == 0 || number > 0x1fffffff)
      return -1; /* groups cannot be walked without reading them whole */
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(type, (unsigned)number);
    if (f && marked(set, type, f->id)) {
      (*removed)++;
      continue;
    }
    if (f && wt == 2 && f->type == PROTOBUF_C_TYPE_MESSAGE) {
      /* An embedded message: walked; re-emitted with its new length if
       * something in it was left out. */
      out sub = {0};
      size_t before = *removed;
      int rc =
          walk(set, f->descriptor, value, (size_t)value_len, depth + 1, &sub, removed);
      int changed = *removed != before;
      if (rc == 0 && changed &&
          (put_varint(o, tag) != 0 || put_varint(o, sub.len) != 0 ||
           put(o, sub.p, sub.len) != 0))
        rc = -1;
      free(sub.p);
      if (rc != 0) return -1;
      if (changed) continue;
    }
    if (put(o, start, (size_t)(p - start)) != 0) return -1;
  }
  return 0;
}

int akr_redact(const akr_redact_set *set, const ProtobufCMessageDescriptor *type,
               const uint8_t *body, size_t len, uint8_t **ret, size_t *ret_len) {
  if (!set || !type) return 0;
  const ProtobufCMessageDescriptor *seen[256];
  size_t n_seen = 0;
  if (!may_hold(set, type, seen, &n_seen)) return 0;
  out o = {0};
  size_t removed = 0;
  if (walk(set, type, body, len, 1, &o, &removed) != 0) {
    free(o.p);
    return -1;
  }
  if (!removed) {
    free(o.p);
    return 0;
  }
  *ret = o.p;
  *ret_len = o.len;
  return 1;
}
