/* session.c: blocking sessions (several calls on one connection) and the
 * client's pool of them (include/ackrpc/client.h).
 *
 * A session is a link kept between calls. A kept connection the server has
 * since ended (idle timeout, shutdown) is not probed before each call: the
 * engine sees the first write or read fail before anything is outstanding
 * and sends the call again on a new connection, which is safe (nothing was
 * delivered). That saves a poll() per call. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/attempt.h"
#include "client/io.h"
#include "client/poll.h"
#include "client/result.h"
#include "client/typed.h"
#include "core/clock.h"

static ackrpc_session *session_new(const ackrpc_client *client) {
  ackrpc_session *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->conf = client->conf;
  akr_memo_ref(s->conf.memo);
  s->timeout_ms = client->timeout_ms;
  akr_ids_init(&s->ids, s);
  akr_link_init(&s->link, &s->conf, AKR_LINK_SESSION, NULL, 0);
  return s;
}

ackrpc_status ackrpc_session_open(ackrpc_client *client, uint32_t timeout_ms,
                                  ackrpc_session **ret_session) {
  if (!client || !ret_session) return ACKRPC_E_INVAL;
  ackrpc_session *s = session_new(client);
  if (!s) return ACKRPC_E_NOMEM;
  s->retry = client->retry;
  /* An empty call: it completes once the link is connected. */
  ackrpc_result r = {0};
  uint32_t ms = timeout_ms ? timeout_ms : s->timeout_ms;
  uint64_t now = akr_now_us();
  akr_ccall c = {
      .deadline_us = now + (uint64_t)ms * 1000u, .timeout_ms = ms, .result = &r};
  akr_link_push(&s->link, &c);
  akr_poll_until(&s->link, &c, now);
  akr_link_pop(&s->link);
  ackrpc_status st = r.status;
  ackrpc_result_clear(&r);
  if (st != ACKRPC_OK) {
    akr_io_close(&s->link, 0);
    akr_link_free(&s->link);
    akr_memo_unref(s->conf.memo);
    free(s);
    /* Busy until the deadline, whichever side of it the last try fell. */
    if (st == ACKRPC_E_BUSY || st == ACKRPC_E_SEND_TIMEOUT) return ACKRPC_E_BUSY;
    if (st == ACKRPC_E_NOMEM || st == ACKRPC_E_SERVER_IDENTITY) return st;
    return ACKRPC_E_CONNECT;
  }
  *ret_session = s;
  return ACKRPC_OK;
}

/* One call on the session, no retries. Only a clean answer leaves the
 * connection at a frame boundary it can trust. */
static ackrpc_status session_once(ackrpc_session *s, const akr_call_args *a,
                                  const ackrpc_call_options *o, uint32_t wait_ms,
                                  ackrpc_result *r) {
  ackrpc_status st = akr_link_call(&s->link, &s->ids, a, o, s->timeout_ms, wait_ms, r);
  if (ackrpc_status_outcome(st) != ACKRPC_OUTCOME_ACKED || st == ACKRPC_E_BAD_REPLY)
    akr_io_close(&s->link, 0);
  return st;
}

typedef struct session_args {
  ackrpc_session *session;
  akr_call_args call;
} session_args;

static ackrpc_status session_attempt(void *ctx, const ackrpc_call_options *o,
                                     uint32_t wait_ms, ackrpc_result *r) {
  session_args *a = ctx;
  return session_once(a->session, &a->call, o, wait_ms, r);
}

ackrpc_status ackrpc_session_call(ackrpc_session *s, const ackrpc_method *method,
                                  const ProtobufCMessage *request,
                                  const ackrpc_call_options *options,
                                  ackrpc_result *ret_result) {
  if (!s || !akr_call_args_ok(method, request))
    return akr_blocking_refuse(ret_result, "missing or mismatched argument");
  akr_typed t;
  ackrpc_status st = akr_typed_begin(&t, method, request, options);
  if (st != ACKRPC_OK) return akr_typed_refuse(ret_result, st, t.why);
  session_args a = {.session = s,
                    .call = {.method = method->name,
                             .request = t.request,
                             .reply_desc = method->reply}};
  st = akr_blocking_call(&s->ids, s->timeout_ms, &s->retry, t.options, session_attempt,
                         &a, ret_result);
  akr_typed_end(&t);
  return st;
}

ackrpc_session *ackrpc_session_close(ackrpc_session *s) {
  if (!s) return NULL;
  /* The half-close ends the session; the server closes in turn. There is
   * nothing to wait for: every call on it has had its reply. */
  akr_io_close(&s->link, 1);
  akr_link_free(&s->link);
  akr_memo_unref(s->conf.memo);
  free(s);
  return NULL;
}

/* --- the pool ---------------------------------------------------------- */

ackrpc_status akr_pool_call(ackrpc_client *client, const akr_call_args *a,
                            const ackrpc_call_options *o, uint32_t wait_ms,
                            ackrpc_result *r) {
  pthread_mutex_lock(&client->pool_mu);
  ackrpc_session *s = client->idle;
  if (s) {
    client->idle = s->next_idle;
    client->n_idle--;
  }
  pthread_mutex_unlock(&client->pool_mu);
  if (!s) {
    s = session_new(client); /* connects in the call, within its deadline */
    if (!s) return akr_result_fail(r, ACKRPC_E_NOMEM, ENOMEM, "session");
  }
  ackrpc_status st = session_once(s, a, o, wait_ms, r);
  if (s->link.fd >= 0) {
    pthread_mutex_lock(&client->pool_mu);
    if (client->n_idle < client->pool_max) {
      s->next_idle = client->idle;
      client->idle = s;
      client->n_idle++;
      s = NULL;
    }
    pthread_mutex_unlock(&client->pool_mu);
  }
  ackrpc_session_close(s);
  return st;
}

void akr_pool_drain(ackrpc_client *client) {
  while (client->idle) {
    ackrpc_session *s = client->idle;
    client->idle = s->next_idle;
    ackrpc_session_close(s);
  }
  client->n_idle = 0;
}
