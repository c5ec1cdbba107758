/* cache.c: the reply cache's glue to calls and connections (dispatch.h;
 * the cache itself is reply_cache.c; docs/DELIVERY.md). */
#include <stddef.h>

#include "core/clock.h"
#include "server/call.h"
#include "server/conn.h"
#include "server/dispatch.h"

static ackrpc_call *waiter_call(akr_rc_waiter *w) {
  return (ackrpc_call *)(void *)((char *)w - offsetof(ackrpc_call, rc_wait));
}

int akr_cache_begin(akr_conn *c, ackrpc_call *call) {
  ackrpc_server *s = c->server;
  akr_rc_entry *e = NULL;
  const uint8_t *frame = NULL;
  size_t len = 0;
  switch (akr_rc_begin(s->cache, call->req.method, call->req.call_id,
                       call->req.call_id_len, akr_now_us(), &e, &frame, &len)) {
  case AKR_RC_MISS: call->rc_entry = e; return 0;
  case AKR_RC_UNTRACKED: return 0;
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
