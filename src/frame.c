/* frame.c: scanning, decoding and encoding ackrpc frames, with no I/O.
 *
 * Untrusted heads are decoded by protobuf-c, but only ever from exactly the
 * number of bytes the prefix announced, and only once all of them are in:
 * protobuf-c accepts some truncated messages as valid, so the lengths in the
 * prefix, not the decoder, decide where a head and a body end. Heads are
 * encoded by hand: they are a handful of fields, and encoding them directly
 * into the output buffer costs no allocation. */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

#include "ackrpc/wire.pb-c.h"

/* --- errors ------------------------------------------------------------ */

const char *akr_frame_error_text(akr_frame_error err) {
  switch (err) {
  case AKR_FRAME_OK: return "ok";
  case AKR_FRAME_INCOMPLETE: return "frame incomplete";
  case AKR_FRAME_TRUNCATED: return "frame cut short: the stream ended inside it";
  case AKR_FRAME_BAD_MAGIC: return "not an ackrpc frame (bad magic)";
  case AKR_FRAME_BAD_VERSION:
    return "unsupported protocol version (this side speaks 1)";
  case AKR_FRAME_BAD_TYPE: return "unexpected frame type";
  case AKR_FRAME_HEAD_TOO_LARGE: return "frame head larger than 65536 bytes";
  case AKR_FRAME_TOO_LARGE: return "frame larger than the receiver accepts";
  case AKR_FRAME_BAD_HEAD: return "frame head does not decode";
  case AKR_FRAME_BAD_METHOD: return "method name missing or malformed";
  case AKR_FRAME_BAD_CALL_ID: return "call id missing or longer than 64 bytes";
  case AKR_FRAME_BAD_METADATA: return "metadata malformed or over its limits";
  case AKR_FRAME_BAD_STATUS: return "reply status outside 0..99";
  case AKR_FRAME_NO_MEMORY: return "decoding needs more memory than allowed";
  }
  return "unknown frame error";
}

ackrpc_status akr_frame_error_status(akr_frame_error err) {
  switch (err) {
  case AKR_FRAME_OK: return ACKRPC_OK;
  case AKR_FRAME_BAD_VERSION: return ACKRPC_UNIMPLEMENTED;
  case AKR_FRAME_TOO_LARGE:
  case AKR_FRAME_HEAD_TOO_LARGE:
  case AKR_FRAME_NO_MEMORY: return ACKRPC_RESOURCE_EXHAUSTED;
  default: return ACKRPC_INVALID_ARGUMENT;
  }
}

/* --- scanning ---------------------------------------------------------- */

static uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
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
  uint32_t head_len = get_le32(buf + 4);
  uint32_t body_len = get_le32(buf + 8);
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

/* --- the arena --------------------------------------------------------- */

struct akr_arena_chunk {
  akr_arena_chunk *next;
  size_t size; /* usable bytes after the header */
  int mapped;  /* a block of akr_spare (its size: the header and `size`) */
  max_align_t data[];
};

#define ARENA_ALIGN (_Alignof(max_align_t))
#define ARENA_FIRST_CHUNK 4096

/* Large chunks are blocks of the arena's spare store (spare.h): a large
 * request's decode then reuses the pages of the one before instead of
 * faulting in fresh ones, and a refused oversized decode gives its memory
 * back to the system (unmapped), not to malloc's heap. */
static akr_arena_chunk *chunk_new(akr_arena *arena, size_t size) {
  size_t bytes = sizeof(akr_arena_chunk) + size;
  akr_arena_chunk *c;
  if (size >= AKR_SPARE_MIN) {
    size_t got;
    c = akr_spare_get(arena->spare, bytes, &got);
    if (!c) return NULL;
    c->mapped = 1;
    size = got - sizeof *c;
  } else {
    c = malloc(bytes);
    if (!c) return NULL;
    c->mapped = 0;
  }
  c->size = size;
  return c;
}

static void chunk_free(akr_arena *arena, akr_arena_chunk *c) {
  if (c->mapped)
    akr_spare_put(arena->spare, c, sizeof *c + c->size);
  else
    free(c);
}

static void *arena_pc_alloc(void *data, size_t size) {
  return akr_arena_alloc(data, size);
}

static void arena_pc_free(void *data, void *ptr) {
  (void)data;
  (void)ptr; /* released all at once with the arena */
}

