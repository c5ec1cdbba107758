/* activation.c: listening sockets inherited from systemd's socket
 * activation (sd_listen_fds(3)), without libsystemd.
 *
 * systemd passes the sockets as descriptors 3, 4, ... and says so in
 * LISTEN_PID (the process they are for), LISTEN_FDS (how many) and
 * LISTEN_FDNAMES (their FileDescriptorName=, colon-separated). The variables
 * are inherited by children too, hence the pid check; they are parsed
 * strictly, and the descriptor is checked to be what a server can serve.
 *
 * Not here: what the server does with it (server.c: it neither locks nor
 * removes anything for an inherited socket). */
#include "platform/address.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define LISTEN_FDS_START 3
#define MAX_LISTEN_FDS 4096 /* far above any real unit; bounds the parse */

/* A decimal number in [0, max] and nothing else; -1 if not. */
static long parse_decimal(const char *s, long max) {
  if (!s || !*s || strlen(s) > 19) return -1;
  long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    v = v * 10 + (*p - '0');
    if (v > max) return -1;
  }
  return v;
}

static int sockopt_int(int fd, int opt) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, opt, &v, &len) != 0) return -1;
  return v;
}

/* The index of `name` among the colon-separated `names`, or -1. */
static long find_name(const char *names, const char *name, long n_fds) {
  size_t want = strlen(name);
  long i = 0;
  for (const char *p = names; i < n_fds; i++) {
    const char *colon = strchr(p, ':');
    size_t len = colon ? (size_t)(colon - p) : strlen(p);
    if (len == want && memcmp(p, name, len) == 0) return i;
    if (!colon) break;
    p = colon + 1;
  }
  return -1;
}

ackrpc_status akr_inherit(const char *name, int *ret_fd) {
  const char *pid_s = getenv("LISTEN_PID");
  const char *fds_s = getenv("LISTEN_FDS");
  if (!pid_s || !fds_s) return ACKRPC_E_NOT_FOUND;
  long pid = parse_decimal(pid_s, 0x7fffffffL);
  long n = parse_decimal(fds_s, MAX_LISTEN_FDS);
  if (pid < 0 || n < 0) return ACKRPC_E_ADDRESS;
  if (pid != (long)getpid() || n == 0) return ACKRPC_E_NOT_FOUND;
  long index;
  if (name && *name) {
    const char *names = getenv("LISTEN_FDNAMES");
    if (!names) return ACKRPC_E_NOT_FOUND;
    index = find_name(names, name, n);
    if (index < 0) return ACKRPC_E_NOT_FOUND;
  } else {
    if (n != 1) return ACKRPC_E_NOT_FOUND; /* which one? a name must say */
    index = 0;
  }
  int fd = LISTEN_FDS_START + (int)index;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return ACKRPC_E_ADDRESS;
  if (sockopt_int(fd, SO_DOMAIN) != AF_UNIX ||
      sockopt_int(fd, SO_TYPE) != SOCK_STREAM || sockopt_int(fd, SO_ACCEPTCONN) != 1)
    return ACKRPC_E_ADDRESS;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return ACKRPC_E_SYSTEM;
  int fdfl = fcntl(fd, F_GETFD);
  if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) != 0) return ACKRPC_E_SYSTEM;
  *ret_fd = fd;
  return ACKRPC_OK;
}
