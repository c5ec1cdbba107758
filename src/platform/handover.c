/* handover.c: handing the listening socket to a successor (handover.h).
 * The predecessor's side is a non-blocking step function; the successor's
 * side blocks briefly, before its own loop runs. */
#include "platform/handover.h"

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
/* The predecessor's answer instead of the descriptors when its socket file
 * is no longer at the path (removed or replaced): nobody can reach the
 * listener, so taking it over would serve no one. */
static const char msg_lost[MSG_LEN] = "AKLOST01";
#define IO_TIMEOUT_MS 3000 /* the successor's wait for each step */

static int peer_is_us(int fd) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
         cred.uid == geteuid();
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

/* Removes the control socket's file if it is still the one we bound (the
 * directory was checked with the address's: only root or we can change it). */
static void unlink_ctl_if_ours(const akr_ctl *c) {
  struct stat sb;
  if (!c->addr.abstract && c->ino != 0 && lstat(c->addr.path, &sb) == 0 &&
      sb.st_dev == c->dev && sb.st_ino == c->ino)
    unlink(c->addr.path);
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
  if (!c.addr.abstract) {
    struct stat sb;
    if (lstat(c.addr.path, &sb) != 0) goto fail;
    c.dev = sb.st_dev;
    c.ino = sb.st_ino;
    if (chmod(c.addr.path, 0600) != 0) goto fail_bound;
  }
  if (listen(c.fd, 4) != 0) goto fail_bound;
  *ret = c;
  return ACKRPC_OK;
fail_bound:
  unlink_ctl_if_ours(&c);
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
  unlink_ctl_if_ours(c);
}

/* --- the predecessor's side ---------------------------------------------- */

int akr_ctl_accept(akr_ctl *ctl, akr_ctl_peer *ret, const char **ret_why) {
  int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) return 0;
  if (!peer_is_us(fd)) {
    close(fd);
    *ret_why = "refused a control connection from another uid";
    return -1;
  }
  *ret = (akr_ctl_peer){.fd = fd};
  return 1;
}

void akr_ctl_peer_close(akr_ctl_peer *p) {
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
}

/* Reads what has come of the current message. 1: all of it; 0: more to
 * come; -1: EOF or an error. */
static int receive_msg(akr_ctl_peer *p) {
  while (p->got < MSG_LEN) {
    ssize_t n = recv(p->fd, p->buf + p->got, MSG_LEN - p->got, MSG_DONTWAIT);
    if (n > 0) {
      p->got += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
  }
  return 1;
}

/* Sends "AKFDS001" with the listener's descriptors: 0, or -1. A fresh
 * connection always has room for 8 bytes, so this does not wait. */
static int send_fds(int fd, const akr_listener *l) {
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
    n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  return n == MSG_LEN ? 0 : -1;
}

akr_ctl_step_result akr_ctl_step(akr_ctl_peer *p, const akr_listener *l,
                                 const char **ret_why) {
  int r = receive_msg(p);
  if (r == 0) return AKR_CTL_MORE;
  if (!p->sent) {
    *ret_why = "bad or missing takeover request";
    if (r < 0 || memcmp(p->buf, msg_take, MSG_LEN) != 0) return AKR_CTL_FAILED;
    if (!akr_listener_reachable(l)) {
      (void)write_msg(p->fd, msg_lost);
      *ret_why = "the socket file is gone or was replaced: no client can reach "
                 "this listener, so it is not handed over (restart without handover)";
      return AKR_CTL_FAILED;
    }
    *ret_why = "could not send the descriptors";
    if (send_fds(p->fd, l) != 0) return AKR_CTL_FAILED;
    p->sent = 1;
    p->got = 0;
    return akr_ctl_step(p, l, ret_why); /* the answer may be here already */
  }
  *ret_why = "the successor did not acknowledge (it keeps nothing)";
  if (r < 0 || memcmp(p->buf, msg_ack, MSG_LEN) != 0) return AKR_CTL_FAILED;
  *ret_why = "handed over";
  return AKR_CTL_HANDED;
}

/* --- the successor's side ---------------------------------------------- */

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

/* Connects to the predecessor's control socket: 0 with *ret_fd, or a status
 * (E_NOT_FOUND if nobody offers it). */
static ackrpc_status ctl_connect(const akr_address *address, int *ret_fd) {
  akr_address ctl;
  ackrpc_status st = akr_ctl_address(address, &ctl);
  if (st != ACKRPC_OK) return st;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ACKRPC_E_SYSTEM;
  struct timeval tv = {.tv_sec = IO_TIMEOUT_MS / 1000,
                       .tv_usec = (IO_TIMEOUT_MS % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (const struct sockaddr *)&ctl.sa, ctl.len) != 0) {
    int e = errno;
    close(fd);
    if (e == ENOENT || e == ECONNREFUSED) return ACKRPC_E_NOT_FOUND;
    errno = e;
    return ACKRPC_E_SYSTEM;
  }
  *ret_fd = fd;
  return ACKRPC_OK;
}

/* Receives "AKFDS001" and its descriptors (every one that came, so none
 * leaks): the count in *ret_n (up to 4 kept). 0 if the message is right and
 * nothing was cut off; 1 if it is "AKLOST01"; -1 otherwise. */
static int receive_fds(int fd, int fds[4], int *ret_n) {
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
  *ret_n = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); n >= 0 && c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      if (*ret_n < 4)
        fds[(*ret_n)++] = got;
      else
        close(got);
    }
  }
  if (n == MSG_LEN && memcmp(buf, msg_lost, MSG_LEN) == 0) return 1;
  return n == MSG_LEN && memcmp(buf, msg_fds, MSG_LEN) == 0 &&
                 !(mh.msg_flags & MSG_CTRUNC)
             ? 0
             : -1;
}