void akr_arena_init(akr_arena *arena, size_t cap) {
  memset(arena, 0, sizeof *arena);
  arena->pc.alloc = arena_pc_alloc;
  arena->pc.free = arena_pc_free;
  arena->pc.allocator_data = arena;
  arena->cap = cap;
}

void akr_arena_init_on(akr_arena *arena, size_t cap, void *buf, size_t len) {
  akr_arena_init(arena, cap);
  if (len > cap) len = cap;
  arena->cur = buf;
  arena->left = len;
  arena->total = len;
}

void *akr_arena_alloc(akr_arena *arena, size_t size) {
  if (size == 0) size = 1;
  size_t rounded = (size + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
  if (rounded < size) return NULL;
  if (rounded > arena->left) {
    size_t room = arena->cap > arena->total ? arena->cap - arena->total : 0;
    if (rounded > room) {
      arena->refused = 1;
      return NULL;
    }
    /* Chunks double the arena, so a large message costs few mallocs. */
    size_t want = arena->total ? arena->total : ARENA_FIRST_CHUNK;
    if (want < rounded) want = rounded;
    if (want > room) want = room;
    akr_arena_chunk *c = chunk_new(arena, want);
    if (!c) {
      arena->refused = 1;
      return NULL;
    }
    c->next = arena->chunks;
    arena->chunks = c;
    /* A kept block may be larger than asked: it lends `want` bytes only, so
     * the cap holds. */
    arena->total += want;
    arena->cur = (uint8_t *)c->data;
    arena->left = want;
  }
  void *p = arena->cur;
  arena->cur += rounded;
  arena->left -= rounded;
  return p;
}

void akr_arena_reset(akr_arena *arena, size_t cap) {
  /* Keep the oldest chunk (the first one allocated, at the list's tail) if
   * it is the small initial size: most calls fit in it, so a reused arena
   * usually allocates nothing. */
  akr_arena_chunk *keep = NULL;
  akr_arena_chunk *c = arena->chunks;
  while (c) {
    akr_arena_chunk *next = c->next;
    if (!next && c->size == ARENA_FIRST_CHUNK)
      keep = c;
    else
      chunk_free(arena, c);
    c = next;
  }
  arena->chunks = keep;
  arena->total = keep ? keep->size : 0;
  arena->cur = keep ? (uint8_t *)keep->data : NULL;
  /* A kept chunk larger than the new cap lends only `cap` of its bytes. */
  arena->left = keep ? (keep->size < cap ? keep->size : cap) : 0;
  arena->cap = cap;
  arena->refused = 0;
  if (keep) keep->next = NULL;
}

void akr_arena_release(akr_arena *arena) {
  akr_arena_chunk *c = arena->chunks;
  while (c) {
    akr_arena_chunk *next = c->next;
    chunk_free(arena, c);
    c = next;
  }
  arena->chunks = NULL;
  arena->cur = NULL;
  arena->left = arena->total = 0;
}

/* --- decoding ---------------------------------------------------------- */

/* --- nesting ------------------------------------------------------------ */

#define DEPTH_MAX_TYPES 64 /* types on one path; deeper static nesting: unbounded */

static unsigned depth_of(const ProtobufCMessageDescriptor *d,
                         const ProtobufCMessageDescriptor **path, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    if (path[i] == d) return AKR_DEPTH_UNBOUNDED; /* recursive */
  if (n == DEPTH_MAX_TYPES) return AKR_DEPTH_UNBOUNDED;
  path[n] = d;
  unsigned deepest = 0;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    unsigned sub = depth_of(f->descriptor, path, n + 1);
    if (sub == AKR_DEPTH_UNBOUNDED) return sub;
    if (sub > deepest) deepest = sub;
  }
  return deepest + 1;
}

unsigned akr_message_depth(const ProtobufCMessageDescriptor *desc) {
  const ProtobufCMessageDescriptor *path[DEPTH_MAX_TYPES];
  return depth_of(desc, path, 0);
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret) {
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *ret = v;
      return 0;
    }
  }
  return -1;
}

/* Reads one field's key at *p and steps over its value: for a length-
 * delimited field, *ret_data and *ret_len locate the value; a group's start
 * or end tag has no value. Returns -1 at malformed bytes (truncated, bad wire
 * type): callers stop there and leave the verdict to the decoder. */
