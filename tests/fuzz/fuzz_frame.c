/* fuzz_frame.c: the libFuzzer target of the framing module (src/frame.c).
 *
 * The input is a byte stream as a peer would send it. It is scanned frame by
 * frame, once as requests and once as replies, and every frame that decodes
 * is encoded again from the decoded values; the new frame must scan and
 * decode to the same values, and encoding those again must give the same
 * bytes. Along the way it checks what frame.h promises about scanning
 * (INCOMPLETE on every proper prefix, early errors stay put, the size cap is
 * judged from the prefix) and that decoded strings are exactly the bytes on
 * the wire. A broken property calls abort(), so libFuzzer (or the replay
 * driver, replay_main.c) reports it as a crash.
 *
 * Not covered here: reading from sockets (the server's and client's tests). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ackrpc/wire.pb-c.h"
#include "mem/arena.h"
#include "wire/depth.h"
#include "wire/encode.h"
#include "wire/frame.h"
#include "wire/head.h"
#include "wire/names.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small limits, so that inputs of a few KiB reach them. */
#define FUZZ_MAX_FRAME (16 * 1024)
#define FUZZ_ARENA_CAP (256 * 1024)

#define CHECK(cond)                                                                    \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      fprintf(stderr, "fuzz_frame: %s:%d: property broken: %s\n", __FILE__, __LINE__,  \
              #cond);                                                                  \
      abort();                                                                         \
    }                                                                                  \
  } while (0)

/* --- an independent reading of the head's raw fields ------------------- */

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret) {
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (*p == end) return 0;
    uint8_t b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *ret = v;
      return 1;
    }
  }
  return 0;
}

/* Calls `fn` on each length-delimited field numbered `field` of the message
 * in p[0..n), in order. Returns 0 if the message cannot be walked. */
typedef void (*field_fn)(const uint8_t *p, size_t n, void *user);

/* Steps over a group whose start tag (field `group`) was read, up to and
 * including its matching end tag; groups are skipped as unknown fields
 * (PROTOCOL.md §2.3). Returns 0 if the bytes cannot be walked. */
static int skip_group(const uint8_t **p, const uint8_t *end, uint64_t group,
                      unsigned depth) {
  if (depth > 100) return 0;
  for (;;) {
    uint64_t key, v;
    if (!read_varint(p, end, &key)) return 0;
    switch (key & 7) {
    case 0:
      if (!read_varint(p, end, &v)) return 0;
      break;
    case 1:
      if (end - *p < 8) return 0;
      *p += 8;
      break;
    case 5:
      if (end - *p < 4) return 0;
      *p += 4;
      break;
    case 2:
      if (!read_varint(p, end, &v) || v > (uint64_t)(end - *p)) return 0;
      *p += v;
      break;
    case 3:
      if (!skip_group(p, end, key >> 3, depth + 1)) return 0;
      break;
    case 4: return key >> 3 == group;
    default: return 0;
    }
  }
}

static int each_field(const uint8_t *p, size_t n, uint64_t field, field_fn fn,
                      void *user) {
  const uint8_t *end = p + n;
  while (p < end) {
    uint64_t key, v;
    if (!read_varint(&p, end, &key)) return 0;
    switch (key & 7) {
    case 3:
      if (!skip_group(&p, end, key >> 3, 1)) return 0;
      break;
    case 0:
      if (!read_varint(&p, end, &v)) return 0;
      break;
    case 1:
      if (end - p < 8) return 0;
      p += 8;
      break;
    case 5:
      if (end - p < 4) return 0;
      p += 4;
      break;
    case 2:
      if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p)) return 0;
      if (key >> 3 == field) fn(p, (size_t)v, user);
      p += v;
      break;
    default: return 0;
    }
  }
  return 1;
}

typedef struct last_field {
  const uint8_t *p;
  size_t n;
  int seen;
} last_field;

static void keep_last(const uint8_t *p, size_t n, void *user) {
  last_field *l = user;
  l->p = p;
  l->n = n;
  l->seen = 1;
}

/* The string field's value as the wire carries it (the last occurrence wins,
 * as in every protobuf decoder); proto3's default "" if absent. */
static last_field wire_string(const uint8_t *p, size_t n, uint64_t field) {
  last_field l = {0};
  CHECK(each_field(p, n, field, keep_last, &l));
  return l;
}

/* A decoded string must be exactly the wire bytes: a NUL inside would make
 * the C string a different (shorter) name than the one sent. */
static void check_string_is_wire(const char *s, last_field w) {
  CHECK(strlen(s) == w.n);
  CHECK(w.n == 0 || memcmp(s, w.p, w.n) == 0);
}

