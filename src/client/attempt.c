/* attempt.c: one blocking attempt on a link, and the retries around the
 * attempts (attempt.h). */
#include "client/attempt.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "client/io.h"
#include "client/poll.h"
#include "client/result.h"
#include "core/clock.h"

ackrpc_status akr_link_call(akr_link *link, akr_ids *ids, const akr_call_args *a,
                            const ackrpc_call_options *o, uint32_t default_ms,
                            uint32_t wait_ms, ackrpc_result *r) {
  uint32_t sent_ms = akr_timeout_ms(o, default_ms);
  uint32_t wait = wait_ms && wait_ms < sent_ms ? wait_ms : sent_ms;
  uint64_t start = akr_now_us();
  akr_request_frame f;
  const akr_link_conf *conf = link->conf;
  unsigned memfd = AKR_MEMFD_SEND | (conf->memfd_replies ? AKR_MEMFD_REPLIES : 0);
  ackrpc_status st =
      akr_request_frame_encode(&f, ids, a, o, sent_ms, 1, conf, memfd, r);
  if (st != ACKRPC_OK) return st;
  akr_ccall c = {.iov = f.iov,
                 .n_iov = f.n_iov,
                 .len = f.len,
                 .deadline_us = start + (uint64_t)wait * 1000u,
                 .timeout_ms = wait,
                 .reply_desc = a->reply_desc,
                 .result = r,
                 .fds = f.fds,
                 .n_fds = f.n_fds,
                 .max_reply_fds = o ? o->max_reply_fds : 0};
  /* A body built in a memfd, for a server known not to take them. */
  if (f.resend.fd >= 0 && akr_memo_refuses(conf->memo) &&
      akr_resend_inline(&f.resend, &c) != 0) {
    akr_request_frame_free(&f);
    return akr_result_fail(r, ACKRPC_E_SYSTEM, errno, "mapping the request body");
  }
  for (;;) {
    akr_link_push(link, &c);
    akr_poll_until(link, &c, akr_now_us());
    /* A call the engine still holds (its connection is being dropped) is
     * let go with the connection: it lives on this stack. */
    if (!c.released) akr_io_close(link, 0);
    akr_link_pop(link);
    /* The server refused the body's memfd without running the call: the
     * same call again, its body inline (docs/PROTOCOL.md §2.6), within the
     * same deadline. A one-shot connection is over: a new one. */
    if (!akr_resend_wanted(&f.resend, conf->memo, r->status, c.memfd_read) ||
        akr_resend_inline(&f.resend, &c) != 0)
      break;
    if (link->mode == AKR_LINK_ONE_SHOT) akr_io_close(link, 0);
    akr_result_keep_id(r);
  }
  akr_request_frame_free(&f);
  return r->status;
}

ackrpc_status akr_blocking_refuse(ackrpc_result *ret_result, const char *why) {
  if (!ret_result) return ACKRPC_E_INVAL;
  memset(ret_result, 0, sizeof *ret_result);
  return akr_result_fail(ret_result, ACKRPC_E_INVAL, 0, "%s", why);
}

static void sleep_us(uint64_t us) {
  struct timespec ts = {.tv_sec = (time_t)(us / 1000000u),
                        .tv_nsec = (long)(us % 1000000u) * 1000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Clears the result of a failed attempt for the next, keeping its call id. */
static void result_reset(ackrpc_result *r) {
  uint8_t id[ACKRPC_MAX_CALL_ID];
  size_t id_len = r->call_id_len;
  memcpy(id, r->call_id, id_len);
  ackrpc_result_clear(r);
  memcpy(r->call_id, id, id_len);
  r->call_id_len = id_len;
}

static ackrpc_status with_retries(akr_ids *ids, uint32_t default_ms,
                                  const akr_retry_rules *rules,
                                  const ackrpc_call_options *options, akr_attempt_fn fn,
                                  void *ctx, ackrpc_result *r) {
  uint64_t deadline =
      akr_now_us() + (uint64_t)akr_timeout_ms(options, default_ms) * 1000u;
  ackrpc_call_options o = options ? *options : (ackrpc_call_options){0};
  for (unsigned attempt = 1;; attempt++) {
    /* The request carries what is left of the call's deadline, so the
     * server keeps working on an attempt the client stops waiting for, and
     * a retry joins it (same call id); the attempt waits attempt_ms. */
    uint64_t now = akr_now_us();
    uint64_t left_ms = now < deadline ? (deadline - now) / 1000u : 0;
    o.timeout_ms = left_ms ? (uint32_t)left_ms : 1;
    if (attempt > 1) result_reset(r);
    ackrpc_status st = fn(ctx, &o, rules->attempt_ms, r);
    r->attempts = attempt;
    if (attempt >= rules->max_attempts || !akr_retryable(rules->retry_on, st))
      return st;
    uint64_t wait =
        akr_backoff_us(rules->initial_ms, rules->max_ms, attempt, &ids->rng);
    /* No attempt starts with less than a millisecond left. */
    if (akr_now_us() + wait + 1000u >= deadline) return st;
    sleep_us(wait);
  }
}

ackrpc_status akr_blocking_call(akr_ids *ids, uint32_t default_ms,
                                const akr_retry_rules *rules,
                                const ackrpc_call_options *options, akr_attempt_fn fn,
                                void *ctx, ackrpc_result *ret_result) {
  ackrpc_result local = {0};
  ackrpc_result *r = ret_result ? ret_result : &local;
  memset(r, 0, sizeof *r);
  akr_retry_rules own;
  ackrpc_status st;
  if (options && options->retry &&
      akr_retry_rules_make(options->retry, &own) != ACKRPC_OK) {
    st = akr_result_fail(
        r, ACKRPC_E_INVAL, 0,
        "the retry policy lists a status that is not a canonical code 1..16");
  } else {
    if (options && options->retry) rules = &own;
    if (rules->max_attempts <= 1) {
      r->attempts = 1;
      st = fn(ctx, options, 0, r);
    } else {
      st = with_retries(ids, default_ms, rules, options, fn, ctx, r);
    }
  }
  if (!ret_result) ackrpc_result_clear(&local);
  return st;
}