static int next_field(const uint8_t **p, const uint8_t *end, uint64_t *ret_key,
                      const uint8_t **ret_data, uint64_t *ret_len) {
  uint64_t v;
  if (get_varint(p, end, ret_key)) return -1;
  switch (*ret_key & 7) {
  case 0: return get_varint(p, end, &v);
  case 1:
    if (end - *p < 8) return -1;
    *p += 8;
    return 0;
  case 5:
    if (end - *p < 4) return -1;
    *p += 4;
    return 0;
  case 2:
    if (get_varint(p, end, ret_len) || *ret_len > (uint64_t)(end - *p)) return -1;
    *ret_data = *p;
    *p += *ret_len;
    return 0;
  case 3:
  case 4: return 0;
  default: return -1;
  }
}

/* Walks one message (or group body) at `depth`. Returns -1 if too deep, 0
 * otherwise; *p is left after the message, or after a group's end tag. A
 * NULL desc means an unknown group: its fields are skipped, its nested
 * groups still counted (the decoder recurses into them too). */
static int walk(const ProtobufCMessageDescriptor *desc, const uint8_t **p,
                const uint8_t *end, unsigned depth, unsigned max_depth) {
  if (depth > max_depth) return -1;
  while (*p < end) {
    uint64_t key, len;
    const uint8_t *data;
    if (next_field(p, end, &key, &data, &len)) return 0;
    if ((key & 7) == 2) {
      const ProtobufCFieldDescriptor *f =
          desc ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3))
               : NULL;
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
          walk(f->descriptor, &data, data + len, depth + 1, max_depth))
        return -1;
    } else if ((key & 7) == 3) {
      if (walk(NULL, p, end, depth + 1, max_depth)) return -1;
    } else if ((key & 7) == 4) {
      return 0; /* end of the group being walked (or stray: decoder refuses) */
    }
  }
  return 0;
}

int akr_check_depth(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                    size_t len, unsigned max_depth) {
  const uint8_t *p = data;
  return walk(desc, &p, data + len, 1, max_depth);
}

int akr_method_name_valid(const char *name) {
  /* package.Service/Method: a non-empty dotted service name, one slash, a
   * non-empty method; identifiers of [A-Za-z0-9_]; no empty dot segment. */
  size_t n = strnlen(name, ACKRPC_MAX_METHOD_NAME + 1);
  if (n == 0 || n > ACKRPC_MAX_METHOD_NAME) return 0;
  int slashes = 0;
  char prev = '.';
  for (size_t i = 0; i < n; i++) {
    char ch = name[i];
    int ident = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                (ch >= '0' && ch <= '9') || ch == '_';
    if (ch == '/') {
      if (++slashes > 1 || prev == '.' || prev == '/') return 0;
    } else if (ch == '.') {
      if (slashes || prev == '.' || prev == '/') return 0;
    } else if (!ident) {
      return 0;
    }
    prev = ch;
  }
  return slashes == 1 && prev != '/';
}

int akr_metadata_key_valid(const char *key, size_t len) {
  if (len == 0 || len > ACKRPC_MAX_METADATA_KEY) return 0;
  for (size_t i = 0; i < len; i++) {
    char ch = key[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
          ch == '_' || ch == '-'))
      return 0;
  }
  return 1;
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
    if (next_field(&p, end, &key, &data, &len)) return AKR_FRAME_OK;
    if ((key & 7) == 3 || (key & 7) == 4)
      return AKR_FRAME_OK; /* heads have no groups */
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
  Ackrpc__Wire__RequestHead *h =
      ackrpc__wire__request_head__unpack(&arena->pc, frame->head_len, frame->head);
  if (!h) return arena->refused ? AKR_FRAME_NO_MEMORY : AKR_FRAME_BAD_HEAD;
  if (!h->method || !akr_method_name_valid(h->method)) return AKR_FRAME_BAD_METHOD;
  akr_frame_error nul = head_strings_nul(frame->head, frame->head + frame->head_len, 0);
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
  return AKR_FRAME_OK;
}

