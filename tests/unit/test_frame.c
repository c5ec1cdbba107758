/* test_frame.c: unit tests of the I/O-free framing module (src/frame.c).
 *
 * Frames are built two ways: with the module's own encoders (round trips)
 * and by hand, byte by byte (heads the encoders refuse to write, so the
 * decoders' checks can be reached). Not covered here: the server's and the
 * client's use of frames (their own tests) and the arena (test_arena.c). */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ackrpc/bench.pb-c.h"
#include "ackrpc/wire.pb-c.h"
#include "mem/arena.h"
#include "wire/depth.h"
#include "wire/encode.h"
#include "wire/frame.h"
#include "wire/groups.h"
#include "wire/head.h"
#include "wire/names.h"

/* --- hand-built bytes --------------------------------------------------- */

typedef struct bytes {
  uint8_t *data;
  size_t len, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n)
      cap *= 2;
    b->data = realloc(b->data, cap);
    cr_assert_not_null(b->data);
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void put_byte(bytes *b, uint8_t v) {
  put(b, &v, 1);
}

static void put_varint(bytes *b, uint64_t v) {
  while (v >= 0x80) {
    put_byte(b, (uint8_t)(v | 0x80));
    v >>= 7;
  }
  put_byte(b, (uint8_t)v);
}

/* A length-delimited protobuf field. */
static void put_field(bytes *b, unsigned field, const void *p, size_t n) {
  put_varint(b, field << 3 | 2);
  put_varint(b, n);
  put(b, p, n);
}

static void put_field_str(bytes *b, unsigned field, const char *s) {
  put_field(b, field, s, strlen(s));
}

static void put_field_varint(bytes *b, unsigned field, uint64_t v) {
  put_varint(b, field << 3);
  put_varint(b, v);
}

/* A Metadata entry (field 4 of RequestHead). */
static void put_metadata(bytes *head, const void *key, size_t key_len,
                         const void *value, size_t value_len) {
  bytes m = {0};
  put_field(&m, 1, key, key_len);
  if (value_len) put_field(&m, 2, value, value_len);
  put_field(head, 4, m.data, m.len);
  free(m.data);
}

static void put_prefix(bytes *b, uint8_t type, uint32_t head_len, uint32_t body_len) {
  uint8_t p[AKR_PREFIX_LEN] = {AKR_MAGIC0, AKR_MAGIC1, AKR_VERSION, type};
  for (int i = 0; i < 4; i++) {
    p[4 + i] = (uint8_t)(head_len >> (8 * i));
    p[8 + i] = (uint8_t)(body_len >> (8 * i));
  }
  put(b, p, sizeof p);
}

/* A whole frame around a hand-built head. */
static bytes make_frame(uint8_t type, const bytes *head, const void *body,
                        size_t body_len) {
  bytes f = {0};
  put_prefix(&f, type, (uint32_t)head->len, (uint32_t)body_len);
  put(&f, head->data, head->len);
  put(&f, body, body_len);
  return f;
}

/* A request head with a good method and call id, ready for more fields. */
static bytes good_head(void) {
  bytes h = {0};
  put_field_str(&h, 1, "a.B/C");
  put_field_str(&h, 3, "id");
  return h;
}

/* Scans and decodes a hand-built request head; returns the first error. */
static akr_frame_error decode_request_head(const bytes *head) {
  bytes f = make_frame(AKR_FRAME_REQUEST, head, NULL, 0);
  akr_frame frame;
  akr_frame_error err =
      akr_frame_scan(f.data, f.len, AKR_FRAME_REQUEST, 1 << 20, &frame, NULL);
  cr_assert_eq(err, AKR_FRAME_OK, "scan: %s", akr_frame_error_text(err));
  akr_arena arena;
  akr_arena_init(&arena, 1 << 20);
  akr_request req;
  err = akr_request_decode(&frame, &arena, &req);
  akr_arena_release(&arena);
  free(f.data);
  return err;
}

static akr_frame_error decode_reply_head(const bytes *head) {
  bytes f = make_frame(AKR_FRAME_REPLY, head, NULL, 0);
  akr_frame frame;
  akr_frame_error err =
      akr_frame_scan(f.data, f.len, AKR_FRAME_REPLY, 1 << 20, &frame, NULL);
  cr_assert_eq(err, AKR_FRAME_OK, "scan: %s", akr_frame_error_text(err));
  akr_arena arena;
  akr_arena_init(&arena, 1 << 20);
  akr_reply rep;
  err = akr_reply_decode(&frame, &arena, &rep);
  akr_arena_release(&arena);
  free(f.data);
  return err;
}

/* --- encoder helpers ---------------------------------------------------- */

static uint8_t *encode_request(akr_request_spec *spec, size_t *ret_len) {
  size_t n = akr_request_size(spec);
  cr_assert_gt(n, 0, "akr_request_size refused a good spec");
  uint8_t *out = malloc(n);
  cr_assert_not_null(out);
  cr_assert_eq(akr_request_encode(spec, out), n);
  *ret_len = n;
  return out;
}

static uint8_t *encode_reply(akr_reply_spec *spec, size_t *ret_len) {
  size_t n = akr_reply_size(spec);
  cr_assert_gt(n, 0);
  uint8_t *out = malloc(n);
  cr_assert_not_null(out);
  cr_assert_eq(akr_reply_encode(spec, out), n);
  *ret_len = n;
  return out;
}

static size_t request_size_with_method(const char *method) {
  akr_request_spec spec = {
      .method = method, .call_id = (const uint8_t *)"x", .call_id_len = 1};
  return akr_request_size(&spec);
}

/* A small good request frame with the given call id. */
static uint8_t *small_request(const char *call_id, size_t *ret_len) {
  akr_request_spec spec = {.method = "demo.Store/Put",
                           .call_id = (const uint8_t *)call_id,
                           .call_id_len = strlen(call_id),
                           .timeout_us = 250000};
  return encode_request(&spec, ret_len);
}

/* --- round trips -------------------------------------------------------- */

Test(frame, request_round_trip_every_field) {
  static const uint8_t call_id[16] = {0x00, 0x01, 0xff, 0x7f, 0x80, 'c',  'a',  'l',
                                      'l',  0x00, 0x00, 0x10, 0x20, 0x30, 0x40, 0xfe};
  static const uint8_t bin_value[5] = {0x00, 0xff, 0x00, 'v', 0x80};
  const ackrpc_metadata md[3] = {
      {.key = "x-trace.id_1", .value = "abc", .value_len = 3},
      {.key = "empty", .value = NULL, .value_len = 0},
      {.key = "bin", .value = bin_value, .value_len = sizeof bin_value},
  };
  static const uint8_t payload[11] = "hello\0world";
  Ackrpc__Bench__Request body = ACKRPC__BENCH__REQUEST__INIT;
  body.id = 42;
  body.body.data = (uint8_t *)payload;
  body.body.len = sizeof payload;

  akr_request_spec spec = {.method = "pkg.sub.Svc/Method_1",
                           .timeout_us = 1500000,
                           .call_id = call_id,
                           .call_id_len = sizeof call_id,
                           .metadata = md,
                           .n_metadata = 3,
                           .body = &body.base};
  size_t n;
  uint8_t *buf = encode_request(&spec, &n);
  cr_assert_eq(n, AKR_PREFIX_LEN + spec.head_len_ + spec.body_len_);

  akr_frame frame;
  size_t need = 0;
  cr_assert_eq(akr_frame_scan(buf, n, AKR_FRAME_REQUEST, n, &frame, &need),
               AKR_FRAME_OK);
  cr_assert_eq(frame.type, AKR_FRAME_REQUEST);
  cr_assert_eq(frame.frame_len, n);
  cr_assert_eq(frame.head_len, spec.head_len_);
  cr_assert_eq(frame.body_len, spec.body_len_);
  cr_assert_eq(frame.head, buf + AKR_PREFIX_LEN);
  cr_assert_eq(frame.body, buf + AKR_PREFIX_LEN + frame.head_len);

  akr_arena arena;
  akr_arena_init(&arena, 1 << 20);
  akr_request req;
  cr_assert_eq(akr_request_decode(&frame, &arena, &req), AKR_FRAME_OK);
  cr_assert_str_eq(req.method, "pkg.sub.Svc/Method_1");
  cr_assert_eq(req.timeout_us, 1500000);
  cr_assert_eq(req.call_id_len, sizeof call_id);
  cr_assert_arr_eq(req.call_id, call_id, sizeof call_id);
  cr_assert_eq(req.n_metadata, 3);
  for (size_t i = 0; i < 3; i++) {
    cr_assert_str_eq(req.metadata[i]->key, md[i].key);
    cr_assert_eq(req.metadata[i]->value.len, md[i].value_len);
    if (md[i].value_len)
      cr_assert_arr_eq(req.metadata[i]->value.data, md[i].value, md[i].value_len);
  }
  /* The body is handed over in place, not copied. */
  cr_assert_eq(req.body, frame.body);
  cr_assert_eq(req.body_len, frame.body_len);
  Ackrpc__Bench__Request *got =
      ackrpc__bench__request__unpack(NULL, req.body_len, req.body);
  cr_assert_not_null(got);
  cr_assert_eq(got->id, 42);
  cr_assert_eq(got->body.len, sizeof payload);
  cr_assert_arr_eq(got->body.data, payload, sizeof payload);
  ackrpc__bench__request__free_unpacked(got, NULL);

  /* The hand-written head encoder must produce plain protobuf, so another
   * implementation can read it with its stock RequestHead decoder. */
  Ackrpc__Wire__RequestHead *h =
      ackrpc__wire__request_head__unpack(NULL, frame.head_len, frame.head);
  cr_assert_not_null(h);
  cr_assert_str_eq(h->method, "pkg.sub.Svc/Method_1");
  cr_assert_eq(h->timeout_us, 1500000);
  cr_assert_eq(h->n_metadata, 3);
  cr_assert_eq(h->base.n_unknown_fields, 0);
  ackrpc__wire__request_head__free_unpacked(h, NULL);

  akr_arena_release(&arena);
  free(buf);
}

