/* blocking.c: the blocking calls (include/ackrpc/client.h): one-shot calls
 * on their own connection, calls through the session pool, raw calls, and
 * the stubs' blocking call. Each is an attempt function for
 * akr_blocking_call() (attempt.c); the protocol itself is the engine's. */
#include <string.h>

#include "client/attempt.h"
#include "client/io.h"
#include "client/typed.h"
#include "wire/names.h"

#define REPLY_STACK 1024 /* replies up to this size are read on the stack */

typedef struct blocking_args {
  ackrpc_client *client;
  akr_call_args call;
} blocking_args;

/* A one-shot call: connect, send the frame, half-close, read the reply. */
static ackrpc_status one_shot(ackrpc_client *client, const akr_call_args *a,
                              const ackrpc_call_options *o, uint32_t wait_ms,
                              ackrpc_result *r) {
  uint8_t in[REPLY_STACK];
  akr_link link;
  akr_link_init(&link, &client->conf, AKR_LINK_ONE_SHOT, in, sizeof in);
  ackrpc_status st =
      akr_link_call(&link, &client->ids, a, o, client->timeout_ms, wait_ms, r);
  akr_io_close(&link, 0);
  akr_link_free(&link);
  return st;
}

static ackrpc_status raw_attempt(void *ctx, const ackrpc_call_options *o,
                                 uint32_t wait_ms, ackrpc_result *r) {
  blocking_args *a = ctx;
  return one_shot(a->client, &a->call, o, wait_ms, r);
}

ackrpc_status ackrpc_client_call_raw(ackrpc_client *client, const char *method,
                                     const uint8_t *body, size_t body_len,
                                     const ackrpc_call_options *options,
                                     ackrpc_result *ret_result) {
  if (!client || !method || !akr_method_name_valid(method) || (body_len && !body))
    return akr_blocking_refuse(ret_result, "missing argument or malformed method name");
  blocking_args a = {.client = client,
                     .call = {.method = method, .raw = body, .raw_len = body_len}};
  return akr_blocking_call(&client->ids, client->timeout_ms, &client->retry, options,
                           raw_attempt, &a, ret_result);
}

static ackrpc_status client_attempt(void *ctx, const ackrpc_call_options *o,
                                    uint32_t wait_ms, ackrpc_result *r) {
  blocking_args *a = ctx;
  if (a->client->pool_max) return akr_pool_call(a->client, &a->call, o, wait_ms, r);
  return one_shot(a->client, &a->call, o, wait_ms, r);
}

ackrpc_status ackrpc_client_call(ackrpc_client *client, const ackrpc_method *method,
                                 const ProtobufCMessage *request,
                                 const ackrpc_call_options *options,
                                 ackrpc_result *ret_result) {
  if (!client || !akr_call_args_ok(method, request))
    return akr_blocking_refuse(ret_result, "missing or mismatched argument");
  akr_typed t;
  ackrpc_status st = akr_typed_begin(&t, method, request, options);
  if (st != ACKRPC_OK) return akr_typed_refuse(ret_result, st, t.why);
  blocking_args a = {.client = client,
                     .call = {.method = method->name,
                              .request = t.request,
                              .reply_desc = method->reply}};
  st = akr_blocking_call(&client->ids, client->timeout_ms, &client->retry, t.options,
                         client_attempt, &a, ret_result);
  akr_typed_end(&t);
  return st;
}

ackrpc_status ackrpc_stub_call(ackrpc_client *client, const ackrpc_method *method,
                               const ProtobufCMessage *request,
                               ProtobufCMessage **ret_reply,
                               const ackrpc_call_options *options,
                               ackrpc_result *ret_result) {
  ackrpc_result local = {0};
  ackrpc_result *r = ret_result ? ret_result : &local;
  ackrpc_status st = ackrpc_client_call(client, method, request, options, r);
  if (st == ACKRPC_OK && ret_reply) {
    *ret_reply = r->reply;
    r->reply = NULL;
  }
  if (!ret_result) ackrpc_result_clear(&local);
  return st;
}
