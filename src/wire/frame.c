/* frame.c: the frame prefix: scanning a buffer for one frame, writing a
 * prefix, and the table of frame errors (frame.h). */
#include "wire/frame.h"

#include "wire/pb.h"

static const struct {
  const char *text;
  ackrpc_status status;
} errors[] = {
#define AKR_FRAME_ROW_(name, st, msg) [AKR_FRAME_##name] = {msg, ACKRPC_##st},
    AKR_FRAME_ERRORS(AKR_FRAME_ROW_)
#undef AKR_FRAME_ROW_
};

const char *akr_frame_error_text(akr_frame_error err) {
  if ((unsigned)err >= sizeof errors / sizeof *errors) return "unknown frame error";
  return errors[err].text;
}

ackrpc_status akr_frame_error_status(akr_frame_error err) {
  if ((unsigned)err >= sizeof errors / sizeof *errors) return ACKRPC_INVALID_ARGUMENT;
  return errors[err].status;
}

akr_frame_error akr_frame_scan(const uint8_t *buf, size_t len, uint8_t want_type,
                               size_t max_frame, akr_frame *ret_frame,
                               size_t *ret_need) {
  /* Reject as early as the bytes allow: a stray client should be told at its
   * first wrong byte, not after we buffered a frame's worth of it. */
  if (len >= 1 && buf[0] != AKR_MAGIC0) return AKR_FRAME_BAD_MAGIC;
  if (len >= 2 && buf[1] != AKR_MAGIC1) return AKR_FRAME_BAD_MAGIC;
  if (len >= 3 && buf[2] != AKR_VERSION) return AKR_FRAME_BAD_VERSION;
  if (len >= 4 && buf[3] != want_type) return AKR_FRAME_BAD_TYPE;
  if (len < AKR_PREFIX_LEN) {
    if (ret_need) *ret_need = AKR_PREFIX_LEN;
    return AKR_FRAME_INCOMPLETE;
  }
  uint32_t head_len = akr_get_le32(buf + 4);
  uint32_t body_len = akr_get_le32(buf + 8);
  if (head_len > ACKRPC_MAX_HEAD) return AKR_FRAME_HEAD_TOO_LARGE;
  /* 64-bit sum: two u32 cannot overflow it. */
  uint64_t payload = (uint64_t)head_len + body_len;
  if (payload > max_frame) return AKR_FRAME_TOO_LARGE;
  size_t frame_len = AKR_PREFIX_LEN + (size_t)payload;
  ret_frame->type = buf[3];
  ret_frame->head_len = head_len;
  ret_frame->body_len = body_len;
  ret_frame->head = buf + AKR_PREFIX_LEN;
  ret_frame->body = buf + AKR_PREFIX_LEN + head_len;
  ret_frame->frame_len = frame_len;
  if (len < frame_len) {
    if (ret_need) *ret_need = frame_len;
    return AKR_FRAME_INCOMPLETE;
  }
  return AKR_FRAME_OK;
}

uint8_t *akr_put_prefix(uint8_t *p, uint8_t type, size_t head_len, size_t body_len) {
  p[0] = AKR_MAGIC0;
  p[1] = AKR_MAGIC1;
  p[2] = AKR_VERSION;
  p[3] = type;
  akr_put_le32(p + 4, (uint32_t)head_len);
  akr_put_le32(p + 8, (uint32_t)body_len);
  return p + AKR_PREFIX_LEN;
}
