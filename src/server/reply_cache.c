/* reply_cache.c: the server's idempotency cache (see reply_cache.h).
 *
 * A chained hash table of entries keyed by the call id, plus a list of
 * the completed entries in completion order: since every entry lives equally
 * long, the oldest is always at the head, so expiry and eviction only ever
 * look there. The cost on a call is one hash of ~40 bytes, one allocation at
 * begin and one copy of the reply frame at finish.
 */
#include "server/reply_cache.h"

#include <stdlib.h>
#include <string.h>

#define INITIAL_BUCKETS 64

struct akr_rc_entry {
  akr_rc_entry *chain;         /* next in the bucket */
  akr_rc_entry *older, *newer; /* completion order (completed entries) */
  uint64_t hash;
  uint64_t done_at; /* completion time (completed entries) */
  akr_rc_waiter *waiters;
  uint8_t *frame;
  size_t frame_len;
  int in_flight;
  uint8_t digest[AKR_RC_DIGEST_LEN];
  size_t key_len;
  uint8_t key[]; /* the call id */
};

struct akr_reply_cache {
  akr_rc_entry **buckets;
  size_t n_buckets; /* a power of two */
  size_t n_done, n_in_flight, bytes;
  akr_rc_entry *oldest, *newest;
  size_t max_entries, max_bytes;
  uint64_t max_age_us;
  akr_rc_counts counts;
};

static uint64_t key_hash(const uint8_t *id, size_t id_len) {
  uint64_t h = 1469598103934665603u; /* FNV-1a */
  for (size_t i = 0; i < id_len; i++)
    h = (h ^ id[i]) * 1099511628211u;
  return h;
}

static size_t entry_bytes(const akr_rc_entry *e) {
  return sizeof *e + e->key_len + e->frame_len;
}

akr_reply_cache *akr_rc_new(size_t max_entries, size_t max_bytes, uint64_t max_age_us) {
  akr_reply_cache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->buckets = calloc(INITIAL_BUCKETS, sizeof *c->buckets);
  if (!c->buckets) {
    free(c);
    return NULL;
  }
  c->n_buckets = INITIAL_BUCKETS;
  c->max_entries = max_entries;
  c->max_bytes = max_bytes;
  c->max_age_us = max_age_us;
  return c;
}

void akr_rc_free(akr_reply_cache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n_buckets; i++) {
    for (akr_rc_entry *e = c->buckets[i], *next; e; e = next) {
      next = e->chain;
      free(e->frame);
      free(e);
    }
  }
  free(c->buckets);
  free(c);
}

/* Unlinks `e` from its bucket and, if completed, from the age list; frees
 * it. */
static void entry_drop(akr_reply_cache *c, akr_rc_entry *e) {
  akr_rc_entry **pp = &c->buckets[e->hash & (c->n_buckets - 1)];
  while (*pp != e)
    pp = &(*pp)->chain;
  *pp = e->chain;
  if (e->in_flight) {
    c->n_in_flight--;
  } else {
    if (e->older)
      e->older->newer = e->newer;
    else
      c->oldest = e->newer;
    if (e->newer)
      e->newer->older = e->older;
    else
      c->newest = e->older;
    c->n_done--;
    c->bytes -= entry_bytes(e);
  }
  free(e->frame);
  free(e);
}

/* Drops completed entries past their age, or beyond the bounds. */
static void evict(akr_reply_cache *c, uint64_t now_us) {
  while (c->oldest && (c->n_done > c->max_entries || c->bytes > c->max_bytes ||
                       now_us - c->oldest->done_at >= c->max_age_us)) {
    entry_drop(c, c->oldest);
    c->counts.evicted++;
  }
}

