/* test_frame_iov.c: unit tests of akr_request_encode_iov() (src/frame.c),
 * the encoder that leaves a request's large byte strings where they are.
 *
 * Every case checks two things: the pieces, concatenated, are exactly the
 * bytes akr_request_encode() writes; and the large byte strings are pieces
 * that point into the caller's memory (the pointer itself, so a copy coming
 * back fails here), while those it must copy (nested messages, more than
 * the pieces allow, below AKR_IOV_REF_MIN) are not. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ackrpc/bench.pb-c.h"
#include "mem/arena.h"
#include "wire/depth.h"
#include "wire/encode.h"
#include "wire/frame.h"
#include "wire/head.h"
#include "wire/names.h"
#include "pattern.h"
#include "pieces.pb-c.h"
#include "test.pb-c.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

/* A NUL-terminated string of `n` letters. */
static char *letters(size_t n, unsigned seed) {
  char *s = malloc(n + 1);
  cr_assert_not_null(s);
  for (size_t i = 0; i < n; i++)
    s[i] = (char)('a' + (i * 7 + seed) % 26);
  s[n] = 0;
  return s;
}

/* The pieces of one encoding, with the scratch they use. */
typedef struct pieces {
  struct iovec iov[AKR_IOV_MAX];
  size_t n_iov;
  size_t len;
  uint8_t *scratch;
  size_t scratch_len;
} pieces;

static void pieces_free(pieces *p) {
  free(p->scratch);
  p->scratch = NULL;
}

/* akr_request_encode_iov() with the scratch it asks for: a first call with
 * none, then one with what it said. Returns the frame length (0: refused,
 * and then it must not have asked for scratch). */
static size_t encode_pieces(akr_request_spec *spec, size_t max_iov, pieces *p) {
  memset(p, 0, sizeof *p);
  size_t n = akr_request_size(spec);
  cr_assert_gt(n, 0, "akr_request_size refused a good spec");
  size_t need = 1;
  p->len = akr_request_encode_iov(spec, NULL, 0, p->iov, max_iov, &p->n_iov, &need);
  cr_assert_eq(p->len, 0, "no scratch: the prefix alone needs some");
  if (need == 0) return 0;
  p->scratch = malloc(need);
  cr_assert_not_null(p->scratch);
  p->scratch_len = need;
  size_t again = 1;
  p->len = akr_request_encode_iov(spec, p->scratch, need, p->iov, max_iov, &p->n_iov,
                                  &again);
  cr_assert_eq(p->len, n, "with the scratch asked for, the frame is encoded");
  cr_assert_eq(again, 0);
  cr_assert_geq(p->n_iov, 2);
  cr_assert_leq(p->n_iov, max_iov);
  return p->len;
}

/* Asserts the pieces are exactly akr_request_encode()'s bytes, and that
 * what they copy fits the scratch they asked for. */
static void assert_same_bytes(akr_request_spec *spec, const pieces *p) {
  size_t n = akr_request_size(spec);
  uint8_t *whole = malloc(n);
  cr_assert_not_null(whole);
  cr_assert_eq(akr_request_encode(spec, whole), n);
  cr_assert_eq(p->len, n);
  size_t off = 0, copied = 0;
  for (size_t i = 0; i < p->n_iov; i++) {
    const uint8_t *base = p->iov[i].iov_base;
    size_t len = p->iov[i].iov_len;
    cr_assert_gt(len, 0, "piece %zu is empty", i);
    cr_assert_leq(off + len, n, "the pieces run past the frame");
    cr_assert_eq(memcmp(base, whole + off, len), 0,
                 "piece %zu (%zu bytes at %zu) differs", i, len, off);
    if (base >= p->scratch && base < p->scratch + p->scratch_len) {
      cr_assert_leq(base + len, p->scratch + p->scratch_len);
      copied += len;
    }
    off += len;
  }
  cr_assert_eq(off, n, "the pieces hold %zu of %zu bytes", off, n);
  cr_assert_eq(copied, p->scratch_len, "the scratch asked for is what was copied");
  free(whole);
}

/* Whether some piece is exactly [data, data + len) in place. */
static int in_place(const pieces *p, const void *data, size_t len) {
  for (size_t i = 0; i < p->n_iov; i++)
    if (p->iov[i].iov_base == data && p->iov[i].iov_len == len) return 1;
  return 0;
}