akr_frame_error akr_reply_decode(const akr_frame *frame, akr_arena *arena,
                                 akr_reply *ret_reply) {
  if (frame->type != AKR_FRAME_REPLY) return AKR_FRAME_BAD_TYPE;
  Ackrpc__Wire__ReplyHead *h =
      ackrpc__wire__reply_head__unpack(&arena->pc, frame->head_len, frame->head);
  if (!h) return arena->refused ? AKR_FRAME_NO_MEMORY : AKR_FRAME_BAD_HEAD;
  /* Local codes (100 and up) never travel: a server sending one is broken. */
  if (h->status > 99) return AKR_FRAME_BAD_STATUS;
  ret_reply->status = h->status;
  ret_reply->message = h->message ? h->message : "";
  ret_reply->body = frame->body;
  ret_reply->body_len = frame->body_len;
  return AKR_FRAME_OK;
}

/* --- encoding ---------------------------------------------------------- */

/* Protobuf wire primitives for the heads. Tags: field << 3 | wire type. */
#define TAG_VARINT(f) ((uint8_t)((f) << 3 | 0))
#define TAG_LEN(f) ((uint8_t)((f) << 3 | 2))

static size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

/* A length-delimited field: tag, length, bytes. */
static size_t len_field_size(size_t len) {
  return 1 + varint_size(len) + len;
}

static uint8_t *put_len_field(uint8_t *p, uint8_t tag, const void *data, size_t len) {
  *p++ = tag;
  p = put_varint(p, len);
  if (len) memcpy(p, data, len);
  return p + len;
}

static uint8_t *put_prefix(uint8_t *p, uint8_t type, size_t head_len, size_t body_len) {
  p[0] = AKR_MAGIC0;
  p[1] = AKR_MAGIC1;
  p[2] = AKR_VERSION;
  p[3] = type;
  put_le32(p + 4, (uint32_t)head_len);
  put_le32(p + 8, (uint32_t)body_len);
  return p + AKR_PREFIX_LEN;
}

static size_t metadata_entry_size(const ackrpc_metadata *m) {
  size_t inner = len_field_size(strlen(m->key));
  if (m->value_len) inner += len_field_size(m->value_len);
  return inner;
}

size_t akr_request_size(akr_request_spec *spec) {
  if (!spec->method || !akr_method_name_valid(spec->method)) return 0;
  if (!spec->call_id || spec->call_id_len == 0 ||
      spec->call_id_len > ACKRPC_MAX_CALL_ID)
    return 0;
  if (spec->n_metadata > ACKRPC_MAX_METADATA || (spec->n_metadata && !spec->metadata))
    return 0;
  size_t head = len_field_size(strlen(spec->method));
  if (spec->timeout_us) head += 1 + varint_size(spec->timeout_us);
  head += len_field_size(spec->call_id_len);
  for (size_t i = 0; i < spec->n_metadata; i++) {
    const ackrpc_metadata *m = &spec->metadata[i];
    if (!m->key || !akr_metadata_key_valid(m->key, strlen(m->key)) ||
        m->value_len > ACKRPC_MAX_METADATA_VALUE || (m->value_len && !m->value))
      return 0;
    head += len_field_size(metadata_entry_size(m));
  }
  if (head > ACKRPC_MAX_HEAD) return 0;
  size_t body = spec->body ? protobuf_c_message_get_packed_size(spec->body)
                           : (spec->raw_body ? spec->raw_body_len : 0);
  if (body > UINT32_MAX) return 0;
  spec->head_len_ = head;
  spec->body_len_ = body;
  return AKR_PREFIX_LEN + head + body;
}

/* Writes the prefix and the head: the frame up to its body. */
static inline uint8_t *put_request_head(const akr_request_spec *spec, uint8_t *out) {
  uint8_t *p = put_prefix(out, AKR_FRAME_REQUEST, spec->head_len_, spec->body_len_);
  p = put_len_field(p, TAG_LEN(1), spec->method, strlen(spec->method));
  if (spec->timeout_us) {
    *p++ = TAG_VARINT(2);
    p = put_varint(p, spec->timeout_us);
  }
  p = put_len_field(p, TAG_LEN(3), spec->call_id, spec->call_id_len);
  for (size_t i = 0; i < spec->n_metadata; i++) {
    const ackrpc_metadata *m = &spec->metadata[i];
    *p++ = TAG_LEN(4);
    p = put_varint(p, metadata_entry_size(m));
    p = put_len_field(p, TAG_LEN(1), m->key, strlen(m->key));
    if (m->value_len) p = put_len_field(p, TAG_LEN(2), m->value, m->value_len);
  }
  return p;
}

