/* takeover.c: handing a server's listening socket to its successor, for
 * restarts that refuse no connection (docs/OPERATIONS.md).
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
 * address, that the lock is PATH.lock) and closes everything on any doubt.
 * The listening socket is one kernel object the whole time: connections
 * that arrive while neither process accepts wait in its queue.
 */
#include "platform/address.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define MSG_LEN 8
static const char msg_take[MSG_LEN] = "AKTAKE01";
static const char msg_fds[MSG_LEN] = "AKFDS001";
static const char msg_ack[MSG_LEN] = "AKACK001";
#define IO_TIMEOUT_MS 3000 /* each step of the exchange */

static void set_timeouts(int fd, unsigned ms) {
  struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int peer_is_us(int fd) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
         cred.uid == geteuid();
}

/* Reads exactly MSG_LEN bytes; 0, or -1 (EOF, error, timeout). */
static int read_msg(int fd, char *buf) {
  size_t got = 0;
  while (got < MSG_LEN) {
    ssize_t n = recv(fd, buf + got, MSG_LEN - got, 0);
    if (n > 0) {
      got += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return -1;
    }
  }
  return 0;
}

static int write_msg(int fd, const char *msg) {
  ssize_t n;
  do {
    n = send(fd, msg, MSG_LEN, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n == MSG_LEN ? 0 : -1;
}

ackrpc_status akr_ctl_address(const akr_address *address, akr_address *ret) {
  char text[sizeof address->sa.sun_path + 8];
  if (address->abstract) {
    size_t n = address->len - offsetof(struct sockaddr_un, sun_path) - 1;
    if (memchr(address->sa.sun_path + 1, 0, n)) return ACKRPC_E_ADDRESS;
    snprintf(text, sizeof text, "@%.*s.ctl", (int)n, address->sa.sun_path + 1);
  } else {
    snprintf(text, sizeof text, "%s.ctl", address->path);
  }
  return akr_address_parse(text, ret);
}

/* The listening socket received is bound to `address` and listens. */
static int listener_ok(int fd, const akr_address *address) {
  struct stat st;
  int v;
  socklen_t len = sizeof v;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return 0;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) != 0 || v != AF_UNIX) return 0;
  len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) != 0 || v != SOCK_STREAM) return 0;
  len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) != 0 || v != 1) return 0;
  struct sockaddr_un sa;
  socklen_t salen = sizeof sa;
  memset(&sa, 0, sizeof sa);
  if (getsockname(fd, (struct sockaddr *)&sa, &salen) != 0) return 0;
  if (address->abstract)
    return salen == address->len && memcmp(&sa, &address->sa, salen) == 0;
  return strncmp(sa.sun_path, address->path, sizeof sa.sun_path) == 0;
}

/* The lock received is the file PATH.lock names. */
static int lock_ok(int fd, const char *lock_path) {
  struct stat held, named;
  return fstat(fd, &held) == 0 && S_ISREG(held.st_mode) &&
         lstat(lock_path, &named) == 0 && held.st_dev == named.st_dev &&
         held.st_ino == named.st_ino;
}

ackrpc_status akr_takeover(const akr_address *address, akr_listener *ret) {
  akr_address ctl;
  ackrpc_status st = akr_ctl_address(address, &ctl);
  if (st != ACKRPC_OK) return st;
  if (!address->abstract) {
    st = akr_check_parent(address->path);
    if (st != ACKRPC_OK) return st;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ACKRPC_E_SYSTEM;
  set_timeouts(fd, IO_TIMEOUT_MS);
  if (connect(fd, (const struct sockaddr *)&ctl.sa, ctl.len) != 0) {
    int e = errno;
    close(fd);
    if (e == ENOENT || e == ECONNREFUSED) return ACKRPC_E_NOT_FOUND;
    errno = e;
    return ACKRPC_E_SYSTEM;
  }
  akr_listener l = {.fd = -1, .lock_fd = -1};
  if (!address->abstract)
    snprintf(l.lock_path, sizeof l.lock_path, "%s.lock", address->path);
  int want = address->abstract ? 1 : 2;
  st = ACKRPC_E_ADDRESS;
  if (!peer_is_us(fd)) goto fail;
  st = ACKRPC_E_SYSTEM;
  if (write_msg(fd, msg_take) != 0) goto fail;

  char buf[MSG_LEN];
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof(int) * 4)];
  } u;
  struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
  struct msghdr mh = {.msg_iov = &iov,
                      .msg_iovlen = 1,
                      .msg_control = u.space,
                      .msg_controllen = sizeof u.space};
  ssize_t n;
  do {
    n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  } while (n < 0 && errno == EINTR);
  /* Take every descriptor that came, whatever else is wrong, so none
   * leaks. */
  int fds[4], n_fds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      if (n_fds < 4)
        fds[n_fds++] = got;
      else
        close(got);
    }
  }
  st = ACKRPC_E_ADDRESS;
  if (n != MSG_LEN || memcmp(buf, msg_fds, MSG_LEN) != 0 ||
      (mh.msg_flags & MSG_CTRUNC) || n_fds != want)
    goto fail_fds;
  if (!listener_ok(fds[0], address)) goto fail_fds;
  if (want == 2 && !lock_ok(fds[1], l.lock_path)) goto fail_fds;
  int fl = fcntl(fds[0], F_GETFL);
  if (fl < 0 || fcntl(fds[0], F_SETFL, fl | O_NONBLOCK) != 0) {
    st = ACKRPC_E_SYSTEM;
    goto fail_fds;
  }
  st = ACKRPC_E_SYSTEM;
  if (write_msg(fd, msg_ack) != 0) goto fail_fds;
  /* The predecessor now gives up its control socket and closes: wait for
   * that (bounded), so that ours can take its place. */
  char sink[MSG_LEN];
  while (recv(fd, sink, sizeof sink, 0) > 0) {
  }
  close(fd);
  l.fd = fds[0];
  l.lock_fd = want == 2 ? fds[1] : -1;
  *ret = l;
  return ACKRPC_OK;
