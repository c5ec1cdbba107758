/* address.c: socket addresses (paths and the abstract namespace) and the
 * server's ownership of its socket file. */
#include "platform/address.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

ackrpc_status akr_address_parse(const char *text, akr_address *ret_address) {
  if (!text) return ACKRPC_E_INVAL;
  akr_address a;
  memset(&a, 0, sizeof a);
  a.sa.sun_family = AF_UNIX;
  size_t n = strlen(text);
  if (n == 0) return ACKRPC_E_ADDRESS;
  if (text[0] == '@') {
    /* Abstract: a leading NUL, then the name; the length says where it
     * ends (no trailing NUL), as every Linux tool spells it. */
    if (n == 1 || n > sizeof a.sa.sun_path) return ACKRPC_E_ADDRESS;
    memcpy(a.sa.sun_path + 1, text + 1, n - 1);
    a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    a.abstract = 1;
  } else {
    if (n >= sizeof a.sa.sun_path) return ACKRPC_E_ADDRESS;
    memcpy(a.sa.sun_path, text, n + 1);
    memcpy(a.path, text, n + 1);
    a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  }
  *ret_address = a;
  return ACKRPC_OK;
}

int akr_connect(const akr_address *address, int *ret_fd) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  while (connect(fd, (const struct sockaddr *)&address->sa, address->len) != 0) {
    if (errno == EINTR) continue;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  *ret_fd = fd;
  return 0;
}

/* A file in the listener's directory, if it is still the one recorded. */
static int still_ours(int dir_fd, const char *name, dev_t dev, ino_t ino) {
  struct stat st;
  return dir_fd >= 0 && ino != 0 &&
         fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == dev &&
         st.st_ino == ino;
}

static void unlink_if_ours(int dir_fd, const char *name, dev_t dev, ino_t ino) {
  if (still_ours(dir_fd, name, dev, ino)) unlinkat(dir_fd, name, 0);
}

/* Opens PATH.lock: a regular file of ours, created if absent. Never
 * follows a symlink, and never opens a FIFO or a device (whose open could
 * block, or act): those are seen with fstatat() first, and the fstat() of
 * what was opened says the same (O_NONBLOCK covers a FIFO swapped in
 * between, though only root or we could do that in a checked directory). */
static ackrpc_status open_lock(int dir_fd, const char *name, int *ret_fd) {
  struct stat st;
  if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode))
    return ACKRPC_E_EXISTS;
  int fd =
      openat(dir_fd, name,
             O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0600);
  if (fd < 0)
    return errno == ELOOP || errno == EISDIR ? ACKRPC_E_EXISTS : ACKRPC_E_SYSTEM;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
    close(fd);
    return ACKRPC_E_EXISTS;
  }
  *ret_fd = fd;
  return ACKRPC_OK;
}

/* Takes PATH.lock. The lock file is removed by the owner on shutdown, so
 * after locking we check that the path still names the file we locked; if
 * not, someone removed it between our open and our flock: start again. */
static ackrpc_status take_lock(akr_listener *l) {
  for (int attempt = 0; attempt < 16; attempt++) {
    int fd;
    ackrpc_status st = open_lock(l->dir_fd, l->lock_name, &fd);
    if (st != ACKRPC_OK) return st;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int e = errno;
      close(fd);
      errno = e;
      return e == EWOULDBLOCK ? ACKRPC_E_ADDR_IN_USE : ACKRPC_E_SYSTEM;
    }
    struct stat held;
    if (fstat(fd, &held) == 0 &&
        still_ours(l->dir_fd, l->lock_name, held.st_dev, held.st_ino)) {
      l->lock_fd = fd;
      l->lock_dev = held.st_dev;
      l->lock_ino = held.st_ino;
      return ACKRPC_OK;
    }
    close(fd);
  }
  errno = EAGAIN;
  return ACKRPC_E_SYSTEM;
}

