/* inbox_method.h: the demo's one RPC method, described for ackrpc's generic
 * API: its full name and the protoc-c descriptors of its messages.
 *
 * protoc-gen-ackrpc generates such tables (and typed wrappers); this demo
 * writes it by hand to show the generic API underneath. The server registers it with
 * ackrpc_server_add_method(), the client passes it to ackrpc_client_call().
 */
#ifndef ACKRPC_DEMO_INBOX_METHOD_H
#define ACKRPC_DEMO_INBOX_METHOD_H

#include <ackrpc/common.h>

#include "inbox.pb-c.h"

static const ackrpc_method inbox_deliver_method = {
    .name = "ackrpc.demo.Inbox/Deliver",
    .request = &ackrpc__demo__note__descriptor,
    .reply = &ackrpc__demo__receipt__descriptor,
};

#endif /* ACKRPC_DEMO_INBOX_METHOD_H */