typedef struct entries {
  const uint8_t *p[ACKRPC_MAX_METADATA + 1];
  size_t n[ACKRPC_MAX_METADATA + 1];
  size_t count;
} entries;

static void collect(const uint8_t *p, size_t n, void *user) {
  entries *e = user;
  if (e->count <= ACKRPC_MAX_METADATA) {
    e->p[e->count] = p;
    e->n[e->count] = n;
  }
  e->count++;
}

static void check_request_matches_wire(const akr_frame *f, const akr_request *r) {
  check_string_is_wire(r->method, wire_string(f->head, f->head_len, 1));
  entries e = {.count = 0};
  CHECK(each_field(f->head, f->head_len, 4, collect, &e));
  CHECK(e.count == r->n_metadata);
  for (size_t i = 0; i < r->n_metadata; i++)
    check_string_is_wire(r->metadata[i]->key, wire_string(e.p[i], e.n[i], 1));
}

/* --- scanning properties ------------------------------------------------ */

static int is_scan_error(akr_frame_error e) {
  return e == AKR_FRAME_BAD_MAGIC || e == AKR_FRAME_BAD_VERSION ||
         e == AKR_FRAME_BAD_TYPE || e == AKR_FRAME_HEAD_TOO_LARGE ||
         e == AKR_FRAME_TOO_LARGE;
}

/* A good frame: every proper prefix is INCOMPLETE with the right need, and
 * a cap one byte below its payload refuses it from the prefix alone. */
static void check_good_frame(const uint8_t *buf, size_t len, uint8_t type,
                             const akr_frame *f) {
  CHECK(f->type == type);
  CHECK(f->frame_len == AKR_PREFIX_LEN + (size_t)f->head_len + f->body_len);
  CHECK(f->frame_len <= len);
  CHECK(f->head_len <= ACKRPC_MAX_HEAD);
  CHECK((size_t)f->head_len + f->body_len <= FUZZ_MAX_FRAME);
  CHECK(f->head == buf + AKR_PREFIX_LEN);
  CHECK(f->body == f->head + f->head_len);
  for (size_t k = 0; k < f->frame_len; k++) {
    akr_frame g;
    size_t need = 0;
    CHECK(akr_frame_scan(buf, k, type, FUZZ_MAX_FRAME, &g, &need) ==
          AKR_FRAME_INCOMPLETE);
    CHECK(need == (k < AKR_PREFIX_LEN ? AKR_PREFIX_LEN : f->frame_len));
  }
  size_t payload = f->frame_len - AKR_PREFIX_LEN;
  if (payload > 0) {
    akr_frame g;
    CHECK(akr_frame_scan(buf, AKR_PREFIX_LEN, type, payload - 1, &g, NULL) ==
          AKR_FRAME_TOO_LARGE);
  }
}

/* A refused stream: the error is already given by the shortest prefix that
 * proves it, and no prefix scans as OK. */
static void check_refused(const uint8_t *buf, size_t len, uint8_t type,
                          akr_frame_error err) {
  size_t upto = len < AKR_PREFIX_LEN ? len : AKR_PREFIX_LEN;
  for (size_t k = 0; k <= upto; k++) {
    akr_frame g;
    akr_frame_error e = akr_frame_scan(buf, k, type, FUZZ_MAX_FRAME, &g, NULL);
    CHECK(e == AKR_FRAME_INCOMPLETE || e == err);
    if (k >= 4 && err != AKR_FRAME_HEAD_TOO_LARGE && err != AKR_FRAME_TOO_LARGE)
      CHECK(e == err); /* magic, version and type are all in by byte 4 */
  }
}

/* --- re-encoding -------------------------------------------------------- */

/* Prefix + head from `size`/`encode`, then the original body bytes. The
 * encoders pack bodies from protobuf-c messages; an arbitrary body is not
 * one, so it is spliced in and its length patched into the prefix. */
static uint8_t *splice_body(uint8_t *frame, size_t head_frame_len, const uint8_t *body,
                            size_t body_len) {
  uint8_t *out = realloc(frame, head_frame_len + body_len + 1);
  CHECK(out != NULL);
  if (body_len) memcpy(out + head_frame_len, body, body_len);
  for (int i = 0; i < 4; i++)
    out[8 + i] = (uint8_t)(body_len >> (8 * i));
  return out;
}

