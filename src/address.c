/* address.c: socket addresses (paths and the abstract namespace) and the
 * server's ownership of its socket file. */
#include "address.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
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

/* Decides what to do with a file already at the path: nothing there, a
 * stale socket (removed here), a live socket, or something else. */
static ackrpc_status clear_path(const akr_address *address) {
  struct stat st;
  if (lstat(address->path, &st) != 0)
    return errno == ENOENT ? ACKRPC_OK : ACKRPC_E_SYSTEM;
  if (!S_ISSOCK(st.st_mode)) return ACKRPC_E_EXISTS;
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

ackrpc_status akr_listen(const akr_address *address, mode_t mode, int backlog,
                         int *ret_fd) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ACKRPC_E_SYSTEM;
  ackrpc_status st = ACKRPC_OK;
  int bound = 0;
  if (!address->abstract) {
    /* Linux creates the file with the socket inode's mode minus the umask:
     * setting the mode first means the file is never wider than `mode`; the
     * chmod below only widens it back where the umask narrowed it. */
    if (fchmod(fd, mode) != 0) {
      st = ACKRPC_E_SYSTEM;
      goto fail;
    }
    st = clear_path(address);
    if (st != ACKRPC_OK) goto fail;
  }
  if (bind(fd, (const struct sockaddr *)&address->sa, address->len) != 0) {
    st = errno == EADDRINUSE ? ACKRPC_E_ADDR_IN_USE : ACKRPC_E_SYSTEM;
    goto fail;
  }
  bound = 1;
  if (!address->abstract && chmod(address->path, mode) != 0) {
    st = ACKRPC_E_SYSTEM;
    goto fail;
  }
  if (listen(fd, backlog) != 0) {
    st = ACKRPC_E_SYSTEM;
    goto fail;
  }
  *ret_fd = fd;
  return ACKRPC_OK;
fail : {
  int e = errno;
  if (bound && !address->abstract) unlink(address->path);
  close(fd);
  errno = e;
  return st;
}
}
