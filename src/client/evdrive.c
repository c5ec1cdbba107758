/* evdrive.c: the libevent driver (evdrive.h). */
#include "client/evdrive.h"

#include "core/clock.h"

static void on_io(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  akr_evdrive *d = arg;
  if (what & EV_READ) d->ready |= AKR_EV_READ;
  if (what & EV_WRITE) d->ready |= AKR_EV_WRITE;
  d->run(d->arg);
}

static void on_wake(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  akr_evdrive *d = arg;
  d->run(d->arg);
}

void akr_evdrive_init(akr_evdrive *d, struct event_base *base, void (*run)(void *),
                      void *arg) {
  d->base = base;
  d->fd = -1;
  d->watching = 0;
  d->ready = 0;
  d->run = run;
  d->arg = arg;
  event_assign(&d->io, base, -1, 0, on_io, d);
  evtimer_assign(&d->timer, base, on_wake, d);
  evtimer_assign(&d->kick, base, on_wake, d);
}

/* Sets the interest on `fd`: 0, EV_READ, EV_WRITE or both. */
static void watch(akr_evdrive *d, int fd, short what) {
  if (d->fd == fd && d->watching == what) return;
  if (d->watching) event_del(&d->io);
  d->watching = 0;
  d->fd = fd;
  if (!what || fd < 0) return;
  event_assign(&d->io, d->base, fd, what | EV_PERSIST, on_io, d);
  event_add(&d->io, NULL);
  d->watching = what;
}

static void forget(void *arg) {
  akr_evdrive *d = arg;
  watch(d, -1, 0); /* before the descriptor is closed, never after */
}

void akr_evdrive_attach(akr_evdrive *d, akr_link *link) {
  link->before_close = forget;
  link->before_close_arg = d;
}

static void wake_at(akr_evdrive *d, uint64_t until_us) {
  if (until_us == UINT64_MAX) {
    evtimer_del(&d->timer);
    return;
  }
  struct timeval tv = akr_tv_until(until_us);
  evtimer_add(&d->timer, &tv);
}

void akr_evdrive_arm(akr_evdrive *d, const akr_link *l, uint64_t now) {
  int events;
  uint64_t until;
  switch (akr_link_wait(l, now, &events, &until)) {
  case AKR_WAIT_NONE:
    watch(d, l->fd, 0);
    evtimer_del(&d->timer);
    return;
  case AKR_WAIT_CONNECT: akr_evdrive_kick(d); return;
  case AKR_WAIT_TIMER: watch(d, l->fd, 0); break;
  case AKR_WAIT_IO:
    watch(d, l->fd,
          (short)((events & AKR_EV_READ ? EV_READ : 0) |
                  (events & AKR_EV_WRITE ? EV_WRITE : 0)));
    break;
  }
  wake_at(d, until);
}

void akr_evdrive_sleep(akr_evdrive *d, uint64_t until_us) {
  watch(d, -1, 0);
  wake_at(d, until_us);
}

void akr_evdrive_kick(akr_evdrive *d) {
  if (!event_pending(&d->kick, EV_TIMEOUT, NULL)) event_active(&d->kick, EV_TIMEOUT, 0);
}

int akr_evdrive_take_ready(akr_evdrive *d) {
  int r = d->ready;
  d->ready = 0;
  return r;
}

void akr_evdrive_stop(akr_evdrive *d) {
  watch(d, -1, 0);
  event_del(&d->timer);
  event_del(&d->kick);
}