Test(frame, request_round_trip_minimal) {
  akr_request_spec spec = {
      .method = "S/m", .call_id = (const uint8_t *)"\0", .call_id_len = 1};
  size_t n;
  uint8_t *buf = encode_request(&spec, &n);
  akr_frame frame;
  cr_assert_eq(akr_frame_scan(buf, n, AKR_FRAME_REQUEST, 1024, &frame, NULL),
               AKR_FRAME_OK);
  cr_assert_eq(frame.body_len, 0);
  akr_arena arena;
  akr_arena_init(&arena, 4096);
  akr_request req;
  cr_assert_eq(akr_request_decode(&frame, &arena, &req), AKR_FRAME_OK);
  cr_assert_str_eq(req.method, "S/m");
  cr_assert_eq(req.timeout_us, 0);
  cr_assert_eq(req.call_id_len, 1);
  cr_assert_eq(req.call_id[0], 0);
  cr_assert_eq(req.n_metadata, 0);
  cr_assert_eq(req.body_len, 0);
  akr_arena_release(&arena);
  free(buf);
}

Test(frame, request_round_trip_at_the_limits) {
  char method[ACKRPC_MAX_METHOD_NAME + 1];
  memset(method, 'm', sizeof method - 1);
  method[0] = 'a';
  method[1] = '.';
  method[2] = 'B';
  method[3] = '/';
  method[ACKRPC_MAX_METHOD_NAME] = '\0';
  uint8_t call_id[ACKRPC_MAX_CALL_ID];
  for (size_t i = 0; i < sizeof call_id; i++)
    call_id[i] = (uint8_t)(i * 7);
  char keys[ACKRPC_MAX_METADATA][ACKRPC_MAX_METADATA_KEY + 1];
  static uint8_t big[ACKRPC_MAX_METADATA_VALUE];
  memset(big, 0xab, sizeof big);
  ackrpc_metadata md[ACKRPC_MAX_METADATA];
  for (size_t i = 0; i < ACKRPC_MAX_METADATA; i++) {
    memset(keys[i], 'k', ACKRPC_MAX_METADATA_KEY);
    keys[i][0] = (char)('a' + i % 26);
    keys[i][1] = (char)('0' + i / 26);
    keys[i][ACKRPC_MAX_METADATA_KEY] = '\0';
    md[i] = (ackrpc_metadata){
        .key = keys[i], .value = big, .value_len = i == 0 ? sizeof big : i};
  }
  akr_request_spec spec = {.method = method,
                           .timeout_us = UINT64_MAX,
                           .call_id = call_id,
                           .call_id_len = sizeof call_id,
                           .metadata = md,
                           .n_metadata = ACKRPC_MAX_METADATA};
  size_t n;
  uint8_t *buf = encode_request(&spec, &n);
  akr_frame frame;
  cr_assert_eq(akr_frame_scan(buf, n, AKR_FRAME_REQUEST, n, &frame, NULL),
               AKR_FRAME_OK);
  akr_arena arena;
  akr_arena_init(&arena, 1 << 20);
  akr_request req;
  cr_assert_eq(akr_request_decode(&frame, &arena, &req), AKR_FRAME_OK);
  cr_assert_eq(strlen(req.method), ACKRPC_MAX_METHOD_NAME);
  cr_assert_str_eq(req.method, method);
  cr_assert_eq(req.timeout_us, UINT64_MAX);
  cr_assert_eq(req.call_id_len, ACKRPC_MAX_CALL_ID);
  cr_assert_arr_eq(req.call_id, call_id, sizeof call_id);
  cr_assert_eq(req.n_metadata, ACKRPC_MAX_METADATA);
  for (size_t i = 0; i < ACKRPC_MAX_METADATA; i++) {
    cr_assert_str_eq(req.metadata[i]->key, keys[i]);
    cr_assert_eq(req.metadata[i]->value.len, md[i].value_len);
    cr_assert_arr_eq(req.metadata[i]->value.data, big, md[i].value_len);
  }
  akr_arena_release(&arena);
  free(buf);
}

Test(frame, reply_round_trip) {
  Ackrpc__Bench__Ack ack = ACKRPC__BENCH__ACK__INIT;
  ack.id = 7;
  ack.body_len = 300;
  akr_reply_spec spec = {.status = ACKRPC_NOT_FOUND,
                         .message = "no such key: \xc3\xbc",
                         .body = &ack.base};
  size_t n;
  uint8_t *buf = encode_reply(&spec, &n);
  akr_frame frame;
  cr_assert_eq(akr_frame_scan(buf, n, AKR_FRAME_REPLY, n, &frame, NULL), AKR_FRAME_OK);
  cr_assert_eq(frame.type, AKR_FRAME_REPLY);
  cr_assert_eq(frame.frame_len, n);
  akr_arena arena;
  akr_arena_init(&arena, 4096);
  akr_reply rep;
  cr_assert_eq(akr_reply_decode(&frame, &arena, &rep), AKR_FRAME_OK);
  cr_assert_eq(rep.status, ACKRPC_NOT_FOUND);
  cr_assert_str_eq(rep.message, "no such key: \xc3\xbc");
  cr_assert_eq(rep.body, frame.body);
  cr_assert_eq(rep.body_len, frame.body_len);
  Ackrpc__Bench__Ack *got = ackrpc__bench__ack__unpack(NULL, rep.body_len, rep.body);
  cr_assert_not_null(got);
  cr_assert_eq(got->id, 7);
  cr_assert_eq(got->body_len, 300);
  ackrpc__bench__ack__free_unpacked(got, NULL);

  Ackrpc__Wire__ReplyHead *h =
      ackrpc__wire__reply_head__unpack(NULL, frame.head_len, frame.head);
  cr_assert_not_null(h);
  cr_assert_eq(h->status, ACKRPC_NOT_FOUND);
  cr_assert_eq(h->base.n_unknown_fields, 0);
  ackrpc__wire__reply_head__free_unpacked(h, NULL);
  akr_arena_release(&arena);
  free(buf);
}