/* With the lock held: makes the path free for bind(). */
static ackrpc_status clear_path(const akr_address *address, const akr_listener *l) {
  struct stat st;
  if (fstatat(l->dir_fd, l->name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? ACKRPC_OK : ACKRPC_E_SYSTEM;
  if (!S_ISSOCK(st.st_mode)) return ACKRPC_E_EXISTS; /* incl. symlinks */
  int fd;
  if (akr_connect(address, &fd) == 0) {
    close(fd);
    return ACKRPC_E_ADDR_IN_USE;
  }
  /* EAGAIN: a live server with a full queue. Only "refused" proves that
   * nobody listens. */
  if (errno != ECONNREFUSED) return ACKRPC_E_ADDR_IN_USE;
  if (unlinkat(l->dir_fd, l->name, 0) != 0 && errno != ENOENT) return ACKRPC_E_SYSTEM;
  return ACKRPC_OK;
}

/* For a path: the checked directory, the names, the lock, a clear path. */
static ackrpc_status prepare_path(const akr_address *address, akr_listener *l,
                                  char *why) {
  ackrpc_status st = akr_safe_dir_open(address->path, &l->dir_fd, why);
  if (st != ACKRPC_OK) return st;
  snprintf(l->name, sizeof l->name, "%s", akr_path_base(address->path));
  snprintf(l->lock_name, sizeof l->lock_name, "%s.lock", l->name);
  st = take_lock(l);
  if (st != ACKRPC_OK) return st;
  return clear_path(address, l);
}

/* For a path, after bind(): records which file is ours, then gives it its
 * group and mode (through the checked directory). */
static ackrpc_status own_socket_file(akr_listener *l, mode_t mode, gid_t group) {
  struct stat st;
  if (fstatat(l->dir_fd, l->name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return ACKRPC_E_SYSTEM;
  if (!S_ISSOCK(st.st_mode)) {
    errno = EEXIST;
    return ACKRPC_E_SYSTEM;
  }
  l->sock_dev = st.st_dev;
  l->sock_ino = st.st_ino;
  if (group != (gid_t)-1 &&
      fchownat(l->dir_fd, l->name, (uid_t)-1, group, AT_SYMLINK_NOFOLLOW) != 0)
    return ACKRPC_E_SYSTEM;
  if (fchmodat(l->dir_fd, l->name, mode, 0) != 0) return ACKRPC_E_SYSTEM;
  return ACKRPC_OK;
}

ackrpc_status akr_listen(const akr_address *address, mode_t mode, gid_t group,
                         int backlog, akr_listener *ret, char *why) {
  akr_listener l = AKR_LISTENER_NONE;
  ackrpc_status st = ACKRPC_OK;
  if (why) why[0] = 0;
  if (!address->abstract) {
    st = prepare_path(address, &l, why);
    if (st != ACKRPC_OK) goto fail;
  }
  l.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (l.fd < 0) {
    st = ACKRPC_E_SYSTEM;
    goto fail;
  }
  /* Linux creates the file with the socket inode's mode minus the umask.
   * Owner-only first: the group is not ours to trust until chown set it;
   * then the configured mode, which only ever widens from there. */
  if (!address->abstract && fchmod(l.fd, mode & 0700) != 0) {
    st = ACKRPC_E_SYSTEM;
    goto fail;
  }
  if (bind(l.fd, (const struct sockaddr *)&address->sa, address->len) != 0) {
    st = errno == EADDRINUSE ? ACKRPC_E_ADDR_IN_USE : ACKRPC_E_SYSTEM;
    goto fail;
  }
  /* Listening at once: a client that sees the file appear and connects is
   * refused until listen(), so nothing more goes in between. The owner-only
   * mode still holds until own_socket_file() widens it. */
  if (listen(l.fd, backlog) != 0) {
    st = ACKRPC_E_SYSTEM;
    goto fail;
  }
  if (!address->abstract) {
    st = own_socket_file(&l, mode, group);
    if (st != ACKRPC_OK) goto fail;
  }
  *ret = l;
  return ACKRPC_OK;
fail : {
  int e = errno;
  akr_unlisten(&l);
  errno = e;
  return st;
}
}

void akr_unlisten(akr_listener *l) {
  if (l->fd >= 0) {
    close(l->fd);
    l->fd = -1;
    unlink_if_ours(l->dir_fd, l->name, l->sock_dev, l->sock_ino);
  }
  if (l->lock_fd >= 0) {
    unlink_if_ours(l->dir_fd, l->lock_name, l->lock_dev, l->lock_ino);
    close(l->lock_fd);
    l->lock_fd = -1;
  }
  akr_unlisten_keep(l);
}

void akr_unlisten_keep(akr_listener *l) {
  if (l->fd >= 0) close(l->fd);
  l->fd = -1;
  if (l->lock_fd >= 0) close(l->lock_fd);
  l->lock_fd = -1;
  if (l->dir_fd >= 0) close(l->dir_fd);
  l->dir_fd = -1;
  l->sock_ino = l->lock_ino = 0;
}

int akr_listener_reachable(const akr_listener *l) {
  if (l->dir_fd < 0) return 1; /* abstract: no file */
  return still_ours(l->dir_fd, l->name, l->sock_dev, l->sock_ino);
}

ackrpc_status akr_listener_adopt(const akr_address *address, akr_listener *l) {
  snprintf(l->name, sizeof l->name, "%s", akr_path_base(address->path));
  snprintf(l->lock_name, sizeof l->lock_name, "%s.lock", l->name);
  struct stat held, named;
  if (fstat(l->lock_fd, &held) != 0 || !S_ISREG(held.st_mode) ||
      fstatat(l->dir_fd, l->lock_name, &named, AT_SYMLINK_NOFOLLOW) != 0 ||
      held.st_dev != named.st_dev || held.st_ino != named.st_ino)
    return ACKRPC_E_ADDRESS;
  /* The predecessor checked, just before it sent the listener, that the
   * socket file was still the one it created; what we see now is that
   * file, unless root or our own uid replaced it in between. */
  if (fstatat(l->dir_fd, l->name, &named, AT_SYMLINK_NOFOLLOW) != 0 ||
      !S_ISSOCK(named.st_mode) || named.st_uid != geteuid())
    return ACKRPC_E_ADDRESS;
  l->lock_dev = held.st_dev;
  l->lock_ino = held.st_ino;
  l->sock_dev = named.st_dev;
  l->sock_ino = named.st_ino;
  return ACKRPC_OK;
}