size_t akr_request_encode(const akr_request_spec *spec, uint8_t *out) {
  uint8_t *p = put_request_head(spec, out);
  if (spec->body)
    p += protobuf_c_message_pack(spec->body, p);
  else if (spec->raw_body_len) {
    memcpy(p, spec->raw_body, spec->raw_body_len);
    p += spec->raw_body_len;
  }
  return (size_t)(p - out);
}

/* --- encoding as pieces ------------------------------------------------ */

/* A byte string of the body that is sent where it is. */
typedef struct iov_ref {
  const void *data;
  size_t len;
} iov_ref;

/* Whether protobuf-c packs the bytes or string field `f` (not repeated), by
 * its rule for each label: a oneof member if chosen, a proto2 optional one if
 * set (a string: not the default), a proto3 one if not empty. */
static int field_packed(const ProtobufCFieldDescriptor *f, const void *member,
                        const void *qmember) {
  int is_str = f->type == PROTOBUF_C_TYPE_STRING;
  const char *str = is_str ? *(const char *const *)member : NULL;
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
    if (*(const uint32_t *)qmember != f->id) return 0;
    return !is_str || (str && str != f->default_value);
  }
  switch (f->label) {
  case PROTOBUF_C_LABEL_REQUIRED: return 1;
  case PROTOBUF_C_LABEL_OPTIONAL:
    return is_str ? str && str != f->default_value
                  : *(const protobuf_c_boolean *)qmember != 0;
  default: /* PROTOBUF_C_LABEL_NONE: proto3 */
    return is_str ? str && str[0] : ((const ProtobufCBinaryData *)member)->len != 0;
  }
}

/* Finds the byte strings of `msg`'s own fields worth sending in place (at
 * most `max`), in the order protobuf_c_message_pack_to_buffer() appends
 * them: field by field as the descriptor lists them, elements in order.
 * Returns their total size. */
static size_t find_refs(const ProtobufCMessage *msg, iov_ref *refs, size_t max,
                        size_t *ret_n) {
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  size_t n_refs = 0, total = 0;
  for (unsigned i = 0; i < d->n_fields && n_refs < max; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_BYTES && f->type != PROTOBUF_C_TYPE_STRING) continue;
    const char *member = (const char *)msg + f->offset;
    const char *qmember = (const char *)msg + f->quantifier_offset;
    size_t count = 1;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      count = *(const size_t *)qmember;
      member = *(const char *const *)member; /* the array of values */
    } else if (!field_packed(f, member, qmember)) {
      continue;
    }
    for (size_t k = 0; k < count && n_refs < max; k++) {
      const void *data;
      size_t len;
      if (f->type == PROTOBUF_C_TYPE_BYTES) {
        const ProtobufCBinaryData *b = (const ProtobufCBinaryData *)member + k;
        data = b->data;
        len = b->len;
      } else {
        data = ((const char *const *)member)[k];
        len = data ? strlen(data) : 0;
      }
      if (len < AKR_IOV_REF_MIN) continue;
      refs[n_refs++] = (iov_ref){.data = data, .len = len};
      total += len;
    }
  }
  *ret_n = n_refs;
  return total;
}

/* A protobuf-c output that builds the pieces. protobuf-c hands a field's
 * bytes or string value to append() where it is, but a nested message as a
 * temporary copy: so an append becomes a piece of its own only if it is one
 * of the byte strings find_refs() found (its address, not its size, tells).
 * Everything else is copied to the scratch, consecutive copies into one
 * piece. */
typedef struct iov_sink {
  ProtobufCBuffer base;
  struct iovec *iov;
  size_t n_iov, max_iov;
  uint8_t *scratch;
  size_t used, cap;
  const iov_ref *refs;
  size_t n_refs, next_ref;
  int in_scratch; /* the last piece ends at the scratch's end */
  int failed;     /* not packed as find_refs() foresaw */
} iov_sink;

