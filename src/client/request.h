/* request.h: what a call sends (internal: not installed): its call id, its
 * timeout and its request frame, decided in one place for every path.
 *
 * Call ids: 64 random bits fixed per id source, then a 64-bit counter:
 * unique across clients and restarts without a system call per call. */
#ifndef AKR_CLIENT_REQUEST_H
#define AKR_CLIENT_REQUEST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <protobuf-c/protobuf-c.h>

#include "ackrpc/client.h"
#include "core/rng.h"
#include "wire/encode.h"

#define AKR_REQUEST_STACK 4096 /* frames up to this size need no malloc */

typedef struct akr_ids {
  uint8_t prefix[8];
  atomic_uint_least64_t next;
  akr_rng rng; /* the prefix, and the backoff's jitter */
} akr_ids;

void akr_ids_init(akr_ids *ids, const void *salt);

/* What a call sends: a method and either a message or serialized bytes,
 * and how its reply is decoded (NULL: kept as bytes). */
typedef struct akr_call_args {
  const char *method;
  const ProtobufCMessage *request; /* NULL: raw/raw_len (or empty) */
  const uint8_t *raw;
  size_t raw_len;
  const ProtobufCMessageDescriptor *reply_desc;
} akr_call_args;

/* A method fully described, and a request (if any) of its request type. */
int akr_call_args_ok(const ackrpc_method *method, const ProtobufCMessage *request);

/* The call's timeout: the options', else the default. */
uint32_t akr_timeout_ms(const ackrpc_call_options *options, uint32_t default_ms);

/* The encoded frame: `iov`/`n_iov` (`len` bytes in all) point into `stack`,
 * a heap buffer, or (for in-place frames) the caller's request. */
typedef struct akr_request_frame {
  size_t len;
  size_t n_iov;
  struct iovec iov[AKR_IOV_MAX];
  uint8_t *heap;
  /* The descriptors to send: options->fds, then the body's memfd if the
   * body is in one (docs/PROTOCOL.md §2.6). */
  const int *fds;
  size_t n_fds;
  int *fds_heap;
  int own_fd; /* the body memfd made for this frame; -1: none */
  uint8_t stack[AKR_REQUEST_STACK];
} akr_request_frame;

/* Sets r's call id if it has none yet (a retry keeps the first one): the
 * options' (E_INVAL if not 1 to 64 bytes), else a new one from `ids`. Then
 * checks the request against the protocol's limits and fills *ret_spec,
 * its frame's size in *ret_len. `memfd` (AKR_MEMFD_*) says whether the
 * request says it takes a reply body in a memfd, and whether options->body
 * may be sent (E_INVAL otherwise). On error the status and an explanation
 * are in r. */
#define AKR_MEMFD_REPLIES 1u /* the head says: a reply body in a memfd is taken */
#define AKR_MEMFD_SEND 2u    /* a body in a memfd may be sent (blocking paths) */
ackrpc_status akr_request_prepare(akr_ids *ids, const akr_call_args *args,
                                  const ackrpc_call_options *options,
                                  uint32_t timeout_ms, unsigned memfd,
                                  akr_request_spec *ret_spec, size_t *ret_len,
                                  ackrpc_result *r);

/* akr_request_prepare(), then encodes the frame into `f`. With `in_place` (the
 * request stays unchanged until the frame is sent: the blocking calls) a
 * large frame is encoded as pieces that leave its large byte strings where
 * they are: copying them into one buffer was most of a large call's CPU.
 * A body of at least `memfd_min` bytes (0: never), or options->body, goes
 * in a sealed memfd instead, passed as the frame's last descriptor (if a
 * memfd cannot be made, the body goes inline). Free with
 * akr_request_frame_free() (which closes the memfd made here). */
ackrpc_status akr_request_frame_encode(akr_request_frame *f, akr_ids *ids,
                                       const akr_call_args *args,
                                       const ackrpc_call_options *options,
                                       uint32_t timeout_ms, int in_place,
                                       size_t memfd_min, unsigned memfd,
                                       ackrpc_result *r);
void akr_request_frame_free(akr_request_frame *f);

/* A sealed ackrpc_body (body.c), and its memfd. */
int akr_body_sealed(const ackrpc_body *body);
int akr_body_fd(const ackrpc_body *body);

/* Where an asynchronous call keeps its copy of options->fds: after its
 * frame of `frame_len` bytes, in the same allocation. */
#define AKR_FDS_AFTER(frame_len)                                                       \
  (((frame_len) + sizeof(int) - 1) / sizeof(int) * sizeof(int))
static inline size_t akr_fds_room(size_t frame_len, const ackrpc_call_options *o) {
  return AKR_FDS_AFTER(frame_len) + (o ? o->n_fds : 0) * sizeof(int);
}

#endif /* AKR_CLIENT_REQUEST_H */
