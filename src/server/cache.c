/* cache.c: the reply cache's glue to calls and connections (dispatch.h;
 * the cache itself is reply_cache.c; the durable store behind it is the
 * server's opt.reply_lookup; docs/DELIVERY.md). */
#include <stddef.h>
#include <string.h>

#define XXH_INLINE_ALL /* one function, compiled in: no library to link */
#include <xxhash.h>

#include "core/clock.h"
#include "core/messages.h"
#include "server/call.h"
#include "server/conn.h"
#include "server/dispatch.h"

static ackrpc_call *waiter_call(akr_rc_waiter *w) {
  return (ackrpc_call *)(void *)((char *)w - offsetof(ackrpc_call, rc_wait));
}

void akr_cache_digest(ackrpc_call *call, const uint8_t *body, size_t body_len) {
  /* The definition docs/DELIVERY.md gives: a seed from the uid and the
   * method, then the body under that seed, in XXH128's canonical
   * (big-endian) form. */
  const char *method = call->req.method;
  XXH64_hash_t seed = XXH3_64bits_withSeed(method, strlen(method), call->peer.uid);
  /* A bridged call's caller is its principal, not the bridge's uid: the
   * principal ("" when anonymous) goes into the seed too. */
  if (call->bridged) {
    const char *p = call->principal ? call->principal : "";
    seed = XXH3_64bits_withSeed(p, strlen(p), seed);
  }
  static const uint8_t empty[1];
  XXH128_hash_t h = XXH3_128bits_withSeed(body_len ? body : empty, body_len, seed);
  XXH128_canonical_t out;
  XXH128_canonicalFromHash(&out, h);
  _Static_assert(sizeof out.digest == AKR_RC_DIGEST_LEN, "digest length");
  memcpy(call->digest, out.digest, sizeof call->digest);
  call->has_digest = 1;
}

const uint8_t *ackrpc_call_request_digest(const ackrpc_call *call) {
  return call && call->has_digest ? call->digest : NULL;
}

/* Parts the call from its connection (which may free it) and answers. */
static void refuse(akr_conn *c, ackrpc_status status, const char *message) {
  akr_conn_part(c);
  akr_conn_answer(c, status, message, 0);
}

/* The durable store's part, for a call the cache had no entry for (it now
 * owns `e`): 1 if the call was answered from the store or refused. */
static int store_lookup(akr_conn *c, ackrpc_call *call, akr_rc_entry *e) {
  ackrpc_server *s = c->server;
  ackrpc_stored_reply r = {0};
  ackrpc_status refusal = ACKRPC_UNAVAILABLE;
  const char *why = "the reply store cannot be read: not run, retry later";
  switch (s->opt.reply_lookup(s->opt.reply_lookup_user, call->req.call_id,
                              call->req.call_id_len, call->digest, &r)) {
  case ACKRPC_LOOKUP_NONE: call->rc_entry = e; return 0;
  case ACKRPC_LOOKUP_FOUND: {
    s->replay_store_hits++;
    ackrpc_status st =
        ackrpc_status_is_canonical(r.status) ? r.status : ACKRPC_INTERNAL;
    if (akr_call_encode_raw(call, (uint32_t)st, r.message, r.body, r.body_len) ==
        ACKRPC_OK) {
      /* Kept in memory too when OK, as if the handler had just answered. */
      akr_rc_finish(s->cache, e, st == ACKRPC_OK, call->out, call->out_len,
                    akr_now_us());
      akr_conn_reply(c, call);
      return 1;
    }
    refusal = ACKRPC_RESOURCE_EXHAUSTED;
    why = "out of memory";
    break;
  }
  case ACKRPC_LOOKUP_MISMATCH:
    s->replay_store_refused++;
    refusal = ACKRPC_INVALID_ARGUMENT;
    why = AKR_MSG_CALL_ID_REUSED;
    break;
  default: break;
  }
  /* Nothing kept; the entry has no waiters yet. */
  akr_rc_finish(s->cache, e, 0, NULL, 0, akr_now_us());
  refuse(c, refusal, why);
  return 1;
}

int akr_cache_begin(akr_conn *c, ackrpc_call *call) {
  ackrpc_server *s = c->server;
  akr_rc_entry *e = NULL;
  const uint8_t *frame = NULL;
  size_t len = 0;
  switch (akr_rc_begin(s->cache, call->req.call_id, call->req.call_id_len, call->digest,
                       akr_now_us(), &e, &frame, &len)) {
  case AKR_RC_MISS:
    if (s->opt.reply_lookup) return store_lookup(c, call, e);
    call->rc_entry = e;
    return 0;
  case AKR_RC_UNTRACKED: return 0;
  case AKR_RC_MISMATCH:
    refuse(c, ACKRPC_INVALID_ARGUMENT, AKR_MSG_CALL_ID_REUSED);
    return 1;
  case AKR_RC_HIT:
    if (akr_call_set_reply(call, frame, len) != 0) return 0;
    call->reply_status = ACKRPC_OK; /* only OK answers are kept */
    akr_conn_reply(c, call);
    return 1;
  case AKR_RC_IN_FLIGHT:
    call->waiting = 1;
    call->rc_ready = 0;
    akr_rc_wait(e, &call->rc_wait);
    c->state = AKR_CONN_BUSY;
    akr_conn_busy(c, call->deadline_us);
    return 1;
  }
  return 0;
}

void akr_cache_finish(ackrpc_call *call) {
  akr_rc_entry *e = call->rc_entry;
  if (!e) return;
  call->rc_entry = NULL;
  /* A reply with descriptors cannot be given again: it is not kept. */
  const uint8_t *frame = call->out_len && !call->reply_fds.n ? call->out : NULL;
  int ok = frame && call->reply_status == ACKRPC_OK;
  akr_rc_waiter *w =
      akr_rc_finish(call->server->cache, e, ok, frame, call->out_len, akr_now_us());
  while (w) {
    akr_rc_waiter *next = w->next;
    ackrpc_call *wc = waiter_call(w);
    wc->rc_ready = frame && akr_call_set_reply(wc, frame, call->out_len) == 0 ? 1 : 2;
    if (wc->rc_ready == 1) wc->reply_status = call->reply_status;
    event_active(&wc->conn->timer, EV_TIMEOUT, 0);
    w = next;
  }
}

void akr_cache_wait_over(akr_conn *c, ackrpc_call *call) {
  evtimer_del(&c->timer);
  akr_rc_unwait(&call->rc_wait);
  call->waiting = 0;
  if (call->rc_ready == 1) {
    akr_conn_reply(c, call);
    return;
  }
  int ready = call->rc_ready;
  akr_conn_part(c); /* may free the call */
  if (ready == 2)
    akr_conn_answer(c, ACKRPC_UNAVAILABLE,
                    "the first call with this call id ended without an answer", 0);
  else
    akr_conn_answer(c, ACKRPC_DEADLINE_EXCEEDED,
                    "a call with this call id is still being handled", 0);
}
