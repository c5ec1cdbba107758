/* memfd.c: frame bodies in sealed memfds (memfd.h). */
#include "platform/memfd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <protobuf-c/protobuf-c.h>

#define SEALS (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK)

static const uint8_t empty[1];

int akr_memfd_create(size_t len, int *ret_fd, uint8_t **ret_map) {
  if (len > (size_t)INT64_MAX) return EFBIG;
  int fd = memfd_create("ackrpc-body", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return errno;
  uint8_t *map = NULL;
  if (len) {
    /* Pages allocated and mapped in one go: a page fault for each of them
     * cost more than the copy into them. */
    if (ftruncate(fd, (off_t)len) != 0) goto fail;
    map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (map == MAP_FAILED) goto fail;
  }
  *ret_fd = fd;
  *ret_map = map;
  return 0;
fail:;
  int e = errno;
  close(fd);
  return e;
}

int akr_memfd_seal(int fd, uint8_t *map, size_t len) {
  /* F_SEAL_WRITE is refused while a writable shared mapping exists. */
  if (map && len) munmap(map, len);
  if (fcntl(fd, F_ADD_SEALS, SEALS | F_SEAL_SEAL) != 0) return errno;
  return 0;
}

int akr_memfd_from(const void *data, size_t len, int *ret_fd) {
  struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
  return akr_memfd_writev(&iov, 1, len, ret_fd);
}

int akr_memfd_pack(const ProtobufCMessage *m, size_t len, int *ret_fd) {
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) return ENOMEM;
  protobuf_c_message_pack(m, buf);
  int e = akr_memfd_from(buf, len, ret_fd);
  free(buf);
  return e;
}

int akr_memfd_writev(const struct iovec *iov, size_t n_iov, size_t len, int *ret_fd) {
  if (len > (size_t)INT64_MAX) return EFBIG;
  int fd = memfd_create("ackrpc-body", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return errno;
  /* Written, not copied into a shared mapping: the kernel copies into its
   * pages without a page fault (or, in a VM, a page-table exit) for each. */
  size_t done = 0, i = 0, off = 0;
  while (done < len && i < n_iov) {
    struct iovec part[64];
    size_t n = 0;
    for (size_t j = i, o = off; j < n_iov && n < 64; j++, o = 0)
      part[n++] = (struct iovec){(uint8_t *)iov[j].iov_base + o, iov[j].iov_len - o};
    ssize_t w = pwritev(fd, part, (int)n, (off_t)done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) goto fail;
    done += (size_t)w;
    for (size_t left = (size_t)w; left && i < n_iov;) {
      size_t room = iov[i].iov_len - off;
      if (left < room) {
        off += left;
        left = 0;
      } else {
        left -= room;
        i++;
        off = 0;
      }
    }
  }
  if (done != len || (len == 0 && ftruncate(fd, 0) != 0)) {
    errno = EIO;
    goto fail;
  }
  int e = akr_memfd_seal(fd, NULL, 0);
  if (e) {
    close(fd);
    return e;
  }
  *ret_fd = fd;
  return 0;
fail:;
  int err = errno;
  close(fd);
  return err;
}

akr_memfd_error akr_memfd_map(int fd, size_t max, int populate, const uint8_t **ret_map,
                              size_t *ret_len) {
  *ret_len = 0;
  struct stat st;
  if (fstat(fd, &st) != 0) return AKR_MEMFD_MAP_FAILED;
  if (!S_ISREG(st.st_mode)) return AKR_MEMFD_NOT_MEMFD;
  /* Only shmem files (memfds among them) have seals: any other file,
   * even a regular one, fails here with EINVAL. */
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) return AKR_MEMFD_NOT_MEMFD;
  if ((seals & SEALS) != SEALS) return AKR_MEMFD_UNSEALED;
  if (st.st_size < 0 || (uint64_t)st.st_size > max) {
    *ret_len = st.st_size < 0 ? 0 : (size_t)st.st_size;
    return AKR_MEMFD_TOO_LARGE;
  }
  size_t len = (size_t)st.st_size;
  if (!len) {
    *ret_map = empty;
    return AKR_MEMFD_OK;
  }
  void *map =
      mmap(NULL, len, PROT_READ, MAP_PRIVATE | (populate ? MAP_POPULATE : 0), fd, 0);
  if (map == MAP_FAILED) return AKR_MEMFD_MAP_FAILED;
  *ret_map = map;
  *ret_len = len;
  return AKR_MEMFD_OK;
}

const char *akr_memfd_error_text(akr_memfd_error e) {
  switch (e) {
  case AKR_MEMFD_OK: return "ok";
  case AKR_MEMFD_NOT_MEMFD: return "the body descriptor is not a memfd";
  case AKR_MEMFD_UNSEALED:
    return "the body memfd is not sealed with " AKR_MEMFD_SEALS_NEEDED;
  case AKR_MEMFD_TOO_LARGE: return "the body memfd is larger than the size limit";
  case AKR_MEMFD_MAP_FAILED: break;
  }
  return "the body memfd cannot be mapped";
}

void akr_memfd_unmap(const uint8_t *map, size_t len) {
  if (map && len && map != empty) munmap((void *)map, len);
}
