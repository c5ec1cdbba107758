/* files_method.h: the fdpass example's one method, for ackrpc's generic API.
 * Its reply carries one descriptor: the server registers nothing for that
 * (only requests need ackrpc_server_set_method_fds()); the client accepts it
 * with ackrpc_call_options.max_reply_fds. */
#ifndef ACKRPC_EXAMPLE_FILES_METHOD_H
#define ACKRPC_EXAMPLE_FILES_METHOD_H

#include <ackrpc/common.h>

#include "files.pb-c.h"

static const ackrpc_method files_open_method = {
    .name = "ackrpc.example.Files/Open",
    .request = &ackrpc__example__open_request__descriptor,
    .reply = &ackrpc__example__open_reply__descriptor,
};

#endif /* ACKRPC_EXAMPLE_FILES_METHOD_H */
