/* io.c: the engine's system calls (io.h). */
#include "client/io.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void close_fd(akr_link *l) {
  if (l->before_close) l->before_close(l->before_close_arg);
  close(l->fd);
}

void akr_io_close(akr_link *l, int shut) {
  if (l->fd < 0) return;
  if (shut) shutdown(l->fd, SHUT_WR);
  close_fd(l);
  akr_link_closed(l, 0);
}

/* Who owns the directory holding the socket file `path`, or, if that
 * directory is sticky (like /tmp: only a file's owner may remove or rename
 * it there), the socket file itself. Symlinks on the way are followed, as
 * connect() follows them. */
static void owner_of(const char *path, akr_peer *p) {
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) : 0;
  if (!slash)
    memcpy(dir, ".", 2);
  else if (n == 0)
    memcpy(dir, "/", 2);
  else {
    memcpy(dir, path, n);
    dir[n] = 0;
  }
  struct stat st;
  if (stat(dir, &st) != 0) {
    p->owner_errno = errno;
    return;
  }
  p->owner_is_file = (st.st_mode & S_ISVTX) != 0;
  if (p->owner_is_file && stat(path, &st) != 0) {
    p->owner_errno = errno;
    return;
  }
  p->owner = st.st_uid;
  p->owner_errno = 0;
}

/* What the engine needs to judge the server of a new connection. */
static void peer_facts(const akr_link *l, int fd, akr_peer *p) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  p->self = geteuid();
  p->cred_errno = 0;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) p->cred_errno = errno;
  p->uid = p->cred_errno ? (uid_t)-1 : cred.uid;
  p->owner_errno = ENODATA;
  p->owner_is_file = 0;
  if (akr_link_wants_owner(l, p)) owner_of(l->conf->addr.path, p);
}

static void do_connect(akr_link *l, uint64_t now) {
  int fd;
  if (akr_connect(&l->conf->addr, &fd) == 0) {
    akr_peer peer;
    peer_facts(l, fd, &peer);
    akr_link_connected(l, fd, &peer);
  } else {
    akr_link_connect_failed(l, errno, now);
  }
}

/* Sends as much output as the socket takes. 0: all sent, or it would
 * block; -1: the write failed (reported to the engine). */
static int do_send(akr_link *l) {
  struct iovec iov[AKR_LINK_IOV_MAX];
  for (;;) {
    const int *fds;
    size_t n_fds;
    size_t n_iov = akr_link_output(l, iov, AKR_LINK_IOV_MAX, &fds, &n_fds);
    if (!n_iov) return 0;
    ssize_t n;
    if (n_fds) {
      n = akr_fd_send(l->fd, iov, n_iov, fds, n_fds, MSG_NOSIGNAL);
    } else if (n_iov == 1) {
      n = send(l->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    } else {
      struct msghdr m = {.msg_iov = iov, .msg_iovlen = n_iov};
      n = sendmsg(l->fd, &m, MSG_NOSIGNAL);
    }
    if (n > 0) {
      akr_link_wrote(l, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    akr_link_write_failed(l, n < 0 ? errno : EPIPE);
    return -1;
  }
}

/* Reads until the socket is empty or no call wants more. 1 if the
 * connection ended (EOF or error: closed here), else 0. */
static int do_read(akr_link *l) {
  while (akr_link_wants_read(l)) {
    uint8_t *buf;
    size_t room;
    if (akr_link_input(l, &buf, &room) != 0) return 0; /* dropped by the engine */
    ssize_t n = akr_fd_read(l->fd, buf, room, akr_link_max_fds(l), &l->fdq, l->rx);
    if (n > 0) {
      akr_link_read(l, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!l->broken) return 0;
      n = 0; /* after a failed write, what the server said is all read */
    }
    int err = n < 0 ? errno : 0;
    close_fd(l);
    akr_link_closed(l, err);
    return 1;
  }
  return 0;
}

void akr_io_run(akr_link *l, int ready, uint64_t now) {
  akr_link_tick(l, now);
  for (int round = 0; round < 4; round++) {
    if (akr_link_wants_drop(l)) {
      akr_io_close(l, 0);
      continue;
    }
    if (l->fd < 0) {
      int events;
      uint64_t until;
      if (akr_link_wait(l, now, &events, &until) != AKR_WAIT_CONNECT) return;
      do_connect(l, now);
      if (l->fd < 0) return;
    }
    int failed = do_send(l) != 0;
    if (akr_link_wants_shut(l)) {
      shutdown(l->fd, SHUT_WR);
      l->shut = 1;
    }
    if ((failed || (ready & AKR_EV_READ)) && do_read(l)) {
      ready = 0;
      continue; /* requeued calls may go out on a new connection */
    }
    if (!akr_link_wants_drop(l)) return;
  }
}
