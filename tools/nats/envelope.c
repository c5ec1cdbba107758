/* The NATS envelope of ackrpc-nats: see envelope.h and docs/SCALE.md. */
#include "envelope.h"

#include <string.h>

static int is_ident_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '_';
}

/* True if s[0..len) is ident *("." ident). */
static int is_dotted(const char *s, size_t len) {
  size_t run = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '.') {
      if (run == 0) return 0;
      run = 0;
    } else if (is_ident_char(s[i])) {
      run++;
    } else {
      return 0;
    }
  }
  return run > 0;
}

int ackrpc_nats_subject(const char *prefix, const char *method, char *out, size_t cap) {
  if (prefix == NULL || method == NULL || out == NULL) return -1;
  size_t plen = strlen(prefix), mlen = strlen(method);
  const char *slash = memchr(method, '/', mlen);
  if (plen == 0 || !is_dotted(prefix, plen) || slash == NULL) return -1;
  size_t slen = (size_t)(slash - method);
  if (!is_dotted(method, slen)) return -1;
  for (const char *p = slash + 1; p < method + mlen; p++)
    if (!is_ident_char(*p)) return -1;
  if (slash + 1 == method + mlen) return -1;
  if (plen + 1 + mlen + 1 > cap) return -1;
  memcpy(out, prefix, plen);
  out[plen] = '.';
  memcpy(out + plen + 1, method, mlen + 1);
  out[plen + 1 + slen] = '.';
  return 0;
}

int ackrpc_nats_method(const char *prefix, const char *subject, char *out, size_t cap) {
  if (prefix == NULL || subject == NULL || out == NULL) return -1;
  size_t plen = strlen(prefix), slen = strlen(subject);
  if (plen == 0 || !is_dotted(prefix, plen) || slen <= plen + 1 ||
      memcmp(subject, prefix, plen) != 0 || subject[plen] != '.')
    return -1;
  const char *name = subject + plen + 1;
  size_t nlen = slen - plen - 1;
  const char *last = memrchr(name, '.', nlen);
  if (last == NULL || !is_dotted(name, nlen)) return -1;
  if (nlen + 1 > cap) return -1;
  memcpy(out, name, nlen + 1);
  out[last - name] = '/';
  return 0;
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ackrpc_nats_b64_len(size_t len) {
  return (len + 2) / 3 * 4;
}

void ackrpc_nats_b64_encode(const uint8_t *in, size_t len, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len) v |= in[i + 2];
    out[o++] = b64[v >> 18 & 63];
    out[o++] = b64[v >> 12 & 63];
    out[o++] = i + 1 < len ? b64[v >> 6 & 63] : '=';
    out[o++] = i + 2 < len ? b64[v & 63] : '=';
  }
  out[o] = '\0';
}

static int b64_value(char c) {
  const char *p = c != '\0' ? strchr(b64, c) : NULL;
  return p != NULL ? (int)(p - b64) : -1;
}

int ackrpc_nats_b64_decode(const char *in, uint8_t *out, size_t cap, size_t *out_len) {
  size_t len = strlen(in), n = 0;
  if (len % 4 != 0) return -1;
  for (size_t i = 0; i < len; i += 4) {
    int pad = (in[i + 3] == '=') + (in[i + 2] == '=' && in[i + 3] == '=');
    if (pad > 0 && i + 4 != len) return -1;
    int v[4] = {b64_value(in[i]), b64_value(in[i + 1]),
                pad >= 2 ? 0 : b64_value(in[i + 2]),
                pad >= 1 ? 0 : b64_value(in[i + 3])};
    if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0) return -1;
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                 (uint32_t)v[3];
    /* The unused bits of a padded group must be zero (canonical text). */
    if ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0)) return -1;
    size_t k = 3 - (size_t)pad;
    if (n + k > cap) return -1;
    out[n++] = (uint8_t)(w >> 16);
    if (k > 1) out[n++] = (uint8_t)(w >> 8);
    if (k > 2) out[n++] = (uint8_t)w;
  }
  *out_len = n;
  return 0;
}

void ackrpc_nats_hex_encode(const uint8_t *in, size_t len, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = hex[in[i] >> 4];
    out[2 * i + 1] = hex[in[i] & 15];
  }
  out[2 * len] = '\0';
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

int ackrpc_nats_hex_decode(const char *in, uint8_t *out, size_t cap, size_t *out_len) {
  size_t len = strlen(in);
  if (len % 2 != 0 || len / 2 > cap) return -1;
  for (size_t i = 0; i < len; i += 2) {
    int hi = hex_value(in[i]), lo = hex_value(in[i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i / 2] = (uint8_t)(hi << 4 | lo);
  }
  *out_len = len / 2;
  return 0;
}

int ackrpc_nats_dec_decode(const char *in, uint64_t max, uint64_t *out) {
  if (in == NULL || in[0] == '\0' || (in[0] == '0' && in[1] != '\0')) return -1;
  uint64_t v = 0;
  for (const char *p = in; *p != '\0'; p++) {
    if (*p < '0' || *p > '9') return -1;
    unsigned d = (unsigned)(*p - '0');
    if (d > max || v > (max - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

size_t ackrpc_nats_message_clean(const char *in, char *out, size_t cap) {
  size_t n = 0;
  if (in != NULL) {
    size_t len = strlen(in);
    n = len < cap - 1 ? len : cap - 1;
    /* Cut before a continuation byte only at a character's start. */
    if (n < len)
      while (n > 0 && ((unsigned char)in[n] & 0xc0) == 0x80)
        n--;
    for (size_t i = 0; i < n; i++) {
      unsigned char c = (unsigned char)in[i];
      out[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
  }
  out[n] = '\0';
  return n;
}
