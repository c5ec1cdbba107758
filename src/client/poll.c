/* poll.c: the blocking driver (poll.h). */
#include "client/poll.h"

#include <errno.h>
#include <poll.h>
#include <time.h>

#include "client/io.h"
#include "core/clock.h"

static void sleep_until(uint64_t until_us) {
  uint64_t now = akr_now_us();
  if (until_us <= now) return;
  uint64_t us = until_us - now;
  struct timespec ts = {.tv_sec = (time_t)(us / 1000000u),
                        .tv_nsec = (long)(us % 1000000u) * 1000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Waits for `events` on fd until `until_us` (`now` is the time, read by
 * the caller); returns the AKR_EV_* bits that are ready (0: the time came).
 * An error or hang-up counts as both, so that the next system call reports
 * it. */
static int wait_fd(int fd, int events, uint64_t now, uint64_t until_us) {
  for (;;) {
    if (now >= until_us) return 0;
    uint64_t left_ms = (until_us - now + 999) / 1000;
    struct pollfd p = {.fd = fd,
                       .events = (short)((events & AKR_EV_READ ? POLLIN : 0) |
                                         (events & AKR_EV_WRITE ? POLLOUT : 0))};
    int n = poll(&p, 1, left_ms > INT32_MAX ? INT32_MAX : (int)left_ms);
    if (n > 0) {
      if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return AKR_EV_READ | AKR_EV_WRITE;
      return (p.revents & POLLIN ? AKR_EV_READ : 0) |
             (p.revents & POLLOUT ? AKR_EV_WRITE : 0);
    }
    /* 0, or EINTR: check the time again (poll may wake early) */
    now = akr_now_us();
  }
}

void akr_poll_until(akr_link *l, const akr_ccall *call, uint64_t now) {
  akr_io_run(l, 0, now);
  while (!call->completed) {
    int events;
    uint64_t until;
    int ready = 0;
    switch (akr_link_wait(l, now, &events, &until)) {
    case AKR_WAIT_NONE: return;
    case AKR_WAIT_CONNECT: break;
    case AKR_WAIT_TIMER: sleep_until(until); break;
    case AKR_WAIT_IO: ready = wait_fd(l->fd, events, now, until); break;
    }
    /* One clock read a wake-up: the engine's decisions and the next wait
     * share it. */
    now = akr_now_us();
    akr_io_run(l, ready, now);
  }
}