Test(frame, arena_on_a_callers_buffer_uses_it_first) {
  _Alignas(max_align_t) uint8_t room[256];
  akr_arena arena;
  akr_arena_init_on(&arena, 1024, room, sizeof room);
  /* What fits comes from the buffer, aligned, with no chunk allocated. */
  uint8_t *a = akr_arena_alloc(&arena, 10);
  uint8_t *b = akr_arena_alloc(&arena, 100);
  cr_assert(a >= room && a + 10 <= room + sizeof room,
            "first block outside the buffer");
  cr_assert(b >= room && b + 100 <= room + sizeof room,
            "second block outside the buffer");
  cr_assert_eq((uintptr_t)b % _Alignof(max_align_t), 0);
  cr_assert_null(arena.chunks, "a block that fits allocated a chunk");
  /* More than is left spills into a chunk; the buffer counts against the
   * cap, so 1024 - 256 bytes are left for chunks. */
  uint8_t *c = akr_arena_alloc(&arena, 600);
  cr_assert_not_null(c);
  cr_assert(c < room || c >= room + sizeof room, "a spilled block inside the buffer");
  cr_assert_not_null(arena.chunks);
  cr_assert_null(akr_arena_alloc(&arena, 600), "the cap counts the buffer");
  cr_assert_eq(arena.refused, 1);
  /* Releasing frees the chunks only (a free of `room` would fail ASan). */
  akr_arena_release(&arena);
  /* A buffer larger than the cap lends only the cap. */
  akr_arena_init_on(&arena, 64, room, sizeof room);
  cr_assert_not_null(akr_arena_alloc(&arena, 64));
  cr_assert_null(akr_arena_alloc(&arena, 1));
  akr_arena_release(&arena);
}

Test(frame, reply_decodes_into_a_callers_buffer) {
  akr_reply_spec spec = {.status = ACKRPC_NOT_FOUND, .message = "no such key"};
  size_t n;
  uint8_t *buf = encode_reply(&spec, &n);
  akr_frame frame;
  cr_assert_eq(akr_frame_scan(buf, n, AKR_FRAME_REPLY, n, &frame, NULL), AKR_FRAME_OK);
  _Alignas(max_align_t) uint8_t room[1024];
  akr_arena arena;
  akr_arena_init_on(&arena, 4096, room, sizeof room);
  akr_reply rep;
  cr_assert_eq(akr_reply_decode(&frame, &arena, &rep), AKR_FRAME_OK);
  cr_assert_str_eq(rep.message, "no such key");
  cr_assert(rep.message >= (const char *)room &&
                rep.message < (const char *)room + sizeof room,
            "the head was not decoded into the caller's buffer");
  cr_assert_null(arena.chunks, "a short reply head allocated a chunk");
  akr_arena_release(&arena);
  free(buf);
}

Test(frame, reply_round_trip_empty) {
  /* OK, no message, no body: an empty head, the shortest frame there is. */
  akr_reply_spec spec = {.status = ACKRPC_OK};
  size_t n;
  uint8_t *buf = encode_reply(&spec, &n);
  cr_assert_eq(n, AKR_PREFIX_LEN);
  akr_frame frame;
  cr_assert_eq(akr_frame_scan(buf, n, AKR_FRAME_REPLY, 0, &frame, NULL), AKR_FRAME_OK);
  akr_arena arena;
  akr_arena_init(&arena, 4096);
  akr_reply rep;
  cr_assert_eq(akr_reply_decode(&frame, &arena, &rep), AKR_FRAME_OK);
  cr_assert_eq(rep.status, 0);
  cr_assert_not_null(rep.message);
  cr_assert_str_eq(rep.message, "");
  cr_assert_eq(rep.body_len, 0);

  /* "" and NULL messages are the same thing on the wire. */
  akr_reply_spec spec2 = {.status = ACKRPC_OK, .message = ""};
  cr_assert_eq(akr_reply_size(&spec2), AKR_PREFIX_LEN);
  akr_arena_release(&arena);
  free(buf);
}

Test(frame, reply_long_message_cut_on_a_character_boundary) {
  /* "x" then two-byte characters: byte 32768 (the cut) is the second byte of
   * one, so the encoder must back off by one to keep valid UTF-8. */
  size_t len = 1 + 2 * 20000;
  char *msg = malloc(len + 1);
  cr_assert_not_null(msg);
  msg[0] = 'x';
  for (size_t i = 1; i < len; i += 2) {
    msg[i] = (char)0xc3;
    msg[i + 1] = (char)0xa9;
  }
  msg[len] = '\0';
  akr_reply_spec spec = {.status = ACKRPC_INTERNAL, .message = msg};
  size_t n;
  uint8_t *buf = encode_reply(&spec, &n);
  akr_frame frame;
  cr_assert_eq(akr_frame_scan(buf, n, AKR_FRAME_REPLY, n, &frame, NULL), AKR_FRAME_OK);
  cr_assert_leq(frame.head_len, ACKRPC_MAX_HEAD);
  akr_arena arena;
  akr_arena_init(&arena, 1 << 20);
  akr_reply rep;
  cr_assert_eq(akr_reply_decode(&frame, &arena, &rep), AKR_FRAME_OK);
  cr_assert_eq(strlen(rep.message), ACKRPC_MAX_HEAD / 2 - 1);
  cr_assert_eq(memcmp(rep.message, msg, ACKRPC_MAX_HEAD / 2 - 1), 0);
  akr_arena_release(&arena);
  free(buf);
  free(msg);
}

/* --- scanning: truncation and limits ----------------------------------- */

/* Every proper prefix of a good frame is INCOMPLETE, never OK nor an error,
 * and the bytes needed are announced once the 12-byte prefix is in. Each
 * prefix is copied to a buffer of exactly its length so that a read past
 * `len` shows up under ASan. */
static void check_every_truncation(const uint8_t *buf, size_t n, uint8_t type) {
  for (size_t k = 0; k < n; k++) {
    uint8_t *copy = malloc(k ? k : 1);
    cr_assert_not_null(copy);
    if (k) memcpy(copy, buf, k);
    akr_frame frame;
    size_t need = 0;
    akr_frame_error err = akr_frame_scan(copy, k, type, 1 << 20, &frame, &need);
    cr_assert_eq(err, AKR_FRAME_INCOMPLETE, "prefix of %zu of %zu bytes: %s", k, n,
                 akr_frame_error_text(err));
    cr_assert_eq(need, k < AKR_PREFIX_LEN ? AKR_PREFIX_LEN : n, "need at %zu", k);
    /* NULL ret_need is allowed. */
    cr_assert_eq(akr_frame_scan(copy, k, type, 1 << 20, &frame, NULL),
                 AKR_FRAME_INCOMPLETE);
    free(copy);
  }
  akr_frame frame;
  cr_assert_eq(akr_frame_scan(buf, n, type, 1 << 20, &frame, NULL), AKR_FRAME_OK);
}

Test(frame, every_truncation_of_a_request_is_incomplete) {
  const ackrpc_metadata md[2] = {{.key = "k1", .value = "v", .value_len = 1},
                                 {.key = "k2", .value = "vv", .value_len = 2}};
  Ackrpc__Bench__Request body = ACKRPC__BENCH__REQUEST__INIT;
  body.id = 99;
  body.body.data = (uint8_t *)"payload";
  body.body.len = 7;
  akr_request_spec spec = {.method = "demo.Store/Put",
                           .timeout_us = 5000000,
                           .call_id = (const uint8_t *)"0123456789abcdef",
                           .call_id_len = 16,
                           .metadata = md,
                           .n_metadata = 2,
                           .body = &body.base};
  size_t n;
  uint8_t *buf = encode_request(&spec, &n);
  cr_assert_gt(spec.body_len_, 0);
  check_every_truncation(buf, n, AKR_FRAME_REQUEST);
  free(buf);
}

Test(frame, every_truncation_of_a_reply_is_incomplete) {
  Ackrpc__Bench__Ack ack = ACKRPC__BENCH__ACK__INIT;
  ack.id = 1;
  akr_reply_spec spec = {.status = 3, .message = "bad", .body = &ack.base};
  size_t n;
  uint8_t *buf = encode_reply(&spec, &n);
  check_every_truncation(buf, n, AKR_FRAME_REPLY);
  free(buf);
}

