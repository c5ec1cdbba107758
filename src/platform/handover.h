/* handover.h: handing a server's listening socket to its successor, for
 * restarts that refuse no connection (internal: not installed;
 * docs/OPERATIONS.md).
 *
 * A server started with the `handover` option listens on a control socket,
 * "PATH.ctl" (owner-only file) or "@NAME.ctl", beside its address. A
 * successor connects to it and the two speak, in 8-byte messages:
 *
 *   successor -> "AKTAKE01"
 *   predecessor -> "AKFDS001" with SCM_RIGHTS: the listening socket and,
 *                  for a path, the lock file PATH.lock (flock() locks belong
 *                  to the open file, so the lock passes with it)
 *   successor -> "AKACK001" once it has checked the descriptors
 *   predecessor: closes and removes its control socket, then the
 *                connection (the successor waits for that EOF before it
 *                creates its own control socket), and stops accepting.
 *
 * Both ends check that the other runs as their effective uid
 * (SO_PEERCRED) before anything else; the successor checks what it
 * receives (how many descriptors, that the socket listens on the very
 * address, that the lock is PATH.lock, that PATH is still a socket of
 * ours, after checking every directory on the way as akr_listen() does) and
 * closes everything on any doubt. A predecessor whose socket file was
 * removed or replaced answers "AKLOST01" instead of "AKFDS001" and keeps
 * serving.
 * The listening socket is one kernel object the whole time: connections
 * that arrive while neither process accepts wait in its queue.
 *
 * The predecessor's side never blocks: it is a step function driven by the
 * server's loop, so a stalled or dead successor cannot stall calls. */
#ifndef AKR_HANDOVER_H
#define AKR_HANDOVER_H

#include <stddef.h>

#include "platform/address.h"

/* The control socket of a server that offers its listening socket. */
typedef struct akr_ctl {
  int fd; /* listening, non-blocking; -1: none */
  akr_address addr;
  dev_t dev; /* the file bound, removed only if still there */
  ino_t ino;
} akr_ctl;

/* The control address of `address`: "PATH.ctl" or "@NAME.ctl".
 * E_ADDRESS if it would not fit. */
ackrpc_status akr_ctl_address(const akr_address *address, akr_address *ret);

/* Creates the control socket (owner-only for a path; a stale file is
 * replaced: call with the address's lock held). */
ackrpc_status akr_ctl_listen(const akr_address *address, akr_ctl *ret);

/* Closes the control socket and removes its file if the path still names
 * the file it bound. Idempotent. */
void akr_ctl_close(akr_ctl *ctl);

/* --- The predecessor's side: one exchange at a time --- */

typedef struct akr_ctl_peer {
  int fd;      /* the successor's connection (non-blocking); -1: none */
  int sent;    /* the descriptors went out; the acknowledgement is awaited */
  char buf[8]; /* the message being received */
  size_t got;
} akr_ctl_peer;

typedef enum akr_ctl_step_result {
  AKR_CTL_MORE,   /* wait until the connection is readable, then step again */
  AKR_CTL_HANDED, /* handed over: close the control socket, then the peer; stop
                   * accepting; keep the socket and lock files */
  AKR_CTL_FAILED, /* *ret_why says why; close the peer */
} akr_ctl_step_result;

/* Accepts one connection on the control socket without blocking. 1: a peer
 * of our effective uid, in *ret_peer; 0: nobody was waiting; -1: refused
 * and closed (*ret_why says why: static text). */
int akr_ctl_accept(akr_ctl *ctl, akr_ctl_peer *ret_peer, const char **ret_why);

/* Advances the exchange with whatever the successor has sent, without
 * blocking: answers its request with the listener's descriptors, then
 * takes its acknowledgement. If the listener's socket file is no longer at
 * its path (akr_listener_reachable()), it answers "AKLOST01" instead and
 * fails: nobody could reach the listener through the successor either. On HANDED the
 * caller closes the control socket (akr_ctl_close()) and only then the peer: the
 * successor waits for the peer's end before it creates its own control socket. */
akr_ctl_step_result akr_ctl_step(akr_ctl_peer *peer, const akr_listener *listener,
                                 const char **ret_why);

/* Closes the peer's connection. Idempotent. */
void akr_ctl_peer_close(akr_ctl_peer *peer);

/* --- The successor's side --- */

/* Asks the server that offers `address` for its listening socket (and, for
 * a path, its lock); blocks a few seconds at most (it runs before the
 * successor's loop does). On OK, *ret_listener holds both, checked: a
 * listening Unix stream socket bound to `address`, the lock file PATH.lock,
 * and PATH still a socket file of our uid (recorded, with the lock's, for
 * akr_unlisten()), in a directory that passes akr_safe_dir_open(); the
 * predecessor has let go of its control socket.
 * E_NOT_FOUND: nobody offers it (no control socket, or nobody listening on
 * it); then nothing changed. E_UNSAFE_DIR: a directory on the way is
 * unsafe. Other errors (E_SYSTEM; E_ADDRESS for bad descriptors, a peer of
 * another uid, or a socket file that was removed or replaced) mean a
 * predecessor answered but the handover failed: it keeps serving. `why`
 * (AKR_WHY_MAX bytes) receives a sentence for the log, or "". */
ackrpc_status akr_takeover(const akr_address *address, akr_listener *ret_listener,
                           char *why);

#endif /* AKR_HANDOVER_H */
