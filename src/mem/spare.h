/* spare.h: large buffers kept for the next call (internal: not installed).
 *
 * A request of megabytes needs an input buffer and a decode arena of about
 * its size. Mapping them fresh for every call and unmapping them after makes
 * the kernel fault in and zero every page each time: at 16 MiB that was ~40 %
 * of the server's CPU. The server keeps the blocks its calls gave back, up to
 * a byte budget, hands them to the next large call, and unmaps them once
 * they have not been asked for in a while (the caller's timer calls
 * akr_spare_trim()). Blocks come straight from mmap, never from malloc, so
 * what is unmapped leaves the process at once.
 *
 * Not thread-safe: one owner (the server's loop thread). A NULL `akr_spare`
 * is allowed everywhere and means "keep nothing": get maps, put unmaps. */
#ifndef AKR_SPARE_H
#define AKR_SPARE_H

#include <stddef.h>

/* Buffers at least this large are blocks; smaller ones come from malloc. */
#define AKR_SPARE_MIN (256u << 10)
#define AKR_SPARE_SLOTS 8

typedef struct akr_spare {
  struct {
    void *p;
    size_t size;
  } slot[AKR_SPARE_SLOTS]; /* [0, n): oldest first */
  unsigned n;
  size_t bytes;     /* held in the slots */
  size_t max_bytes; /* never hold more than this */
  int wanted;       /* a get since the last akr_spare_idle() */
} akr_spare;

void akr_spare_init(akr_spare *s, size_t max_bytes);

/* A block of at least `min` bytes (rounded up to whole pages), a kept one if
 * one is large enough, else freshly mapped; its size in *ret_size. NULL if
 * the system has no memory for it. Give it back with akr_spare_put(). */
void *akr_spare_get(akr_spare *s, size_t min, size_t *ret_size);

/* Takes back a block of `size` bytes (as returned by get): kept, the oldest
 * kept blocks making room, or unmapped if it does not fit the budget. */
void akr_spare_put(akr_spare *s, void *p, size_t size);

/* Called at intervals: unmaps every kept block if no get came since the
 * last call. Returns 1 while blocks are still kept (call again later). */
int akr_spare_idle(akr_spare *s);

/* Unmaps every kept block. */
void akr_spare_trim(akr_spare *s);

#endif /* AKR_SPARE_H */