Test(frame, oversize_refused_from_the_prefix_alone) {
  bytes f = {0};
  put_prefix(&f, AKR_FRAME_REQUEST, 100, 1000);
  cr_assert_eq(f.len, AKR_PREFIX_LEN);
  akr_frame frame;
  size_t need = 0;
  cr_assert_eq(akr_frame_scan(f.data, f.len, AKR_FRAME_REQUEST, 1099, &frame, &need),
               AKR_FRAME_TOO_LARGE);
  /* Exactly at the limit is fine: the caller is told how much to read. */
  cr_assert_eq(akr_frame_scan(f.data, f.len, AKR_FRAME_REQUEST, 1100, &frame, &need),
               AKR_FRAME_INCOMPLETE);
  cr_assert_eq(need, AKR_PREFIX_LEN + 1100);
  free(f.data);

  /* The largest lengths a prefix can announce: no overflow in the sum. */
  bytes g = {0};
  put_prefix(&g, AKR_FRAME_REPLY, ACKRPC_MAX_HEAD, UINT32_MAX);
  cr_assert_eq(akr_frame_scan(g.data, g.len, AKR_FRAME_REPLY, 4u << 20, &frame, &need),
               AKR_FRAME_TOO_LARGE);
  cr_assert_eq(
      akr_frame_scan(g.data, g.len, AKR_FRAME_REPLY, UINT32_MAX, &frame, &need),
      AKR_FRAME_TOO_LARGE);
  cr_assert_eq(akr_frame_scan(g.data, g.len, AKR_FRAME_REPLY, SIZE_MAX, &frame, &need),
               AKR_FRAME_INCOMPLETE);
  cr_assert_eq(need, (size_t)AKR_PREFIX_LEN + ACKRPC_MAX_HEAD + UINT32_MAX);
  free(g.data);
}

Test(frame, oversize_body_alone) {
  bytes f = {0};
  put_prefix(&f, AKR_FRAME_REQUEST, 0, 4097);
  akr_frame frame;
  cr_assert_eq(akr_frame_scan(f.data, f.len, AKR_FRAME_REQUEST, 4096, &frame, NULL),
               AKR_FRAME_TOO_LARGE);
  free(f.data);
}

Test(frame, head_above_64k_refused) {
  bytes f = {0};
  put_prefix(&f, AKR_FRAME_REQUEST, ACKRPC_MAX_HEAD + 1, 0);
  akr_frame frame;
  cr_assert_eq(akr_frame_scan(f.data, f.len, AKR_FRAME_REQUEST, SIZE_MAX, &frame, NULL),
               AKR_FRAME_HEAD_TOO_LARGE);
  free(f.data);
  bytes g = {0};
  put_prefix(&g, AKR_FRAME_REQUEST, ACKRPC_MAX_HEAD, 0);
  cr_assert_eq(akr_frame_scan(g.data, g.len, AKR_FRAME_REQUEST, SIZE_MAX, &frame, NULL),
               AKR_FRAME_INCOMPLETE);
  free(g.data);
  bytes h = {0};
  put_prefix(&h, AKR_FRAME_REPLY, UINT32_MAX, 0);
  cr_assert_eq(akr_frame_scan(h.data, h.len, AKR_FRAME_REPLY, SIZE_MAX, &frame, NULL),
               AKR_FRAME_HEAD_TOO_LARGE);
  free(h.data);
}

Test(frame, bad_magic_caught_at_first_wrong_byte) {
  akr_frame frame;
  const uint8_t b0[1] = {'G'}; /* "GET /" from a confused HTTP client */
  cr_assert_eq(akr_frame_scan(b0, 1, AKR_FRAME_REQUEST, 1024, &frame, NULL),
               AKR_FRAME_BAD_MAGIC);
  const uint8_t b1[2] = {AKR_MAGIC0, 'X'};
  cr_assert_eq(akr_frame_scan(b1, 2, AKR_FRAME_REQUEST, 1024, &frame, NULL),
               AKR_FRAME_BAD_MAGIC);
  const uint8_t ok1[1] = {AKR_MAGIC0};
  cr_assert_eq(akr_frame_scan(ok1, 1, AKR_FRAME_REQUEST, 1024, &frame, NULL),
               AKR_FRAME_INCOMPLETE);
  /* Swapped bytes and a whole frame with a bad second byte. */
  const uint8_t sw[2] = {AKR_MAGIC1, AKR_MAGIC0};
  cr_assert_eq(akr_frame_scan(sw, 2, AKR_FRAME_REQUEST, 1024, &frame, NULL),
               AKR_FRAME_BAD_MAGIC);
  size_t n;
  uint8_t *buf = small_request("c", &n);
  buf[1] = 'k';
  cr_assert_eq(akr_frame_scan(buf, n, AKR_FRAME_REQUEST, 1024, &frame, NULL),
               AKR_FRAME_BAD_MAGIC);
  free(buf);
}

Test(frame, bad_version) {
  akr_frame frame;
  for (unsigned v = 0; v < 256; v++) {
    if (v == AKR_VERSION) continue;
    const uint8_t b[3] = {AKR_MAGIC0, AKR_MAGIC1, (uint8_t)v};
    cr_assert_eq(akr_frame_scan(b, 3, AKR_FRAME_REQUEST, 1024, &frame, NULL),
                 AKR_FRAME_BAD_VERSION, "version %u", v);
  }
  const uint8_t good[3] = {AKR_MAGIC0, AKR_MAGIC1, AKR_VERSION};
  cr_assert_eq(akr_frame_scan(good, 3, AKR_FRAME_REQUEST, 1024, &frame, NULL),
               AKR_FRAME_INCOMPLETE);
  cr_assert_eq(akr_frame_error_status(AKR_FRAME_BAD_VERSION), ACKRPC_UNIMPLEMENTED);
}

Test(frame, wrong_type) {
  akr_frame frame;
  size_t n;
  uint8_t *req = small_request("c", &n);
  /* Caught at byte 3, before the rest arrives. */
  cr_assert_eq(akr_frame_scan(req, 4, AKR_FRAME_REPLY, 1024, &frame, NULL),
               AKR_FRAME_BAD_TYPE);
  cr_assert_eq(akr_frame_scan(req, n, AKR_FRAME_REPLY, 1024, &frame, NULL),
               AKR_FRAME_BAD_TYPE);
  akr_reply_spec rs = {.status = 0};
  size_t m;
  uint8_t *rep = encode_reply(&rs, &m);
  cr_assert_eq(akr_frame_scan(rep, m, AKR_FRAME_REQUEST, 1024, &frame, NULL),
               AKR_FRAME_BAD_TYPE);
  for (unsigned t = 0; t < 256; t++) {
    const uint8_t b[4] = {AKR_MAGIC0, AKR_MAGIC1, AKR_VERSION, (uint8_t)t};
    akr_frame_error want =
        t == AKR_FRAME_REQUEST ? AKR_FRAME_INCOMPLETE : AKR_FRAME_BAD_TYPE;
    cr_assert_eq(akr_frame_scan(b, 4, AKR_FRAME_REQUEST, 1024, &frame, NULL), want,
                 "type %u", t);
  }

  /* The decoders check the type too, whatever frame they are handed. */
  akr_arena arena;
  akr_arena_init(&arena, 4096);
  cr_assert_eq(akr_frame_scan(req, n, AKR_FRAME_REQUEST, 1024, &frame, NULL),
               AKR_FRAME_OK);
  akr_reply r;
  cr_assert_eq(akr_reply_decode(&frame, &arena, &r), AKR_FRAME_BAD_TYPE);
  cr_assert_eq(akr_frame_scan(rep, m, AKR_FRAME_REPLY, 1024, &frame, NULL),
               AKR_FRAME_OK);
  akr_request q;
  cr_assert_eq(akr_request_decode(&frame, &arena, &q), AKR_FRAME_BAD_TYPE);
  akr_arena_release(&arena);
  free(req);
  free(rep);
}

/* --- heads -------------------------------------------------------------- */

static int request_error_ok_for_garbage(akr_frame_error e) {
  return e == AKR_FRAME_OK || e == AKR_FRAME_BAD_HEAD || e == AKR_FRAME_BAD_METHOD ||
         e == AKR_FRAME_BAD_CALL_ID || e == AKR_FRAME_BAD_METADATA ||
         e == AKR_FRAME_NO_MEMORY;
}