static void request_spec_from(const akr_request *r, ackrpc_metadata *md,
                              akr_request_spec *spec) {
  for (size_t i = 0; i < r->n_metadata; i++)
    md[i] = (ackrpc_metadata){.key = r->metadata[i]->key,
                              .value = r->metadata[i]->value.data,
                              .value_len = r->metadata[i]->value.len};
  *spec = (akr_request_spec){.method = r->method,
                             .timeout_us = r->timeout_us,
                             .call_id = r->call_id,
                             .call_id_len = r->call_id_len,
                             .metadata = md,
                             .n_metadata = r->n_metadata};
}

static uint8_t *encode_request(const akr_request *r, size_t *ret_len) {
  ackrpc_metadata md[ACKRPC_MAX_METADATA];
  akr_request_spec spec;
  request_spec_from(r, md, &spec);
  /* What decoded passed every check the encoder makes, and re-encoding
   * cannot make a head longer, so the encoder must accept it. */
  size_t n = akr_request_size(&spec);
  CHECK(n > 0);
  uint8_t *out = malloc(n);
  CHECK(out != NULL);
  CHECK(akr_request_encode(&spec, out) == n);
  out = splice_body(out, n, r->body, r->body_len);
  *ret_len = n + r->body_len;
  return out;
}

static void same_request(const akr_request *a, const akr_request *b) {
  CHECK(strcmp(a->method, b->method) == 0);
  CHECK(a->timeout_us == b->timeout_us);
  CHECK(a->call_id_len == b->call_id_len);
  CHECK(memcmp(a->call_id, b->call_id, a->call_id_len) == 0);
  CHECK(a->n_metadata == b->n_metadata);
  for (size_t i = 0; i < a->n_metadata; i++) {
    const Ackrpc__Wire__Metadata *x = a->metadata[i], *y = b->metadata[i];
    CHECK(strcmp(x->key, y->key) == 0);
    CHECK(x->value.len == y->value.len);
    CHECK(x->value.len == 0 || memcmp(x->value.data, y->value.data, x->value.len) == 0);
  }
  CHECK(a->body_len == b->body_len);
  CHECK(a->body_len == 0 || memcmp(a->body, b->body, a->body_len) == 0);
}

static void round_trip_request(const akr_request *r) {
  size_t n;
  uint8_t *again = encode_request(r, &n);
  akr_frame f;
  CHECK(akr_frame_scan(again, n, AKR_FRAME_REQUEST, FUZZ_MAX_FRAME, &f, NULL) ==
        AKR_FRAME_OK);
  CHECK(f.frame_len == n);
  akr_arena arena;
  akr_arena_init(&arena, FUZZ_ARENA_CAP);
  akr_request r2;
  CHECK(akr_request_decode(&f, &arena, &r2) == AKR_FRAME_OK);
  same_request(r, &r2);
  /* The encoding is canonical: once more gives the same bytes. */
  size_t n3;
  uint8_t *third = encode_request(&r2, &n3);
  CHECK(n3 == n && memcmp(third, again, n) == 0);

  /* A body that happens to be a protobuf message (Metadata is the one at
   * hand) is packed by the encoder itself and must come back equal. */
  Ackrpc__Wire__Metadata *bm =
      ackrpc__wire__metadata__unpack(&arena.pc, r->body_len, r->body);
  if (bm) {
    ackrpc_metadata md[ACKRPC_MAX_METADATA];
    akr_request_spec spec;
    request_spec_from(r, md, &spec);
    spec.body = &bm->base;
    size_t m = akr_request_size(&spec);
    CHECK(m > 0 && m == AKR_PREFIX_LEN + spec.head_len_ + spec.body_len_);
    uint8_t *packed = malloc(m);
    CHECK(packed != NULL);
    CHECK(akr_request_encode(&spec, packed) == m);
    akr_frame pf;
    CHECK(akr_frame_scan(packed, m, AKR_FRAME_REQUEST, SIZE_MAX, &pf, NULL) ==
          AKR_FRAME_OK);
    akr_request pr;
    CHECK(akr_request_decode(&pf, &arena, &pr) == AKR_FRAME_OK);
    /* The frame's body is exactly what protobuf-c packs for the message.
     * (Whether protobuf-c can decode its own output again is not ours to
     * check: it accepts an overlong field number 0 as an unknown field, packs
     * it canonically, then refuses that; see corpus regress-body-field-zero.) */
    size_t bl = protobuf_c_message_get_packed_size(&bm->base);
    CHECK(pr.body_len == bl);
    uint8_t *direct = malloc(bl ? bl : 1);
    CHECK(direct != NULL);
    CHECK(protobuf_c_message_pack(&bm->base, direct) == bl);
    CHECK(bl == 0 || memcmp(direct, pr.body, bl) == 0);
    free(direct);
    free(packed);
  }
  akr_arena_release(&arena);
  free(again);
  free(third);
}

