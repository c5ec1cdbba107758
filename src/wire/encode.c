/* encode.c: request and reply frames, encoded whole (encode.h). */
#include "wire/encode.h"

#include <string.h>

#include "wire/names.h"
#include "wire/pb.h"

static size_t metadata_entry_size(const ackrpc_metadata *m) {
  size_t inner = akr_len_field_size(strlen(m->key));
  if (m->value_len) inner += akr_len_field_size(m->value_len);
  return inner;
}

size_t akr_request_size(akr_request_spec *spec) {
  if (!spec->method || !akr_method_name_valid(spec->method)) return 0;
  if (!spec->call_id || spec->call_id_len == 0 ||
      spec->call_id_len > ACKRPC_MAX_CALL_ID)
    return 0;
  if (spec->n_metadata > ACKRPC_MAX_METADATA || (spec->n_metadata && !spec->metadata))
    return 0;
  size_t head = akr_len_field_size(strlen(spec->method));
  if (spec->timeout_us) head += 1 + akr_varint_size(spec->timeout_us);
  head += akr_len_field_size(spec->call_id_len);
  for (size_t i = 0; i < spec->n_metadata; i++) {
    const ackrpc_metadata *m = &spec->metadata[i];
    if (!m->key || !akr_metadata_key_valid(m->key, strlen(m->key)) ||
        m->value_len > ACKRPC_MAX_METADATA_VALUE || (m->value_len && !m->value))
      return 0;
    head += akr_len_field_size(metadata_entry_size(m));
  }
  if (spec->fd_count) head += 1 + akr_varint_size(spec->fd_count);
  if (spec->body_memfd) head += 2;
  if (spec->accept_body_memfd) head += 2;
  if (head > ACKRPC_MAX_HEAD) return 0;
  size_t body = spec->body_memfd ? 1
                : spec->body     ? protobuf_c_message_get_packed_size(spec->body)
                                 : (spec->raw_body ? spec->raw_body_len : 0);
  if (body > UINT32_MAX) return 0;
  spec->head_len_ = head;
  spec->body_len_ = body;
  return AKR_PREFIX_LEN + head + body;
}

uint8_t *akr_request_head_encode(const akr_request_spec *spec, uint8_t *out) {
  uint8_t *p = akr_put_prefix(out, AKR_FRAME_REQUEST, spec->head_len_, spec->body_len_);
  p = akr_put_len_field(p, AKR_TAG_LEN(1), spec->method, strlen(spec->method));
  if (spec->timeout_us) {
    *p++ = AKR_TAG_VARINT(2);
    p = akr_put_varint(p, spec->timeout_us);
  }
  p = akr_put_len_field(p, AKR_TAG_LEN(3), spec->call_id, spec->call_id_len);
  for (size_t i = 0; i < spec->n_metadata; i++) {
    const ackrpc_metadata *m = &spec->metadata[i];
    *p++ = AKR_TAG_LEN(4);
    p = akr_put_varint(p, metadata_entry_size(m));
    p = akr_put_len_field(p, AKR_TAG_LEN(1), m->key, strlen(m->key));
    if (m->value_len) p = akr_put_len_field(p, AKR_TAG_LEN(2), m->value, m->value_len);
  }
  if (spec->fd_count) {
    *p++ = AKR_TAG_VARINT(5);
    p = akr_put_varint(p, spec->fd_count);
  }
  if (spec->body_memfd) {
    *p++ = AKR_TAG_VARINT(6);
    *p++ = 1;
  }
  if (spec->accept_body_memfd) {
    *p++ = AKR_TAG_VARINT(7);
    *p++ = 1;
  }
  return p;
}

size_t akr_request_encode(const akr_request_spec *spec, uint8_t *out) {
  uint8_t *p = akr_request_head_encode(spec, out);
  if (spec->body_memfd)
    *p++ = AKR_MEMFD_STUB;
  else if (spec->body)
    p += protobuf_c_message_pack(spec->body, p);
  else if (spec->raw_body_len) {
    memcpy(p, spec->raw_body, spec->raw_body_len);
    p += spec->raw_body_len;
  }
  return (size_t)(p - out);
}

size_t akr_reply_size(akr_reply_spec *spec) {
  if (spec->status > AKR_MAX_WIRE_STATUS) return 0; /* local codes never travel */
  size_t msg = spec->message ? strnlen(spec->message, ACKRPC_MAX_HEAD / 2) : 0;
  /* A message cut to fit the head must stay valid UTF-8: back off to the
   * start of a character. */
  if (msg == ACKRPC_MAX_HEAD / 2)
    while (msg > 0 && ((uint8_t)spec->message[msg] & 0xC0) == 0x80)
      msg--;
  size_t head = 0;
  if (spec->status) head += 1 + akr_varint_size(spec->status);
  if (msg) head += akr_len_field_size(msg);
  if (spec->fd_count) head += 1 + akr_varint_size(spec->fd_count);
  if (spec->body_memfd) head += 2;
  if (spec->body_memfd_read) head += 2;
  size_t body = spec->body_memfd ? 1
                : spec->body     ? protobuf_c_message_get_packed_size(spec->body)
                                 : (spec->raw_body ? spec->raw_body_len : 0);
  if (body > UINT32_MAX) return 0;
  spec->message_len_ = msg;
  spec->head_len_ = head;
  spec->body_len_ = body;
  return AKR_PREFIX_LEN + head + body;
}

size_t akr_reply_encode(const akr_reply_spec *spec, uint8_t *out) {
  uint8_t *p = akr_put_prefix(out, AKR_FRAME_REPLY, spec->head_len_, spec->body_len_);
  if (spec->status) {
    *p++ = AKR_TAG_VARINT(1);
    p = akr_put_varint(p, spec->status);
  }
  if (spec->message_len_)
    p = akr_put_len_field(p, AKR_TAG_LEN(2), spec->message, spec->message_len_);
  if (spec->fd_count) {
    *p++ = AKR_TAG_VARINT(3);
    p = akr_put_varint(p, spec->fd_count);
  }
  if (spec->body_memfd) {
    *p++ = AKR_TAG_VARINT(4);
    *p++ = 1;
  }
  if (spec->body_memfd_read) {
    *p++ = AKR_TAG_VARINT(5);
    *p++ = 1;
  }
  if (spec->body_memfd) {
    *p++ = AKR_MEMFD_STUB;
  } else if (spec->body) {
    p += protobuf_c_message_pack(spec->body, p);
  } else if (spec->raw_body_len) {
    memcpy(p, spec->raw_body, spec->raw_body_len);
    p += spec->raw_body_len;
  }
  return (size_t)(p - out);
}