/* Whether some piece points anywhere into [data, data + len). */
static int points_into(const pieces *p, const void *data, size_t len) {
  const uint8_t *lo = data, *hi = lo + len;
  for (size_t i = 0; i < p->n_iov; i++) {
    const uint8_t *b = p->iov[i].iov_base;
    if (b >= lo && b < hi) return 1;
  }
  return 0;
}

static akr_request_spec spec_for(const ProtobufCMessage *body) {
  return (akr_request_spec){.method = "ackrpc.bench.Bench/Call",
                            .call_id = (const uint8_t *)"iov-test-call",
                            .call_id_len = 13,
                            .timeout_us = 1500000,
                            .body = body};
}

Test(frame_iov, one_large_bytes_field_is_sent_in_place) {
  uint8_t *body = fx_pattern(MIB, 1);
  Ackrpc__Bench__Request req = ACKRPC__BENCH__REQUEST__INIT;
  req.id = 0x1234567890ull;
  req.body.data = body;
  req.body.len = MIB;
  akr_request_spec spec = spec_for(&req.base);
  pieces p;
  cr_assert_gt(encode_pieces(&spec, AKR_IOV_MAX, &p), 0);
  assert_same_bytes(&spec, &p);
  cr_assert(in_place(&p, body, MIB), "the body is sent from the caller's buffer");
  cr_assert_eq(p.n_iov, 2,
               "prefix, head and the field's key in one piece, then the body");
  cr_assert_lt(p.scratch_len, 128, "only the small parts are copied");
  pieces_free(&p);
  free(body);
}

Test(frame_iov, several_large_fields_with_metadata) {
  uint8_t *blob = fx_pattern(200 * KIB, 2);
  char *text = letters(100 * KIB, 3);
  char *reply_message = letters(AKR_IOV_REF_MIN, 4);
  char *keys[5] = {letters(20 * KIB, 5), "small", letters(70 * KIB, 6), "", "x"};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = text;
  req.delay_ms = 7;
  req.reply_status = 300;
  req.reply_message = reply_message;
  req.blob.data = blob;
  req.blob.len = 200 * KIB;
  req.tag = 99;
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  req.n_lookup_keys = 5;
  req.lookup_keys = keys;
  static const uint8_t bin[4] = {0, 0xff, 0x80, 1};
  const ackrpc_metadata md[3] = {
      {.key = "trace-id", .value = "abc", .value_len = 3},
      {.key = "empty", .value = NULL, .value_len = 0},
      {.key = "bin.v", .value = bin, .value_len = sizeof bin},
  };
  akr_request_spec spec = spec_for(&req.base);
  spec.method = "ackrpc.test.Test/Echo";
  spec.metadata = md;
  spec.n_metadata = 3;
  pieces p;
  cr_assert_gt(encode_pieces(&spec, AKR_IOV_MAX, &p), 0);
  assert_same_bytes(&spec, &p);
  cr_assert(in_place(&p, text, 100 * KIB));
  cr_assert(in_place(&p, reply_message, AKR_IOV_REF_MIN), "exactly the threshold");
  cr_assert(in_place(&p, blob, 200 * KIB));
  cr_assert(in_place(&p, keys[0], 20 * KIB), "a repeated string's element");
  cr_assert(in_place(&p, keys[2], 70 * KIB));
  cr_assert_eq(p.n_iov, 11, "five in place, each followed by copied bytes; got %zu",
               p.n_iov);
  pieces_free(&p);
  free(blob);
  free(text);
  free(reply_message);
  free(keys[0]);
  free(keys[2]);
}