Test(frame, garbage_heads_are_refused_not_crashed_on) {
  /* A fixed-seed generator: the same garbage every run. */
  uint64_t s = 0x9e3779b97f4a7c15u;
  size_t refused = 0;
  for (int iter = 0; iter < 3000; iter++) {
    bytes head = {0};
    s = s * 6364136223846793005u + 1442695040888963407u;
    size_t len = (size_t)(s >> 33) % 300;
    for (size_t i = 0; i < len; i++) {
      s = s * 6364136223846793005u + 1442695040888963407u;
      put_byte(&head, (uint8_t)(s >> 56));
    }
    akr_frame_error e = decode_request_head(&head);
    cr_assert(request_error_ok_for_garbage(e), "request head: %s",
              akr_frame_error_text(e));
    if (e != AKR_FRAME_OK) refused++;
    e = decode_reply_head(&head);
    cr_assert(e == AKR_FRAME_OK || e == AKR_FRAME_BAD_HEAD ||
                  e == AKR_FRAME_BAD_STATUS || e == AKR_FRAME_NO_MEMORY,
              "reply head: %s", akr_frame_error_text(e));
    free(head.data);
  }
  cr_assert_gt(refused, 2900);
}

Test(frame, malformed_protobuf_heads) {
  /* A varint that never ends. */
  bytes a = {0};
  put_byte(&a, 0xff);
  cr_assert_eq(decode_request_head(&a), AKR_FRAME_BAD_HEAD);
  cr_assert_eq(decode_reply_head(&a), AKR_FRAME_BAD_HEAD);
  /* A string field whose length runs past the head. */
  bytes b = {0};
  put_varint(&b, 1 << 3 | 2);
  put_varint(&b, 50);
  put(&b, "a.B/C", 5);
  cr_assert_eq(decode_request_head(&b), AKR_FRAME_BAD_HEAD);
  cr_assert_eq(decode_reply_head(&b), AKR_FRAME_BAD_HEAD);
  /* A good head cut one byte short by the prefix: the prefix decides. */
  bytes c = good_head();
  c.len--;
  cr_assert_eq(decode_request_head(&c), AKR_FRAME_BAD_HEAD);
  /* Field 0 does not exist in protobuf. */
  bytes d = good_head();
  put_byte(&d, 0x00);
  cr_assert_eq(decode_request_head(&d), AKR_FRAME_BAD_HEAD);
  free(a.data);
  free(b.data);
  free(c.data);
  free(d.data);
}

Test(frame, empty_request_head_lacks_a_method) {
  bytes empty = {0};
  cr_assert_eq(decode_request_head(&empty), AKR_FRAME_BAD_METHOD);
  /* For a reply, an empty head is "OK, no message". */
  cr_assert_eq(decode_reply_head(&empty), AKR_FRAME_OK);
}

Test(frame, unknown_head_fields_are_ignored) {
  /* Forward compatibility: a newer peer may add fields. */
  bytes h = good_head();
  put_field_str(&h, 15, "future");
  put_field_varint(&h, 16, 12345);
  cr_assert_eq(decode_request_head(&h), AKR_FRAME_OK);
  bytes r = {0};
  put_field_varint(&r, 1, 5);
  put_field_str(&r, 9, "extra");
  cr_assert_eq(decode_reply_head(&r), AKR_FRAME_OK);
  free(h.data);
  free(r.data);
}

/* --- groups (wire types 3 and 4) in heads --------------------------------- */

static void put_group_start(bytes *b, unsigned field) {
  put_varint(b, field << 3 | 3);
}

static void put_group_end(bytes *b, unsigned field) {
  put_varint(b, field << 3 | 4);
}

/* A group of field `field` holding one field of every other wire type and a
 * nested group, as google.protobuf writes an unknown group. */
static void put_full_group(bytes *b, unsigned field) {
  put_group_start(b, field);
  put_field_varint(b, 1, 300);
  put_varint(b, 2 << 3 | 1);
  put(b, "12345678", 8);
  put_field_str(b, 3, "inside");
  put_varint(b, 4 << 3 | 5);
  put(b, "1234", 4);
  put_group_start(b, 5);
  put_field_varint(b, 1, 7);
  put_group_end(b, 5);
  put_group_end(b, field);
}

/* Decodes a hand-built request head and checks what came out. */
static akr_frame_error decode_request_head_into(const bytes *head, akr_arena *arena,
                                                akr_request *req, bytes *f) {
  *f = make_frame(AKR_FRAME_REQUEST, head, NULL, 0);
  akr_frame frame;
  cr_assert_eq(
      akr_frame_scan(f->data, f->len, AKR_FRAME_REQUEST, 1 << 20, &frame, NULL),
      AKR_FRAME_OK);
  return akr_request_decode(&frame, arena, req);
}

Test(frame, unknown_groups_in_a_request_head_are_skipped) {
  /* Groups before, between and after the known fields, and inside a
   * metadata entry (whose length must be rewritten without it). */
  bytes h = {0};
  put_full_group(&h, 20);
  put_field_str(&h, 1, "a.B/C");
  put_full_group(&h, 21);
  put_field_varint(&h, 2, 1000000);
  put_field_str(&h, 3, "id");
  bytes m = {0};
  put_field_str(&m, 1, "k");
  put_full_group(&m, 9);
  put_field_str(&m, 2, "v");
  put_field(&h, 4, m.data, m.len);
  put_metadata(&h, "k2", 2, "v2", 2);
  put_full_group(&h, 536870911); /* the largest field number */

  akr_arena arena;
  akr_arena_init(&arena, 1 << 20);
  akr_request req;
  bytes f;
  akr_frame_error e = decode_request_head_into(&h, &arena, &req, &f);
  cr_assert_eq(e, AKR_FRAME_OK, "%s", akr_frame_error_text(e));
  cr_assert_str_eq(req.method, "a.B/C");
  cr_assert_eq(req.timeout_us, 1000000);
  cr_assert_eq(req.call_id_len, 2);
  cr_assert_eq(memcmp(req.call_id, "id", 2), 0);
  cr_assert_eq(req.n_metadata, 2);
  cr_assert_str_eq(req.metadata[0]->key, "k");
  cr_assert_eq(req.metadata[0]->value.len, 1);
  cr_assert_eq(req.metadata[0]->value.data[0], 'v');
  cr_assert_str_eq(req.metadata[1]->key, "k2");
  akr_arena_release(&arena);
  free(f.data);
  free(m.data);
  free(h.data);
}

Test(frame, strip_groups_leaves_exactly_the_other_fields) {
  bytes with = {0}, without = {0}, m = {0}, m_plain = {0};
  put_field_str(&with, 1, "a.B/C");
  put_full_group(&with, 30);
  put_field_str(&with, 3, "id");
  /* A metadata entry long enough that dropping its group shortens its
   * length varint from two bytes to one. */
  char value[120];
  memset(value, 'x', sizeof value);
  put_field_str(&m, 1, "k");
  put_full_group(&m, 3);
  put_field(&m, 2, value, sizeof value);
  put_field(&with, 4, m.data, m.len);
  put_field_str(&without, 1, "a.B/C");
  put_field_str(&without, 3, "id");
  put_field_str(&m_plain, 1, "k");
  put_field(&m_plain, 2, value, sizeof value);
  put_field(&without, 4, m_plain.data, m_plain.len);
  cr_assert_gt(m.len, 127);
  cr_assert_lt(m_plain.len, 128);

  uint8_t *out = malloc(with.len);
  size_t out_len = 0;
  long n = akr_strip_groups(&ackrpc__wire__request_head__descriptor, with.data,
                            with.len, out, &out_len);
  cr_assert_eq(n, 2);
  cr_assert_eq(out_len, without.len);
  cr_assert_eq(memcmp(out, without.data, out_len), 0);
  /* Without groups: an exact copy, none dropped. */
  n = akr_strip_groups(&ackrpc__wire__request_head__descriptor, without.data,
                       without.len, out, &out_len);
  cr_assert_eq(n, 0);
  cr_assert_eq(out_len, without.len);
  cr_assert_eq(memcmp(out, without.data, out_len), 0);
  free(out);
  free(with.data);
  free(without.data);
  free(m.data);
  free(m_plain.data);
}

