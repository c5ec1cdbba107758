/* memfd_floor.c: what moving a large body costs on this machine, below
 * ackrpc (docs/PERFORMANCE.md §13.2). Two processes on a socketpair, one
 * call in flight: the caller sends a body of --size bytes, the receiver
 * takes it, reads its first byte and answers that byte. Each mode is one
 * way of moving the body; ackrpc's own paths cost at least what the mode
 * they use costs here:
 *
 *   socket-copy  the body through the socket into a warm buffer (the raw
 *                peers: two copies)
 *   memfd-pass   one sealed memfd, made once and passed each call; the
 *                receiver checks its seals, maps it, does not read it
 *   memfd-touch  the same, reading the first byte (a page fault, and the
 *                page-table work of unmapping a page that was used)
 *   memfd-pread  the same memfd, read whole with pread() into a warm buffer
 *   memfd-fresh  a new memfd each call, written with pwrite(), sealed,
 *                passed and mapped, its first byte read (ackrpc's
 *                memfd_threshold path)
 *
 * The receiver answers before it unmaps and closes a body, as ackrpc's
 * server does (a call ends after its reply is written): the unmap overlaps
 * the caller's next step, which in memfd-fresh is making the next memfd.
 *
 * One line per mode: "floor mode=M size=S calls=N calls_per_s=X
 * us_per_call=Y". Exit 0, or 1 with a message on stderr if anything
 * failed or a byte came back wrong (memfd-pass reads nothing, so it checks
 * only that an answer came). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEALS (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK)

enum mode { SOCKET_COPY, MEMFD_PASS, MEMFD_TOUCH, MEMFD_PREAD, MEMFD_FRESH, N_MODES };
static const char *const mode_names[N_MODES] = {
    "socket-copy", "memfd-pass", "memfd-touch", "memfd-pread", "memfd-fresh"};

/* What the caller sends first: the mode, the body's size, and the byte
 * the receiver must answer (the body's first byte; -1 for memfd-pass). */
typedef struct head {
  uint32_t mode;
  int32_t expect;
  uint64_t len;
} head;

static int fail(const char *what) {
  fprintf(stderr, "memfd-floor: %s: %s\n", what, strerror(errno));
  return -1;
}

static int full_io(int fd, void *buf, size_t len, int writing) {
  for (size_t done = 0; done < len;) {
    ssize_t n = writing ? write(fd, (char *)buf + done, len - done)
                        : read(fd, (char *)buf + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EPIPE;
      return -1;
    }
    done += (size_t)n;
  }
  return 0;
}

static int send_head(int s, const head *h, int fd) {
  struct iovec iov = {(void *)h, sizeof *h};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    memset(&u, 0, sizeof u);
    m.msg_control = u.buf;
    m.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  return sendmsg(s, &m, MSG_NOSIGNAL) == (ssize_t)sizeof *h ? 0 : -1;
}

