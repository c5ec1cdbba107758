/* server_internal.h: hooks into the server for tests, fuzz targets and the
 * built-in services (builtin.c). Internal: not installed. */
#ifndef AKR_SERVER_INTERNAL_H
#define AKR_SERVER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ackrpc/server.h"

/* Serves an already connected stream socket (e.g. one end of a
 * socketpair) as if it had been accepted; the server owns `fd` afterwards.
 * Returns 0, or -1 if the server is stopping. Loop thread only. */
int akr_server_adopt(ackrpc_server *server, int fd);

/* ackrpc_server_add_service_info(), marking the server's own services
 * (listed last). */
ackrpc_status akr_server_add_service(ackrpc_server *server, const ackrpc_service *svc,
                                     int builtin);

/* The services recorded, in order, and which are built in. */
size_t akr_server_services(const ackrpc_server *server,
                           const ackrpc_service *const **ret_services,
                           const unsigned char **ret_builtin);

/* Calls fn for every registered method, with its order of registration. */
void akr_server_foreach_method(const ackrpc_server *server,
                               void (*fn)(void *user, const ackrpc_method *m,
                                          unsigned seq),
                               void *user);

/* Whether the server still accepts: not stopping, not handed over. */
int akr_server_serving(const ackrpc_server *server);

/* Microseconds since ackrpc_server_new(). */
uint64_t akr_server_uptime_us(const ackrpc_server *server);

/* Bytes of large buffers kept for the next large call (spare.h). Loop
 * thread only. */
size_t akr_server_spare_bytes(const ackrpc_server *server);

/* Registers the built-in services (builtin.c) on a new server. */
ackrpc_status akr_builtins_register(ackrpc_server *server);

#endif /* AKR_SERVER_INTERNAL_H */
