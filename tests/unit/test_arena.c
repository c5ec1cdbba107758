/* test_arena.c: the capped bump allocator of src/frame.c that protobuf-c
 * decodes untrusted heads into: the cap, alignment, reuse after reset, and a
 * protobuf-c unpack that would exceed the cap. */
#include <criterion/criterion.h>

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ackrpc/wire.pb-c.h"
#include "mem/arena.h"
#include "wire/depth.h"
#include "wire/encode.h"
#include "wire/frame.h"
#include "wire/head.h"
#include "wire/names.h"

#define ALIGN alignof(max_align_t)

Test(arena, cap_enforced) {
  akr_arena a;
  akr_arena_init(&a, 1000);
  cr_assert_not_null(akr_arena_alloc(&a, 500));
  cr_assert_eq(a.refused, 0);
  cr_assert_null(akr_arena_alloc(&a, 600));
  cr_assert_eq(a.refused, 1);
  cr_assert_leq(a.total, 1000);
  /* A smaller request still fits in what is left. */
  cr_assert_not_null(akr_arena_alloc(&a, 100));
  akr_arena_release(&a);
}

Test(arena, never_holds_more_than_its_cap) {
  static const size_t caps[] = {1, 16, 100, 1000, 4096, 5000, 65536, 100000};
  for (size_t c = 0; c < sizeof caps / sizeof *caps; c++) {
    akr_arena a;
    akr_arena_init(&a, caps[c]);
    size_t handed = 0;
    for (size_t size = 1;; size = size % 700 + 37) {
      void *p = akr_arena_alloc(&a, size);
      if (!p) break;
      memset(p, 0xcd, size); /* ASan: the whole block is ours */
      handed += size;
      cr_assert_leq(handed, caps[c]);
    }
    cr_assert_eq(a.refused, 1);
    cr_assert_leq(a.total, caps[c], "cap %zu", caps[c]);
    akr_arena_release(&a);
  }
}

Test(arena, larger_than_cap_on_a_fresh_arena) {
  akr_arena a;
  akr_arena_init(&a, 4096);
  cr_assert_null(akr_arena_alloc(&a, 4097));
  cr_assert_eq(a.refused, 1);
  cr_assert_eq(a.total, 0, "nothing allocated for a refused request");
  akr_arena_release(&a);

  akr_arena z;
  akr_arena_init(&z, 0);
  cr_assert_null(akr_arena_alloc(&z, 1));
  cr_assert_eq(z.refused, 1);
  akr_arena_release(&z);
}

Test(arena, huge_sizes_refused_without_overflow) {
  akr_arena a;
  akr_arena_init(&a, SIZE_MAX);
  cr_assert_null(akr_arena_alloc(&a, SIZE_MAX));
  cr_assert_null(akr_arena_alloc(&a, SIZE_MAX - ALIGN + 2));
  akr_arena_release(&a);
}

Test(arena, pointers_aligned_and_disjoint) {
  akr_arena a;
  akr_arena_init(&a, 1 << 20);
  enum { N = 400 };
  uint8_t *ptrs[N];
  size_t sizes[N];
  for (size_t i = 0; i < N; i++) {
    sizes[i] = i % 3 == 0 ? 0 : (i * 37) % 1500 + 1;
    ptrs[i] = akr_arena_alloc(&a, sizes[i]);
    cr_assert_not_null(ptrs[i], "alloc %zu of %zu bytes", i, sizes[i]);
    cr_assert_eq((uintptr_t)ptrs[i] % ALIGN, 0, "alloc %zu misaligned", i);
    memset(ptrs[i], (int)(i & 0xff), sizes[i]);
  }
  /* Later blocks did not overwrite earlier ones; size 0 gives distinct
   * pointers too. */
  for (size_t i = 0; i < N; i++) {
    for (size_t j = 0; j < sizes[i]; j++)
      cr_assert_eq(ptrs[i][j], (uint8_t)(i & 0xff), "block %zu byte %zu", i, j);
    if (i) cr_assert_neq(ptrs[i], ptrs[i - 1]);
  }
  akr_arena_release(&a);
}

Test(arena, alignment_with_an_unaligned_cap) {
  /* A cap that is not a multiple of the alignment must not shift later
   * blocks off alignment. */
  akr_arena a;
  akr_arena_init(&a, 1001);
  for (int i = 0; i < 50; i++) {
    void *p = akr_arena_alloc(&a, 3);
    if (!p) break;
    cr_assert_eq((uintptr_t)p % ALIGN, 0);
  }
  akr_arena_release(&a);
}

