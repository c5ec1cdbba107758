/* async_session.c: asynchronous sessions: pipelined calls on one
 * connection, on a caller's libevent loop (include/ackrpc/client.h).
 *
 * A session is a pipeline link (engine.c) driven by evdrive.c. Each call
 * is one allocation holding its request frame, encoded before
 * ackrpc_async_session_call() returns. Callbacks run in async_run() and may
 * queue calls or close the session; a nested run only kicks the loop, and
 * only the outermost run frees a closed session. */
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"
#include "client/evdrive.h"
#include "client/io.h"
#include "client/result.h"
#include "client/typed.h"
#include "core/clock.h"
#include "wire/names.h"

/* One call in the pipeline. */
typedef struct pending {
  akr_ccall call;
  struct iovec iov;
  akr_resend resend; /* the body's memfd, if it is in one */
  ackrpc_done_fn done;
  void *user;
  ackrpc_result result;
  uint8_t frame[];
} pending;

struct ackrpc_async_session {
  akr_evdrive drive;
  akr_link link;
  akr_link_conf conf; /* the client's */
  uint32_t timeout_ms;
  akr_ids ids;
  int closing, running;
};

static void async_run(void *arg);

ackrpc_status ackrpc_async_session_open(ackrpc_client *client, struct event_base *base,
                                        ackrpc_async_session **ret_session) {
  if (!client || !base || !ret_session) return ACKRPC_E_INVAL;
  ackrpc_async_session *s = calloc(1, sizeof *s);
  if (!s) return ACKRPC_E_NOMEM;
  s->conf = client->conf;
  akr_memo_ref(s->conf.memo);
  s->timeout_ms = client->timeout_ms;
  akr_ids_init(&s->ids, s);
  akr_link_init(&s->link, &s->conf, AKR_LINK_PIPELINE, NULL, 0);
  akr_evdrive_init(&s->drive, base, async_run, s);
  akr_evdrive_attach(&s->drive, &s->link);
  *ret_session = s;
  return ACKRPC_OK;
}

/* Queues one call (a message or raw bytes, per `args`). */
static ackrpc_status session_queue(ackrpc_async_session *s, const akr_call_args *args,
                                   const ackrpc_call_options *options,
                                   ackrpc_done_fn done, void *user) {
  if (s->closing) return ACKRPC_E_STATE;
  ackrpc_result probe = {0};
  akr_request_spec spec;
  size_t n;
  uint32_t timeout_ms = akr_timeout_ms(options, s->timeout_ms);
  ackrpc_status st = akr_request_prepare(&s->ids, args, options, timeout_ms,
                                         s->conf.memfd_replies ? AKR_MEMFD_REPLIES : 0,
                                         &spec, &n, &probe);
  akr_resend rs;
  akr_resend_init(&rs);
  uint8_t scratch[AKR_SCRATCH];
  if (st == ACKRPC_OK &&
      akr_resend_prepare(&rs, &spec, NULL, &s->conf, scratch, sizeof scratch, &n) < 0)
    st = ACKRPC_E_NOMEM;
  size_t n_fds = (options ? options->n_fds : 0) + (rs.fd >= 0 ? 1 : 0);
  pending *p = st == ACKRPC_OK
                   ? malloc(sizeof *p + AKR_FDS_AFTER(n) + n_fds * sizeof(int))
                   : NULL;
  if (st == ACKRPC_OK && !p) st = ACKRPC_E_NOMEM;
  if (!p) {
    akr_resend_free(&rs);
    ackrpc_result_clear(&probe);
    return st;
  }
  /* Encoded straight into the call's allocation: the body's one copy (or
   * the frame's head, the body in its memfd). */
  memset(p, 0, sizeof *p);
  p->result = probe;
  p->result.attempts = 1;
  p->resend = rs;
  spec.call_id = p->result.call_id;
  p->iov = (struct iovec){.iov_base = p->frame,
                          .iov_len = akr_request_encode(&spec, p->frame)};
  p->done = done;
  p->user = user;
  p->call = (akr_ccall){.iov = &p->iov,
                        .n_iov = 1,
                        .len = p->iov.iov_len,
                        .deadline_us = akr_now_us() + (uint64_t)timeout_ms * 1000u,
                        .timeout_ms = timeout_ms,
                        .reply_desc = args->reply_desc,
                        .result = &p->result,
                        .max_reply_fds = options ? options->max_reply_fds : 0};
  if (n_fds) {
    int *fds = (int *)(void *)(p->frame + AKR_FDS_AFTER(n));
    if (options && options->n_fds)
      memcpy(fds, options->fds, options->n_fds * sizeof(int));
    if (rs.fd >= 0) fds[n_fds - 1] = rs.fd;
    p->call.fds = fds;
    p->call.n_fds = n_fds;
  }
  akr_link_push(&s->link, &p->call);
  akr_evdrive_kick(
      &s->drive); /* the work happens on the loop: `done` never runs in here */
  return ACKRPC_OK;
}

