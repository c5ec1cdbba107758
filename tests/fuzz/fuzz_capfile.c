/* fuzz_capfile.c: the libFuzzer target of the ackrpc tool's capture reader
 * (tools/ackrpc/capfile.c), which reads what a server's Capture/Watch
 * streams and what `ackrpc replay` is given: both untrusted.
 *
 * The input is a capture file. It is read block by block as replay reads a
 * file, and again fed in growing pieces as capture reads a socket; the two
 * must agree. Checked on the way: a block's length never goes past the
 * bytes given, every proper prefix of a block asks for more (or fails the
 * same way), and a record's pointers lie inside its block. A broken
 * property calls abort(). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether [p, p + n) lies in [lo, hi). */
static int inside(const void *p, size_t n, const uint8_t *lo, const uint8_t *hi) {
  const uint8_t *q = p;
  return n == 0 || (q >= lo && q <= hi && n <= (size_t)(hi - q));
}

static void check_record(const akrcli_cap_record *r, const uint8_t *block, long len) {
  const uint8_t *end = block + len;
  if (!inside(r->method, r->method_len, block, end) || r->method_len == 0 ||
      !inside(r->call_id, r->call_id_len, block, end) ||
      !inside(r->message, r->message_len, block, end) ||
      !inside(r->body, r->body_len, block, end) ||
      (r->kind != AKRCLI_CAP_REQUEST && r->kind != AKRCLI_CAP_REPLY))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A copy of exactly `size` bytes, so that a read past it is caught by
   * ASan even when the fuzzer's buffer is larger. */
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  akrcli_capreader whole = {0}, piece = {0};
  size_t off = 0;
  char err[128];
  while (off < size) {
    akrcli_cap_record rec;
    int has;
    long used =
        akrcli_cap_next(&whole, buf + off, size - off, &rec, &has, err, sizeof err);
    if (used < 0) break;
    if (used == 0) break;
    if ((size_t)used > size - off || used < 12) abort();
    if (has) check_record(&rec, buf + off, used);
    /* The same block fed in pieces, as from a socket: every shorter
     * prefix asks for more, or fails; the whole block gives the same. */
    akrcli_capreader before = piece;
    for (size_t k = 0; k < (size_t)used; k += 1 + k / 2) {
      akrcli_capreader r = before;
      akrcli_cap_record rec2;
      int has2;
      long u = akrcli_cap_next(&r, buf + off, k, &rec2, &has2, err, sizeof err);
      if (u > 0) abort();
    }
    akrcli_cap_record rec2;
    int has2;
    long u =
        akrcli_cap_next(&piece, buf + off, (size_t)used, &rec2, &has2, err, sizeof err);
    if (u != used || has2 != has) abort();
    if (has && (rec2.body_len != rec.body_len || rec2.status != rec.status ||
                rec2.method_len != rec.method_len))
      abort();
    off += (size_t)used;
  }
  free(buf);
  return 0;
}
