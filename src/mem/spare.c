/* spare.c: large buffers kept for the next call. See spare.h. */
#include "mem/spare.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page_round(size_t n) {
  static size_t page;
  if (!page) {
    long p = sysconf(_SC_PAGESIZE);
    page = p > 0 ? (size_t)p : 4096u;
  }
  return n > SIZE_MAX - page ? 0 : (n + page - 1) & ~(page - 1);
}

void akr_spare_init(akr_spare *s, size_t max_bytes) {
  memset(s, 0, sizeof *s);
  s->max_bytes = max_bytes;
}

/* Takes slot i's block out of the store; its size in *ret_size. */
static void *slot_take(akr_spare *s, unsigned i, size_t *ret_size) {
  void *p = s->slot[i].p;
  *ret_size = s->slot[i].size;
  s->bytes -= *ret_size;
  memmove(&s->slot[i], &s->slot[i + 1], (s->n - i - 1) * sizeof s->slot[0]);
  s->n--;
  return p;
}

static void slot_drop(akr_spare *s, unsigned i) {
  size_t size;
  void *p = slot_take(s, i, &size);
  munmap(p, size);
}

void *akr_spare_get(akr_spare *s, size_t min, size_t *ret_size) {
  size_t size = page_round(min);
  if (!size) return NULL;
  if (s) {
    s->wanted = 1;
    /* The smallest kept block that is large enough. */
    unsigned best = s->n;
    for (unsigned i = 0; i < s->n; i++)
      if (s->slot[i].size >= size &&
          (best == s->n || s->slot[i].size < s->slot[best].size))
        best = i;
    if (best < s->n) return slot_take(s, best, ret_size);
  }
  void *p =
      mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  *ret_size = size;
  return p;
}

void akr_spare_put(akr_spare *s, void *p, size_t size) {
  if (!p) return;
  if (!s || size > s->max_bytes) {
    munmap(p, size);
    return;
  }
  while (s->n && (s->n == AKR_SPARE_SLOTS || s->bytes + size > s->max_bytes))
    slot_drop(s, 0);
  s->slot[s->n].p = p;
  s->slot[s->n].size = size;
  s->n++;
  s->bytes += size;
}

int akr_spare_idle(akr_spare *s) {
  if (!s->wanted) akr_spare_trim(s);
  s->wanted = 0;
  return s->n > 0;
}

void akr_spare_trim(akr_spare *s) {
  while (s->n)
    slot_drop(s, s->n - 1);
}