Test(frame_iov, proto2_presence_oneof_repeated_and_nested) {
  uint8_t *must = fx_pattern(300 * KIB, 10);
  uint8_t *maybe = fx_pattern(100 * KIB, 11); /* not set: never sent */
  uint8_t *many[4] = {fx_pattern(64 * KIB, 12), fx_pattern(100, 13),
                      fx_pattern(40 * KIB, 14), fx_pattern(AKR_IOV_REF_MIN - 1, 15)};
  char *names[2] = {letters(50 * KIB, 16), letters(3, 17)};
  char *one_text = letters(90 * KIB, 18);
  uint8_t *inner_data = fx_pattern(64 * KIB, 19);
  uint8_t *last = fx_pattern(128 * KIB, 20);
  uint32_t words[5] = {1, 2, 0xffffffffu, 0, 77};

  Ackrpc__Pieces__Inner inner, inners[2], *inner_ptrs[2];
  ackrpc__pieces__inner__init(&inner);
  inner.has_data = 1;
  inner.data.data = inner_data;
  inner.data.len = 64 * KIB;
  for (int i = 0; i < 2; i++) {
    ackrpc__pieces__inner__init(&inners[i]);
    inners[i].has_n = 1;
    inners[i].n = (uint32_t)i + 5;
    inner_ptrs[i] = &inners[i];
  }
  ProtobufCBinaryData many_bd[4];
  size_t many_len[4] = {64 * KIB, 100, 40 * KIB, AKR_IOV_REF_MIN - 1};
  for (int i = 0; i < 4; i++)
    many_bd[i] = (ProtobufCBinaryData){.len = many_len[i], .data = many[i]};

  Ackrpc__Pieces__Mixed m;
  ackrpc__pieces__mixed__init(&m);
  m.must.data = must;
  m.must.len = 300 * KIB;
  m.has_maybe = 0;
  m.maybe.data = maybe;
  m.maybe.len = 100 * KIB;
  /* m.name stays the default: not sent */
  m.n_many = 4;
  m.many = many_bd;
  m.n_names = 2;
  m.names = names;
  m.choice_case = ACKRPC__PIECES__MIXED__CHOICE_ONE_TEXT;
  m.one_text = one_text;
  m.inner = &inner;
  m.n_words = 5;
  m.words = words;
  m.has_z = 1;
  m.z = -12345;
  m.n_inners = 2;
  m.inners = inner_ptrs;
  m.has_last = 1;
  m.last.data = last;
  m.last.len = 128 * KIB;

  akr_request_spec spec = spec_for(&m.base);
  pieces p;
  cr_assert_gt(encode_pieces(&spec, AKR_IOV_MAX, &p), 0);
  assert_same_bytes(&spec, &p);
  cr_assert(in_place(&p, must, 300 * KIB), "required bytes");
  cr_assert_not(points_into(&p, maybe, 100 * KIB), "an optional field not set");
  cr_assert(in_place(&p, many[0], 64 * KIB), "repeated bytes");
  cr_assert(in_place(&p, many[2], 40 * KIB));
  cr_assert_not(points_into(&p, many[1], 100), "a small one is copied");
  cr_assert_not(points_into(&p, many[3], AKR_IOV_REF_MIN - 1),
                "just below the threshold");
  cr_assert(in_place(&p, names[0], 50 * KIB), "repeated string");
  cr_assert(in_place(&p, one_text, 90 * KIB), "the chosen oneof member");
  cr_assert_not(points_into(&p, inner_data, 64 * KIB),
                "a nested message's bytes are copied (protobuf-c's temporary)");
  cr_assert(in_place(&p, last, 128 * KIB),
            "an optional field set, after the nested ones");
  pieces_free(&p);

  /* The other member of the oneof, and the optional field set. */
  uint8_t *one_bytes = fx_pattern(33 * KIB, 21);
  m.choice_case = ACKRPC__PIECES__MIXED__CHOICE_ONE_BYTES;
  m.one_bytes.data = one_bytes;
  m.one_bytes.len = 33 * KIB;
  m.has_maybe = 1;
  m.inner = NULL;
  cr_assert_gt(encode_pieces(&spec, AKR_IOV_MAX, &p), 0);
  assert_same_bytes(&spec, &p);
  cr_assert(in_place(&p, one_bytes, 33 * KIB));
  cr_assert(in_place(&p, maybe, 100 * KIB));
  cr_assert_not(points_into(&p, one_text, 90 * KIB));
  pieces_free(&p);

  /* No oneof member chosen, no optional set: only the required one and the
   * repeated ones. */
  m.choice_case = ACKRPC__PIECES__MIXED__CHOICE__NOT_SET;
  m.has_maybe = 0;
  m.has_last = 0;
  cr_assert_gt(encode_pieces(&spec, AKR_IOV_MAX, &p), 0);
  assert_same_bytes(&spec, &p);
  cr_assert_not(points_into(&p, one_bytes, 33 * KIB));
  cr_assert_not(points_into(&p, last, 128 * KIB));
  pieces_free(&p);

  free(must);
  free(maybe);
  for (int i = 0; i < 4; i++)
    free(many[i]);
  free(names[0]);
  free(names[1]);
  free(one_text);
  free(inner_data);
  free(last);
  free(one_bytes);
}

