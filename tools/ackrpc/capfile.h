/* capfile.h: reading ackrpc captures: the pcapng stream a server's
 * Capture/Watch sends and the files `ackrpc capture -w` writes
 * (docs/CAPTURE.md). Bytes are fed in, blocks and records come out; no I/O,
 * no allocation, explicit limits: the stream comes from a socket and the
 * file from anywhere, so both are untrusted (tests/fuzz/fuzz_capfile.c). */
#ifndef AKRCLI_CAPFILE_H
#define AKRCLI_CAPFILE_H

#include <stddef.h>
#include <stdint.h>

/* The link type of ackrpc capture records: LINKTYPE_USER0. */
#define AKRCLI_CAP_LINKTYPE 147
/* The largest block accepted (a record's body is cut at 256 KiB by the
 * server; other tools' blocks may be larger, up to this). */
#define AKRCLI_CAP_MAX_BLOCK (16u << 20)
/* Interfaces remembered per section; EPBs of later ones are refused. */
#define AKRCLI_CAP_MAX_IFACES 64

enum { AKRCLI_CAP_REQUEST = 1, AKRCLI_CAP_REPLY = 2 };
enum { AKRCLI_CAP_REDACTED = 1, AKRCLI_CAP_OMITTED = 2, AKRCLI_CAP_TRUNCATED = 4 };

/* One call record. Pointers are into the bytes given to akrcli_cap_next()
 * and valid while they are; strings are not NUL-terminated. */
typedef struct akrcli_cap_record {
  uint64_t time_us; /* since the epoch */
  uint8_t kind;     /* AKRCLI_CAP_REQUEST or AKRCLI_CAP_REPLY */
  uint16_t flags;   /* AKRCLI_CAP_* */
  uint32_t uid, gid, pid;
  uint32_t status; /* replies */
  uint32_t lost;   /* records the listener lost before this one, in all */
  const char *method;
  size_t method_len;
  const uint8_t *call_id;
  size_t call_id_len;
  const char *message;
  size_t message_len;
  const uint8_t *body;
  size_t body_len;
} akrcli_cap_record;

/* The reader's state across blocks; zero it before the first. */
typedef struct akrcli_capreader {
  int in_section; /* a Section Header was read */
  int swap;       /* the section is in the other byte order */
  uint16_t linktypes[AKRCLI_CAP_MAX_IFACES];
  size_t n_ifaces;
} akrcli_capreader;

/* Reads the block at buf[0..len). Returns the block's length when it is
 * whole (then *ret_has_record says whether it was an ackrpc record, filled
 * in *ret_record), 0 if more bytes are needed, or -1 with a message in
 * err: not pcapng, a block over AKRCLI_CAP_MAX_BLOCK, inconsistent lengths,
 * a malformed record. Blocks of other types and packets of other link
 * types are skipped (returned, no record). */
long akrcli_cap_next(akrcli_capreader *reader, const uint8_t *buf, size_t len,
                     akrcli_cap_record *ret_record, int *ret_has_record, char *err,
                     size_t errlen);

#endif /* AKRCLI_CAPFILE_H */
