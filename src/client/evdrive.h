/* evdrive.h: the libevent driver of the engine (internal: not installed):
 * watches a link's connection and deadlines on a caller's event_base and
 * calls its owner back when the link may make progress. The asynchronous
 * call (async.c) and the asynchronous session (async_session.c) use it.
 *
 * The read/write interest is one persistent event, changed only when what
 * the link waits for changes (a session at rest costs no epoll_ctl per
 * call); deadlines are one timer; `kick` runs the owner from the loop (so
 * that no callback ever runs inside the call that started it). */
#ifndef AKR_CLIENT_EVDRIVE_H
#define AKR_CLIENT_EVDRIVE_H

#include <event2/event.h>
#include <event2/event_struct.h>

#include "client/engine.h"

typedef struct akr_evdrive {
  struct event_base *base;
  struct event io, timer, kick;
  int fd;         /* the descriptor `io` watches; -1: none */
  short watching; /* its EV_READ/EV_WRITE interest; 0: not added */
  int ready;      /* AKR_EV_* seen since the owner last took them */
  void (*run)(void *arg);
  void *arg;
} akr_evdrive;

/* Sets up the events (nothing is added yet). `run(arg)` is called, on the
 * loop, whenever the link may make progress. */
void akr_evdrive_init(akr_evdrive *d, struct event_base *base, void (*run)(void *),
                      void *arg);
/* Makes `link` tell the driver before its descriptor is closed. */
void akr_evdrive_attach(akr_evdrive *d, akr_link *link);
/* Waits for what the link waits for (akr_link_wait() at `now_us`). */
void akr_evdrive_arm(akr_evdrive *d, const akr_link *link, uint64_t now_us);
/* Calls `run` at `until_us` (and no read or write interest). */
void akr_evdrive_sleep(akr_evdrive *d, uint64_t until_us);
/* Calls `run` from the loop as soon as possible. */
void akr_evdrive_kick(akr_evdrive *d);
/* The readiness seen since the last call (AKR_EV_* bits). */
int akr_evdrive_take_ready(akr_evdrive *d);
/* Removes every event (before the driver's memory is freed). */
void akr_evdrive_stop(akr_evdrive *d);

#endif /* AKR_CLIENT_EVDRIVE_H */
