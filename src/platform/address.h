/* address.h: parsing socket addresses and owning a socket file.
 * Internal: not installed. */
#ifndef AKR_ADDRESS_H
#define AKR_ADDRESS_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "ackrpc/status.h"
#include "platform/safe_path.h"

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
 * process owns the path, the directory that holds both, and which files
 * they are: the server removes a file at stop only if it is still the very
 * file it created (or received), found through that directory. */
typedef struct akr_listener {
  int fd;
  int lock_fd; /* -1 for abstract addresses */
  int dir_fd;  /* O_PATH, the checked directory; -1 for abstract addresses */
  dev_t sock_dev, lock_dev;
  ino_t sock_ino, lock_ino; /* 0: not known, never removed */
  char name[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* in dir_fd */
  char lock_name[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
} akr_listener;

/* An empty listener: every descriptor -1, nothing to remove. */
#define AKR_LISTENER_NONE                                                              \
  { .fd = -1, .lock_fd = -1, .dir_fd = -1 }

/* Creates a listening, non-blocking, close-on-exec socket bound to the
 * address. For a path, in this order:
 *   - every directory on the way to the socket, from "/", must not let
 *     other users replace what it holds (E_UNSAFE_DIR; safe_path.h): owned
 *     by us or root, and writable by neither group nor others unless sticky;
 *   - "PATH.lock" is created (or opened: it must be a regular file of ours,
 *     not a symlink, FIFO or device: E_EXISTS) and flock()ed for the
 *     listener's lifetime; held by another process: E_ADDR_IN_USE ("another
 *     server is serving PATH"); the kernel drops it if we crash, so a
 *     restart finds it free;
 *   - with the lock held, a stale socket file is removed; a symlink or any
 *     other non-socket file is left alone (E_EXISTS); a socket that still
 *     accepts (a server that takes no lock) gives E_ADDR_IN_USE;
 *   - the socket is bound with owner-only permissions and listens at once
 *     (the file appears at bind(); a connect before listen() is refused),
 *     then is given `group` (unless (gid_t)-1) and set to `mode`: it is
 *     never wider than `mode`.
 * On failure nothing is left behind, *ret is untouched, and if `why` is not
 * NULL and the failure has a reason worth a log line (an unsafe directory),
 * `why` (AKR_WHY_MAX bytes) says which directory and why; else it is "". */
ackrpc_status akr_listen(const akr_address *address, mode_t mode, gid_t group,
                         int backlog, akr_listener *ret, char *why);

/* Closes the socket and, for a path, removes the socket file and the lock
 * file before releasing the lock (so a successor never sees a half-removed
 * state), each only if the name in the listener's directory still is the
 * file recorded: a file someone put in its place is left alone. Idempotent. */
void akr_unlisten(akr_listener *listener);

/* Closes the listener's descriptors but leaves the socket file and the
 * lock file in place: for a socket that now belongs to someone else (a
 * successor that took it over, or systemd). Idempotent. */
void akr_unlisten_keep(akr_listener *listener);

/* 1 if the listener's socket file is still at its path, the very file it
 * created or received (always 1 for an abstract address); 0 if it was
 * removed or replaced, so that no client can reach the listener. */
int akr_listener_reachable(const akr_listener *listener);

/* Records, for a listener received from a predecessor (fd and lock_fd set,
 * dir_fd the checked directory of `address`), its names and its files: the
 * lock must be the regular file "PATH.lock" names, and "PATH" a socket of
 * our effective uid. E_ADDRESS if either does not hold. */
ackrpc_status akr_listener_adopt(const akr_address *address, akr_listener *listener);

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
