/* reply_cache.h: the server's idempotency cache (internal, not installed).
 *
 * Keyed by the call id alone; each entry also holds the digest of the
 * request it was made for (AKR_RC_DIGEST_LEN bytes: the peer's uid, the
 * method and the body, dispatch.c). A call whose id is new becomes the
 * entry's owner ("in flight") and runs its handler; when it is answered, an
 * OK reply frame is kept (completed) so that a repeat of the id is answered
 * with those bytes without running the handler again. Errors are not kept:
 * they must stay retryable. A repeat that arrives while the owner is still in
 * flight waits on the entry and is handed the owner's answer. An id that
 * comes back with another digest (another method, body or uid) is a
 * MISMATCH: never answered with the other request's reply.
 *
 * Bounds: completed entries are dropped oldest first beyond max_entries or
 * max_bytes (key and frame bytes), and when older than max_age_us (counted
 * from completion). In-flight entries are never dropped: each stands for a
 * call a handler holds, so they are bounded by the calls the server admits.
 *
 * No I/O, no clock of its own (the caller passes `now`), no locking: the
 * server uses it from its loop thread only. Not here: what to do with the
 * bytes (server.c).
 */
#ifndef AKR_REPLY_CACHE_H
#define AKR_REPLY_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct akr_reply_cache akr_reply_cache;
typedef struct akr_rc_entry akr_rc_entry;

/* A call waiting for an in-flight entry; embedded in the waiting object. */
typedef struct akr_rc_waiter {
  struct akr_rc_waiter *next, *prev;
  akr_rc_entry *entry; /* NULL: not waiting */
} akr_rc_waiter;

#define AKR_RC_DIGEST_LEN 16

typedef enum akr_rc_result {
  AKR_RC_MISS,      /* new key: the caller owns the in-flight entry */
  AKR_RC_HIT,       /* a kept OK reply: its frame is returned */
  AKR_RC_IN_FLIGHT, /* the owner is still running: wait on the entry */
  AKR_RC_MISMATCH,  /* the id is held for a request with another digest */
  AKR_RC_UNTRACKED, /* out of memory: run the call without the cache */
} akr_rc_result;

/* What the cache did since it was made. */
typedef struct akr_rc_counts {
  uint64_t hits;    /* repeats answered with a kept reply */
  uint64_t joins;   /* repeats that waited for their first call */
  uint64_t refused; /* ids that came back with another request */
  uint64_t evicted; /* kept replies dropped by age or the bounds */
} akr_rc_counts;

/* A cache with these bounds (all nonzero); NULL if out of memory. */
akr_reply_cache *akr_rc_new(size_t max_entries, size_t max_bytes, uint64_t max_age_us);

/* Frees the cache and every entry. Waiters are left as they are (their
 * `entry` pointers dangle: the server closes them first). NULL is ignored. */
void akr_rc_free(akr_reply_cache *cache);

/* Looks `id` up at time `now_us`, for a request whose digest is `digest`
 * (AKR_RC_DIGEST_LEN bytes). MISS: *ret_entry is the new in-flight entry
 * the caller owns (finish it with akr_rc_finish()). HIT: *ret_frame and
 * *ret_len are the kept reply frame, valid until the next call into the
 * cache. IN_FLIGHT: *ret_entry is the owner's entry, to wait on with
 * akr_rc_wait(). MISMATCH: the id is kept or in flight for a request with
 * another digest; nothing is returned. */
akr_rc_result akr_rc_begin(akr_reply_cache *cache, const uint8_t *id, size_t id_len,
                           const uint8_t *digest, uint64_t now_us,
                           akr_rc_entry **ret_entry, const uint8_t **ret_frame,
                           size_t *ret_len);

/* Adds `w` to the entry's waiters. */
void akr_rc_wait(akr_rc_entry *entry, akr_rc_waiter *w);

/* Removes `w` from the waiters of the entry it waits on, if any. */
void akr_rc_unwait(akr_rc_waiter *w);

/* The owner of `entry` was answered: `ok` says whether the reply was OK,
 * `frame`/`len` are its encoded frame (NULL if none could be made). An OK
 * frame is copied and kept; otherwise the entry is dropped. Returns the
 * entry's waiters, detached (linked by `next`, each `entry` NULL), to be
 * answered with `frame` by the caller. */
akr_rc_waiter *akr_rc_finish(akr_reply_cache *cache, akr_rc_entry *entry, int ok,
                             const uint8_t *frame, size_t len, uint64_t now_us);

/* Counts, for tests: completed entries, in-flight entries, bytes kept. */
void akr_rc_stats(const akr_reply_cache *cache, size_t *ret_done, size_t *ret_in_flight,
                  size_t *ret_bytes);

/* What the cache did; NULL cache: all zero. */
akr_rc_counts akr_rc_counts_get(const akr_reply_cache *cache);

#endif /* AKR_REPLY_CACHE_H */
