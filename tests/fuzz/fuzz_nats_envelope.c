/* fuzz_nats_envelope: the decoders of ackrpc-nats's envelope
 * (tools/nats/envelope.c), which read NATS subjects and header values from
 * the network.
 *
 * The input is split at its first newline into a prefix and a text (no
 * newline: prefix "ackrpc", the whole input is the text); a NUL ends
 * either early. Every decoder reads the text, abort() when a property fails:
 *   - each strict decoder (base64, hex, decimal, subject -> method) accepts
 *     only what its encoder writes: encoding what it decoded gives the text
 *     back, byte for byte;
 *   - a method name the subject encoder accepts decodes back to itself;
 *   - a cleaned status message holds no control character, fits its
 *     buffer, and stays valid UTF-8 if the text was.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "wire/utf8.h"

enum { CAP = 512 };

static void check_b64(const char *text) {
  uint8_t bytes[CAP];
  char again[2 * CAP];
  size_t n = 0;
  if (ackrpc_nats_b64_decode(text, bytes, sizeof bytes, &n) != 0) return;
  if (ackrpc_nats_b64_len(n) != strlen(text)) abort();
  ackrpc_nats_b64_encode(bytes, n, again);
  if (strcmp(again, text) != 0) abort();
}

static void check_hex(const char *text) {
  uint8_t bytes[CAP];
  char again[2 * CAP + 1];
  size_t n = 0;
  if (ackrpc_nats_hex_decode(text, bytes, sizeof bytes, &n) != 0) return;
  ackrpc_nats_hex_encode(bytes, n, again);
  if (strcmp(again, text) != 0) abort();
}

static void check_dec(const char *text) {
  static const uint64_t maxes[] = {0, 9, 16, UINT32_MAX, UINT64_MAX};
  for (size_t i = 0; i < sizeof maxes / sizeof *maxes; i++) {
    uint64_t v = 0;
    if (ackrpc_nats_dec_decode(text, maxes[i], &v) != 0) continue;
    char again[32];
    snprintf(again, sizeof again, "%llu", (unsigned long long)v);
    if (v > maxes[i] || strcmp(again, text) != 0) abort();
  }
}

static void check_names(const char *prefix, const char *text) {
  /* Exactly the room a round trip needs, on the heap, so that a write past
   * it shows under AddressSanitizer. */
  size_t cap = strlen(prefix) + 1 + strlen(text) + 1;
  char *method = malloc(cap), *subject = malloc(cap);
  if (method != NULL && subject != NULL) {
    if (ackrpc_nats_method(prefix, text, method, cap) == 0) {
      if (ackrpc_nats_subject(prefix, method, subject, cap) != 0) abort();
      if (strcmp(subject, text) != 0) abort();
    }
    if (ackrpc_nats_subject(prefix, text, subject, cap) == 0) {
      if (ackrpc_nats_method(prefix, subject, method, cap) != 0) abort();
      if (strcmp(method, text) != 0) abort();
    }
  }
  free(method);
  free(subject);
}

static void check_message(const char *text) {
  static const size_t caps[] = {1, 2, 7, 64, CAP};
  for (size_t i = 0; i < sizeof caps / sizeof *caps; i++) {
    char out[CAP];
    size_t n = ackrpc_nats_message_clean(text, out, caps[i]);
    if (n >= caps[i] || strlen(out) != n) abort();
    for (size_t j = 0; j < n; j++)
      if ((unsigned char)out[j] < 0x20 || out[j] == 0x7f) abort();
    if (akr_utf8_valid((const uint8_t *)text, strlen(text)) &&
        !akr_utf8_valid((const uint8_t *)out, n))
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  if (buf == NULL) return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  const char *prefix = "ackrpc", *text = buf;
  char *nl = memchr(buf, '\n', size);
  if (nl != NULL) {
    *nl = '\0';
    prefix = buf;
    text = nl + 1;
  }
  check_b64(text);
  check_hex(text);
  check_dec(text);
  check_names(prefix, text);
  check_message(text);
  free(buf);
  return 0;
}