Test(arena, reset_keeps_working) {
  akr_arena a;
  akr_arena_init(&a, 1 << 20);
  void *first = akr_arena_alloc(&a, 10);
  cr_assert_not_null(first);
  for (int i = 0; i < 100; i++)
    cr_assert_not_null(akr_arena_alloc(&a, 1000));
  cr_assert_null(akr_arena_alloc(&a, 2 << 20));
  cr_assert_eq(a.refused, 1);

  akr_arena_reset(&a, 1 << 20);
  cr_assert_eq(a.refused, 0);
  cr_assert_leq(a.total, 4096, "reset keeps at most the first small chunk");
  /* The first chunk is reused: the next block is where the first one was. */
  void *again = akr_arena_alloc(&a, 10);
  cr_assert_eq(again, first);
  for (int i = 0; i < 100; i++) {
    void *p = akr_arena_alloc(&a, 1000);
    cr_assert_not_null(p);
    memset(p, 0x11, 1000);
  }
  /* Many cycles neither leak (ASan) nor degrade. */
  for (int cycle = 0; cycle < 50; cycle++) {
    akr_arena_reset(&a, 1 << 16);
    size_t got = 0;
    while (akr_arena_alloc(&a, 512))
      got += 512;
    cr_assert_geq(got, (1 << 16) - 4096, "cycle %d", cycle);
    cr_assert_leq(got, 1 << 16, "cycle %d", cycle);
  }
  akr_arena_release(&a);
}

Test(arena, reset_to_a_smaller_cap_enforces_it) {
  /* The chunk kept for reuse must not let a reset arena hold more than its
   * new cap. */
  akr_arena a;
  akr_arena_init(&a, 1 << 20);
  cr_assert_not_null(akr_arena_alloc(&a, 10));
  akr_arena_reset(&a, 100);
  cr_assert_null(akr_arena_alloc(&a, 3000));
  cr_assert_eq(a.refused, 1);
  size_t got = 0;
  while (akr_arena_alloc(&a, 1))
    got += ALIGN;
  cr_assert_leq(got, 100);
  akr_arena_release(&a);
}

Test(arena, release_is_idempotent) {
  akr_arena a;
  akr_arena_init(&a, 1 << 16);
  akr_arena_release(&a); /* nothing allocated yet */
  cr_assert_not_null(akr_arena_alloc(&a, 100));
  akr_arena_release(&a);
  akr_arena_release(&a);
  cr_assert_null(a.chunks);
  cr_assert_eq(a.total, 0);
  /* Usable again after a release. */
  cr_assert_not_null(akr_arena_alloc(&a, 100));
  akr_arena_release(&a);
}

/* A RequestHead with a good method and call id and `n` empty metadata
 * entries, encoded by hand (the encoder refuses more than 64). Each entry is
 * 2 bytes on the wire but a whole Metadata struct once decoded. */
static uint8_t *head_with_metadata(size_t n, size_t *ret_len) {
  static const uint8_t start[] = {0x0a, 5, 'a', '.', 'B', '/', 'C', 0x1a, 2, 'i', 'd'};
  size_t len = sizeof start + 2 * n;
  uint8_t *h = malloc(len);
  cr_assert_not_null(h);
  memcpy(h, start, sizeof start);
  for (size_t i = 0; i < n; i++) {
    h[sizeof start + 2 * i] = 0x22; /* field 4, length-delimited */
    h[sizeof start + 2 * i + 1] = 0;
  }
  *ret_len = len;
  return h;
}

Test(arena, protobuf_unpack_over_the_cap_fails_cleanly) {
  size_t len;
  uint8_t *head = head_with_metadata(20000, &len);
  cr_assert_leq(len, ACKRPC_MAX_HEAD);

  akr_arena a;
  akr_arena_init(&a, 64 * 1024);
  Ackrpc__Wire__RequestHead *h = ackrpc__wire__request_head__unpack(&a.pc, len, head);
  cr_assert_null(h, "20000 decoded entries cannot fit in 64 KiB");
  cr_assert_eq(a.refused, 1);
  cr_assert_leq(a.total, 64 * 1024);

  /* The same bytes through the frame decoder: NO_MEMORY, not BAD_HEAD. */
  akr_arena_reset(&a, 64 * 1024);
  akr_frame frame = {.type = AKR_FRAME_REQUEST,
                     .head_len = (uint32_t)len,
                     .head = head,
                     .body = head + len,
                     .frame_len = AKR_PREFIX_LEN + len};
  akr_request req;
  cr_assert_eq(akr_request_decode(&frame, &a, &req), AKR_FRAME_NO_MEMORY);

  /* With room enough, protobuf-c decodes it all, and the checks then refuse
   * the count. This proves the cap, not the bytes, failed the first time. */
  akr_arena_reset(&a, 64 << 20);
  h = ackrpc__wire__request_head__unpack(&a.pc, len, head);
  cr_assert_not_null(h);
  cr_assert_eq(h->n_metadata, 20000);
  cr_assert_str_eq(h->method, "a.B/C");
  ackrpc__wire__request_head__free_unpacked(h, &a.pc); /* a no-op, must be safe */
  akr_arena_reset(&a, 64 << 20);
  cr_assert_eq(akr_request_decode(&frame, &a, &req), AKR_FRAME_BAD_METADATA);

  /* And after the refusals the arena decodes a small head again. */
  akr_arena_reset(&a, 64 * 1024);
  size_t small_len;
  uint8_t *small = head_with_metadata(3, &small_len);
  h = ackrpc__wire__request_head__unpack(&a.pc, small_len, small);
  cr_assert_not_null(h);
  cr_assert_eq(h->n_metadata, 3);
  cr_assert_eq(a.refused, 0);

  akr_arena_release(&a);
  free(small);
  free(head);
}
