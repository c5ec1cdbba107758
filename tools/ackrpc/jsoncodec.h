/* jsoncodec.h: JSON <-> protobuf wire bytes for messages known only by their
 * descriptors (descpool.h), with the proto3 JSON mapping
 * (https://protobuf.dev/programming-guides/proto3/#json).
 *
 * JSON text is parsed and held by jansson; the protobuf wire format is
 * encoded and decoded here, with explicit limits, because reply bytes come
 * from a socket and are untrusted. Nothing here prints or exits.
 */
#ifndef AKRCLI_JSONCODEC_H
#define AKRCLI_JSONCODEC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "descpool.h"

/* Limits and output choices; zero means the default for every field. */
typedef struct akrcli_codec_options {
  /* Deepest nesting of messages (the top one counts as 1). Default 64. */
  unsigned max_depth;
  /* Largest encoded message, in bytes. Default 64 MiB. */
  size_t max_encoded;
  /* Most values (scalars, elements, entries, messages) one decode may
   * produce. Default 4 Mi. */
  size_t max_values;
  /* Decode: also print fields that have no presence (proto3 scalars,
   * repeated fields, maps) when they hold their default value. */
  int emit_defaults;
} akrcli_codec_options;

#define AKRCLI_DEFAULT_MAX_DEPTH 64u
#define AKRCLI_DEFAULT_MAX_ENCODED (64u * 1024 * 1024)
#define AKRCLI_DEFAULT_MAX_VALUES (4u * 1024 * 1024)
/* Largest JSON text accepted by akrcli_json_parse(). */
#define AKRCLI_MAX_JSON_TEXT (64u * 1024 * 1024)

/* Encodes `json` (a message of type `msg` in the proto3 JSON mapping) as
 * wire bytes. On success returns 0 and *ret_data (malloc'd, the caller's;
 * may be NULL when *ret_len is 0). On error returns -1 with a message in
 * err ("at a.b[2]: ..."), outputs untouched. */
int akrcli_json_to_wire(const akrcli_msg *msg, json_t *json,
                        const akrcli_codec_options *options, uint8_t **ret_data,
                        size_t *ret_len, char *err, size_t errlen);

/* Decodes wire bytes as a message of type `msg` into JSON. Unknown fields
 * are skipped. On success returns 0 and *ret_json (a new reference). On
 * error returns -1 with a message in err. */
int akrcli_wire_to_json(const akrcli_msg *msg, const uint8_t *data, size_t len,
                        const akrcli_codec_options *options, json_t **ret_json,
                        char *err, size_t errlen);

/* Parses JSON text (any value; duplicate keys are an error; NUL characters
 * in strings are allowed). Returns a new reference, or NULL with a message
 * ("line L column C: ..."). */
json_t *akrcli_json_parse(const char *text, size_t len, char *err, size_t errlen);

/* Deepest JSON nesting akrcli_json_dump() prints (it recurses once per
 * level). What this tool prints is shallower: jansson parses at most 2048
 * levels, and a decoded message at most max_depth messages of a few levels
 * each. */
#define AKRCLI_MAX_JSON_DEPTH 4096u

/* Serializes a JSON value: compact on one line, or pretty (2-space indent).
 * Numbers print in their shortest exact form (0.1, not 0.10000000000000001).
 * Returns a malloc'd NUL-terminated string, or NULL (out of memory, or
 * nested deeper than AKRCLI_MAX_JSON_DEPTH). */
char *akrcli_json_dump(json_t *json, int pretty);

#endif /* AKRCLI_JSONCODEC_H */
