/* test_spare.c: the store of large buffers kept between calls (src/spare.c):
 * reuse, the byte budget, the idle trim; the decode arena drawing its large
 * chunks from it; and a server that reuses a large call's buffers for the
 * next one and unmaps them once no call wants them. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mem/arena.h"
#include "wire/depth.h"
#include "wire/encode.h"
#include "wire/frame.h"
#include "wire/head.h"
#include "wire/names.h"
#include "server/server_internal.h"
#include "mem/spare.h"

#define MIB (1u << 20)

Test(spare, a_block_given_back_is_handed_out_again) {
  akr_spare s;
  akr_spare_init(&s, 8 * MIB);
  size_t size = 0;
  uint8_t *p = akr_spare_get(&s, MIB + 1, &size);
  cr_assert_not_null(p);
  cr_assert_geq(size, MIB + 1);
  cr_assert_eq(size % 4096, 0, "whole pages");
  memset(p, 0xab, size);
  akr_spare_put(&s, p, size);
  cr_assert_eq(s.bytes, size);
  size_t again = 0;
  uint8_t *q = akr_spare_get(&s, MIB, &again);
  cr_assert_eq(q, p, "the kept block comes back");
  cr_assert_eq(again, size);
  cr_assert_eq(q[size - 1], 0xab, "with its pages (not a fresh mapping)");
  cr_assert_eq(s.bytes, 0);
  akr_spare_put(&s, q, again);
  akr_spare_trim(&s);
  cr_assert_eq(s.n, 0);
  cr_assert_eq(s.bytes, 0);
}

Test(spare, too_small_blocks_are_not_handed_out) {
  akr_spare s;
  akr_spare_init(&s, 8 * MIB);
  size_t a_size, b_size;
  void *a = akr_spare_get(&s, MIB, &a_size);
  void *b = akr_spare_get(&s, 3 * MIB, &b_size);
  akr_spare_put(&s, a, a_size);
  akr_spare_put(&s, b, b_size);
  size_t size;
  void *p = akr_spare_get(&s, 2 * MIB, &size);
  cr_assert_eq(p, b, "the one block large enough");
  void *q = akr_spare_get(&s, 2 * MIB, &size);
  cr_assert_neq(q, a, "1 MiB does not serve 2 MiB");
  cr_assert_eq(s.n, 1);
  akr_spare_put(&s, p, b_size);
  akr_spare_put(&s, q, size);
  akr_spare_trim(&s);
}

Test(spare, never_holds_more_than_its_budget) {
  akr_spare s;
  akr_spare_init(&s, 3 * MIB);
  void *p[6];
  size_t size[6];
  for (int i = 0; i < 6; i++) {
    p[i] = akr_spare_get(&s, MIB, &size[i]);
    cr_assert_not_null(p[i]);
  }
  for (int i = 0; i < 6; i++) {
    akr_spare_put(&s, p[i], size[i]);
    cr_assert_leq(s.bytes, 3 * MIB);
  }
  cr_assert_eq(s.n, 3, "the newest three stay");
  size_t got;
  void *q = akr_spare_get(&s, 4 * MIB, &got); /* over the budget: unmapped on put */
  akr_spare_put(&s, q, got);
  cr_assert_eq(s.n, 3);
  akr_spare_trim(&s);
}

Test(spare, idle_unmaps_only_after_an_interval_without_gets) {
  akr_spare s;
  akr_spare_init(&s, 8 * MIB);
  size_t size;
  void *p = akr_spare_get(&s, MIB, &size);
  akr_spare_put(&s, p, size);
  cr_assert_eq(akr_spare_idle(&s), 1, "asked for since the last interval: kept");
  cr_assert_eq(s.n, 1);
  cr_assert_eq(akr_spare_idle(&s), 0, "an interval without a get: unmapped");
  cr_assert_eq(s.n, 0);
}

Test(spare, null_store_maps_and_unmaps) {
  size_t size;
  uint8_t *p = akr_spare_get(NULL, 300000, &size);
  cr_assert_not_null(p);
  cr_assert_geq(size, 300000);
  p[size - 1] = 1;
  akr_spare_put(NULL, p, size);
}

