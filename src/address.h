/* address.h: parsing socket addresses and owning a socket file.
 * Internal: not installed. */
#ifndef AKR_ADDRESS_H
#define AKR_ADDRESS_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "ackrpc/status.h"

typedef struct akr_address {
  struct sockaddr_un sa;
  socklen_t len;
  int abstract; /* "@name": no file in the file system */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* file, for unlink */
} akr_address;

/* Parses "/path" (or any relative path) or "@name". E_ADDRESS if empty, too
 * long for sun_path (never truncated), or "@" alone. */
ackrpc_status akr_address_parse(const char *text, akr_address *ret_address);

/* Creates a listening, non-blocking, close-on-exec socket bound to the
 * address. For a path: the socket's mode is set before bind() so the file
 * never exists with looser permissions; a stale socket file is replaced, a
 * live one refused (E_ADDR_IN_USE), anything else refused (E_EXISTS). */
ackrpc_status akr_listen(const akr_address *address, mode_t mode, int backlog,
                         int *ret_fd);

/* Starts a non-blocking connect. Returns 0, or -1 with errno (EAGAIN: the
 * server's queue is full). *ret_fd is set on success only. */
int akr_connect(const akr_address *address, int *ret_fd);

#endif /* AKR_ADDRESS_H */
