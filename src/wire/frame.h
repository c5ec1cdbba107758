/* frame.h: the ackrpc frame format, with no I/O (internal: not installed).
 *
 * Bytes go in, a located frame (or a precise error) comes out. The server,
 * the client and the fuzz targets share this layer, so every byte read from a
 * socket passes through it. It never reads past the length it is given. The
 * format is specified in docs/PROTOCOL.md:
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
 * Not here: decoding heads (head.h), encoding (encode.h), nesting
 * (depth.h), names (names.h). Internal symbols use the akr_ prefix.
 */
#ifndef AKR_FRAME_H
#define AKR_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "ackrpc/common.h"
#include "ackrpc/status.h"

#define AKR_PREFIX_LEN 12
#define AKR_MAGIC0 0x41 /* 'A' */
#define AKR_MAGIC1 0x4B /* 'K' */
#define AKR_VERSION 1
/* Reply statuses a frame may carry: canonical codes and codes a newer peer
 * may add below the local range (status.h). */
#define AKR_MAX_WIRE_STATUS 99

enum akr_frame_type { AKR_FRAME_REQUEST = 1, AKR_FRAME_REPLY = 2 };

#define AKR_STR_(x) #x
#define AKR_STR(x) AKR_STR_(x)

/* X(NAME, status a server answers, message): the one table of frame errors.
 * The status comes from the status table (status.h); the message names the
 * limit from the constant that sets it. */
#define AKR_FRAME_ERRORS(X)                                                            \
  X(OK, OK, "ok")                                                                      \
  X(INCOMPLETE, INVALID_ARGUMENT, "frame incomplete")                                  \
  X(TRUNCATED, INVALID_ARGUMENT, "frame cut short: the stream ended inside it")        \
  X(BAD_MAGIC, INVALID_ARGUMENT, "not an ackrpc frame (bad magic)")                    \
  X(BAD_VERSION, UNIMPLEMENTED,                                                        \
    "unsupported protocol version (this side speaks " AKR_STR(AKR_VERSION) ")")        \
  X(BAD_TYPE, INVALID_ARGUMENT, "unexpected frame type")                               \
  X(HEAD_TOO_LARGE, RESOURCE_EXHAUSTED,                                                \
    "frame head larger than " AKR_STR(ACKRPC_MAX_HEAD) " bytes")                       \
  X(TOO_LARGE, RESOURCE_EXHAUSTED, "frame larger than the receiver accepts")           \
  X(BAD_HEAD, INVALID_ARGUMENT, "frame head does not decode")                          \
  X(BAD_METHOD, INVALID_ARGUMENT, "method name missing or malformed")                  \
  X(BAD_CALL_ID, INVALID_ARGUMENT,                                                     \
    "call id missing or longer than " AKR_STR(ACKRPC_MAX_CALL_ID) " bytes")            \
  X(BAD_METADATA, INVALID_ARGUMENT, "metadata malformed or over its limits")           \
  X(BAD_STATUS, INVALID_ARGUMENT,                                                      \
    "reply status outside 0.." AKR_STR(AKR_MAX_WIRE_STATUS))                           \
  X(NO_MEMORY, RESOURCE_EXHAUSTED, "decoding needs more memory than allowed")

/* Results of scanning and decoding. INCOMPLETE means "more bytes needed",
 * not an error yet. */
typedef enum akr_frame_error {
#define AKR_FRAME_ENUM_(name, status, msg) AKR_FRAME_##name,
  AKR_FRAME_ERRORS(AKR_FRAME_ENUM_)
#undef AKR_FRAME_ENUM_
} akr_frame_error;

/* The fixed message of an error (static storage). */
const char *akr_frame_error_text(akr_frame_error err);
/* The status a server answers for it. */
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
 * in: a server checks the head before the body arrives), or an error,
 * reported as soon as the bytes seen prove it: a wrong magic byte is caught
 * at the first byte, a too-large frame from its prefix alone, before any
 * body is buffered. */
akr_frame_error akr_frame_scan(const uint8_t *buf, size_t len, uint8_t want_type,
                               size_t max_frame, akr_frame *ret_frame,
                               size_t *ret_need);

/* Writes a frame's 12-byte prefix at `p`; returns p + AKR_PREFIX_LEN. */
uint8_t *akr_put_prefix(uint8_t *p, uint8_t type, size_t head_len, size_t body_len);

#endif /* AKR_FRAME_H */