Test(spare, arena_draws_large_chunks_from_the_store) {
  akr_spare s;
  akr_spare_init(&s, 16 * MIB);
  akr_arena a;
  akr_arena_init(&a, 8 * MIB);
  a.spare = &s;
  uint8_t *p = akr_arena_alloc(&a, 2 * MIB);
  cr_assert_not_null(p);
  memset(p, 1, 2 * MIB);
  akr_arena_reset(&a, 8 * MIB);
  cr_assert_eq(s.n, 1, "the large chunk went to the store, not to munmap");
  uint8_t *q = akr_arena_alloc(&a, 2 * MIB);
  cr_assert_eq(q, p, "and the next large decode reuses it");
  cr_assert_eq(s.n, 0);
  /* A kept block larger than needed lends no more than the cap. */
  akr_arena_reset(&a, MIB + 4096);
  cr_assert_null(akr_arena_alloc(&a, MIB + 8192));
  cr_assert_eq(a.refused, 1);
  cr_assert_leq(a.total, MIB + 4096);
  akr_arena_release(&a);
  akr_spare_trim(&s);
}

/* --- a server ------------------------------------------------------------ */

FX_SUITE(spare_server);

static const ackrpc_method spare_method = {"ackrpc.test.Test/Spare",
                                           &ackrpc__test__echo_request__descriptor,
                                           &ackrpc__test__echo_reply__descriptor};

/* Runs on the loop thread: reports the server's kept bytes in blob_len. */
static void spare_handler(ackrpc_call *call, const ProtobufCMessage *request,
                          void *user) {
  (void)request;
  Ackrpc__Test__EchoReply reply = ACKRPC__TEST__ECHO_REPLY__INIT;
  reply.blob_len = (uint32_t)akr_server_spare_bytes(*(ackrpc_server **)user);
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

static void *run_server(void *arg) {
  return (void *)(intptr_t)ackrpc_server_run(arg);
}

static uint32_t spare_bytes(ackrpc_client *cl) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result r = {0};
  cr_assert_eq(ackrpc_client_call(cl, &spare_method, &req.base, NULL, &r), ACKRPC_OK);
  uint32_t n = fx_echo_reply(&r)->blob_len;
  ackrpc_result_clear(&r);
  return n;
}

static void big_call(ackrpc_client *cl, uint8_t *blob, size_t len) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.blob.data = blob;
  req.blob.len = len;
  ackrpc_result r = {0};
  cr_assert_eq(fx_echo(cl, &req, NULL, &r), ACKRPC_OK);
  cr_assert_eq(fx_echo_reply(&r)->blob_len, len);
  ackrpc_result_clear(&r);
}

FX_TEST(spare_server, large_calls_reuse_buffers_then_give_them_back_when_idle) {
  ackrpc_server_options o = {0};
  o.address = fx_sock();
  o.max_request_size = 8 * MIB;
  ackrpc_server *srv = NULL;
  cr_assert_eq(ackrpc_server_new(&o, &srv), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(srv, &fx_echo_method, fx_echo_handler, NULL),
               ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(srv, &spare_method, spare_handler, &srv),
               ACKRPC_OK);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, run_server, srv), 0);
  ackrpc_client *cl = fx_client(fx_sock(), 20000);

  size_t len = 3 * MIB;
  uint8_t *blob = malloc(len);
  cr_assert_not_null(blob);
  memset(blob, 0x5a, len);
  cr_assert_eq(spare_bytes(cl), 0, "nothing kept before a large call");
  big_call(cl, blob, len);
  uint32_t kept = spare_bytes(cl);
  /* The input buffer (the frame) and the decode chunk (the blob), each at
   * least the body's size. */
  cr_assert_geq(kept, 2 * len, "kept %u bytes after a %zu-byte call", kept, len);
  for (int i = 0; i < 5; i++)
    big_call(cl, blob, len);
  cr_assert_eq(spare_bytes(cl), kept, "the same blocks served the next calls");
  /* No large call for two idle intervals: unmapped. Bounded wait. */
  uint32_t now = kept;
  uint64_t end = fx_now_us() + 3000000u + fx_slack_us();
  while (now && fx_now_us() < end) {
    fx_sleep_ms(100);
    now = spare_bytes(cl);
  }
  cr_assert_eq(now, 0, "still %u bytes kept after the server went idle", now);
  free(blob);

  ackrpc_server_stop(srv);
  void *ret;
  pthread_join(t, &ret);
  cr_assert_eq((ackrpc_status)(intptr_t)ret, ACKRPC_OK);
  ackrpc_server_free(srv);
}
