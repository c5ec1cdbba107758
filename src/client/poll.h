/* poll.h: the blocking driver of the engine (internal: not installed): runs
 * a link with poll() until a call completes. Needs no event loop; signals
 * (EINTR) neither shorten nor break a wait. */
#ifndef AKR_CLIENT_POLL_H
#define AKR_CLIENT_POLL_H

#include <stdint.h>

#include "client/engine.h"

/* Drives `link` until `call` (queued on it) is completed; every wait is
 * bounded by the calls' deadlines. `now_us` is the time (the caller has
 * just read it). Calls the engine releases are left to their owners (the
 * blocking paths own theirs on the stack). */
void akr_poll_until(akr_link *link, const akr_ccall *call, uint64_t now_us);

#endif /* AKR_CLIENT_POLL_H */
