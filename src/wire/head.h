/* head.h: decoding and checking the head of a frame (internal: not
 * installed).
 *
 * Untrusted heads are decoded by protobuf-c, but only ever from exactly the
 * number of bytes the prefix announced, and only once all of them are in:
 * protobuf-c accepts some truncated messages as valid, so the lengths in the
 * prefix, not the decoder, decide where a head and a body end. Everything
 * decoded is allocated from the caller's arena. protobuf-c refuses groups
 * (wire types 3 and 4) even in unknown fields; a head that holds some is
 * decoded again without them (groups.h), as PROTOCOL.md §2.3 asks. */
#ifndef AKR_HEAD_H
#define AKR_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "mem/arena.h"
#include "wire/frame.h"

struct Ackrpc__Wire__Metadata;

/* A decoded, checked request head. Strings point into the arena; body into
 * the frame's buffer. */
typedef struct akr_request {
  const char *method;
  uint64_t timeout_us;
  const uint8_t *call_id;
  size_t call_id_len;
  size_t n_metadata;
  struct Ackrpc__Wire__Metadata **metadata;
  const uint8_t *body;
  size_t body_len;
  uint32_t fd_count;     /* descriptors the frame says it carries */
  int body_memfd;        /* the body is in the last descriptor (§2.6) */
  int accept_body_memfd; /* the client takes a reply body in a memfd */
} akr_request;

/* Decodes and checks a request frame's head: a method name, a call id of 1
 * to 64 bytes, metadata within its limits, no NUL inside a string. */
akr_frame_error akr_request_decode(const akr_frame *frame, akr_arena *arena,
                                   akr_request *ret_request);

/* A decoded reply head. `message` points into the arena ("" if none). */
typedef struct akr_reply {
  uint32_t status;
  const char *message;
  const uint8_t *body;
  size_t body_len;
  uint32_t fd_count;
  int body_memfd;      /* the body is in the last descriptor (§2.6) */
  int body_memfd_read; /* the request's body memfd was taken (§2.6) */
} akr_reply;

/* Decodes a reply frame's head; BAD_STATUS for a local code on the wire. */
akr_frame_error akr_reply_decode(const akr_frame *frame, akr_arena *arena,
                                 akr_reply *ret_reply);

#endif /* AKR_HEAD_H */
