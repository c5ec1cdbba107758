/* test_client_limits.c: what a hostile server can make the client decode
 * (docs/SECURITY.md §2, Client). A fake server answers with a reply body
 * nested far deeper than protobuf-c's recursion survives, or one that
 * decodes into ~32 times its size: the call is E_BAD_REPLY, on the blocking
 * and the asynchronous path, and the client lives on. Only the public API
 * and raw frames: this file also builds against a client without the
 * limits (where the deep reply crashes it). */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "fixture.h"
#include "hardening.pb-c.h"
#include "pieces.pb-c.h"

FX_SUITE(climits);

/* A method whose reply is recursive (Node) or wide (Mixed). */
static const ackrpc_method nest_method = {
    .name = "ackrpc.hardening.Hard/Nest",
    .request = &ackrpc__hardening__node__descriptor,
    .reply = &ackrpc__hardening__node__descriptor,
};
static const ackrpc_method wide_method = {
    .name = "ackrpc.hardening.Hard/Wide",
    .request = &ackrpc__hardening__node__descriptor,
    .reply = &ackrpc__pieces__mixed__descriptor,
};

/* A reply frame, status OK, around a body `levels` deep (Node in Node ...,
 * the top message is level 1), written from the inside out. */
static uint8_t *deep_reply(size_t levels, size_t *ret_len) {
  size_t cap = 12 + 6 * levels + 16, pos = cap;
  uint8_t *b = malloc(cap);
  cr_assert_not_null(b);
  for (size_t i = 1; i < levels; i++) {
    size_t inner = cap - pos;
    uint8_t v[10];
    size_t n = 0;
    do {
      v[n++] = (uint8_t)((inner & 0x7f) | (inner > 0x7f ? 0x80 : 0));
      inner >>= 7;
    } while (inner);
    pos -= n;
    memcpy(b + pos, v, n);
    b[--pos] = 0x0a; /* Node.child, length-delimited */
  }
  size_t body = cap - pos;
  pos -= 12;
  fx_frame_prefix(b + pos, 2, 0, (uint32_t)body);
  memmove(b, b + pos, cap - pos);
  *ret_len = cap - pos;
  return b;
}

/* A reply frame whose Mixed body holds `items` empty Inner messages: two
 * wire bytes each, ~64 bytes each once decoded. */
static uint8_t *wide_reply(size_t items, size_t *ret_len) {
  size_t body = 2 + 2 * items;
  uint8_t *b = malloc(12 + body);
  cr_assert_not_null(b);
  fx_frame_prefix(b, 2, 0, (uint32_t)body);
  b[12] = 0x0a; /* must = "" */
  b[13] = 0;
  for (size_t i = 0; i < items; i++) {
    b[14 + 2 * i] = 0x5a; /* inners (field 11), length-delimited, empty */
    b[15 + 2 * i] = 0;
  }
  *ret_len = 12 + body;
  return b;
}

/* One blocking call of `m` to a fake server that answers `reply`. */
static ackrpc_status call_fake(const char *sock, const ackrpc_method *m,
                               const uint8_t *reply, size_t len, ackrpc_result *r) {
  fx_fake_start(sock, FX_FAKE_REPLY, reply, len, 4);
  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Hardening__Node req = ACKRPC__HARDENING__NODE__INIT;
  return ackrpc_client_call(c, m, &req.base, NULL, r);
}

FX_TEST(climits, reply_nested_200000_deep_is_bad_reply_not_a_crash) {
  size_t len;
  uint8_t *frame = deep_reply(200000, &len); /* ~800 KB, under max_reply_size */
  ackrpc_result r = {0};
  cr_assert_eq(call_fake(fx_sock(), &nest_method, frame, len, &r), ACKRPC_E_BAD_REPLY,
               "%s", ackrpc_status_name(r.status));
  cr_assert_null(r.reply);
  cr_assert(r.message && strstr(r.message, "deeper than 100"), "%s",
            r.message ? r.message : "(none)");
  ackrpc_result_clear(&r);
  free(frame);

  /* Within the limit, the same type decodes. */
  frame = deep_reply(100, &len);
  cr_assert_eq(call_fake(fx_path("b.sock"), &nest_method, frame, len, &r), ACKRPC_OK,
               "%s", r.message ? r.message : "");
  cr_assert_not_null(r.reply);
  ackrpc_result_clear(&r);
  free(frame);
}

static void on_done(ackrpc_result *r, void *user) {
  ackrpc_result *out = user;
  *out = *r;
  memset(r, 0, sizeof *r); /* the reply and message are ours now */
}

FX_TEST(climits, deep_reply_to_an_asynchronous_call_is_bad_reply) {
  size_t len;
  uint8_t *frame = deep_reply(200000, &len);
  fx_fake_start(fx_sock(), FX_FAKE_REPLY, frame, len, 4);
  free(frame);
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  struct event_base *base = event_base_new();
  cr_assert_not_null(base);
  Ackrpc__Hardening__Node req = ACKRPC__HARDENING__NODE__INIT;
  ackrpc_result r = {.status = (ackrpc_status)-1};
  cr_assert_eq(
      ackrpc_client_call_async(c, base, &nest_method, &req.base, NULL, on_done, &r),
      ACKRPC_OK);
  for (int i = 0; i < 1000 && r.status == (ackrpc_status)-1; i++) {
    struct timeval tv = {0, 10000};
    event_base_loopexit(base, &tv);
    event_base_loop(base, 0);
  }
  cr_assert_eq(r.status, ACKRPC_E_BAD_REPLY, "%s", ackrpc_status_name(r.status));
  ackrpc_result_clear(&r);
  event_base_free(base);
}

FX_TEST(climits, reply_that_decodes_into_32_times_its_size_is_bad_reply) {
  size_t len;
  uint8_t *frame = wide_reply(500000, &len); /* 1 MB: ~32 MB decoded */
  ackrpc_result r = {0};
  cr_assert_eq(call_fake(fx_sock(), &wide_method, frame, len, &r), ACKRPC_E_BAD_REPLY,
               "%s", ackrpc_status_name(r.status));
  cr_assert_null(r.reply);
  cr_assert(r.message && strstr(r.message, "memory"), "%s",
            r.message ? r.message : "(none)");
  ackrpc_result_clear(&r);
  free(frame);

  frame = wide_reply(100, &len);
  cr_assert_eq(call_fake(fx_path("b.sock"), &wide_method, frame, len, &r), ACKRPC_OK);
  cr_assert_eq(((const Ackrpc__Pieces__Mixed *)r.reply)->n_inners, 100);
  ackrpc_result_clear(&r);
  free(frame);
}
