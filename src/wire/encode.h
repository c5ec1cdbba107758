/* encode.h: encoding request and reply frames (internal: not installed).
 *
 * The _size() functions check a spec against the protocol's limits, remember
 * the lengths in the spec and return the whole frame's size (0 if a limit is
 * broken); the _encode() functions then write exactly that many bytes into
 * `out`. Heads are encoded here directly (they are a few fields); bodies are
 * packed by protobuf-c straight into `out`. No I/O; nothing is allocated
 * (protobuf-c does for a nested message when packing into pieces). */
#ifndef AKR_ENCODE_H
#define AKR_ENCODE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <protobuf-c/protobuf-c.h>

#include "ackrpc/common.h"
#include "wire/frame.h"

/* The one-byte frame body of a frame whose body is in a memfd
 * (docs/PROTOCOL.md §2.6): no protobuf decoder accepts it (field number 0,
 * and a varint that is missing), so a peer that does not know the head
 * field refuses the call rather than serve an empty message. */
#define AKR_MEMFD_STUB 0x00

typedef struct akr_request_spec {
  const char *method;
  uint64_t timeout_us;
  const uint8_t *call_id;
  size_t call_id_len;
  const ackrpc_metadata *metadata;
  size_t n_metadata;
  const ProtobufCMessage *body; /* NULL: raw_body (or empty) */
  const uint8_t *raw_body;      /* already serialized body, if body is NULL */
  size_t raw_body_len;
  uint32_t fd_count;           /* descriptors sent with the frame */
  int body_memfd;              /* the body is in the last descriptor (§2.6): the
                                * frame's body is AKR_MEMFD_STUB; body, raw_body unused */
  int accept_body_memfd;       /* the client takes a reply body in a memfd */
  size_t head_len_, body_len_; /* set by akr_request_size() */
} akr_request_spec;

size_t akr_request_size(akr_request_spec *spec);
size_t akr_request_encode(const akr_request_spec *spec, uint8_t *out);
/* Writes the prefix and the head only (the frame up to its body); returns
 * where the body starts. */
uint8_t *akr_request_head_encode(const akr_request_spec *spec, uint8_t *out);

/* The same frame as a list of pieces for sendmsg(), so that a large body is
 * sent from the caller's memory instead of being copied into one buffer
 * first. For senders that write the frame before the message may change
 * (the blocking client; an asynchronous call must copy). Called after
 * akr_request_size(). The prefix, the head and the body's small fields are
 * copied into `scratch`; these are pieces of their own, pointing where they
 * are, and must stay unchanged until the frame is sent:
 *   - a raw body of at least AKR_IOV_REF_MIN bytes;
 *   - bytes and string values of at least AKR_IOV_REF_MIN bytes in fields
 *     (repeated or not) of the body message itself, the first
 *     (max_iov - 1) / 2 of them; those in nested messages are copied
 *     (protobuf-c packs a nested message into a temporary buffer).
 * Returns akr_request_size()'s frame size with iov[0..*ret_n_iov) filled
 * (at most max_iov entries; more than AKR_IOV_MAX are not used): their bytes
 * in order are exactly akr_request_encode()'s. Returns 0 with
 * *ret_scratch_need set if `scratch_cap` is below that many bytes (call again
 * with as many). Returns 0 with *ret_scratch_need 0 when the frame should be
 * encoded by akr_request_encode() instead: less than 3/4 of it would be sent
 * in place (the copy saved would not pay for the pieces), max_iov is below
 * 3, or the message did not pack as akr_request_size() measured it.
 * Allocates nothing itself (protobuf-c does for a nested message). */
#define AKR_IOV_MAX 64
#define AKR_IOV_REF_MIN (16u << 10)
size_t akr_request_encode_iov(const akr_request_spec *spec, uint8_t *scratch,
                              size_t scratch_cap, struct iovec *iov, size_t max_iov,
                              size_t *ret_n_iov, size_t *ret_scratch_need);

typedef struct akr_reply_spec {
  uint32_t status;
  const char *message;          /* NULL or "": none */
  const ProtobufCMessage *body; /* NULL: raw_body, or an empty body */
  const uint8_t *raw_body;      /* an encoded body (a stored reply's) */
  size_t raw_body_len;
  uint32_t fd_count;   /* descriptors sent with the frame */
  int body_memfd;      /* as in akr_request_spec */
  int body_memfd_read; /* the request's body memfd was taken (§2.6) */
  size_t message_len_, head_len_, body_len_;
} akr_reply_spec;

size_t akr_reply_size(akr_reply_spec *spec);
size_t akr_reply_encode(const akr_reply_spec *spec, uint8_t *out);

#endif /* AKR_ENCODE_H */