ackrpc_status ackrpc_async_session_call(ackrpc_async_session *s,
                                        const ackrpc_method *method,
                                        const ProtobufCMessage *request,
                                        const ackrpc_call_options *options,
                                        ackrpc_done_fn done, void *user) {
  if (!s || !done || !akr_call_args_ok(method, request)) return ACKRPC_E_INVAL;
  akr_typed t;
  ackrpc_status st = akr_typed_begin(&t, method, request, options);
  if (st != ACKRPC_OK) return st;
  akr_call_args args = {
      .method = method->name, .request = t.request, .reply_desc = method->reply};
  st = session_queue(s, &args, t.options, done, user);
  akr_typed_end(&t); /* encoded and copied by session_queue() */
  return st;
}

ackrpc_status ackrpc_async_session_call_raw(ackrpc_async_session *s, const char *method,
                                            const uint8_t *body, size_t body_len,
                                            const ackrpc_call_options *options,
                                            ackrpc_done_fn done, void *user) {
  if (!s || !done || !method || !akr_method_name_valid(method) || (body_len && !body))
    return ACKRPC_E_INVAL;
  akr_call_args args = {.method = method, .raw = body, .raw_len = body_len};
  return session_queue(s, &args, options, done, user);
}

void ackrpc_async_session_close(ackrpc_async_session *s) {
  if (!s) return;
  s->closing = 1;
  akr_evdrive_kick(&s->drive);
}

/* Reports completed calls (once each) and frees released ones. */
static void deliver(ackrpc_async_session *s) {
  for (akr_ccall *c = akr_link_pop(&s->link), *next; c; c = next) {
    next = c->next_done;
    pending *p = (pending *)(void *)((char *)c - offsetof(pending, call));
    /* The server refused the body's memfd without running the call: it
     * goes again, its body inline, behind the calls already queued
     * (docs/PROTOCOL.md §2.6); its callback comes when that is answered. */
    if (c->completed && !c->reported && c->released &&
        akr_resend_wanted(&p->resend, s->conf.memo, p->result.status, c->memfd_read) &&
        akr_resend_inline(&p->resend, c) == 0) {
      akr_result_keep_id(&p->result);
      akr_link_push(&s->link, c);
      continue;
    }
    if (c->completed && !c->reported) {
      c->reported = 1;
      p->done(&p->result, p->user);
      ackrpc_result_clear(&p->result);
    }
    if (c->released) {
      akr_resend_free(&p->resend);
      free(p);
    }
  }
}

/* Closed, and nothing left but calls already completed by their deadline
 * (whose late replies would only be dropped): ends the connection and
 * frees everything. */
static void session_free(ackrpc_async_session *s) {
  akr_evdrive_stop(&s->drive);
  akr_io_close(&s->link, 1);
  deliver(s);
  akr_link_free(&s->link);
  akr_memo_unref(s->conf.memo);
  free(s);
}

static void async_run(void *arg) {
  ackrpc_async_session *s = arg;
  if (s->running) {
    akr_evdrive_kick(&s->drive);
    return;
  }
  s->running = 1;
  int ready = akr_evdrive_take_ready(&s->drive);
  for (int round = 0; round < 16; round++) {
    akr_io_run(&s->link, ready, akr_now_us());
    if (!s->link.done_head) break;
    deliver(s); /* may queue calls or close the session */
    ready = 0;
  }
  s->running = 0;
  if (s->closing && !akr_link_busy(&s->link)) {
    session_free(s);
    return;
  }
  akr_evdrive_arm(&s->drive, &s->link, akr_now_us());
}