#define WHY(text) (snprintf(why, AKR_WHY_MAX, "%s", (text)), ACKRPC_E_ADDRESS)

/* Checks what came: the listening socket of `address` and, for a path, its
 * lock, and that the path still names the socket (l->dir_fd is set); fills
 * in l. Makes the socket non-blocking. */
static ackrpc_status check_fds(const akr_address *address, const int *fds, int n,
                               akr_listener *l, char *why) {
  int want = address->abstract ? 1 : 2;
  if (n != want || !listener_ok(fds[0], address))
    return WHY("the predecessor sent descriptors that are not its listening socket");
  l->fd = fds[0];
  if (want == 2) {
    l->lock_fd = fds[1];
    if (akr_listener_adopt(address, l) != ACKRPC_OK)
      return WHY("the path no longer names the predecessor's socket and lock "
                 "(removed or replaced): restart without handover");
  }
  int fl = fcntl(fds[0], F_GETFL);
  if (fl < 0 || fcntl(fds[0], F_SETFL, fl | O_NONBLOCK) != 0) return ACKRPC_E_SYSTEM;
  return ACKRPC_OK;
}

/* The exchange on the control connection, up to our acknowledgement. */
static ackrpc_status exchange(int fd, const akr_address *address, akr_listener *l,
                              char *why) {
  int fds[4], n_fds = 0;
  if (!peer_is_us(fd)) return WHY("the control socket's peer is of another uid");
  if (write_msg(fd, msg_take) != 0) return ACKRPC_E_SYSTEM;
  int r = receive_fds(fd, fds, &n_fds);
  ackrpc_status st;
  if (r > 0)
    st = WHY("the predecessor's socket file is gone or was replaced, so nobody can "
             "reach its listener: restart without handover");
  else if (r < 0)
    st = WHY("the predecessor did not send its listening socket");
  else
    st = check_fds(address, fds, n_fds, l, why);
  if (st == ACKRPC_OK && write_msg(fd, msg_ack) != 0) st = ACKRPC_E_SYSTEM;
  if (st != ACKRPC_OK) {
    for (int i = 0; i < n_fds; i++)
      close(fds[i]);
    l->fd = l->lock_fd = -1;
  }
  return st;
}

ackrpc_status akr_takeover(const akr_address *address, akr_listener *ret, char *why) {
  akr_listener l = AKR_LISTENER_NONE;
  why[0] = 0;
  if (!address->abstract) {
    ackrpc_status st = akr_safe_dir_open(address->path, &l.dir_fd, why);
    if (st != ACKRPC_OK) return st;
  }
  int fd;
  ackrpc_status st = ctl_connect(address, &fd);
  if (st == ACKRPC_OK) {
    st = exchange(fd, address, &l, why);
    /* Done: the predecessor now gives up its control socket and closes:
     * wait for that (bounded), so that ours can take its place. */
    char sink[MSG_LEN];
    while (st == ACKRPC_OK && recv(fd, sink, sizeof sink, 0) > 0) {
    }
    close(fd);
  }
  if (st != ACKRPC_OK) {
    int e = errno;
    akr_unlisten_keep(&l);
    errno = e;
    return st;
  }
  *ret = l;
  return ACKRPC_OK;
}
