/* fuzz_redact.c: the libFuzzer target of the capture's redaction
 * (src/server/redact.c), which walks request bodies as peers sent them.
 *
 * The input is a body of type ackrpc.reflection.ListServicesReply (messages
 * nested two deep, repeated) with ServiceInfo.has_descriptors and
 * MethodInfo.request_type marked sensitive. Whatever the bytes: a body
 * redacted once holds no marked field (redacting it again finds none), is
 * no longer than the input, and still decodes when the input did. A broken
 * property calls abort(). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ackrpc/reflection.pb-c.h"
#include "server/redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether a marked field has a value other than its default. */
static int holds_marked(const Ackrpc__Reflection__ListServicesReply *r) {
  for (size_t i = 0; i < r->n_services; i++) {
    if (r->services[i]->has_descriptors) return 1;
    for (size_t k = 0; k < r->services[i]->n_methods; k++)
      if (r->services[i]->methods[k]->request_type &&
          r->services[i]->methods[k]->request_type[0])
        return 1;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const ackrpc_sensitive_field marked[] = {
      {&ackrpc__reflection__service_info__descriptor, 3},
      {&ackrpc__reflection__method_info__descriptor, 2},
  };
  const ProtobufCMessageDescriptor *type =
      &ackrpc__reflection__list_services_reply__descriptor;
  akr_redact_set *set = NULL;
  if (akr_redact_add(&set, marked, 2) != ACKRPC_OK) return 0;
  uint8_t *buf = malloc(size ? size : 1); /* exactly `size`, for ASan */
  if (!buf) abort();
  memcpy(buf, data, size);
  uint8_t *out = NULL, *again = NULL;
  size_t out_len = 0, again_len = 0;
  int rc = akr_redact(set, type, buf, size, &out, &out_len);
  if (rc != 0 && rc != 1 && rc != -1) abort();
  if (rc == 1) {
    if (out_len > size) abort();
    if (akr_redact(set, type, out, out_len, &again, &again_len) != 0) abort();
  }
  /* What a capture would hold (the input itself when nothing was left
   * out) decodes if the input does, without a marked value. */
  ProtobufCMessage *in = protobuf_c_message_unpack(type, NULL, size, buf);
  if (in && rc >= 0) {
    ProtobufCMessage *red =
        rc == 1 ? protobuf_c_message_unpack(type, NULL, out_len, out) : in;
    if (!red) abort();
    if (holds_marked((const Ackrpc__Reflection__ListServicesReply *)red)) abort();
    if (red != in) protobuf_c_message_free_unpacked(red, NULL);
  }
  if (in) protobuf_c_message_free_unpacked(in, NULL);
  free(again);
  free(out);
  free(buf);
  akr_redact_free(set);
  return 0;
}
