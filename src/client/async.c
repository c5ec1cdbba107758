/* async.c: asynchronous calls on a caller's libevent loop, with retries
 * (ackrpc_client_call_async(), ackrpc_stub_call_async()).
 *
 * A call is a one-shot link driven by evdrive.c. The request is encoded
 * once, into the call's own allocation (the caller's request may change as
 * soon as the call has started), and every attempt sends that frame: the
 * same call id. Between attempts the call sleeps its backoff on a timer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"
#include "client/evdrive.h"
#include "client/io.h"
#include "client/result.h"
#include "client/typed.h"
#include "core/clock.h"

typedef struct async_call {
  akr_evdrive drive;
  akr_link link;
  akr_ccall call;
  akr_link_conf conf; /* the client's: it may be freed before the call ends */
  struct iovec iov;
  akr_resend resend;    /* the body's memfd, if it is in one */
  uint64_t deadline_us; /* the whole call's */
  uint32_t timeout_ms;
  unsigned attempt;
  akr_retry_rules rules;
  akr_rng rng;
  int sleeping; /* between attempts */
  ackrpc_result result;
  ackrpc_done_fn done;            /* or, for a stub: */
  ackrpc_stub_adapter_fn adapter; /* adapter(result, typed, user) */
  ackrpc_stub_fn typed;
  void *user;
  uint8_t in[512]; /* a small reply needs no allocation */
  uint8_t frame[]; /* the request frame */
} async_call;

static void async_finish(async_call *a) {
  akr_evdrive_stop(&a->drive);
  akr_io_close(&a->link, 0);
  akr_link_pop(&a->link);
  akr_link_free(&a->link);
  akr_resend_free(&a->resend);
  akr_memo_unref(a->conf.memo);
  if (a->adapter)
    a->adapter(&a->result, a->typed, a->user);
  else
    a->done(&a->result, a->user);
  ackrpc_result_clear(&a->result);
  free(a);
}

/* Queues the frame for an attempt starting now, waiting at most attempt_ms
 * (when retries are on) within the call's deadline. */
static void attempt_start(async_call *a, uint64_t now) {
  uint64_t until = a->deadline_us;
  if (a->rules.max_attempts > 1 && a->rules.attempt_ms &&
      now + (uint64_t)a->rules.attempt_ms * 1000u < until)
    until = now + (uint64_t)a->rules.attempt_ms * 1000u;
  a->call.deadline_us = until;
  a->call.timeout_ms = (uint32_t)((until - now + 999) / 1000);
  if (until == a->deadline_us) a->call.timeout_ms = a->timeout_ms;
  akr_link_push(&a->link, &a->call);
}

/* After a failed attempt: sleeps its backoff if the policy allows and the
 * deadline leaves time; 0 if the call ends here. */
static int async_retry(async_call *a, uint64_t now) {
  a->result.attempts = a->attempt;
  if (a->attempt >= a->rules.max_attempts ||
      !akr_retryable(a->rules.retry_on, a->result.status))
    return 0;
  uint64_t wait =
      akr_backoff_us(a->rules.initial_ms, a->rules.max_ms, a->attempt, &a->rng);
  if (now + wait + 1000u >= a->deadline_us) return 0;
  akr_io_close(&a->link, 0);
  akr_link_pop(&a->link);
  uint8_t id[ACKRPC_MAX_CALL_ID];
  size_t id_len = a->result.call_id_len;
  memcpy(id, a->result.call_id, id_len);
  ackrpc_result_clear(&a->result);
  memcpy(a->result.call_id, id, id_len);
  a->result.call_id_len = id_len;
  a->attempt++;
  a->sleeping = 1;
  akr_evdrive_sleep(&a->drive, now + wait);
  return 1;
}

static void async_run(void *arg) {
  async_call *a = arg;
  uint64_t now = akr_now_us();
  if (a->sleeping) {
    a->sleeping = 0;
    attempt_start(a, now);
  }
  akr_io_run(&a->link, akr_evdrive_take_ready(&a->drive), now);
  if (!a->call.completed) {
    akr_evdrive_arm(&a->drive, &a->link, akr_now_us());
    return;
  }
  a->result.attempts = a->attempt;
  /* The server refused the body's memfd without running the call: the
   * same call again at once, its body inline, on a new connection
   * (docs/PROTOCOL.md §2.6). */
  if (akr_resend_wanted(&a->resend, a->conf.memo, a->result.status,
                        a->call.memfd_read) &&
      akr_resend_inline(&a->resend, &a->call) == 0) {
    akr_io_close(&a->link, 0);
    akr_link_pop(&a->link);
    akr_result_keep_id(&a->result);
    akr_link_push(&a->link, &a->call);
    akr_io_run(&a->link, 0, akr_now_us());
    if (!a->call.completed) {
      akr_evdrive_arm(&a->drive, &a->link, akr_now_us());
      return;
    }
  }
  if (!async_retry(a, akr_now_us())) async_finish(a);
}

/* The call's allocation with its request frame encoded in it (the body
 * in a memfd if the client's conf says so). */
