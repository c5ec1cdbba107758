/* head.c: decoding request and reply heads (head.h). */
#include "wire/head.h"

#include <string.h>

#include "ackrpc/wire.pb-c.h"
#include "wire/groups.h"
#include "wire/names.h"
#include "wire/pb.h"

/* Decodes a head of type `desc` from *bytes, *len. protobuf-c refuses
 * groups, even unknown ones, which §2.3 says to ignore: if it refuses the
 * head, the head is copied without its groups (groups.h) and decoded again,
 * and *bytes, *len then locate the copy (in the arena). A head without
 * groups is decoded once, as before. NULL if it does not decode (or the
 * arena refused: arena->refused says so). */
static ProtobufCMessage *unpack_head(const ProtobufCMessageDescriptor *desc,
                                     akr_arena *arena, const uint8_t **bytes,
                                     size_t *len) {
  akr_arena_mark mark = akr_arena_mark_now(arena);
  ProtobufCMessage *m = protobuf_c_message_unpack(desc, &arena->pc, *len, *bytes);
  if (m || arena->refused) return m;
  akr_arena_rewind(arena, mark);
  uint8_t *copy = akr_arena_alloc(arena, *len);
  size_t copy_len;
  if (!copy || akr_strip_groups(desc, *bytes, *len, copy, &copy_len) <= 0) return NULL;
  m = protobuf_c_message_unpack(desc, &arena->pc, copy_len, copy);
  *bytes = copy;
  *len = copy_len;
  return m;
}

/* protobuf-c hands strings back NUL-terminated and does not check for NULs
 * inside them, so "a.B/C\0junk" would pass as "a.B/C". This walk over the
 * head's wire bytes finds a NUL in the method name (field 1) or in a
 * metadata key (field 4, then its field 1): it returns BAD_METHOD or
 * BAD_METADATA, else OK. Malformed bytes are left to the decoder. */
static akr_frame_error head_strings_nul(const uint8_t *p, const uint8_t *end,
                                        int in_metadata) {
  while (p < end) {
    uint64_t key, len;
    const uint8_t *data;
    if (akr_next_field(&p, end, &key, &data, &len)) return AKR_FRAME_OK;
    if ((key & 7) == 3 || (key & 7) == 4)
      return AKR_FRAME_OK; /* only a head that does not decode has groups here */
    if ((key & 7) != 2) continue;
    if ((key >> 3) == 1 && memchr(data, 0, (size_t)len))
      return in_metadata ? AKR_FRAME_BAD_METADATA : AKR_FRAME_BAD_METHOD;
    if (!in_metadata && (key >> 3) == 4 && head_strings_nul(data, data + len, 1))
      return AKR_FRAME_BAD_METADATA;
  }
  return AKR_FRAME_OK;
}

akr_frame_error akr_request_decode(const akr_frame *frame, akr_arena *arena,
                                   akr_request *ret_request) {
  if (frame->type != AKR_FRAME_REQUEST) return AKR_FRAME_BAD_TYPE;
  const uint8_t *head = frame->head;
  size_t head_len = frame->head_len;
  Ackrpc__Wire__RequestHead *h = (Ackrpc__Wire__RequestHead *)unpack_head(
      &ackrpc__wire__request_head__descriptor, arena, &head, &head_len);
  if (!h) return arena->refused ? AKR_FRAME_NO_MEMORY : AKR_FRAME_BAD_HEAD;
  if (!h->method || !akr_method_name_valid(h->method)) return AKR_FRAME_BAD_METHOD;
  akr_frame_error nul = head_strings_nul(head, head + head_len, 0);
  if (nul != AKR_FRAME_OK) return nul;
  if (h->call_id.len == 0 || h->call_id.len > ACKRPC_MAX_CALL_ID)
    return AKR_FRAME_BAD_CALL_ID;
  if (h->n_metadata > ACKRPC_MAX_METADATA) return AKR_FRAME_BAD_METADATA;
  for (size_t i = 0; i < h->n_metadata; i++) {
    const Ackrpc__Wire__Metadata *m = h->metadata[i];
    if (!m->key || !akr_metadata_key_valid(m->key, strlen(m->key)) ||
        m->value.len > ACKRPC_MAX_METADATA_VALUE)
      return AKR_FRAME_BAD_METADATA;
  }
  ret_request->method = h->method;
  ret_request->timeout_us = h->timeout_us;
  ret_request->call_id = h->call_id.data;
  ret_request->call_id_len = h->call_id.len;
  ret_request->n_metadata = h->n_metadata;
  ret_request->metadata = h->metadata;
  ret_request->body = frame->body;
  ret_request->body_len = frame->body_len;
  ret_request->fd_count = h->fd_count;
  ret_request->body_memfd = h->body_memfd;
  ret_request->accept_body_memfd = h->accept_body_memfd;
  return AKR_FRAME_OK;
}

akr_frame_error akr_reply_decode(const akr_frame *frame, akr_arena *arena,
                                 akr_reply *ret_reply) {
  if (frame->type != AKR_FRAME_REPLY) return AKR_FRAME_BAD_TYPE;
  const uint8_t *head = frame->head;
  size_t head_len = frame->head_len;
  Ackrpc__Wire__ReplyHead *h = (Ackrpc__Wire__ReplyHead *)unpack_head(
      &ackrpc__wire__reply_head__descriptor, arena, &head, &head_len);
  if (!h) return arena->refused ? AKR_FRAME_NO_MEMORY : AKR_FRAME_BAD_HEAD;
  /* Local codes (100 and up) never travel: a server sending one is broken. */
  if (h->status > AKR_MAX_WIRE_STATUS) return AKR_FRAME_BAD_STATUS;
  ret_reply->status = h->status;
  ret_reply->message = h->message ? h->message : "";
  ret_reply->body = frame->body;
  ret_reply->body_len = frame->body_len;
  ret_reply->fd_count = h->fd_count;
  ret_reply->body_memfd = h->body_memfd;
  ret_reply->body_memfd_read = h->body_memfd_read;
  return AKR_FRAME_OK;
}