Test(frame, unknown_groups_in_a_reply_head_are_skipped) {
  bytes r = {0};
  put_field_varint(&r, 1, 5);
  put_full_group(&r, 7);
  put_field_str(&r, 2, "gone");
  bytes f = make_frame(AKR_FRAME_REPLY, &r, NULL, 0);
  akr_frame frame;
  cr_assert_eq(akr_frame_scan(f.data, f.len, AKR_FRAME_REPLY, 1 << 20, &frame, NULL),
               AKR_FRAME_OK);
  akr_arena arena;
  akr_arena_init(&arena, 1 << 20);
  akr_reply rep;
  cr_assert_eq(akr_reply_decode(&frame, &arena, &rep), AKR_FRAME_OK);
  cr_assert_eq(rep.status, 5);
  cr_assert_str_eq(rep.message, "gone");
  akr_arena_release(&arena);
  free(f.data);
  free(r.data);
}

Test(frame, groups_nest_up_to_the_limit) {
  for (unsigned depth = AKR_MAX_GROUP_DEPTH; depth <= AKR_MAX_GROUP_DEPTH + 1;
       depth++) {
    bytes h = good_head(), r = {0}, g = {0};
    for (unsigned i = 0; i < depth; i++)
      put_group_start(&g, 10 + i);
    for (unsigned i = depth; i-- > 0;)
      put_group_end(&g, 10 + i);
    put(&h, g.data, g.len);
    put_field_varint(&r, 1, 5);
    put(&r, g.data, g.len);
    akr_frame_error want =
        depth <= AKR_MAX_GROUP_DEPTH ? AKR_FRAME_OK : AKR_FRAME_BAD_HEAD;
    cr_assert_eq(decode_request_head(&h), want, "depth %u", depth);
    cr_assert_eq(decode_reply_head(&r), want, "reply, depth %u", depth);
    free(h.data);
    free(r.data);
    free(g.data);
  }
}

Test(frame, malformed_groups_are_a_bad_head) {
  /* Never closed: the head ends inside the group. */
  bytes a = good_head();
  put_group_start(&a, 20);
  put_field_varint(&a, 1, 1);
  cr_assert_eq(decode_request_head(&a), AKR_FRAME_BAD_HEAD);
  cr_assert_eq(decode_reply_head(&a), AKR_FRAME_BAD_HEAD);
  /* Closed with another field's end tag. */
  bytes b = good_head();
  put_group_start(&b, 20);
  put_group_end(&b, 21);
  cr_assert_eq(decode_request_head(&b), AKR_FRAME_BAD_HEAD);
  /* Nested groups closed in the wrong order. */
  bytes c = good_head();
  put_group_start(&c, 20);
  put_group_start(&c, 21);
  put_group_end(&c, 20);
  put_group_end(&c, 21);
  cr_assert_eq(decode_request_head(&c), AKR_FRAME_BAD_HEAD);
  /* An end tag with no group open. */
  bytes d = good_head();
  put_group_end(&d, 20);
  cr_assert_eq(decode_request_head(&d), AKR_FRAME_BAD_HEAD);
  /* A malformed field inside a group (a length past the head). */
  bytes e = good_head();
  put_group_start(&e, 20);
  put_varint(&e, 1 << 3 | 2);
  put_varint(&e, 40);
  put_group_end(&e, 20);
  cr_assert_eq(decode_request_head(&e), AKR_FRAME_BAD_HEAD);
  /* A group inside a metadata entry, never closed there (its end tag comes
   * after the entry, in the head). */
  bytes f = good_head(), m = {0};
  put_field_str(&m, 1, "k");
  put_group_start(&m, 9);
  put_field(&f, 4, m.data, m.len);
  put_group_end(&f, 9);
  cr_assert_eq(decode_request_head(&f), AKR_FRAME_BAD_HEAD);
  free(a.data);
  free(b.data);
  free(c.data);
  free(d.data);
  free(e.data);
  free(f.data);
  free(m.data);
}

Test(frame, a_group_does_not_hide_a_nul_in_the_method) {
  /* The NUL check walks the head without its groups: a group in front must
   * not end the walk before the method. */
  bytes h = {0};
  put_full_group(&h, 20);
  put_field(&h, 1, "a.B/C\0x", 7);
  put_field_str(&h, 3, "id");
  cr_assert_eq(decode_request_head(&h), AKR_FRAME_BAD_METHOD);
  free(h.data);
}

Test(frame, a_field_that_occurs_twice_takes_its_last_value) {
  /* PROTOCOL.md §2.3: a non-repeated field sent twice keeps the last value;
   * a repeated one (metadata) keeps every entry, in order, wherever they
   * stand. */
  bytes h = {0};
  put_field_str(&h, 1, "x.Y/Z");
  put_metadata(&h, "a", 1, NULL, 0);
  put_field_str(&h, 3, "first");
  put_field_varint(&h, 2, 1);
  put_field_str(&h, 1, "a.B/C");
  put_metadata(&h, "b", 1, NULL, 0);
  put_field_str(&h, 3, "id");
  put_field_varint(&h, 2, 2);
  akr_arena arena;
  akr_arena_init(&arena, 1 << 20);
  akr_request req;
  bytes f;
  cr_assert_eq(decode_request_head_into(&h, &arena, &req, &f), AKR_FRAME_OK);
  cr_assert_str_eq(req.method, "a.B/C");
  cr_assert_eq(req.call_id_len, 2);
  cr_assert_eq(req.timeout_us, 2);
  cr_assert_eq(req.n_metadata, 2);
  cr_assert_str_eq(req.metadata[0]->key, "a");
  cr_assert_str_eq(req.metadata[1]->key, "b");
  akr_arena_release(&arena);
  free(f.data);
  free(h.data);
}

static const char *const good_methods[] = {
    "a.B/C", "pkg.sub.Svc/Method_1", "Svc/Method", "_._/_", "a1.b2.C3/D4",
};

static const char *const bad_methods[] = {
    "",        "/",      "a/",           "/b",      "a//b",  "a.b",       "a/b/c",
    ".a/b",    "a..b/c", "a./b",         "a.b/c.d", "a b/c", "a.B/C ",    " a.B/C",
    "a.B/C\n", "a-b/c",  "a.B/\xc3\xa9", "a.B\\C",  "a.B:C", "a.B/C\x7f",
};

Test(frame, method_name_validation) {
  for (size_t i = 0; i < sizeof good_methods / sizeof *good_methods; i++) {
    cr_assert(akr_method_name_valid(good_methods[i]), "%s", good_methods[i]);
    cr_assert_gt(request_size_with_method(good_methods[i]), 0, "%s", good_methods[i]);
    bytes h = {0};
    put_field_str(&h, 1, good_methods[i]);
    put_field_str(&h, 3, "id");
    cr_assert_eq(decode_request_head(&h), AKR_FRAME_OK, "%s", good_methods[i]);
    free(h.data);
  }
  for (size_t i = 0; i < sizeof bad_methods / sizeof *bad_methods; i++) {
    cr_assert_not(akr_method_name_valid(bad_methods[i]), "'%s'", bad_methods[i]);
    cr_assert_eq(request_size_with_method(bad_methods[i]), 0, "'%s'", bad_methods[i]);
    bytes h = {0};
    put_field_str(&h, 1, bad_methods[i]);
    put_field_str(&h, 3, "id");
    cr_assert_eq(decode_request_head(&h), AKR_FRAME_BAD_METHOD, "'%s'", bad_methods[i]);
    free(h.data);
  }
  cr_assert_eq(request_size_with_method(NULL), 0);
}

Test(frame, method_name_length_limit) {
  char name[ACKRPC_MAX_METHOD_NAME + 2];
  memset(name, 'b', sizeof name);
  name[0] = 'a';
  name[1] = '/';
  name[ACKRPC_MAX_METHOD_NAME] = '\0'; /* 256 characters */
  cr_assert(akr_method_name_valid(name));
  name[ACKRPC_MAX_METHOD_NAME] = 'b';
  name[ACKRPC_MAX_METHOD_NAME + 1] = '\0'; /* 257 */
  cr_assert_not(akr_method_name_valid(name));
  cr_assert_eq(request_size_with_method(name), 0);
  bytes h = {0};
  put_field_str(&h, 1, name);
  put_field_str(&h, 3, "id");
  cr_assert_eq(decode_request_head(&h), AKR_FRAME_BAD_METHOD);
  free(h.data);
}

