/* fdpass.c: descriptors with SCM_RIGHTS, and their attribution to frames
 * (fdpass.h). */
#include "platform/fdpass.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void akr_fds_close(const int *fds, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= 0) close(fds[i]);
}

int akr_fds_open(const int *fds, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fds[i] < 0 || fcntl(fds[i], F_GETFD) < 0) return 0;
  return 1;
}

void akr_fd_batch_close(akr_fd_batch *b) {
  if (b->fds) akr_fds_close(b->fds, b->n);
  free(b->fds);
  memset(b, 0, sizeof *b);
}

void akr_fdq_clear(akr_fdq *q) {
  for (unsigned i = 0; i < q->n; i++)
    akr_fd_batch_close(&q->q[i]);
  q->n = 0;
  q->lost = 0;
}

/* Takes the descriptors out of a received control message. */
static void take_cmsgs(struct msghdr *m, akr_fd_batch *b) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *fds = (int *)(void *)CMSG_DATA(c);
    int *keep = n ? realloc(b->fds, (b->n + n) * sizeof(int)) : NULL;
    if (!keep) {
      /* No memory to keep them: closed, and the frame is refused as cut. */
      for (size_t i = 0; i < n; i++) {
        int fd;
        memcpy(&fd, fds + i, sizeof fd);
        close(fd);
      }
      b->ctrunc = 1;
      continue;
    }
    memcpy(keep + b->n, fds, n * sizeof(int));
    b->fds = keep;
    b->n += (unsigned)n;
  }
}

ssize_t akr_fd_read(int fd, void *buf, size_t len, unsigned max_fds, akr_fdq *q,
                    uint64_t at) {
  if (max_fds > AKR_FDS_MAX) max_fds = AKR_FDS_MAX;
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(AKR_FDS_MAX * sizeof(int))];
  } ctl;
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  struct msghdr m = {.msg_iov = &iov,
                     .msg_iovlen = 1,
                     .msg_control = max_fds ? ctl.bytes : NULL,
                     .msg_controllen = max_fds ? CMSG_SPACE(max_fds * sizeof(int)) : 0};
  ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
  if (n < 0) return n;
  int cut = (m.msg_flags & MSG_CTRUNC) != 0;
  if (!cut && (m.msg_controllen == 0 || !CMSG_FIRSTHDR(&m))) return n;
  akr_fd_batch b = {.a = at, .b = at + (uint64_t)n, .ctrunc = cut};
  if (m.msg_controllen) take_cmsgs(&m, &b);
  if (b.n == 0 && !b.ctrunc) return n;
  if (q->n == AKR_FDQ_LEN) {
    akr_fd_batch_close(&b);
    q->lost = 1;
    return n;
  }
  q->q[q->n++] = b;
  return n;
}

ssize_t akr_fd_send(int fd, const struct iovec *iov, size_t n_iov, const int *fds,
                    size_t n_fds, int flags) {
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(AKR_FDS_MAX * sizeof(int))];
  } ctl;
  struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = n_iov};
  if (n_fds) {
    if (n_fds > AKR_FDS_MAX) {
      errno = EINVAL;
      return -1;
    }
    memset(&ctl, 0, sizeof ctl);
    m.msg_control = ctl.bytes;
    m.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
  }
  return sendmsg(fd, &m, flags);
}

/* Removes batch i from the queue, keeping the order. */
static void remove_at(akr_fdq *q, unsigned i) {
  memmove(&q->q[i], &q->q[i + 1], (q->n - i - 1) * sizeof q->q[0]);
  q->n--;
}

void akr_fdq_claim(akr_fdq *q, uint64_t s, uint64_t e, akr_fd_batch *ret) {
  memset(ret, 0, sizeof *ret);
  while (q->n && q->q[0].b <= s) {
    akr_fd_batch_close(&q->q[0]);
    remove_at(q, 0);
  }
  if (q->n && q->q[0].a <= s && q->q[0].b <= e) {
    *ret = q->q[0];
    remove_at(q, 0);
  }
}

int akr_fdq_misplaced(akr_fdq *q, uint64_t s, uint64_t e) {
  int bad = q->lost;
  for (unsigned i = 0; i < q->n;) {
    if (q->q[i].a > s && q->q[i].b <= e) {
      akr_fd_batch_close(&q->q[i]);
      remove_at(q, i);
      bad = 1;
    } else {
      i++;
    }
  }
  return bad;
}
