/* frame.h: the ackrpc frame format, with no I/O.
 *
 * Bytes go in, a checked frame (or a precise error) comes out; encoders
 * produce whole frames. The server, the client and the fuzz targets share
 * this module, so every byte read from a socket passes through it. It never
 * reads past the length it is given and never allocates more than its
 * arena's cap. The format is specified in docs/PROTOCOL.md:
 *
 *   offset  size  field
 *   0       2     magic "AK" (0x41 0x4B)
 *   2       1     protocol version (1)
 *   3       1     frame type: 1 request, 2 reply
 *   4       4     head length, unsigned little-endian
 *   8       4     body length, unsigned little-endian
 *   12      head  RequestHead or ReplyHead (proto/ackrpc/wire.proto)
 *   12+head body  the serialized request or reply message
 *
 * Internal: not installed. Internal symbols use the akr_ prefix.
 */
#ifndef AKR_FRAME_H
#define AKR_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <protobuf-c/protobuf-c.h>

#include "ackrpc/common.h"
#include "ackrpc/status.h"
#include "spare.h"

#define AKR_PREFIX_LEN 12
#define AKR_MAGIC0 0x41 /* 'A' */
#define AKR_MAGIC1 0x4B /* 'K' */
#define AKR_VERSION 1

enum akr_frame_type { AKR_FRAME_REQUEST = 1, AKR_FRAME_REPLY = 2 };

/* Results of scanning and decoding. Each maps to the status a server answers
 * (akr_frame_error_status) and to a fixed message (akr_frame_error_text). */
typedef enum akr_frame_error {
  AKR_FRAME_OK = 0,
  AKR_FRAME_INCOMPLETE,     /* more bytes needed; not an error yet */
  AKR_FRAME_TRUNCATED,      /* the stream ended inside a frame */
  AKR_FRAME_BAD_MAGIC,      /* not an ackrpc frame */
  AKR_FRAME_BAD_VERSION,    /* a protocol version this side does not speak */
  AKR_FRAME_BAD_TYPE,       /* a request where a reply belongs, or unknown */
  AKR_FRAME_HEAD_TOO_LARGE, /* head length above ACKRPC_MAX_HEAD */
  AKR_FRAME_TOO_LARGE,      /* head + body above the receiver's limit */
  AKR_FRAME_BAD_HEAD,       /* the head does not decode */
  AKR_FRAME_BAD_METHOD,     /* method name missing or malformed */
  AKR_FRAME_BAD_CALL_ID,    /* call id missing or longer than 64 bytes */
  AKR_FRAME_BAD_METADATA,   /* too many entries, bad key, value too long */
  AKR_FRAME_BAD_STATUS,     /* a reply status outside 0..99 */
  AKR_FRAME_NO_MEMORY,      /* the arena's cap (or malloc) refused */
} akr_frame_error;

const char *akr_frame_error_text(akr_frame_error err);
ackrpc_status akr_frame_error_status(akr_frame_error err);

/* A frame located in a buffer: pointers into the caller's bytes. */
typedef struct akr_frame {
  uint8_t type;
  uint32_t head_len;
  uint32_t body_len;
  const uint8_t *head;
  const uint8_t *body;
  size_t frame_len; /* AKR_PREFIX_LEN + head_len + body_len */
} akr_frame;

/* Looks for one frame at the start of buf[0..len). `want_type` is the only
 * type accepted; `max_frame` caps head + body.
 * Returns OK (*ret_frame filled; the frame may be followed by more bytes),
 * INCOMPLETE (*ret_need, if not NULL, is the whole frame's length once the
 * prefix is in, else AKR_PREFIX_LEN; once the prefix is in, *ret_frame is
 * filled too, but only its head is usable, and only if that many bytes are
 * in: a server checks the head before the body arrives), or an error, reported as soon
 * as the bytes seen prove it: a wrong magic byte is caught at the first byte, a
 * too-large frame from its prefix alone, before any body is buffered. */
akr_frame_error akr_frame_scan(const uint8_t *buf, size_t len, uint8_t want_type,
                               size_t max_frame, akr_frame *ret_frame,
                               size_t *ret_need);

