/* client_internal.h: the client objects the client's files share
 * (internal: not installed). */
#ifndef AKR_CLIENT_INTERNAL_H
#define AKR_CLIENT_INTERNAL_H

#include <pthread.h>

#include "ackrpc/client.h"
#include "client/engine.h"
#include "client/request.h"
#include "client/retry.h"
#include "platform/address.h"

/* A client holds only configuration (and the session pool, under its
 * lock), so one client serves any number of threads. */
struct ackrpc_client {
  akr_link_conf conf; /* address and limits, copied by what outlives it */
  uint32_t timeout_ms;
  akr_ids ids;
  akr_retry_rules retry;
  /* the session pool (pool_max 0: none) */
  unsigned pool_max, n_idle;
  ackrpc_session *idle;
  pthread_mutex_t pool_mu;
};

/* A blocking session: a link kept between calls (session.c). */
struct ackrpc_session {
  akr_link_conf conf; /* the client's */
  uint32_t timeout_ms;
  akr_ids ids;
  akr_retry_rules retry; /* the client's when opened; none for pooled ones */
  akr_link link;         /* its conf is `conf` above */
  ackrpc_session *next_idle;
};

/* One attempt of a blocking call: the frame encoded in place, queued on
 * `link` (connected or not) and driven with poll() until it completes.
 * The timeout sent is the options' or `default_ms`; the attempt waits at
 * most `wait_ms` (0: the timeout) for its ack. Returns the call's status,
 * also in r. */
ackrpc_status akr_link_call(akr_link *link, akr_ids *ids, const akr_call_args *args,
                            const ackrpc_call_options *options, uint32_t default_ms,
                            uint32_t wait_ms, ackrpc_result *r);

/* A call through the client's session pool (session.c). */
ackrpc_status akr_pool_call(ackrpc_client *client, const akr_call_args *args,
                            const ackrpc_call_options *options, uint32_t wait_ms,
                            ackrpc_result *r);

/* Empties the client's session pool (session.c). */
void akr_pool_drain(ackrpc_client *client);

#endif /* AKR_CLIENT_INTERNAL_H */
