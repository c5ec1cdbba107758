/* fuzz_utf8: the UTF-8 check (src/wire/utf8.c) against an independent
 * decoder.
 *
 * Each input is judged twice, abort() on disagreement:
 *   - as bytes: akr_utf8_valid() must agree with reference_valid(), which
 *     decodes each code point and then judges it (RFC 3629), so a slip in
 *     the table-driven check or its eight-byte ASCII path shows;
 *   - as a protobuf body: if protobuf-c decodes it as an
 *     ackrpc.wire.RequestHead (proto3, strings at the top and in repeated
 *     nested Metadata), akr_check_utf8() must refuse it exactly when one of
 *     those strings fails the reference, and name that field.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ackrpc/wire.pb-c.h"
#include "wire/utf8.h"

static size_t reference(const uint8_t *s, size_t left) {
  size_t n;
  uint32_t cp;
  if (s[0] < 0x80) return 1;
  if ((s[0] & 0xe0) == 0xc0) {
    n = 2, cp = s[0] & 0x1f;
  } else if ((s[0] & 0xf0) == 0xe0) {
    n = 3, cp = s[0] & 0x0f;
  } else if ((s[0] & 0xf8) == 0xf0) {
    n = 4, cp = s[0] & 0x07;
  } else {
    return 0;
  }
  if (left < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

static int reference_valid(const char *s, size_t len) {
  for (size_t i = 0; i < len;) {
    size_t n = reference((const uint8_t *)s + i, len - i);
    if (!n) return 0;
    i += n;
  }
  return 1;
}

static int str_ok(const char *s) {
  return !s || reference_valid(s, strlen(s));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (akr_utf8_valid(data, size) != reference_valid((const char *)data, size)) abort();

  Ackrpc__Wire__RequestHead *h = ackrpc__wire__request_head__unpack(NULL, size, data);
  if (!h) return 0;
  const char *want = str_ok(h->method) ? NULL : "method";
  for (size_t i = 0; !want && i < h->n_metadata; i++)
    if (!str_ok(h->metadata[i]->key)) want = "key";
  akr_utf8_error e;
  int rc = akr_check_utf8(&h->base, 2, &e);
  if (rc != (want ? -1 : 0)) abort();
  if (want && strcmp(e.field->name, want) != 0) abort();
  ackrpc__wire__request_head__free_unpacked(h, NULL);
  return 0;
}