/* A per-call bump allocator with a hard cap, handed to protobuf-c. Freeing
 * single blocks is a no-op; akr_arena_reset() drops all but the first chunk
 * (kept for reuse), akr_arena_release() everything. */
typedef struct akr_arena_chunk akr_arena_chunk;
typedef struct akr_arena {
  ProtobufCAllocator pc; /* pass &arena->pc to protobuf-c */
  akr_arena_chunk *chunks;
  uint8_t *cur;
  size_t left;
  size_t total;     /* bytes of all chunks */
  size_t cap;       /* refuse to grow beyond this many bytes */
  int refused;      /* an allocation hit the cap */
  akr_spare *spare; /* where large chunks come from and go (NULL: mmap) */
} akr_arena;

void akr_arena_init(akr_arena *arena, size_t cap);
/* akr_arena_init() whose first `len` bytes come from `buf`: the caller's,
 * aligned for max_align_t, never freed by the arena and needed until it is
 * released. They count against `cap`; a decode that fits in them allocates
 * nothing. A reset forgets them. */
void akr_arena_init_on(akr_arena *arena, size_t cap, void *buf, size_t len);
void *akr_arena_alloc(akr_arena *arena, size_t size);
void akr_arena_reset(akr_arena *arena, size_t cap);
void akr_arena_release(akr_arena *arena);

/* A decoded, checked request head. Strings point into the arena. */
typedef struct akr_request {
  const char *method;
  uint64_t timeout_us;
  const uint8_t *call_id;
  size_t call_id_len;
  size_t n_metadata;
  struct Ackrpc__Wire__Metadata **metadata;
  const uint8_t *body;
  size_t body_len;
} akr_request;

/* Decodes and checks a request frame's head (allocating from `arena`). */
akr_frame_error akr_request_decode(const akr_frame *frame, akr_arena *arena,
                                   akr_request *ret_request);

/* A decoded reply head. `message` points into the arena ("" if none). */
typedef struct akr_reply {
  uint32_t status;
  const char *message;
  const uint8_t *body;
  size_t body_len;
} akr_reply;

akr_frame_error akr_reply_decode(const akr_frame *frame, akr_arena *arena,
                                 akr_reply *ret_reply);

/* Nesting. protobuf-c has no recursion limit (a ~30 KB message nested
 * 9,000 deep overflows its stack). akr_message_depth() returns the deepest
 * nesting of `desc`'s type, counting the message itself as 1, or
 * AKR_DEPTH_UNBOUNDED for a recursive type: only such types need the scan
 * below. akr_check_depth() walks the wire bytes guided by the descriptor
 * without allocating, and returns 0 if no message or group in them nests
 * deeper than `max_depth`, -1 if one does. Malformed input that does not
 * nest too deep returns 0: the decoder will refuse it. */
#define AKR_DEPTH_UNBOUNDED 0xffffffffu
unsigned akr_message_depth(const ProtobufCMessageDescriptor *desc);
int akr_check_depth(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                    size_t len, unsigned max_depth);

/* Checks a method name: "pkg.Service/Method" with [A-Za-z0-9_] and dots. */
int akr_method_name_valid(const char *name);
/* Checks a metadata key: 1..64 of [a-z0-9._-]. */
int akr_metadata_key_valid(const char *key, size_t len);

/* Encoding. The _size() functions check the spec against the protocol's
 * limits, remember the lengths in the spec and return the whole frame's size
 * (0 if a limit is broken); the _encode() functions then write exactly that
 * many bytes into `out`. Heads are encoded here directly (they are a few
 * fields); bodies are packed by protobuf-c straight into `out`. */
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
  size_t head_len_, body_len_; /* set by akr_request_size() */
} akr_request_spec;

size_t akr_request_size(akr_request_spec *spec);
size_t akr_request_encode(const akr_request_spec *spec, uint8_t *out);

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
  const ProtobufCMessage *body; /* NULL: empty body */
  size_t message_len_, head_len_, body_len_;
} akr_reply_spec;

size_t akr_reply_size(akr_reply_spec *spec);
size_t akr_reply_encode(const akr_reply_spec *spec, uint8_t *out);

#endif /* AKR_FRAME_H */
