/* stubfds.c: the server half of ackrpc.Fd fields (include/ackrpc/server.h,
 * docs/PROTOCOL.md §2.5 "Descriptor fields"): the request's descriptors
 * written into its Fd fields once they check out, and a reply whose Fd
 * fields hold descriptors sent with them, each field carrying its index.
 * The message walking is wire/fdfields.c's. */
#include <stdint.h>

#include "server/call.h"
#include "wire/fdfields.h"

ackrpc_status ackrpc_call_bind_fds(ackrpc_call *call, const ProtobufCMessage *request) {
  if (!call || !request) return ACKRPC_E_INVAL;
  char why[256];
  /* The request belongs to the call, which decoded it: writable. */
  ProtobufCMessage *m = (ProtobufCMessage *)(uintptr_t)request;
  if (akr_fdfields_bind(m, call->fds.fds, call->fds.n, why, sizeof why) == 0)
    return ACKRPC_OK;
  akr_fd_batch_close(&call->fds); /* refused: every descriptor closed at once */
  ackrpc_call_reply(call, ACKRPC_INVALID_ARGUMENT, why, NULL);
  return ACKRPC_INVALID_ARGUMENT;
}

ackrpc_status ackrpc_call_reply_fd_fields(ackrpc_call *call, ackrpc_status status,
                                          const char *message,
                                          const ProtobufCMessage *reply) {
  if (!reply) return ackrpc_call_reply(call, status, message, NULL);
  akr_fdfields_out out;
  int nomem;
  char why[256];
  if (akr_fdfields_pack(reply, AKR_FDS_MAX, &out, &nomem, why, sizeof why) != 0) {
    akr_fdfields_close(reply, 0); /* the library's, whatever happens */
    ackrpc_status st = ackrpc_call_reply(call, ACKRPC_INTERNAL, why, NULL);
    return st == ACKRPC_OK ? (nomem ? ACKRPC_E_NOMEM : ACKRPC_E_INVAL) : st;
  }
  ackrpc_status st =
      ackrpc_call_reply_fds(call, status, message, out.msg, out.fds, out.n_fds);
  akr_fdfields_out_free(&out);
  return st;
}
