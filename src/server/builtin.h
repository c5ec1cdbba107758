/* builtin.h: the services every server answers unless
 * options.disable_builtins is set (internal: not installed). */
#ifndef AKR_BUILTIN_H
#define AKR_BUILTIN_H

#include "server/server_internal.h"

/* Registers the built-in services on a new server: E_NOMEM, E_EXISTS. */
ackrpc_status akr_builtins_register(ackrpc_server *server);

#endif /* AKR_BUILTIN_H */
