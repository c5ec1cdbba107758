/* arena.h: a per-call bump allocator with a hard cap, handed to protobuf-c
 * (internal: not installed).
 *
 * Decoding a request allocates many small pieces that all die together when
 * the call ends; an arena makes that one reset instead of many frees, and its
 * cap is what bounds the memory an untrusted message may make protobuf-c
 * allocate (which can be ~30x its wire size). Freeing single blocks is a
 * no-op; akr_arena_reset() drops all but the first chunk (kept for reuse),
 * akr_arena_release() everything. Large chunks come from a spare store
 * (spare.h), so a large decode reuses the pages of the one before.
 *
 * Not thread-safe: one owner at a time. */
#ifndef AKR_ARENA_H
#define AKR_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "mem/spare.h"

typedef struct akr_arena_chunk akr_arena_chunk;
typedef struct akr_arena {
  ProtobufCAllocator pc; /* pass &arena->pc to protobuf-c */
  akr_arena_chunk *chunks;
  unsigned char *cur;
  size_t left;
  size_t total;     /* bytes of all chunks */
  size_t cap;       /* refuse to grow beyond this many bytes */
  int refused;      /* an allocation hit the cap */
  akr_spare *spare; /* where large chunks come from and go (NULL: mmap) */
} akr_arena;

/* An empty arena that will allocate at most `cap` bytes. */
void akr_arena_init(akr_arena *arena, size_t cap);
/* akr_arena_init() whose first `len` bytes come from `buf`: the caller's,
 * aligned for max_align_t, never freed by the arena and needed until it is
 * released. They count against `cap`; a decode that fits in them allocates
 * nothing. A reset forgets them. */
void akr_arena_init_on(akr_arena *arena, size_t cap, void *buf, size_t len);
/* `size` bytes aligned for max_align_t, or NULL (then `refused` is set) if
 * the cap or the system refuses. */
void *akr_arena_alloc(akr_arena *arena, size_t size);
/* A point in an arena's life to come back to. */
typedef struct akr_arena_mark {
  akr_arena_chunk *chunks;
  unsigned char *cur;
  size_t left, total;
} akr_arena_mark;

akr_arena_mark akr_arena_mark_now(const akr_arena *arena);
/* Forgets every allocation made since `mark` (their chunks are freed) and
 * clears `refused`; allocations before it stay valid. */
void akr_arena_rewind(akr_arena *arena, akr_arena_mark mark);

/* Forgets every allocation and sets a new cap; keeps one small chunk. */
void akr_arena_reset(akr_arena *arena, size_t cap);
/* Frees every chunk (large ones go back to the spare store). */
void akr_arena_release(akr_arena *arena);

#endif /* AKR_ARENA_H */
