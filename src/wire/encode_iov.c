/* encode_iov.c: a request frame as pieces for sendmsg(), so that a large
 * body is sent from the caller's memory instead of being copied into one
 * buffer first (akr_request_encode_iov(), encode.h). */
#include <string.h>

#include "wire/encode.h"

/* A byte string of the body that is sent where it is. */
typedef struct iov_ref {
  const void *data;
  size_t len;
} iov_ref;

/* Whether protobuf-c packs the bytes or string field `f` (not repeated), by
 * its rule for each label: a oneof member if chosen, a proto2 optional one if
 * set (a string: not the default), a proto3 one if not empty. */
static int field_packed(const ProtobufCFieldDescriptor *f, const void *member,
                        const void *qmember) {
  int is_str = f->type == PROTOBUF_C_TYPE_STRING;
  const char *str = is_str ? *(const char *const *)member : NULL;
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
    if (*(const uint32_t *)qmember != f->id) return 0;
    return !is_str || (str && str != f->default_value);
  }
  switch (f->label) {
  case PROTOBUF_C_LABEL_REQUIRED: return 1;
  case PROTOBUF_C_LABEL_OPTIONAL:
    return is_str ? str && str != f->default_value
                  : *(const protobuf_c_boolean *)qmember != 0;
  default: /* PROTOBUF_C_LABEL_NONE: proto3 */
    return is_str ? str && str[0] : ((const ProtobufCBinaryData *)member)->len != 0;
  }
}

/* Finds the byte strings of `msg`'s own fields worth sending in place (at
 * most `max`), in the order protobuf_c_message_pack_to_buffer() appends
 * them: field by field as the descriptor lists them, elements in order.
 * Returns their total size. */
static size_t find_refs(const ProtobufCMessage *msg, iov_ref *refs, size_t max,
                        size_t *ret_n) {
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  size_t n_refs = 0, total = 0;
  for (unsigned i = 0; i < d->n_fields && n_refs < max; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_BYTES && f->type != PROTOBUF_C_TYPE_STRING) continue;
    const char *member = (const char *)msg + f->offset;
    const char *qmember = (const char *)msg + f->quantifier_offset;
    size_t count = 1;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      count = *(const size_t *)qmember;
      member = *(const char *const *)member; /* the array of values */
    } else if (!field_packed(f, member, qmember)) {
      continue;
    }
    for (size_t k = 0; k < count && n_refs < max; k++) {
      const void *data;
      size_t len;
      if (f->type == PROTOBUF_C_TYPE_BYTES) {
        const ProtobufCBinaryData *b = (const ProtobufCBinaryData *)member + k;
        data = b->data;
        len = b->len;
      } else {
        data = ((const char *const *)member)[k];
        len = data ? strlen(data) : 0;
      }
      if (len < AKR_IOV_REF_MIN) continue;
      refs[n_refs++] = (iov_ref){.data = data, .len = len};
      total += len;
    }
  }
  *ret_n = n_refs;
  return total;
}

/* A protobuf-c output that builds the pieces. protobuf-c hands a field's
 * bytes or string value to append() where it is, but a nested message as a
 * temporary copy: so an append becomes a piece of its own only if it is one
 * of the byte strings find_refs() found (its address, not its size, tells).
 * Everything else is copied to the scratch, consecutive copies into one
 * piece. */
typedef struct iov_sink {
  ProtobufCBuffer base;
  struct iovec *iov;
  size_t n_iov, max_iov;
  uint8_t *scratch;
  size_t used, cap;
  const iov_ref *refs;
  size_t n_refs, next_ref;
  int in_scratch; /* the last piece ends at the scratch's end */
  int failed;     /* not packed as find_refs() foresaw */
} iov_sink;

static void sink_append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data) {
  iov_sink *s = (iov_sink *)buffer;
  if (s->failed || len == 0) return;
  for (size_t k = s->next_ref; len >= AKR_IOV_REF_MIN && k < s->n_refs; k++) {
    if (s->refs[k].data != data || s->refs[k].len != len) continue;
    if (s->n_iov == s->max_iov) break;
    s->iov[s->n_iov++] = (struct iovec){.iov_base = (void *)data, .iov_len = len};
    s->next_ref = k + 1;
    s->in_scratch = 0;
    return;
  }
  if (len > s->cap - s->used || (!s->in_scratch && s->n_iov == s->max_iov)) {
    s->failed = 1;
    return;
  }
  if (s->in_scratch)
    s->iov[s->n_iov - 1].iov_len += len;
  else
    s->iov[s->n_iov++] =
        (struct iovec){.iov_base = s->scratch + s->used, .iov_len = len};
  memcpy(s->scratch + s->used, data, len);
  s->used += len;
  s->in_scratch = 1;
}

size_t akr_request_encode_iov(const akr_request_spec *spec, uint8_t *scratch,
                              size_t scratch_cap, struct iovec *iov, size_t max_iov,
                              size_t *ret_n_iov, size_t *ret_scratch_need) {
  *ret_n_iov = 0;
  *ret_scratch_need = 0;
  if (max_iov > AKR_IOV_MAX) max_iov = AKR_IOV_MAX;
  if (max_iov < 3) return 0;
  size_t frame = AKR_PREFIX_LEN + spec->head_len_ + spec->body_len_;
  iov_ref refs[AKR_IOV_MAX / 2];
  size_t n_refs = 0, in_place = 0;
  if (spec->body)
    in_place = find_refs(spec->body, refs, (max_iov - 1) / 2, &n_refs);
  else if (spec->raw_body && spec->raw_body_len >= AKR_IOV_REF_MIN)
    in_place = spec->raw_body_len;
  /* Mostly copied anyway: one buffer is cheaper than pieces, and a nested
   * message would be copied twice (into protobuf-c's temporary, then here). */
  if (in_place > spec->body_len_ || in_place < frame - frame / 4) return 0;
  size_t need = frame - in_place;
  if (need > scratch_cap) {
    *ret_scratch_need = need;
    return 0;
  }
  uint8_t *p = akr_request_head_encode(spec, scratch);
  iov[0] = (struct iovec){.iov_base = scratch, .iov_len = (size_t)(p - scratch)};
  if (!spec->body) {
    iov[1] = (struct iovec){.iov_base = (void *)spec->raw_body,
                            .iov_len = spec->raw_body_len};
    *ret_n_iov = 2;
    return frame;
  }
  iov_sink s = {.base = {.append = sink_append},
                .iov = iov,
                .n_iov = 1,
                .max_iov = max_iov,
                .scratch = scratch,
                .used = iov[0].iov_len,
                .cap = need,
                .refs = refs,
                .n_refs = n_refs,
                .in_scratch = 1};
  size_t body = protobuf_c_message_pack_to_buffer(spec->body, &s.base);
  if (s.failed || s.used != need || body != spec->body_len_) return 0;
  *ret_n_iov = s.n_iov;
  return frame;
}