fail_fds:
  for (int i = 0; i < n_fds; i++)
    close(fds[i]);
fail:
  close(fd);
  return st;
}

ackrpc_status akr_ctl_listen(const akr_address *address, akr_ctl *ret) {
  akr_ctl c = {.fd = -1};
  ackrpc_status st = akr_ctl_address(address, &c.addr);
  if (st != ACKRPC_OK) return st;
  if (!c.addr.abstract) {
    struct stat sb;
    if (lstat(c.addr.path, &sb) == 0) {
      if (!S_ISSOCK(sb.st_mode)) return ACKRPC_E_EXISTS;
      unlink(c.addr.path); /* stale: we hold the address's lock */
    }
  }
  c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) return ACKRPC_E_SYSTEM;
  if (!c.addr.abstract && fchmod(c.fd, 0600) != 0) goto fail;
  if (bind(c.fd, (const struct sockaddr *)&c.addr.sa, c.addr.len) != 0) {
    st = errno == EADDRINUSE ? ACKRPC_E_ADDR_IN_USE : ACKRPC_E_SYSTEM;
    close(c.fd);
    return st;
  }
  if (!c.addr.abstract && chmod(c.addr.path, 0600) != 0) goto fail_bound;
  if (listen(c.fd, 4) != 0) goto fail_bound;
  *ret = c;
  return ACKRPC_OK;
fail_bound:
  if (!c.addr.abstract) unlink(c.addr.path);
fail : {
  int e = errno;
  close(c.fd);
  errno = e;
  return ACKRPC_E_SYSTEM;
}
}

void akr_ctl_close(akr_ctl *c) {
  if (c->fd < 0) return;
  close(c->fd);
  c->fd = -1;
  if (!c->addr.abstract) unlink(c->addr.path);
}

int akr_ctl_serve(akr_ctl *ctl, const akr_listener *l, const char **ret_why) {
  const char *why = "no connection";
  int handed = 0;
  int fd = accept4(ctl->fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) goto out;
  why = "refused a control connection from another uid";
  if (!peer_is_us(fd)) goto done;
  set_timeouts(fd, IO_TIMEOUT_MS);
  char buf[MSG_LEN];
  why = "bad or missing takeover request";
  if (read_msg(fd, buf) != 0 || memcmp(buf, msg_take, MSG_LEN) != 0) goto done;

  int fds[2] = {l->fd, l->lock_fd};
  int n_fds = l->lock_fd >= 0 ? 2 : 1;
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof fds)];
  } u;
  memset(&u, 0, sizeof u);
  struct iovec iov = {.iov_base = (void *)msg_fds, .iov_len = MSG_LEN};
  struct msghdr mh = {.msg_iov = &iov,
                      .msg_iovlen = 1,
                      .msg_control = u.space,
                      .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n_fds)};
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n_fds);
  memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n_fds);
  ssize_t n;
  do {
    n = sendmsg(fd, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  why = "could not send the descriptors";
  if (n != MSG_LEN) goto done;
  why = "the successor did not acknowledge (it keeps nothing)";
  if (read_msg(fd, buf) != 0 || memcmp(buf, msg_ack, MSG_LEN) != 0) goto done;
  /* Give up the control socket before the successor is told we are done,
   * so that it can create its own. */
  akr_ctl_close(ctl);
  handed = 1;
  why = "handed over";
done:
  close(fd);
out:
  if (ret_why) *ret_why = why;
  return handed;
}
