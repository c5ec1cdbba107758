/* unknown.c: unknown fields of decoded messages (unknown.h). */
#include "wire/unknown.h"

#include <stdint.h>

/* The submessages of field `f` in `msg`: their array and count. */
static ProtobufCMessage **submessages(ProtobufCMessage *msg,
                                      const ProtobufCFieldDescriptor *f, size_t *n) {
  char *base = (char *)msg;
  *n = 0;
  if (f->label == PROTOBUF_C_LABEL_REPEATED) {
    *n = *(size_t *)(base + f->quantifier_offset);
    return *(ProtobufCMessage ***)(base + f->offset);
  }
  if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
      *(uint32_t *)(base + f->quantifier_offset) != f->id)
    return NULL;
  ProtobufCMessage **one = (ProtobufCMessage **)(base + f->offset);
  *n = *one ? 1 : 0;
  return one;
}

size_t akr_drop_unknown(ProtobufCMessage *msg) {
  if (!msg) return 0;
  size_t dropped = msg->n_unknown_fields != 0;
  msg->n_unknown_fields = 0;
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    size_t n;
    ProtobufCMessage **sub = submessages(msg, f, &n);
    for (size_t k = 0; k < n; k++)
      dropped += akr_drop_unknown(sub[k]);
  }
  return dropped;
}
