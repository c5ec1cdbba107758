/* server_internal.h: hooks into the server for tests and fuzz targets.
 * Internal: not installed. */
#ifndef AKR_SERVER_INTERNAL_H
#define AKR_SERVER_INTERNAL_H

#include "ackrpc/server.h"

/* Serves an already connected stream socket (e.g. one end of a
 * socketpair) as if it had been accepted; the server owns `fd` afterwards.
 * Returns 0, or -1 if the server is stopping. Loop thread only. */
int akr_server_adopt(ackrpc_server *server, int fd);

#endif /* AKR_SERVER_INTERNAL_H */