/* 1 with *h (and *fd, -1 for none), 0 at EOF, -1 on error. */
static int recv_head(int s, head *h, int *fd) {
  struct iovec iov = {h, sizeof *h};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  struct msghdr m = {.msg_iov = &iov,
                     .msg_iovlen = 1,
                     .msg_control = u.buf,
                     .msg_controllen = sizeof u.buf};
  ssize_t n = recvmsg(s, &m, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  if (n == 0) return 0;
  if (n != (ssize_t)sizeof *h) return -1;
  *fd = -1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
    memcpy(fd, CMSG_DATA(c), sizeof *fd);
  return 1;
}

/* The receiver: answers each call with the byte it read (0 for none). */
static int receive(int s, uint8_t *buf) {
  for (;;) {
    head h;
    int fd;
    int r = recv_head(s, &h, &fd);
    if (r <= 0) return r;
    uint8_t answer = 0;
    if (h.mode == SOCKET_COPY) {
      if (full_io(s, buf, h.len, 0) != 0) return fail("read");
      answer = buf[0];
    } else {
      struct stat st;
      int seals = fd >= 0 ? fcntl(fd, F_GET_SEALS) : -1;
      if (seals < 0 || (seals & SEALS) != SEALS || fstat(fd, &st) != 0 ||
          (uint64_t)st.st_size != h.len) {
        errno = EINVAL;
        return fail("not a sealed memfd of the size sent");
      }
      if (h.mode == MEMFD_PREAD) {
        for (size_t done = 0; done < h.len;) {
          ssize_t n = pread(fd, buf + done, h.len - done, (off_t)done);
          if (n <= 0) return fail("pread");
          done += (size_t)n;
        }
        answer = buf[0];
      } else {
        uint8_t *map = mmap(NULL, h.len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) return fail("mmap");
        if (h.mode != MEMFD_PASS) answer = map[0];
        if (full_io(s, &answer, 1, 1) != 0) return fail("answer");
        munmap(map, h.len);
        close(fd);
        continue;
      }
      close(fd);
    }
    if (full_io(s, &answer, 1, 1) != 0) return fail("answer");
  }
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int sealed_memfd(const uint8_t *data, size_t len) {
  int fd = memfd_create("memfd-floor", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return fail("memfd_create");
  for (size_t done = 0; done < len;) {
    ssize_t n = pwrite(fd, data + done, len - done, (off_t)done);
    if (n <= 0) {
      fail("pwrite");
      close(fd);
      return -1;
    }
    done += (size_t)n;
  }
  if (fcntl(fd, F_ADD_SEALS, SEALS | F_SEAL_SEAL) != 0) {
    fail("seal");
    close(fd);
    return -1;
  }
  return fd;
}

/* `calls` calls in one mode; the line on stdout. */
static int run_mode(int s, enum mode mode, uint8_t *body, size_t len, long calls) {
  int kept = -1;
  if (mode == MEMFD_PASS || mode == MEMFD_TOUCH || mode == MEMFD_PREAD) {
    body[0] = 0x5a; /* what a reader of the kept memfd answers */
    if ((kept = sealed_memfd(body, len)) < 0) return -1;
  }
  int rc = 0;
  double start = now();
  for (long i = 0; i < calls && rc == 0; i++) {
    head h = {.mode = (uint32_t)mode, .len = len};
    int fd = kept;
    if (kept >= 0) {
      h.expect = mode == MEMFD_PASS ? 0 : 0x5a;
    } else {
      body[0] = (uint8_t)(i * 7 + 1);
      h.expect = body[0];
      if (mode == MEMFD_FRESH && (fd = sealed_memfd(body, len)) < 0) {
        rc = -1;
        break;
      }
    }
    rc = send_head(s, &h, fd);
    if (rc == 0 && mode == SOCKET_COPY) rc = full_io(s, body, len, 1);
    if (mode == MEMFD_FRESH) close(fd);
    uint8_t got;
    if (rc != 0 || full_io(s, &got, 1, 0) != 0) {
      rc = fail(mode_names[mode]);
    } else if (got != (uint8_t)h.expect) {
      fprintf(stderr, "memfd-floor: %s: call %ld answered %u, not %d\n",
              mode_names[mode], i, got, h.expect);
      rc = -1;
    }
  }
  double secs = now() - start;
  if (kept >= 0) close(kept);
  if (rc == 0)
    printf("floor mode=%s size=%zu calls=%ld calls_per_s=%.0f us_per_call=%.1f\n",
           mode_names[mode], len, calls, (double)calls / secs,
           secs / (double)calls * 1e6);
  return rc;
}

static int usage(void) {
  fprintf(stderr, "usage: memfd-floor [--size BYTES] [--calls N] [--mode NAME]\n"
                  "modes: socket-copy memfd-pass memfd-touch memfd-pread memfd-fresh"
                  " (default: all)\n");
  return 2;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"size", required_argument, NULL, 's'},
                                       {"calls", required_argument, NULL, 'n'},
                                       {"mode", required_argument, NULL, 'm'},
                                       {NULL, 0, NULL, 0}};
  unsigned long long size = 1 << 20;
  long calls = 2000;
  int only = -1;
  for (int c; (c = getopt_long(argc, argv, "s:n:m:", opts, NULL)) != -1;) {
    char *end = NULL;
    if (c == 's') {
      size = strtoull(optarg, &end, 10);
      if (*end || size == 0 || size > (1ull << 32)) return usage();
    } else if (c == 'n') {
      calls = strtol(optarg, &end, 10);
      if (*end || calls <= 0) return usage();
    } else if (c == 'm') {
      for (int i = 0; i < N_MODES; i++)
        if (strcmp(optarg, mode_names[i]) == 0) only = i;
      if (only < 0) return usage();
    } else {
      return usage();
    }
  }
  if (optind != argc) return usage();
  /* A peer gone is an error return from write(), reported, not a signal. */
  signal(SIGPIPE, SIG_IGN);
  size_t len = (size_t)size;
  uint8_t *body = malloc(len), *buf = malloc(len);
  int sv[2];
  if (!body || !buf) {
    fail("malloc");
    return 1;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    fail("socketpair");
    return 1;
  }
  memset(body, 0xa5, len);
  memset(buf, 0, len); /* warm, as the raw peers' buffers are */
  pid_t pid = fork();
  if (pid < 0) {
    fail("fork");
    return 1;
  }
  if (pid == 0) {
    close(sv[0]);
    _exit(receive(sv[1], buf) == 0 ? 0 : 1);
  }
  close(sv[1]);
  int rc = 0;
  for (int m = 0; m < N_MODES && rc == 0; m++)
    if (only < 0 || only == m) rc = run_mode(sv[0], (enum mode)m, body, len, calls);
  shutdown(sv[0], SHUT_WR);
  int status = 0;
  if (rc != 0) kill(pid, SIGKILL);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  close(sv[0]);
  free(body);
  free(buf);
  if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    fprintf(stderr, "memfd-floor: the receiver failed\n");
    rc = -1;
  }
  return rc == 0 ? 0 : 1;
}
