/* arena.c: the per-call bump allocator (arena.h). */
#include "mem/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* --- the arena --------------------------------------------------------- */

struct akr_arena_chunk {
  akr_arena_chunk *next;
  size_t size; /* usable bytes after the header */
  int mapped;  /* a block of akr_spare (its size: the header and `size`) */
  max_align_t data[];
};

#define ARENA_ALIGN (_Alignof(max_align_t))
#define ARENA_FIRST_CHUNK 4096

/* Large chunks are blocks of the arena's spare store (spare.h): a large
 * request's decode then reuses the pages of the one before instead of
 * faulting in fresh ones, and a refused oversized decode gives its memory
 * back to the system (unmapped), not to malloc's heap. */
static akr_arena_chunk *chunk_new(akr_arena *arena, size_t size) {
  size_t bytes = sizeof(akr_arena_chunk) + size;
  akr_arena_chunk *c;
  if (size >= AKR_SPARE_MIN) {
    size_t got;
    c = akr_spare_get(arena->spare, bytes, &got);
    if (!c) return NULL;
    c->mapped = 1;
    size = got - sizeof *c;
  } else {
    c = malloc(bytes);
    if (!c) return NULL;
    c->mapped = 0;
  }
  c->size = size;
  return c;
}

static void chunk_free(akr_arena *arena, akr_arena_chunk *c) {
  if (c->mapped)
    akr_spare_put(arena->spare, c, sizeof *c + c->size);
  else
    free(c);
}

static void *arena_pc_alloc(void *data, size_t size) {
  return akr_arena_alloc(data, size);
}

static void arena_pc_free(void *data, void *ptr) {
  (void)data;
  (void)ptr; /* released all at once with the arena */
}

void akr_arena_init(akr_arena *arena, size_t cap) {
  memset(arena, 0, sizeof *arena);
  arena->pc.alloc = arena_pc_alloc;
  arena->pc.free = arena_pc_free;
  arena->pc.allocator_data = arena;
  arena->cap = cap;
}

void akr_arena_init_on(akr_arena *arena, size_t cap, void *buf, size_t len) {
  akr_arena_init(arena, cap);
  if (len > cap) len = cap;
  arena->cur = buf;
  arena->left = len;
  arena->total = len;
}

void *akr_arena_alloc(akr_arena *arena, size_t size) {
  if (size == 0) size = 1;
  size_t rounded = (size + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
  if (rounded < size) return NULL;
  if (rounded > arena->left) {
    size_t room = arena->cap > arena->total ? arena->cap - arena->total : 0;
    if (rounded > room) {
      arena->refused = 1;
      return NULL;
    }
    /* Chunks double the arena, so a large message costs few mallocs. */
    size_t want = arena->total ? arena->total : ARENA_FIRST_CHUNK;
    if (want < rounded) want = rounded;
    if (want > room) want = room;
    akr_arena_chunk *c = chunk_new(arena, want);
    if (!c) {
      arena->refused = 1;
      return NULL;
    }
    c->next = arena->chunks;
    arena->chunks = c;
    /* A kept block may be larger than asked: it lends `want` bytes only, so
     * the cap holds. */
    arena->total += want;
    arena->cur = (unsigned char *)c->data;
    arena->left = want;
  }
  void *p = arena->cur;
  arena->cur += rounded;
  arena->left -= rounded;
  return p;
}

akr_arena_mark akr_arena_mark_now(const akr_arena *arena) {
  return (akr_arena_mark){arena->chunks, arena->cur, arena->left, arena->total};
}

void akr_arena_rewind(akr_arena *arena, akr_arena_mark mark) {
  while (arena->chunks != mark.chunks) {
    akr_arena_chunk *c = arena->chunks;
    arena->chunks = c->next;
    chunk_free(arena, c);
  }
  arena->cur = mark.cur;
  arena->left = mark.left;
  arena->total = mark.total;
  arena->refused = 0;
}

void akr_arena_reset(akr_arena *arena, size_t cap) {
  /* Keep the oldest chunk (the first one allocated, at the list's tail) if
   * it is the small initial size: most calls fit in it, so a reused arena
   * usually allocates nothing. */
  akr_arena_chunk *keep = NULL;
  akr_arena_chunk *c = arena->chunks;
  while (c) {
    akr_arena_chunk *next = c->next;
    if (!next && c->size == ARENA_FIRST_CHUNK)
      keep = c;
    else
      chunk_free(arena, c);
    c = next;
  }
  arena->chunks = keep;
  arena->total = keep ? keep->size : 0;
  arena->cur = keep ? (unsigned char *)keep->data : NULL;
  /* A kept chunk larger than the new cap lends only `cap` of its bytes. */
  arena->left = keep ? (keep->size < cap ? keep->size : cap) : 0;
  arena->cap = cap;
  arena->refused = 0;
  if (keep) keep->next = NULL;
}

void akr_arena_release(akr_arena *arena) {
  akr_arena_chunk *c = arena->chunks;
  while (c) {
    akr_arena_chunk *next = c->next;
    chunk_free(arena, c);
    c = next;
  }
  arena->chunks = NULL;
  arena->cur = NULL;
  arena->left = arena->total = 0;
}
