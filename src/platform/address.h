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

/* A bound, listening socket, and for a path the lock that says this
 * process owns the path. */
typedef struct akr_listener {
  int fd;
  int lock_fd; /* -1 for abstract addresses */
  char lock_path[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
} akr_listener;

/* Creates a listening, non-blocking, close-on-exec socket bound to the
 * address. For a path, in this order:
 *   - the parent directory must not let other users replace the socket
 *     (E_UNSAFE_DIR): owned by us or root, and not world-writable unless
 *     sticky;
 *   - "PATH.lock" is created and flock()ed for the listener's lifetime; held
 *     by another process: E_ADDR_IN_USE ("another server is serving PATH");
 *     the kernel drops it if we crash, so a restart finds it free;
 *   - with the lock held, a stale socket file is removed; a symlink or any
 *     other non-socket file is left alone (E_EXISTS); a socket that still
 *     accepts (a server that takes no lock) gives E_ADDR_IN_USE;
 *   - the socket is bound with owner-only permissions, given `group` (unless
 *     (gid_t)-1), then set to `mode`: it is never wider than `mode`.
 * On failure nothing is left behind and *ret is untouched. */
ackrpc_status akr_listen(const akr_address *address, mode_t mode, gid_t group,
                         int backlog, akr_listener *ret);

/* Closes the socket and, for a path, removes the socket file and the lock
 * file before releasing the lock (so a successor never sees a half-removed
 * state). Idempotent. */
void akr_unlisten(const akr_address *address, akr_listener *listener);

/* Closes the listener's descriptors but leaves the socket file and the
 * lock file in place: for a socket that now belongs to someone else (a
 * successor that took it over, or systemd). Idempotent. */
void akr_unlisten_keep(akr_listener *listener);

/* Checks that the directory holding `path` does not let other users replace
 * files in it (the rule of akr_listen()): OK, E_UNSAFE_DIR or E_SYSTEM. */
ackrpc_status akr_check_parent(const char *path);

/* --- Socket activation (activation.c) --- */

/* The prefix of an inherited-socket address: "systemd:" or "systemd:NAME". */
#define AKR_SYSTEMD_PREFIX "systemd:"

/* Finds the listening socket systemd passed to this process (LISTEN_PID,
 * LISTEN_FDS, LISTEN_FDNAMES, as sd_listen_fds(3) documents them; read and
 * checked, not trusted): with `name` empty, the only one passed; else the
 * one named `name`. Checks that it is a listening Unix stream socket and
 * makes it non-blocking and close-on-exec. The environment is left as it
 * is. Errors: E_NOT_FOUND (none passed to this process, none of that name,
 * or several and no name), E_ADDRESS (malformed variables, or the
 * descriptor is not a listening Unix stream socket). */
ackrpc_status akr_inherit(const char *name, int *ret_fd);

/* Starts a non-blocking connect. Returns 0, or -1 with errno (EAGAIN: the
 * server's queue is full). *ret_fd is set on success only. */
int akr_connect(const akr_address *address, int *ret_fd);

#endif /* AKR_ADDRESS_H */
