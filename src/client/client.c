/* client.c: the client object (include/ackrpc/client.h): its options, and
 * what every call of it shares. The calls are in blocking.c, session.c,
 * async.c and async_session.c, all over one engine (engine.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_REPLY (4u << 20)
#define DEFAULT_MAX_REPLY_DEPTH 100

ackrpc_status ackrpc_client_new(const ackrpc_client_options *options,
                                ackrpc_client **ret_client) {
  if (!options || !ret_client || !options->address) return ACKRPC_E_INVAL;
  akr_address addr;
  ackrpc_status st = akr_address_parse(options->address, &addr);
  if (st != ACKRPC_OK) return st;
  akr_retry_rules rules;
  if (akr_retry_rules_make(options->retry, &rules) != ACKRPC_OK) return ACKRPC_E_INVAL;
  if ((unsigned)options->server_check > ACKRPC_SERVER_CHECK_NONE) return ACKRPC_E_INVAL;
  ackrpc_client *c = calloc(1, sizeof *c);
  if (!c) return ACKRPC_E_NOMEM;
  c->conf.addr = addr;
  c->conf.max_reply =
      options->max_reply_size ? options->max_reply_size : DEFAULT_MAX_REPLY;
  c->conf.max_depth =
      options->max_reply_depth ? options->max_reply_depth : DEFAULT_MAX_REPLY_DEPTH;
  c->conf.server_check = options->server_check;
  c->conf.server_uid = options->server_uid;
  /* 0: requests inline, replies taken in a memfd; SIZE_MAX: neither. */
  size_t t = options->memfd_threshold;
  c->conf.memfd_min = t == SIZE_MAX ? 0 : t;
  c->conf.memfd_replies = t != SIZE_MAX;
  c->conf.memo = akr_memo_new();
  if (!c->conf.memo) {
    free(c);
    return ACKRPC_E_NOMEM;
  }
  c->timeout_ms = options->timeout_ms ? options->timeout_ms : DEFAULT_TIMEOUT_MS;
  c->retry = rules;
  akr_ids_init(&c->ids, c);
  c->pool_max = options->pool_size;
  pthread_mutex_init(&c->pool_mu, NULL);
  *ret_client = c;
  return ACKRPC_OK;
}

ackrpc_client *ackrpc_client_free(ackrpc_client *client) {
  if (!client) return NULL;
  akr_pool_drain(client);
  pthread_mutex_destroy(&client->pool_mu);
  akr_memo_unref(client->conf.memo);
  free(client);
  return NULL;
}
