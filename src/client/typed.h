/* typed.h: a call of a method whose messages have ackrpc.Fd fields
 * (internal: not installed). The entry points that take a message
 * (ackrpc_client_call(), ackrpc_session_call(), the asynchronous calls)
 * send a copy of the request whose Fd fields hold indices, with the
 * descriptors as the call's, and accept as many reply descriptors as the
 * reply type holds; akr_result_from_reply() binds them into the reply.
 * Calls of other methods pass through unchanged. */
#ifndef AKR_CLIENT_TYPED_H
#define AKR_CLIENT_TYPED_H

#include <protobuf-c/protobuf-c.h>

#include "ackrpc/client.h"
#include "wire/fdfields.h"

typedef struct akr_typed {
  const ProtobufCMessage *request;    /* to send */
  const ackrpc_call_options *options; /* to use: the caller's or `opts` */
  ackrpc_call_options opts;
  akr_fdfields_out out;
  char why[200]; /* on error */
} akr_typed;

/* Prepares `t` (which must not move until akr_typed_end()). Returns OK, or
 * E_INVAL (a singular Fd field absent, a negative descriptor, descriptors
 * both in Fd fields and in options->fds, more than 253) or E_NOMEM with
 * t->why set. */
ackrpc_status akr_typed_begin(akr_typed *t, const ackrpc_method *method,
                              const ProtobufCMessage *request,
                              const ackrpc_call_options *options);
void akr_typed_end(akr_typed *t);

/* A blocking call's refusal by akr_typed_begin(): `r` (may be NULL)
 * zeroed and failed with `st` and `why`. Returns st. */
ackrpc_status akr_typed_refuse(ackrpc_result *r, ackrpc_status st, const char *why);

#endif /* AKR_CLIENT_TYPED_H */
