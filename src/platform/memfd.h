/* memfd.h: frame bodies in sealed memfds (internal: not installed;
 * docs/PROTOCOL.md §2.6). The sender makes a memfd, writes the body into
 * its mapping, unmaps it and seals it against writing, growing and
 * shrinking; the receiver checks that what it got is such a memfd, within
 * its size limit, and maps it read-only. The seals are what make the
 * mapping safe: the sender can no longer change the bytes while they are
 * decoded, nor shrink the file under the mapping (which would make reading
 * it raise SIGBUS). Shared by the client and the server; no frames here. */
#ifndef AKR_MEMFD_H
#define AKR_MEMFD_H

#include <stddef.h>
#include <stdint.h>

/* The seals a body memfd must carry. */
#define AKR_MEMFD_SEALS_NEEDED "F_SEAL_WRITE, F_SEAL_GROW and F_SEAL_SHRINK"

/* A new memfd of `len` bytes (close-on-exec, sealable), mapped read-write
 * in *ret_map (NULL when len is 0). 0, or an errno (nothing is left
 * open). */
int akr_memfd_create(size_t len, int *ret_fd, uint8_t **ret_map);

/* Unmaps `map` (len bytes; NULL for none) and seals `fd` against writing,
 * growing, shrinking and further sealing. 0, or an errno (fd stays the
 * caller's either way). */
int akr_memfd_seal(int fd, uint8_t *map, size_t len);

/* A sealed body memfd holding a copy of data[0..len), written with
 * pwrite(). 0, or an errno (nothing is left open). */
int akr_memfd_from(const void *data, size_t len, int *ret_fd);

/* The same for message `m` packed (`len` = its packed size): packed into
 * a heap buffer first, then written, which is cheaper than packing
 * through a shared mapping of the memfd (a page fault a page,
 * docs/PERFORMANCE.md). 0, or an errno (ENOMEM). */
struct ProtobufCMessage;
int akr_memfd_pack(const struct ProtobufCMessage *m, size_t len, int *ret_fd);

/* The same from pieces: the bytes of iov[0..n_iov), `len` in all. */
struct iovec;
int akr_memfd_writev(const struct iovec *iov, size_t n_iov, size_t len, int *ret_fd);

typedef enum akr_memfd_error {
  AKR_MEMFD_OK = 0,
  AKR_MEMFD_NOT_MEMFD,  /* not a regular file, or one that cannot be sealed */
  AKR_MEMFD_UNSEALED,   /* a memfd without the seals needed */
  AKR_MEMFD_TOO_LARGE,  /* over the receiver's limit */
  AKR_MEMFD_MAP_FAILED, /* fstat(), mmap() failed (errno kept) */
} akr_memfd_error;

/* Checks that `fd` is a memfd sealed with AKR_MEMFD_SEALS_NEEDED whose
 * size is at most `max`, and maps it PROT_READ, MAP_PRIVATE: *ret_map and
 * *ret_len (for 0 bytes, a pointer to a static empty buffer, len 0), with
 * its pages mapped at once if `populate` (for a body that will be read
 * whole: one fault a page costs more, docs/PERFORMANCE.md). The mapping is
 * the caller's (akr_memfd_unmap()); fd stays the caller's and
 * may be closed at once. On error nothing is mapped and *ret_len holds the
 * size found (for TOO_LARGE), else 0. */
akr_memfd_error akr_memfd_map(int fd, size_t max, int populate, const uint8_t **ret_map,
                              size_t *ret_len);

/* A sentence for the error, for a status message. */
const char *akr_memfd_error_text(akr_memfd_error e);

/* Unmaps what akr_memfd_map() mapped. NULL or len 0: nothing. */
void akr_memfd_unmap(const uint8_t *map, size_t len);

#endif /* AKR_MEMFD_H */