Test(frame, method_with_embedded_nul_refused) {
  /* protobuf-c hands strings over NUL-terminated without checking for NULs
   * inside: "a.B/C\0junk" must not pass as "a.B/C". */
  static const char m[] = "a.B/C\0junk";
  bytes h = {0};
  put_field(&h, 1, m, sizeof m - 1);
  put_field_str(&h, 3, "id");
  cr_assert_eq(decode_request_head(&h), AKR_FRAME_BAD_METHOD);
  free(h.data);
  /* A NUL in the middle, making a valid-looking prefix of another name. */
  static const char m2[] = "a.B/C\0/D";
  bytes h2 = {0};
  put_field(&h2, 1, m2, sizeof m2 - 1);
  put_field_str(&h2, 3, "id");
  cr_assert_eq(decode_request_head(&h2), AKR_FRAME_BAD_METHOD);
  free(h2.data);
}

Test(frame, call_id_limits) {
  uint8_t id[ACKRPC_MAX_CALL_ID + 1];
  memset(id, 'i', sizeof id);
  akr_request_spec spec = {.method = "a.B/C", .call_id = id};
  spec.call_id_len = 0;
  cr_assert_eq(akr_request_size(&spec), 0);
  spec.call_id_len = ACKRPC_MAX_CALL_ID + 1;
  cr_assert_eq(akr_request_size(&spec), 0);
  spec.call_id_len = ACKRPC_MAX_CALL_ID;
  cr_assert_gt(akr_request_size(&spec), 0);
  spec.call_id = NULL;
  cr_assert_eq(akr_request_size(&spec), 0);

  bytes none = {0};
  put_field_str(&none, 1, "a.B/C");
  cr_assert_eq(decode_request_head(&none), AKR_FRAME_BAD_CALL_ID);
  bytes empty = {0};
  put_field_str(&empty, 1, "a.B/C");
  put_field(&empty, 3, "", 0);
  cr_assert_eq(decode_request_head(&empty), AKR_FRAME_BAD_CALL_ID);
  bytes big = {0};
  put_field_str(&big, 1, "a.B/C");
  put_field(&big, 3, id, ACKRPC_MAX_CALL_ID + 1);
  cr_assert_eq(decode_request_head(&big), AKR_FRAME_BAD_CALL_ID);
  bytes max = {0};
  put_field_str(&max, 1, "a.B/C");
  put_field(&max, 3, id, ACKRPC_MAX_CALL_ID);
  cr_assert_eq(decode_request_head(&max), AKR_FRAME_OK);
  free(none.data);
  free(empty.data);
  free(big.data);
  free(max.data);
}

static size_t request_size_with_metadata(const ackrpc_metadata *md, size_t n) {
  akr_request_spec spec = {.method = "a.B/C",
                           .call_id = (const uint8_t *)"x",
                           .call_id_len = 1,
                           .metadata = md,
                           .n_metadata = n};
  return akr_request_size(&spec);
}

Test(frame, metadata_count_limit) {
  ackrpc_metadata md[ACKRPC_MAX_METADATA + 1];
  for (size_t i = 0; i < ACKRPC_MAX_METADATA + 1; i++)
    md[i] = (ackrpc_metadata){.key = "k", .value = "v", .value_len = 1};
  cr_assert_gt(request_size_with_metadata(md, ACKRPC_MAX_METADATA), 0);
  cr_assert_eq(request_size_with_metadata(md, ACKRPC_MAX_METADATA + 1), 0);
  cr_assert_eq(request_size_with_metadata(NULL, 1), 0);

  bytes h64 = good_head();
  for (size_t i = 0; i < ACKRPC_MAX_METADATA; i++)
    put_metadata(&h64, "k", 1, "v", 1);
  cr_assert_eq(decode_request_head(&h64), AKR_FRAME_OK);
  put_metadata(&h64, "k", 1, "v", 1);
  cr_assert_eq(decode_request_head(&h64), AKR_FRAME_BAD_METADATA);
  free(h64.data);
}

static const char *const good_keys[] = {
    "k", "x-trace.id_1", "0", "a.b-c_d", "-", "0123456789abcdefghijklmnopqrstuvwxyz",
};

static const char *const bad_keys[] = {
    "", "Key", "kEy", "a b", "a:b", "a/b", "a=b", "\xc3\xbc", "k\n", "k\x7f", "a+b",
};

Test(frame, metadata_keys) {
  for (size_t i = 0; i < sizeof good_keys / sizeof *good_keys; i++) {
    const char *k = good_keys[i];
    cr_assert(akr_metadata_key_valid(k, strlen(k)), "%s", k);
    ackrpc_metadata md = {.key = k};
    cr_assert_gt(request_size_with_metadata(&md, 1), 0, "%s", k);
    bytes h = good_head();
    put_metadata(&h, k, strlen(k), "v", 1);
    cr_assert_eq(decode_request_head(&h), AKR_FRAME_OK, "%s", k);
    free(h.data);
  }
  for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++) {
    const char *k = bad_keys[i];
    cr_assert_not(akr_metadata_key_valid(k, strlen(k)), "'%s'", k);
    ackrpc_metadata md = {.key = k};
    cr_assert_eq(request_size_with_metadata(&md, 1), 0, "'%s'", k);
    bytes h = good_head();
    put_metadata(&h, k, strlen(k), "v", 1);
    cr_assert_eq(decode_request_head(&h), AKR_FRAME_BAD_METADATA, "'%s'", k);
    free(h.data);
  }
  ackrpc_metadata nokey = {.key = NULL};
  cr_assert_eq(request_size_with_metadata(&nokey, 1), 0);
}

Test(frame, metadata_key_length_limit) {
  char key[ACKRPC_MAX_METADATA_KEY + 2];
  memset(key, 'k', sizeof key);
  key[ACKRPC_MAX_METADATA_KEY] = '\0';
  cr_assert(akr_metadata_key_valid(key, ACKRPC_MAX_METADATA_KEY));
  ackrpc_metadata md = {.key = key};
  cr_assert_gt(request_size_with_metadata(&md, 1), 0);
  key[ACKRPC_MAX_METADATA_KEY] = 'k';
  key[ACKRPC_MAX_METADATA_KEY + 1] = '\0';
  cr_assert_not(akr_metadata_key_valid(key, ACKRPC_MAX_METADATA_KEY + 1));
  cr_assert_eq(request_size_with_metadata(&md, 1), 0);
  bytes h = good_head();
  put_metadata(&h, key, ACKRPC_MAX_METADATA_KEY + 1, NULL, 0);
  cr_assert_eq(decode_request_head(&h), AKR_FRAME_BAD_METADATA);
  free(h.data);
}

Test(frame, metadata_key_with_embedded_nul_refused) {
  /* "a\0B": the uppercase after the NUL must not hide behind it. */
  bytes h = good_head();
  put_metadata(&h, "a\0B", 3, "v", 1);
  cr_assert_eq(decode_request_head(&h), AKR_FRAME_BAD_METADATA);
  free(h.data);
}

Test(frame, metadata_missing_key_refused) {
  bytes h = good_head();
  bytes m = {0};
  put_field(&m, 2, "v", 1); /* value, no key */
  put_field(&h, 4, m.data, m.len);
  cr_assert_eq(decode_request_head(&h), AKR_FRAME_BAD_METADATA);
  free(h.data);
  free(m.data);
}

Test(frame, metadata_value_length_limit) {
  static uint8_t value[ACKRPC_MAX_METADATA_VALUE + 1];
  memset(value, 0xee, sizeof value);
  ackrpc_metadata md = {
      .key = "k", .value = value, .value_len = ACKRPC_MAX_METADATA_VALUE};
  cr_assert_gt(request_size_with_metadata(&md, 1), 0);
  md.value_len = ACKRPC_MAX_METADATA_VALUE + 1;
  cr_assert_eq(request_size_with_metadata(&md, 1), 0);
  md.value = NULL;
  md.value_len = 3;
  cr_assert_eq(request_size_with_metadata(&md, 1), 0);

  bytes ok = good_head();
  put_metadata(&ok, "k", 1, value, ACKRPC_MAX_METADATA_VALUE);
  cr_assert_eq(decode_request_head(&ok), AKR_FRAME_OK);
  bytes big = good_head();
  put_metadata(&big, "k", 1, value, ACKRPC_MAX_METADATA_VALUE + 1);
  cr_assert_eq(decode_request_head(&big), AKR_FRAME_BAD_METADATA);
  free(ok.data);
  free(big.data);
}

