/* capfile.c: the pcapng reader of capfile.h. Every length is checked
 * against what is there before it is used; nothing is read past `len`. */
#include "capfile.h"

#include <stdio.h>
#include <string.h>

#define SHB 0x0A0D0D0Au
#define IDB 1u
#define EPB 6u
#define BOM 0x1A2B3C4Du
#define RECORD_HEAD 32

static uint32_t rd32(const akrcli_capreader *r, const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return r->swap ? __builtin_bswap32(v) : v;
}

static uint16_t rd16(const akrcli_capreader *r, const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return r->swap ? __builtin_bswap16(v) : v;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t be16(const uint8_t *p) {
  return (uint16_t)(p[0] << 8 | p[1]);
}

static long fail(char *err, size_t errlen, const char *what) {
  snprintf(err, errlen, "%s", what);
  return -1;
}

/* The record in an EPB's packet data. 0, or -1 if malformed. */
static int parse_record(const uint8_t *d, size_t n, akrcli_cap_record *rec) {
  if (n < RECORD_HEAD || d[0] != 1) return -1;
  if (d[1] != AKRCLI_CAP_REQUEST && d[1] != AKRCLI_CAP_REPLY) return -1;
  memset(rec, 0, sizeof *rec);
  rec->kind = d[1];
  rec->flags = be16(d + 2);
  rec->uid = be32(d + 4);
  rec->gid = be32(d + 8);
  rec->pid = be32(d + 12);
  rec->status = be32(d + 16);
  rec->lost = be32(d + 20);
  size_t m = be16(d + 24), c = d[26], t = be16(d + 28);
  if (m == 0 || n - RECORD_HEAD < m + c + t) return -1;
  const uint8_t *p = d + RECORD_HEAD;
  rec->method = (const char *)p;
  rec->method_len = m;
  rec->call_id = p + m;
  rec->call_id_len = c;
  rec->message = (const char *)p + m + c;
  rec->message_len = t;
  rec->body = p + m + c + t;
  rec->body_len = n - RECORD_HEAD - m - c - t;
  return 0;
}

long akrcli_cap_next(akrcli_capreader *r, const uint8_t *buf, size_t len,
                     akrcli_cap_record *rec, int *has, char *err, size_t errlen) {
  *has = 0;
  if (len < 12) return 0;
  uint32_t type;
  memcpy(&type, buf, 4);
  /* The byte order: a Section Header says its own (the reader's state
   * changes only once the block is whole); others are in their section's. */
  akrcli_capreader order = *r;
  if (type == SHB) {
    uint32_t bom;
    memcpy(&bom, buf + 8, 4);
    if (bom == BOM)
      order.swap = 0;
    else if (bom == __builtin_bswap32(BOM))
      order.swap = 1;
    else
      return fail(err, errlen, "not a pcapng file (bad byte-order magic)");
  } else if (!r->in_section) {
    return fail(err, errlen, "not a pcapng file (no section header first)");
  }
  type = rd32(&order, buf);
  uint32_t blen = rd32(&order, buf + 4);
  if (blen < 12 || blen % 4 != 0)
    return fail(err, errlen, "malformed pcapng block length");
  if (blen > AKRCLI_CAP_MAX_BLOCK)
    return fail(err, errlen, "pcapng block larger than 16 MiB");
  if (len < blen) return 0;
  if (rd32(&order, buf + blen - 4) != blen)
    return fail(err, errlen, "pcapng block lengths disagree");
  if (type == SHB) {
    if (blen < 28) return fail(err, errlen, "pcapng section header too short");
    if (rd16(&order, buf + 12) != 1)
      return fail(err, errlen, "pcapng version is not 1");
    r->swap = order.swap;
    r->in_section = 1;
    r->n_ifaces = 0;
  } else if (type == IDB) {
    if (blen < 20) return fail(err, errlen, "pcapng interface block too short");
    if (r->n_ifaces == AKRCLI_CAP_MAX_IFACES)
      return fail(err, errlen, "too many pcapng interfaces");
    r->linktypes[r->n_ifaces++] = rd16(r, buf + 8);
  } else if (type == EPB) {
    if (blen < 32) return fail(err, errlen, "pcapng packet block too short");
    uint32_t iface = rd32(r, buf + 8);
    uint32_t caplen = rd32(r, buf + 20);
    if (iface >= r->n_ifaces) return fail(err, errlen, "pcapng packet of no interface");
    if (caplen > blen - 32)
      return fail(err, errlen, "pcapng packet longer than its block");
    if (r->linktypes[iface] != AKRCLI_CAP_LINKTYPE) return (long)blen;
    if (parse_record(buf + 28, caplen, rec) != 0)
      return fail(err, errlen, "malformed ackrpc capture record");
    rec->time_us = (uint64_t)rd32(r, buf + 12) << 32 | rd32(r, buf + 16);
    *has = 1;
  }
  return (long)blen;
}
