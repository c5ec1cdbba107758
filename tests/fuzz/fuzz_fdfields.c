/* fuzz_fdfields: the ackrpc.Fd fields of decoded messages
 * (src/wire/fdfields.c), on the types of tests/gen/fixtures/fds/files.proto.
 *
 * Input: byte 0 = how many descriptors came (0..253), byte 1 = which type
 * (a singular Fd field, a repeated one beside a string, a repeated one
 * beside bytes), the rest = the body as a peer sends it. The descriptors are
 * stand-ins (1000 + index, never opened or closed). If the body decodes:
 *   - akr_fdfields_bind() either refuses it, leaving the message as it was,
 *     or binds every index once: then each Fd field holds a distinct
 *     stand-in and all n are used;
 *   - a bound message packed again (akr_fdfields_pack(), what a sender does)
 *     gives back exactly those n descriptors, and its copy binds to the same
 *     values again.
 * abort() on any disagreement. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fds/files.pb-c.h"
#include "wire/fdfields.h"

#define N_MAX 253

static const ProtobufCMessageDescriptor *const types[] = {
    &fds__read_request__descriptor,
    &fds__cat_request__descriptor,
    &fds__cat_reply__descriptor,
};

/* Whether a[0..n) is a permutation of 1000..1000+n-1. */
static int permutation(const int *a, size_t n) {
  uint8_t seen[N_MAX] = {0};
  for (size_t i = 0; i < n; i++) {
    if (a[i] < 1000 || (size_t)(a[i] - 1000) >= n || seen[a[i] - 1000]++) return 0;
  }
  return 1;
}

/* Whether protobuf-c decodes its own encoding of `m`. Not always: 1.4.1
 * takes a tag of field number 0 written in two bytes (0x80 0x00) as an
 * unknown field, and then packs it as 0x00, which it refuses. The
 * properties below are about what a sender can pack, so such inputs are
 * passed over (the server drops unknown fields before a handler sees a
 * request, unless keep_unknown_fields is set: src/wire/unknown.c). */
static int reencodes(const ProtobufCMessage *m) {
  size_t len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) abort();
  protobuf_c_message_pack(m, buf);
  ProtobufCMessage *back = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
  free(buf);
  if (!back) return 0;
  protobuf_c_message_free_unpacked(back, NULL);
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t n = data[0] % (N_MAX + 1);
  const ProtobufCMessageDescriptor *d = types[data[1] % 3];
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 2, data + 2);
  if (!m) return 0;
  if (!reencodes(m)) {
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
  }
  int fds[N_MAX];
  for (size_t i = 0; i < N_MAX; i++)
    fds[i] = 1000 + (int)i;
  char why[256];
  size_t before = protobuf_c_message_get_packed_size(m);
  uint8_t *packed = malloc(before ? before : 1);
  protobuf_c_message_pack(m, packed);
  if (akr_fdfields_bind(m, fds, n, why, sizeof why) != 0) {
    /* Refused: untouched. */
    uint8_t *again = malloc(before ? before : 1);
    if (protobuf_c_message_get_packed_size(m) != before) abort();
    protobuf_c_message_pack(m, again);
    if (memcmp(packed, again, before) != 0) abort();
    free(again);
  } else {
    akr_fdfields_out out;
    int nomem;
    if (akr_fdfields_pack(m, N_MAX, &out, &nomem, why, sizeof why) != 0) abort();
    if (out.n_fds != n || (n && !permutation(out.fds, n))) abort();
    if (n) {
      /* The sender's copy carries indices 0..n-1: it binds back. */
      uint8_t *wire = malloc(protobuf_c_message_get_packed_size(out.msg));
      size_t len = protobuf_c_message_pack(out.msg, wire);
      ProtobufCMessage *m2 = protobuf_c_message_unpack(d, NULL, len, wire);
      if (!m2 || akr_fdfields_bind(m2, out.fds, n, why, sizeof why) != 0) abort();
      protobuf_c_message_free_unpacked(m2, NULL);
      free(wire);
    }
    akr_fdfields_out_free(&out);
  }
  free(packed);
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}
