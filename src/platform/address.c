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

/* The directory holding the socket must not let another user swap the
 * socket (or the lock) for something else. Symlinks on the way are followed:
 * /var/run -> /run is normal; what matters is where the file ends up. */
ackrpc_status akr_check_parent(const char *path) {
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
  const char *slash = strrchr(path, '/');
  if (!slash) {
    strcpy(dir, ".");
  } else if (slash == path) {
    strcpy(dir, "/");
  } else {
    size_t n = (size_t)(slash - path);
    memcpy(dir, path, n);
    dir[n] = 0;
  }
  struct stat st;
  if (stat(dir, &st) != 0) return ACKRPC_E_SYSTEM;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return ACKRPC_E_SYSTEM;
  }
  if (st.st_uid != geteuid() && st.st_uid != 0) return ACKRPC_E_UNSAFE_DIR;
  if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) return ACKRPC_E_UNSAFE_DIR;
  return ACKRPC_OK;
}

/* Takes PATH.lock. The lock file is removed by the owner on shutdown, so
 * after locking we check that the path still names the file we locked; if
 * not, someone removed it between our open and our flock: start again. */
static ackrpc_status take_lock(const char *lock_path, int *ret_fd) {
  for (int attempt = 0; attempt < 16; attempt++) {
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return errno == ELOOP ? ACKRPC_E_EXISTS : ACKRPC_E_SYSTEM;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int e = errno;
      close(fd);
      errno = e;
      return e == EWOULDBLOCK ? ACKRPC_E_ADDR_IN_USE : ACKRPC_E_SYSTEM;
    }
    struct stat held, named;
    if (fstat(fd, &held) == 0 && lstat(lock_path, &named) == 0 &&
        held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
      *ret_fd = fd;
      return ACKRPC_OK;
    }
    close(fd);
  }
  errno = EAGAIN;
  return ACKRPC_E_SYSTEM;
}

/* With the lock held: makes the path free for bind(). */
static ackrpc_status clear_path(const akr_address *address) {
  struct stat st;
  if (lstat(address->path, &st) != 0)
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
  if (unlink(address->path) != 0 && errno != ENOENT) return ACKRPC_E_SYSTEM;
  return ACKRPC_OK;
}

ackrpc_status akr_listen(const akr_address *address, mode_t mode, gid_t group,
                         int backlog, akr_listener *ret) {
  akr_listener l = {.fd = -1, .lock_fd = -1};
  ackrpc_status st = ACKRPC_OK;
  int bound = 0;
  if (!address->abstract) {
    st = akr_check_parent(address->path);
    if (st != ACKRPC_OK) return st;
    snprintf(l.lock_path, sizeof l.lock_path, "%s.lock", address->path);
    st = take_lock(l.lock_path, &l.lock_fd);
    if (st != ACKRPC_OK) return st;
    st = clear_path(address);
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
  bound = 1;
  if (!address->abstract) {
    if (group != (gid_t)-1 && lchown(address->path, (uid_t)-1, group) != 0) {
      st = ACKRPC_E_SYSTEM;
      goto fail;
    }
    if (chmod(address->path, mode) != 0) {
      st = ACKRPC_E_SYSTEM;
      goto fail;
    }
  }
  if (listen(l.fd, backlog) != 0) {
    st = ACKRPC_E_SYSTEM;
    goto fail;
  }
  *ret = l;
  return ACKRPC_OK;
fail : {
  int e = errno;
  if (l.fd >= 0) close(l.fd);
  if (bound) unlink(address->path);
  if (l.lock_fd >= 0) {
    unlink(l.lock_path);
    close(l.lock_fd);
  }
  errno = e;
  return st;
}
}

void akr_unlisten(const akr_address *address, akr_listener *l) {
  if (l->fd >= 0) {
    close(l->fd);
    l->fd = -1;
    if (!address->abstract) unlink(address->path);
  }
  if (l->lock_fd >= 0) {
    unlink(l->lock_path);
    close(l->lock_fd);
    l->lock_fd = -1;
  }
}

void akr_unlisten_keep(akr_listener *l) {
  if (l->fd >= 0) close(l->fd);
  l->fd = -1;
  if (l->lock_fd >= 0) close(l->lock_fd);
  l->lock_fd = -1;
}
