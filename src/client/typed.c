/* typed.c: calls of methods with ackrpc.Fd fields (typed.h). */
#include "client/typed.h"

#include <string.h>

#include "client/result.h"
#include "platform/fdpass.h"

ackrpc_status akr_typed_begin(akr_typed *t, const ackrpc_method *method,
                              const ProtobufCMessage *request,
                              const ackrpc_call_options *options) {
  memset(t, 0, sizeof *t);
  t->request = request;
  t->options = options;
  unsigned in = akr_fdfields_capacity(method->request, AKR_FDS_MAX);
  unsigned out = akr_fdfields_capacity(method->reply, AKR_FDS_MAX);
  if (!in && !out) return ACKRPC_OK;
  if (options) t->opts = *options;
  t->options = &t->opts;
  if (!t->opts.max_reply_fds) t->opts.max_reply_fds = out;
  if (!in) return ACKRPC_OK;
  int nomem;
  if (akr_fdfields_pack(request, AKR_FDS_MAX, &t->out, &nomem, t->why, sizeof t->why))
    return nomem ? ACKRPC_E_NOMEM : ACKRPC_E_INVAL;
  t->request = t->out.msg;
  if (t->out.n_fds && t->opts.n_fds) {
    akr_fdfields_out_free(&t->out);
    strcpy(t->why, "descriptors both in ackrpc.Fd fields and in the call's options");
    return ACKRPC_E_INVAL;
  }
  if (t->out.n_fds) {
    t->opts.fds = t->out.fds;
    t->opts.n_fds = t->out.n_fds;
  }
  return ACKRPC_OK;
}

void akr_typed_end(akr_typed *t) {
  akr_fdfields_out_free(&t->out);
}

ackrpc_status akr_typed_refuse(ackrpc_result *r, ackrpc_status st, const char *why) {
  if (!r) return st;
  memset(r, 0, sizeof *r);
  return akr_result_fail(r, st, 0, "%s", why);
}