static async_call *async_new(ackrpc_client *client, const ackrpc_method *method,
                             const ProtobufCMessage *request,
                             const ackrpc_call_options *options, ackrpc_status *ret) {
  akr_call_args args = {.method = method->name, .request = request};
  ackrpc_result probe = {0};
  akr_request_spec spec;
  size_t n;
  uint32_t timeout_ms = akr_timeout_ms(options, client->timeout_ms);
  *ret = akr_request_prepare(&client->ids, &args, options, timeout_ms,
                             client->conf.memfd_replies ? AKR_MEMFD_REPLIES : 0, &spec,
                             &n, &probe);
  akr_resend rs;
  akr_resend_init(&rs);
  uint8_t scratch[AKR_SCRATCH];
  if (*ret == ACKRPC_OK && akr_resend_prepare(&rs, &spec, NULL, &client->conf, scratch,
                                              sizeof scratch, &n) < 0)
    *ret = ACKRPC_E_NOMEM;
  size_t n_fds = (options ? options->n_fds : 0) + (rs.fd >= 0 ? 1 : 0);
  async_call *a = *ret == ACKRPC_OK
                      ? calloc(1, sizeof *a + AKR_FDS_AFTER(n) + n_fds * sizeof(int))
                      : NULL;
  if (*ret == ACKRPC_OK && !a) *ret = ACKRPC_E_NOMEM;
  if (a) {
    memcpy(a->result.call_id, probe.call_id, probe.call_id_len);
    a->result.call_id_len = probe.call_id_len;
    spec.call_id = a->result.call_id;
    a->iov = (struct iovec){.iov_base = a->frame,
                            .iov_len = akr_request_encode(&spec, a->frame)};
    a->timeout_ms = timeout_ms;
    a->resend = rs;
    if (n_fds) {
      int *fds = (int *)(void *)(a->frame + AKR_FDS_AFTER(n));
      if (options && options->n_fds)
        memcpy(fds, options->fds, options->n_fds * sizeof(int));
      if (rs.fd >= 0) fds[n_fds - 1] = rs.fd;
      a->call.fds = fds;
      a->call.n_fds = n_fds;
    }
    a->call.max_reply_fds = options ? options->max_reply_fds : 0;
  } else {
    akr_resend_free(&rs);
  }
  ackrpc_result_clear(&probe);
  return a;
}

static ackrpc_status async_start(ackrpc_client *client, struct event_base *base,
                                 const ackrpc_method *method,
                                 const ProtobufCMessage *request,
                                 const ackrpc_call_options *options,
                                 ackrpc_done_fn done, ackrpc_stub_adapter_fn adapter,
                                 ackrpc_stub_fn typed, void *user) {
  if (!client || !akr_call_args_ok(method, request) || !base) return ACKRPC_E_INVAL;
  akr_retry_rules rules = client->retry;
  if (options && options->retry &&
      akr_retry_rules_make(options->retry, &rules) != ACKRPC_OK)
    return ACKRPC_E_INVAL;
  akr_typed t;
  ackrpc_status st = akr_typed_begin(&t, method, request, options);
  if (st != ACKRPC_OK) return st;
  /* The frame is encoded and the descriptors copied here: `t` can go. */
  async_call *a = async_new(client, method, t.request, t.options, &st);
  akr_typed_end(&t);
  if (!a) return st;
  a->rules = rules;
  akr_rng_seed(&a->rng, akr_rng_next(&client->ids.rng));
  a->conf = client->conf;
  akr_memo_ref(a->conf.memo);
  a->attempt = 1;
  a->done = done;
  a->adapter = adapter;
  a->typed = typed;
  a->user = user;
  a->call = (akr_ccall){.iov = &a->iov,
                        .n_iov = 1,
                        .len = a->iov.iov_len,
                        .reply_desc = method->reply,
                        .result = &a->result,
                        .fds = a->call.fds,
                        .n_fds = a->call.n_fds,
                        .max_reply_fds = a->call.max_reply_fds};
  akr_link_init(&a->link, &a->conf, AKR_LINK_ONE_SHOT, a->in, sizeof a->in);
  akr_evdrive_init(&a->drive, base, async_run, a);
  akr_evdrive_attach(&a->drive, &a->link);
  a->deadline_us = akr_now_us() + (uint64_t)a->timeout_ms * 1000u;
  /* Started from the loop, so that `done` never runs inside this function. */
  a->sleeping = 1;
  akr_evdrive_kick(&a->drive);
  return ACKRPC_OK;
}

ackrpc_status ackrpc_client_call_async(ackrpc_client *client, struct event_base *base,
                                       const ackrpc_method *method,
                                       const ProtobufCMessage *request,
                                       const ackrpc_call_options *options,
                                       ackrpc_done_fn done, void *user) {
  if (!done) return ACKRPC_E_INVAL;
  return async_start(client, base, method, request, options, done, NULL, NULL, user);
}

ackrpc_status ackrpc_stub_call_async(ackrpc_client *client, struct event_base *base,
                                     const ackrpc_method *method,
                                     const ProtobufCMessage *request,
                                     const ackrpc_call_options *options,
                                     ackrpc_stub_adapter_fn adapter,
                                     ackrpc_stub_fn done, void *user) {
  if (!adapter || !done) return ACKRPC_E_INVAL;
  return async_start(client, base, method, request, options, NULL, adapter, done, user);
}
