/* groups.c: skipping protobuf groups in heads (groups.h). */
#include "wire/groups.h"

#include <string.h>

#include "wire/pb.h"

int akr_skip_group(const uint8_t **p, const uint8_t *end, uint64_t field) {
  uint64_t open[AKR_MAX_GROUP_DEPTH]; /* field numbers of the open groups */
  unsigned depth = 0;
  open[depth++] = field;
  while (depth) {
    uint64_t key, len;
    const uint8_t *data;
    if (*p >= end || akr_next_field(p, end, &key, &data, &len)) return -1;
    if ((key & 7) == 3) {
      if (depth == AKR_MAX_GROUP_DEPTH) return -1;
      open[depth++] = key >> 3;
    } else if ((key & 7) == 4) {
      if (open[--depth] != key >> 3) return -1;
    }
  }
  return 0;
}

/* akr_strip_groups() for one message; `depth` bounds the recursion into
 * known message fields, which a recursive type would otherwise leave to the
 * input (heads nest 2 deep). */
static long strip(const ProtobufCMessageDescriptor *desc, const uint8_t *in, size_t len,
                  uint8_t *out, size_t *ret_len, unsigned depth) {
  const uint8_t *p = in, *end = in + len;
  uint8_t *o = out;
  long dropped = 0;
  if (depth > AKR_MAX_GROUP_DEPTH) return -1;
  while (p < end) {
    const uint8_t *field_start = p, *data;
    uint64_t key, flen;
    if (akr_next_field(&p, end, &key, &data, &flen)) return -1;
    if ((key & 7) == 3) {
      if (akr_skip_group(&p, end, key >> 3)) return -1;
      dropped++;
      continue;
    }
    if ((key & 7) == 4) return -1; /* an end tag with no group open */
    const ProtobufCFieldDescriptor *f =
        (key & 7) == 2 && key >> 3 <= UINT32_MAX
            ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3))
            : NULL;
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE) {
      memcpy(o, field_start, (size_t)(p - field_start));
      o += p - field_start;
      continue;
    }
    /* A known submessage: strip it into the room its old length took (the
     * tag is copied as it was; the new length is never longer than the old
     * one's shortest encoding), then close the gap. */
    const uint8_t *after_key = field_start;
    akr_get_varint(&after_key, end, &key); /* read once already: cannot fail */
    size_t tag_len = (size_t)(after_key - field_start), sub_len;
    uint8_t *tag = o, *room = o + tag_len + akr_varint_size(flen);
    memcpy(tag, field_start, tag_len);
    long sub = strip(f->descriptor, data, (size_t)flen, room, &sub_len, depth + 1);
    if (sub < 0) return -1;
    dropped += sub;
    uint8_t *body = akr_put_varint(tag + tag_len, sub_len);
    memmove(body, room, sub_len);
    o = body + sub_len;
  }
  *ret_len = (size_t)(o - out);
  return dropped;
}

long akr_strip_groups(const ProtobufCMessageDescriptor *desc, const uint8_t *in,
                      size_t len, uint8_t *out, size_t *ret_len) {
  return strip(desc, in, len, out, ret_len, 1);
}
