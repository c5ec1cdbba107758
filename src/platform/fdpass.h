/* fdpass.h: descriptors on a Unix stream socket (internal: not installed):
 * sending a frame's descriptors with SCM_RIGHTS, receiving them with the
 * bytes they came with, and telling which frame they belong to
 * (docs/PROTOCOL.md §2.5). Shared by the client and the server.
 *
 * Attribution: the bytes of a connection are numbered from 0; a batch of
 * descriptors is kept with the range [a, b) of the bytes read by the same
 * recvmsg(), and belongs to the last frame that starts in that range. A
 * conforming sender starts the sendmsg() that carries a frame's
 * descriptors at the frame's first byte and ends it within the frame, so
 * that frame is its own. Not here: frames (wire/), what a count that does
 * not match means for a call (the client and the server decide). */
#ifndef AKR_FDPASS_H
#define AKR_FDPASS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define AKR_FDS_MAX 253 /* SCM_MAX_FD: the most one sendmsg() may pass */
/* Batches received and not yet claimed by their frame. A conforming peer
 * needs two at most (the frame being read and the next one, started in the
 * same read); a batch that finds no room is closed and the queue marked
 * `lost`. */
#define AKR_FDQ_LEN 4

/* Descriptors received by one recvmsg(). `fds` is malloc'd (NULL if n is
 * 0); entries set to -1 have been taken. */
typedef struct akr_fd_batch {
  uint64_t a, b; /* the stream bytes read with it */
  int *fds;
  unsigned n;
  int ctrunc; /* MSG_CTRUNC: more came than the control buffer held (the
               * kernel closed those), or no memory to keep them */
} akr_fd_batch;

typedef struct akr_fdq {
  akr_fd_batch q[AKR_FDQ_LEN]; /* oldest first */
  unsigned n;
  int lost; /* a batch was closed for want of room: attribution is gone */
} akr_fdq;

/* recvmsg() of up to `len` bytes into `buf`, as read() would, with room
 * for `max_fds` descriptors (received close-on-exec; 0: the kernel closes
 * any). A batch that came (or was cut: MSG_CTRUNC) is queued in `q`,
 * tagged with the stream range [at, at + result). Returns what recvmsg()
 * returns (errno set on -1). */
ssize_t akr_fd_read(int fd, void *buf, size_t len, unsigned max_fds, akr_fdq *q,
                    uint64_t at);

/* sendmsg() of the pieces, with `fds` (n_fds may be 0) as one SCM_RIGHTS
 * message. The descriptors stay the caller's. Returns what sendmsg()
 * returns; if it returned > 0, the descriptors went with the first byte. */
ssize_t akr_fd_send(int fd, const struct iovec *iov, size_t n_iov, const int *fds,
                    size_t n_fds, int flags);

/* The batch of the frame at stream bytes [s, e) (its prefix read): closes
 * batches that ended at or before s (left by frames refused before they
 * claimed theirs), then moves the batch with a <= s < b <= e, if any, to
 * *ret (zeroed if none). A batch with b > e is left for a later frame. */
void akr_fdq_claim(akr_fdq *q, uint64_t s, uint64_t e, akr_fd_batch *ret);

/* Whether a batch came inside the frame [s, e) after its first byte (a
 * read in which no frame starts: a misplaced batch; closed here), or the
 * queue has lost one. For a complete frame, after akr_fdq_claim(). */
int akr_fdq_misplaced(akr_fdq *q, uint64_t s, uint64_t e);

/* Closes the batch's descriptors that were not taken, frees it, zeroes
 * it. */
void akr_fd_batch_close(akr_fd_batch *batch);

/* Closes every batch queued and clears the queue (connection ended). */
void akr_fdq_clear(akr_fdq *q);

/* Whether each of fds[0..n) is an open descriptor. */
int akr_fds_open(const int *fds, size_t n);

/* Closes fds[0..n) that are >= 0. */
void akr_fds_close(const int *fds, size_t n);

#endif /* AKR_FDPASS_H */