Test(frame, encoder_refuses_a_head_over_64k) {
  /* 64 entries of 4 KiB each are each within limits, but not together. */
  static uint8_t value[ACKRPC_MAX_METADATA_VALUE];
  ackrpc_metadata md[ACKRPC_MAX_METADATA];
  for (size_t i = 0; i < ACKRPC_MAX_METADATA; i++)
    md[i] = (ackrpc_metadata){.key = "k", .value = value, .value_len = sizeof value};
  cr_assert_gt(request_size_with_metadata(md, 15), 0);
  cr_assert_eq(request_size_with_metadata(md, 16), 0);
  cr_assert_eq(request_size_with_metadata(md, ACKRPC_MAX_METADATA), 0);
}

Test(frame, encoder_output_matches_its_size) {
  /* _size() is exact: _encode() writes that many bytes and no more. */
  const ackrpc_metadata md = {.key = "k", .value = "value", .value_len = 5};
  akr_request_spec spec = {.method = "a.B/C",
                           .timeout_us = 127,
                           .call_id = (const uint8_t *)"abc",
                           .call_id_len = 3,
                           .metadata = &md,
                           .n_metadata = 1};
  size_t n = akr_request_size(&spec);
  cr_assert_gt(n, 0);
  uint8_t *out = malloc(n + 16);
  cr_assert_not_null(out);
  memset(out, 0x5a, n + 16);
  cr_assert_eq(akr_request_encode(&spec, out), n);
  for (size_t i = n; i < n + 16; i++)
    cr_assert_eq(out[i], 0x5a);
  free(out);
}

Test(frame, reply_status_limit) {
  bytes h99 = {0};
  put_field_varint(&h99, 1, 99);
  cr_assert_eq(decode_reply_head(&h99), AKR_FRAME_OK);
  bytes h100 = {0};
  put_field_varint(&h100, 1, 100);
  cr_assert_eq(decode_reply_head(&h100), AKR_FRAME_BAD_STATUS);
  bytes hmax = {0};
  put_field_varint(&hmax, 1, UINT32_MAX);
  cr_assert_eq(decode_reply_head(&hmax), AKR_FRAME_BAD_STATUS);
  /* A local code put on the wire by a broken server. */
  bytes local = {0};
  put_field_varint(&local, 1, ACKRPC_E_NO_ACK);
  cr_assert_eq(decode_reply_head(&local), AKR_FRAME_BAD_STATUS);
  free(h99.data);
  free(h100.data);
  free(hmax.data);
  free(local.data);
}

Test(frame, decode_over_the_arena_cap_is_no_memory) {
  size_t n;
  uint8_t *buf = small_request("call", &n);
  akr_frame frame;
  cr_assert_eq(akr_frame_scan(buf, n, AKR_FRAME_REQUEST, n, &frame, NULL),
               AKR_FRAME_OK);
  akr_arena arena;
  akr_arena_init(&arena, 16);
  akr_request req;
  cr_assert_eq(akr_request_decode(&frame, &arena, &req), AKR_FRAME_NO_MEMORY);
  akr_arena_release(&arena);
  akr_arena_init(&arena, 4096);
  cr_assert_eq(akr_request_decode(&frame, &arena, &req), AKR_FRAME_OK);
  akr_arena_release(&arena);
  free(buf);
}

Test(frame, frames_back_to_back_scan_one_at_a_time) {
  size_t n1, n2, n3;
  uint8_t *f1 = small_request("first", &n1);
  uint8_t *f2 = small_request("second-call", &n2);
  uint8_t *f3 = small_request("third", &n3);
  size_t total = n1 + n2 + n3 - 5; /* the third cut short */
  uint8_t *buf = malloc(total);
  cr_assert_not_null(buf);
  memcpy(buf, f1, n1);
  memcpy(buf + n1, f2, n2);
  memcpy(buf + n1 + n2, f3, n3 - 5);

  static const char *const ids[2] = {"first", "second-call"};
  akr_arena arena;
  akr_arena_init(&arena, 4096);
  size_t off = 0;
  for (int i = 0; i < 2; i++) {
    akr_frame frame;
    cr_assert_eq(
        akr_frame_scan(buf + off, total - off, AKR_FRAME_REQUEST, 4096, &frame, NULL),
        AKR_FRAME_OK);
    cr_assert_eq(frame.frame_len, i == 0 ? n1 : n2);
    akr_request req;
    cr_assert_eq(akr_request_decode(&frame, &arena, &req), AKR_FRAME_OK);
    cr_assert_eq(req.call_id_len, strlen(ids[i]));
    cr_assert_arr_eq(req.call_id, ids[i], req.call_id_len);
    cr_assert_eq(req.body_len, 0);
    off += frame.frame_len;
    akr_arena_reset(&arena, 4096);
  }
  akr_frame frame;
  size_t need = 0;
  cr_assert_eq(
      akr_frame_scan(buf + off, total - off, AKR_FRAME_REQUEST, 4096, &frame, &need),
      AKR_FRAME_INCOMPLETE);
  cr_assert_eq(need, n3);
  akr_arena_release(&arena);
  free(buf);
  free(f1);
  free(f2);
  free(f3);
}

/* --- error mapping ------------------------------------------------------ */

Test(frame, error_status_mapping) {
  cr_assert_eq(akr_frame_error_status(AKR_FRAME_OK), ACKRPC_OK);
  cr_assert_eq(akr_frame_error_status(AKR_FRAME_BAD_VERSION), ACKRPC_UNIMPLEMENTED);
  cr_assert_eq(akr_frame_error_status(AKR_FRAME_TOO_LARGE), ACKRPC_RESOURCE_EXHAUSTED);
  cr_assert_eq(akr_frame_error_status(AKR_FRAME_HEAD_TOO_LARGE),
               ACKRPC_RESOURCE_EXHAUSTED);
  cr_assert_eq(akr_frame_error_status(AKR_FRAME_NO_MEMORY), ACKRPC_RESOURCE_EXHAUSTED);
  static const akr_frame_error invalid[] = {
      AKR_FRAME_BAD_MAGIC,  AKR_FRAME_BAD_TYPE,    AKR_FRAME_BAD_HEAD,
      AKR_FRAME_BAD_METHOD, AKR_FRAME_BAD_CALL_ID, AKR_FRAME_BAD_METADATA,
      AKR_FRAME_BAD_STATUS,
  };
  for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
    cr_assert_eq(akr_frame_error_status(invalid[i]), ACKRPC_INVALID_ARGUMENT, "%s",
                 akr_frame_error_text(invalid[i]));
  /* Whatever the rest map to, it is a canonical error a server can send. */
  for (int e = AKR_FRAME_INCOMPLETE; e <= AKR_FRAME_NO_MEMORY; e++) {
    ackrpc_status s = akr_frame_error_status((akr_frame_error)e);
    cr_assert(ackrpc_status_is_canonical(s), "%d", e);
    cr_assert_neq(s, ACKRPC_OK, "%d", e);
  }
}

Test(frame, error_texts_distinct) {
  for (int a = AKR_FRAME_OK; a <= AKR_FRAME_NO_MEMORY; a++) {
    const char *ta = akr_frame_error_text((akr_frame_error)a);
    cr_assert_not_null(ta);
    cr_assert_gt(strlen(ta), 0);
    cr_assert_str_neq(ta, "unknown frame error");
    for (int b = a + 1; b <= AKR_FRAME_NO_MEMORY; b++)
      cr_assert_str_neq(ta, akr_frame_error_text((akr_frame_error)b));
  }
  cr_assert_str_eq(akr_frame_error_text((akr_frame_error)999), "unknown frame error");
}