Test(frame_iov, sizes_around_the_thresholds) {
  const size_t sizes[] = {0,
                          1,
                          AKR_IOV_REF_MIN - 1,
                          AKR_IOV_REF_MIN,
                          AKR_IOV_REF_MIN + 1,
                          64 * KIB - 1,
                          64 * KIB,
                          64 * KIB + 1,
                          128 * KIB - 1,
                          2 * MIB + 3};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    uint8_t *body = fx_pattern(n, (unsigned)i);
    Ackrpc__Bench__Request req = ACKRPC__BENCH__REQUEST__INIT;
    req.id = i;
    req.body.data = body;
    req.body.len = n;
    akr_request_spec spec = spec_for(&req.base);
    pieces p;
    size_t len = encode_pieces(&spec, AKR_IOV_MAX, &p);
    if (n < AKR_IOV_REF_MIN) {
      cr_assert_eq(len, 0, "%zu bytes: nothing worth sending in place", n);
    } else {
      cr_assert_gt(len, 0, "%zu bytes", n);
      assert_same_bytes(&spec, &p);
      cr_assert(in_place(&p, body, n), "%zu bytes in place", n);
    }
    pieces_free(&p);
    /* The same bytes as a raw body. */
    akr_request_spec raw = spec_for(NULL);
    raw.raw_body = body;
    raw.raw_body_len = n;
    len = encode_pieces(&raw, AKR_IOV_MAX, &p);
    if (n < AKR_IOV_REF_MIN) {
      cr_assert_eq(len, 0, "raw, %zu bytes", n);
    } else {
      cr_assert_gt(len, 0, "raw, %zu bytes", n);
      assert_same_bytes(&raw, &p);
      cr_assert_eq(p.n_iov, 2);
      cr_assert_eq(p.iov[1].iov_base, body, "a raw body is sent where it is");
      cr_assert_eq(p.iov[1].iov_len, n);
    }
    pieces_free(&p);
    free(body);
  }
}

Test(frame_iov, raw_body_with_a_large_head) {
  /* A head near its 64 KiB limit is copied; the body is still in place. */
  enum { N_MD = 15 };
  ackrpc_metadata md[N_MD];
  uint8_t *value = fx_pattern(ACKRPC_MAX_METADATA_VALUE, 30);
  for (int i = 0; i < N_MD; i++)
    md[i] = (ackrpc_metadata){
        .key = "k", .value = value, .value_len = ACKRPC_MAX_METADATA_VALUE};
  size_t n = 4 * MIB;
  uint8_t *body = fx_pattern(n, 31);
  akr_request_spec spec = spec_for(NULL);
  spec.metadata = md;
  spec.n_metadata = N_MD;
  spec.raw_body = body;
  spec.raw_body_len = n;
  pieces p;
  cr_assert_gt(encode_pieces(&spec, AKR_IOV_MAX, &p), 0);
  assert_same_bytes(&spec, &p);
  cr_assert_gt(p.scratch_len, N_MD * ACKRPC_MAX_METADATA_VALUE);
  cr_assert_eq(p.iov[1].iov_base, body);
  pieces_free(&p);
  free(value);
  free(body);
}

Test(frame_iov, mostly_small_fields_are_left_to_the_copy) {
  /* 20000 small strings and one 16 KiB blob: far less than 3/4 in place. */
  enum { N = 20000 };
  char **keys = malloc(N * sizeof *keys);
  cr_assert_not_null(keys);
  for (int i = 0; i < N; i++)
    keys[i] = "some-key";
  uint8_t *blob = fx_pattern(AKR_IOV_REF_MIN, 40);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.n_lookup_keys = N;
  req.lookup_keys = keys;
  req.blob.data = blob;
  req.blob.len = AKR_IOV_REF_MIN;
  akr_request_spec spec = spec_for(&req.base);
  cr_assert_gt(akr_request_size(&spec), 128 * KIB);
  pieces p;
  cr_assert_eq(encode_pieces(&spec, AKR_IOV_MAX, &p), 0,
               "refused, without asking for scratch");
  /* A nested message holding the large bytes: copied, so refused too. */
  uint8_t *data = fx_pattern(MIB, 41);
  Ackrpc__Pieces__Inner inner;
  ackrpc__pieces__inner__init(&inner);
  inner.has_data = 1;
  inner.data.data = data;
  inner.data.len = MIB;
  Ackrpc__Pieces__Mixed m;
  ackrpc__pieces__mixed__init(&m);
  m.inner = &inner;
  akr_request_spec nested = spec_for(&m.base);
  cr_assert_eq(encode_pieces(&nested, AKR_IOV_MAX, &p), 0);
  free(data);
  free(blob);
  free(keys);
}