/* Doubles the table when it holds more entries than buckets. */
static void maybe_grow(akr_reply_cache *c) {
  if (c->n_done + c->n_in_flight < c->n_buckets) return;
  size_t n = 2 * c->n_buckets;
  akr_rc_entry **t = calloc(n, sizeof *t);
  if (!t) return; /* longer chains, still correct */
  for (size_t i = 0; i < c->n_buckets; i++) {
    for (akr_rc_entry *e = c->buckets[i], *next; e; e = next) {
      next = e->chain;
      e->chain = t[e->hash & (n - 1)];
      t[e->hash & (n - 1)] = e;
    }
  }
  free(c->buckets);
  c->buckets = t;
  c->n_buckets = n;
}

akr_rc_result akr_rc_begin(akr_reply_cache *c, const uint8_t *id, size_t id_len,
                           const uint8_t *digest, uint64_t now_us,
                           akr_rc_entry **ret_entry, const uint8_t **ret_frame,
                           size_t *ret_len) {
  evict(c, now_us);
  uint64_t h = key_hash(id, id_len);
  for (akr_rc_entry *e = c->buckets[h & (c->n_buckets - 1)]; e; e = e->chain) {
    if (e->hash != h || e->key_len != id_len || memcmp(e->key, id, id_len) != 0)
      continue;
    if (memcmp(e->digest, digest, AKR_RC_DIGEST_LEN) != 0) {
      c->counts.refused++;
      return AKR_RC_MISMATCH;
    }
    if (e->in_flight) {
      c->counts.joins++;
      *ret_entry = e;
      return AKR_RC_IN_FLIGHT;
    }
    c->counts.hits++;
    *ret_frame = e->frame;
    *ret_len = e->frame_len;
    return AKR_RC_HIT;
  }
  akr_rc_entry *e = calloc(1, sizeof *e + id_len);
  if (!e) return AKR_RC_UNTRACKED;
  memcpy(e->key, id, id_len);
  memcpy(e->digest, digest, AKR_RC_DIGEST_LEN);
  e->key_len = id_len;
  e->hash = h;
  e->in_flight = 1;
  maybe_grow(c);
  akr_rc_entry **b = &c->buckets[h & (c->n_buckets - 1)];
  e->chain = *b;
  *b = e;
  c->n_in_flight++;
  *ret_entry = e;
  return AKR_RC_MISS;
}

void akr_rc_wait(akr_rc_entry *e, akr_rc_waiter *w) {
  w->entry = e;
  w->prev = NULL;
  w->next = e->waiters;
  if (e->waiters) e->waiters->prev = w;
  e->waiters = w;
}

void akr_rc_unwait(akr_rc_waiter *w) {
  if (!w->entry) return;
  if (w->prev)
    w->prev->next = w->next;
  else
    w->entry->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  w->next = w->prev = NULL;
  w->entry = NULL;
}

akr_rc_waiter *akr_rc_finish(akr_reply_cache *c, akr_rc_entry *e, int ok,
                             const uint8_t *frame, size_t len, uint64_t now_us) {
  akr_rc_waiter *list = e->waiters;
  e->waiters = NULL;
  for (akr_rc_waiter *w = list; w; w = w->next)
    w->entry = NULL;
  if (!ok || !frame || !len || !(e->frame = malloc(len))) {
    entry_drop(c, e);
    return list;
  }
  memcpy(e->frame, frame, len);
  e->frame_len = len;
  e->in_flight = 0;
  c->n_in_flight--;
  e->done_at = now_us;
  e->older = c->newest;
  e->newer = NULL;
  if (c->newest)
    c->newest->newer = e;
  else
    c->oldest = e;
  c->newest = e;
  c->n_done++;
  c->bytes += entry_bytes(e);
  evict(c, now_us);
  return list;
}

void akr_rc_stats(const akr_reply_cache *c, size_t *ret_done, size_t *ret_in_flight,
                  size_t *ret_bytes) {
  if (ret_done) *ret_done = c->n_done;
  if (ret_in_flight) *ret_in_flight = c->n_in_flight;
  if (ret_bytes) *ret_bytes = c->bytes;
}

akr_rc_counts akr_rc_counts_get(const akr_reply_cache *c) {
  akr_rc_counts none = {0};
  return c ? c->counts : none;
}
