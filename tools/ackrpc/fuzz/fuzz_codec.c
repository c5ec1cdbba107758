/* fuzz_codec.c: libFuzzer target for the ackrpc tool's JSON <-> protobuf
 * codec (jsoncodec.c), whose wire decoder reads reply bytes from a socket.
 *
 * Input: one selector byte, then the data. The selector picks a message type
 * of fuzz_codec.proto (embedded as a descriptor set) and a mode:
 *   wire   the data are wire bytes: decode to JSON; if that works, print it,
 *          encode it again and decode that: it must decode, to the same JSON
 *          (the codec's output is a fixed point);
 *   json   the data are JSON text: parse, encode; if that works, decode it
 *          (it may only fail on a limit).
 * Any crash, leak or sanitizer report is a bug; so is a broken property
 * (abort()). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsoncodec.h"

extern const unsigned char akrcli_fuzz_schema[];
extern const size_t akrcli_fuzz_schema_len;

static const char *const type_names[] = {
    "ackrpc.fuzz.All",       "ackrpc.fuzz.Strict",        "ackrpc.fuzz.Proto3Like",
    "google.protobuf.Value", "google.protobuf.Timestamp", "google.protobuf.Struct",
};
#define N_TYPES (sizeof type_names / sizeof type_names[0])

static akrcli_pool pool;
static const akrcli_msg *types[N_TYPES];

static void setup(void) {
  char err[512];
  if (akrcli_pool_add_set(&pool, akrcli_fuzz_schema, akrcli_fuzz_schema_len, err,
                          sizeof err) < 0 ||
      akrcli_pool_build(&pool, err, sizeof err) < 0) {
    fprintf(stderr, "fuzz_codec: bad embedded schema: %s\n", err);
    abort();
  }
  for (size_t i = 0; i < N_TYPES; i++) {
    types[i] = akrcli_pool_message(&pool, type_names[i]);
    if (!types[i]) abort();
  }
}

static const akrcli_codec_options opts = {
    .max_depth = 24, .max_encoded = 1u << 20, .max_values = 1u << 16};

static void wire_mode(const akrcli_msg *m, const uint8_t *data, size_t size,
                      int defaults) {
  char err[512];
  json_t *j1 = NULL, *j2 = NULL;
  uint8_t *wire = NULL;
  size_t len = 0;
  akrcli_codec_options o = opts;
  o.emit_defaults = defaults;
  if (akrcli_wire_to_json(m, data, size, &o, &j1, err, sizeof err) < 0) return;
  char *text = akrcli_json_dump(j1, defaults);
  if (!text) abort();
  free(text);
  if (akrcli_json_to_wire(m, j1, &o, &wire, &len, err, sizeof err) == 0) {
    if (akrcli_wire_to_json(m, wire, len, &o, &j2, err, sizeof err) < 0) {
      fprintf(stderr, "fuzz_codec: own encoding does not decode: %s\n", err);
      abort();
    }
    /* Compared as canonical text: json_equal() looks object keys up as C
     * strings, so keys with a NUL inside never compare equal. */
    char *a = akrcli_json_dump(j1, 0), *b = akrcli_json_dump(j2, 0);
    if (!a || !b || strcmp(a, b) != 0) {
      fprintf(stderr, "fuzz_codec: not a fixed point:\n%s\n%s\n", a, b);
      abort();
    }
    free(a);
    free(b);
  }
  free(wire);
  json_decref(j1);
  json_decref(j2);
}

static void json_mode(const akrcli_msg *m, const uint8_t *data, size_t size) {
  char err[512];
  json_t *j = akrcli_json_parse((const char *)data, size, err, sizeof err);
  if (!j) return;
  uint8_t *wire = NULL;
  size_t len = 0;
  if (akrcli_json_to_wire(m, j, &opts, &wire, &len, err, sizeof err) == 0) {
    json_t *back = NULL;
    if (akrcli_wire_to_json(m, wire, len, &opts, &back, err, sizeof err) < 0 &&
        !strstr(err, "more than")) {
      fprintf(stderr, "fuzz_codec: own encoding does not decode: %s\n", err);
      abort();
    }
    json_decref(back);
  }
  free(wire);
  json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!pool.built) setup();
  if (size < 1) return 0;
  const akrcli_msg *m = types[data[0] % N_TYPES];
  unsigned mode = (unsigned)(data[0] / N_TYPES) % 3;
  if (mode == 2)
    json_mode(m, data + 1, size - 1);
  else
    wire_mode(m, data + 1, size - 1, (int)mode);
  return 0;
}