Test(frame_iov, more_large_values_than_pieces) {
  /* max_iov 5: two values in place; the third is copied. */
  ProtobufCBinaryData bd[3];
  uint8_t *v[3];
  size_t lens[3] = {MIB, MIB, 20 * KIB};
  for (int i = 0; i < 3; i++) {
    v[i] = fx_pattern(lens[i], 50 + (unsigned)i);
    bd[i] = (ProtobufCBinaryData){.len = lens[i], .data = v[i]};
  }
  Ackrpc__Pieces__Mixed m;
  ackrpc__pieces__mixed__init(&m);
  m.n_many = 3;
  m.many = bd;
  akr_request_spec spec = spec_for(&m.base);
  pieces p;
  cr_assert_gt(encode_pieces(&spec, 5, &p), 0);
  assert_same_bytes(&spec, &p);
  cr_assert_leq(p.n_iov, 5);
  cr_assert(in_place(&p, v[0], MIB));
  cr_assert(in_place(&p, v[1], MIB));
  cr_assert_not(points_into(&p, v[2], 20 * KIB));
  pieces_free(&p);
  for (int i = 0; i < 3; i++)
    free(v[i]);

  /* Many values of 64 KiB: AKR_IOV_MAX pieces at most, the rest copied;
   * a max_iov above AKR_IOV_MAX is AKR_IOV_MAX. */
  enum { N = AKR_IOV_MAX / 2 + 3 };
  ProtobufCBinaryData many[N];
  uint8_t *all = fx_pattern((size_t)N * 64 * KIB, 60);
  for (int i = 0; i < N; i++)
    many[i] =
        (ProtobufCBinaryData){.len = 64 * KIB, .data = all + (size_t)i * 64 * KIB};
  m.n_many = N;
  m.many = many;
  cr_assert_gt(encode_pieces(&spec, 1000, &p), 0);
  assert_same_bytes(&spec, &p);
  cr_assert_leq(p.n_iov, AKR_IOV_MAX);
  size_t refs = 0;
  for (int i = 0; i < N; i++)
    refs += (size_t)in_place(&p, many[i].data, 64 * KIB);
  cr_assert_eq(refs, (AKR_IOV_MAX - 1) / 2, "got %zu in place", refs);
  cr_assert(in_place(&p, many[0].data, 64 * KIB), "the first ones are in place");
  pieces_free(&p);
  free(all);
}

Test(frame_iov, too_little_scratch_or_too_few_pieces) {
  uint8_t *body = fx_pattern(256 * KIB, 70);
  Ackrpc__Bench__Request req = ACKRPC__BENCH__REQUEST__INIT;
  req.body.data = body;
  req.body.len = 256 * KIB;
  akr_request_spec spec = spec_for(&req.base);
  cr_assert_gt(akr_request_size(&spec), 0);
  uint8_t scratch[256];
  struct iovec iov[AKR_IOV_MAX];
  size_t n_iov = 99, need = 99;
  cr_assert_eq(
      akr_request_encode_iov(&spec, scratch, 8, iov, AKR_IOV_MAX, &n_iov, &need), 0);
  cr_assert_gt(need, 8, "asks for more scratch");
  cr_assert_lt(need, sizeof scratch);
  cr_assert_eq(n_iov, 0);
  size_t len =
      akr_request_encode_iov(&spec, scratch, need, iov, AKR_IOV_MAX, &n_iov, &need);
  cr_assert_eq(len, akr_request_size(&spec),
               "exactly the scratch it asked for is enough");
  cr_assert_eq(need, 0);
  for (size_t max = 0; max < 3; max++) {
    need = 99;
    cr_assert_eq(
        akr_request_encode_iov(&spec, scratch, sizeof scratch, iov, max, &n_iov, &need),
        0, "max_iov %zu", max);
    cr_assert_eq(need, 0);
  }
  free(body);
}