static void round_trip_reply(const akr_reply *r) {
  akr_reply_spec spec = {.status = r->status, .message = r->message};
  size_t n = akr_reply_size(&spec);
  CHECK(n > 0);
  uint8_t *again = malloc(n);
  CHECK(again != NULL);
  CHECK(akr_reply_encode(&spec, again) == n);
  again = splice_body(again, n, r->body, r->body_len);
  n += r->body_len;
  akr_frame f;
  CHECK(akr_frame_scan(again, n, AKR_FRAME_REPLY, FUZZ_MAX_FRAME, &f, NULL) ==
        AKR_FRAME_OK);
  akr_arena arena;
  akr_arena_init(&arena, FUZZ_ARENA_CAP);
  akr_reply r2;
  CHECK(akr_reply_decode(&f, &arena, &r2) == AKR_FRAME_OK);
  CHECK(r2.status == r->status);
  /* Messages longer than half a head are cut, on a character boundary (at
   * most 3 bytes back); anything shorter comes back whole. */
  size_t len = strlen(r->message), len2 = strlen(r2.message);
  if (len < ACKRPC_MAX_HEAD / 2) {
    CHECK(len2 == len);
  } else {
    CHECK(len2 <= ACKRPC_MAX_HEAD / 2 && len2 + 3 >= ACKRPC_MAX_HEAD / 2);
  }
  CHECK(memcmp(r->message, r2.message, len2) == 0);
  CHECK(r2.body_len == r->body_len);
  CHECK(r->body_len == 0 || memcmp(r->body, r2.body, r->body_len) == 0);
  akr_arena_release(&arena);
  free(again);
}

/* --- the stream --------------------------------------------------------- */

static void scan_stream(const uint8_t *data, size_t size, uint8_t type,
                        akr_arena *arena) {
  size_t off = 0;
  for (;;) {
    const uint8_t *buf = data + off;
    size_t len = size - off;
    akr_frame f;
    size_t need = 0;
    akr_frame_error err = akr_frame_scan(buf, len, type, FUZZ_MAX_FRAME, &f, &need);
    if (err == AKR_FRAME_INCOMPLETE) {
      CHECK(need > len);
      CHECK(need >= AKR_PREFIX_LEN);
      CHECK(need <= AKR_PREFIX_LEN + (size_t)FUZZ_MAX_FRAME);
      return;
    }
    if (err != AKR_FRAME_OK) {
      CHECK(is_scan_error(err));
      check_refused(buf, len, type, err);
      return;
    }
    check_good_frame(buf, len, type, &f);
    akr_arena_reset(arena, FUZZ_ARENA_CAP);
    if (type == AKR_FRAME_REQUEST) {
      akr_request r;
      err = akr_request_decode(&f, arena, &r);
      if (err == AKR_FRAME_OK) {
        CHECK(akr_method_name_valid(r.method));
        CHECK(r.call_id_len >= 1 && r.call_id_len <= ACKRPC_MAX_CALL_ID);
        CHECK(r.n_metadata <= ACKRPC_MAX_METADATA);
        CHECK(r.body == f.body && r.body_len == f.body_len);
        check_request_matches_wire(&f, &r);
        round_trip_request(&r);
      } else {
        CHECK(err == AKR_FRAME_BAD_HEAD || err == AKR_FRAME_BAD_METHOD ||
              err == AKR_FRAME_BAD_CALL_ID || err == AKR_FRAME_BAD_METADATA ||
              err == AKR_FRAME_NO_MEMORY);
        /* The decoder answers with a status a server may send. */
        CHECK(ackrpc_status_is_canonical(akr_frame_error_status(err)));
        CHECK(akr_frame_error_status(err) != ACKRPC_OK);
      }
    } else {
      akr_reply r;
      err = akr_reply_decode(&f, arena, &r);
      if (err == AKR_FRAME_OK) {
        CHECK(r.status <= 99);
        CHECK(r.message != NULL);
        CHECK(r.body == f.body && r.body_len == f.body_len);
        round_trip_reply(&r);
      } else {
        CHECK(err == AKR_FRAME_BAD_HEAD || err == AKR_FRAME_BAD_STATUS ||
              err == AKR_FRAME_NO_MEMORY);
      }
    }
    /* Session mode: the next frame starts right after this one. */
    off += f.frame_len;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  akr_arena arena;
  akr_arena_init(&arena, FUZZ_ARENA_CAP);
  scan_stream(data, size, AKR_FRAME_REQUEST, &arena);
  scan_stream(data, size, AKR_FRAME_REPLY, &arena);
  akr_arena_release(&arena);
  return 0;
}