static void sink_append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data) {
  iov_sink *s = (iov_sink *)buffer;
  if (s->failed || len == 0) return;
  for (size_t k = s->next_ref; len >= AKR_IOV_REF_MIN && k < s->n_refs; k++) {
    if (s->refs[k].data != data || s->refs[k].len != len) continue;
    if (s->n_iov == s->max_iov) break;
    s->iov[s->n_iov++] = (struct iovec){.iov_base = (void *)data, .iov_len = len};
    s->next_ref = k + 1;
    s->in_scratch = 0;
    return;
  }
  if (len > s->cap - s->used || (!s->in_scratch && s->n_iov == s->max_iov)) {
    s->failed = 1;
    return;
  }
  if (s->in_scratch)
    s->iov[s->n_iov - 1].iov_len += len;
  else
    s->iov[s->n_iov++] =
        (struct iovec){.iov_base = s->scratch + s->used, .iov_len = len};
  memcpy(s->scratch + s->used, data, len);
  s->used += len;
  s->in_scratch = 1;
}

size_t akr_request_encode_iov(const akr_request_spec *spec, uint8_t *scratch,
                              size_t scratch_cap, struct iovec *iov, size_t max_iov,
                              size_t *ret_n_iov, size_t *ret_scratch_need) {
  *ret_n_iov = 0;
  *ret_scratch_need = 0;
  if (max_iov > AKR_IOV_MAX) max_iov = AKR_IOV_MAX;
  if (max_iov < 3) return 0;
  size_t frame = AKR_PREFIX_LEN + spec->head_len_ + spec->body_len_;
  iov_ref refs[AKR_IOV_MAX / 2];
  size_t n_refs = 0, in_place = 0;
  if (spec->body)
    in_place = find_refs(spec->body, refs, (max_iov - 1) / 2, &n_refs);
  else if (spec->raw_body && spec->raw_body_len >= AKR_IOV_REF_MIN)
    in_place = spec->raw_body_len;
  /* Mostly copied anyway: one buffer is cheaper than pieces, and a nested
   * message would be copied twice (into protobuf-c's temporary, then here). */
  if (in_place > spec->body_len_ || in_place < frame - frame / 4) return 0;
  size_t need = frame - in_place;
  if (need > scratch_cap) {
    *ret_scratch_need = need;
    return 0;
  }
  uint8_t *p = put_request_head(spec, scratch);
  iov[0] = (struct iovec){.iov_base = scratch, .iov_len = (size_t)(p - scratch)};
  if (!spec->body) {
    iov[1] = (struct iovec){.iov_base = (void *)spec->raw_body,
                            .iov_len = spec->raw_body_len};
    *ret_n_iov = 2;
    return frame;
  }
  iov_sink s = {.base = {.append = sink_append},
                .iov = iov,
                .n_iov = 1,
                .max_iov = max_iov,
                .scratch = scratch,
                .used = iov[0].iov_len,
                .cap = need,
                .refs = refs,
                .n_refs = n_refs,
                .in_scratch = 1};
  size_t body = protobuf_c_message_pack_to_buffer(spec->body, &s.base);
  if (s.failed || s.used != need || body != spec->body_len_) return 0;
  *ret_n_iov = s.n_iov;
  return frame;
}

size_t akr_reply_size(akr_reply_spec *spec) {
  if (spec->status > 99) return 0; /* local codes never travel */
  size_t msg = spec->message ? strnlen(spec->message, ACKRPC_MAX_HEAD / 2) : 0;
  /* A message cut to fit the head must stay valid UTF-8: back off to the
   * start of a character. */
  if (msg == ACKRPC_MAX_HEAD / 2)
    while (msg > 0 && ((uint8_t)spec->message[msg] & 0xC0) == 0x80)
      msg--;
  size_t head = 0;
  if (spec->status) head += 1 + varint_size(spec->status);
  if (msg) head += len_field_size(msg);
  size_t body = spec->body ? protobuf_c_message_get_packed_size(spec->body) : 0;
  if (body > UINT32_MAX) return 0;
  spec->message_len_ = msg;
  spec->head_len_ = head;
  spec->body_len_ = body;
  return AKR_PREFIX_LEN + head + body;
}

size_t akr_reply_encode(const akr_reply_spec *spec, uint8_t *out) {
  uint8_t *p = put_prefix(out, AKR_FRAME_REPLY, spec->head_len_, spec->body_len_);
  if (spec->status) {
    *p++ = TAG_VARINT(1);
    p = put_varint(p, spec->status);
  }
  if (spec->message_len_)
    p = put_len_field(p, TAG_LEN(2), spec->message, spec->message_len_);
  if (spec->body) p += protobuf_c_message_pack(spec->body, p);
  return (size_t)(p - out);
}
