/* depth.c: how deep a message type nests, and how deep wire bytes do
 * (depth.h). */
#include "wire/depth.h"

#include "wire/pb.h"

#define DEPTH_MAX_TYPES 64 /* types on one path; deeper static nesting: unbounded */

static unsigned depth_of(const ProtobufCMessageDescriptor *d,
                         const ProtobufCMessageDescriptor **path, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    if (path[i] == d) return AKR_DEPTH_UNBOUNDED; /* recursive */
  if (n == DEPTH_MAX_TYPES) return AKR_DEPTH_UNBOUNDED;
  path[n] = d;
  unsigned deepest = 0;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    unsigned sub = depth_of(f->descriptor, path, n + 1);
    if (sub == AKR_DEPTH_UNBOUNDED) return sub;
    if (sub > deepest) deepest = sub;
  }
  return deepest + 1;
}

unsigned akr_message_depth(const ProtobufCMessageDescriptor *desc) {
  const ProtobufCMessageDescriptor *path[DEPTH_MAX_TYPES];
  return depth_of(desc, path, 0);
}

/* Walks one message (or group body) at `depth`. Returns -1 if too deep, 0
 * otherwise; *p is left after the message, or after a group's end tag. A
 * NULL desc means an unknown group: its fields are skipped, its nested
 * groups still counted (the decoder recurses into them too). */
static int walk(const ProtobufCMessageDescriptor *desc, const uint8_t **p,
                const uint8_t *end, unsigned depth, unsigned max_depth) {
  if (depth > max_depth) return -1;
  while (*p < end) {
    uint64_t key, len;
    const uint8_t *data;
    if (akr_next_field(p, end, &key, &data, &len)) return 0;
    if ((key & 7) == 2) {
      const ProtobufCFieldDescriptor *f =
          desc ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3))
               : NULL;
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
          walk(f->descriptor, &data, data + len, depth + 1, max_depth))
        return -1;
    } else if ((key & 7) == 3) {
      if (walk(NULL, p, end, depth + 1, max_depth)) return -1;
    } else if ((key & 7) == 4) {
      return 0; /* end of the group being walked (or stray: decoder refuses) */
    }
  }
  return 0;
}

int akr_check_depth(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                    size_t len, unsigned max_depth) {
  const uint8_t *p = data;
  return walk(desc, &p, data + len, 1, max_depth);
}
