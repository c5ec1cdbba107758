/* io.h: the system calls that move a link (internal: not installed):
 * connect, send, half-close, read and close, each reported to the engine
 * (engine.h). The drivers call akr_io_run() when the link may make progress
 * and then wait for what akr_link_wait() says: poll() for blocking calls
 * (poll.c), libevent for asynchronous ones (evdrive.c). Nothing here
 * blocks: the sockets are non-blocking. */
#ifndef AKR_CLIENT_IO_H
#define AKR_CLIENT_IO_H

#include <stdint.h>

#include "client/engine.h"

/* Does what the link can do now: connects if it must, sends what is queued,
 * half-closes a one-shot link once its frame is out, reads replies if
 * `ready` has AKR_EV_READ (or a write failed), closes a connection that
 * ended or that the engine dropped. `ready`: the readiness the driver saw
 * (AKR_EV_* bits), 0 right after queueing a call. Deadlines are checked at
 * `now_us` first. */
void akr_io_run(akr_link *link, int ready, uint64_t now_us);

/* Closes the link's connection, if any, settling its calls as a connection
 * that ended (akr_link_closed()). With `shut`, half-closes first: the
 * orderly end of a session. */
void akr_io_close(akr_link *link, int shut);

#endif /* AKR_CLIENT_IO_H */
