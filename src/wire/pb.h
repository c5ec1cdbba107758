/* pb.h: the protobuf wire primitives the frame code needs: varints,
 * little-endian words, length-delimited fields, and a reader that steps over
 * one field (internal: not installed). Static inline: they sit on every
 * call's encode and decode path.
 *
 * Readers never read past `end` and return -1 at malformed bytes;
 * writers write exactly what the matching _size() function said. */
#ifndef AKR_PB_H
#define AKR_PB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Tags: field << 3 | wire type. */
#define AKR_TAG_VARINT(f) ((uint8_t)((f) << 3 | 0))
#define AKR_TAG_LEN(f) ((uint8_t)((f) << 3 | 2))

static inline uint32_t akr_get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static inline void akr_put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static inline size_t akr_varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static inline uint8_t *akr_put_varint(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

/* A length-delimited field: tag, length, bytes. */
static inline size_t akr_len_field_size(size_t len) {
  return 1 + akr_varint_size(len) + len;
}

static inline uint8_t *akr_put_len_field(uint8_t *p, uint8_t tag, const void *data,
                                         size_t len) {
  *p++ = tag;
  p = akr_put_varint(p, len);
  if (len) memcpy(p, data, len);
  return p + len;
}

static inline int akr_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret) {
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
static inline int akr_next_field(const uint8_t **p, const uint8_t *end,
                                 uint64_t *ret_key, const uint8_t **ret_data,
                                 uint64_t *ret_len) {
  uint64_t v;
  if (akr_get_varint(p, end, ret_key)) return -1;
  switch (*ret_key & 7) {
  case 0: return akr_get_varint(p, end, &v);
  case 1:
    if (end - *p < 8) return -1;
    *p += 8;
    return 0;
  case 5:
    if (end - *p < 4) return -1;
    *p += 4;
    return 0;
  case 2:
    if (akr_get_varint(p, end, ret_len) || *ret_len > (uint64_t)(end - *p)) return -1;
    *ret_data = *p;
    *p += *ret_len;
    return 0;
  case 3:
  case 4: return 0;
  default: return -1;
  }
}

#endif /* AKR_PB_H */
