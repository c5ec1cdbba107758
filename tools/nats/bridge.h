/* bridge.h: what main.c (the bridge) shares with jetstream.c: the log and
 * the decoding of an envelope's metadata headers (docs/SCALE.md). */
#ifndef ACKRPC_NATS_BRIDGE_H
#define ACKRPC_NATS_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include <ackrpc/ackrpc.h>

/* Writes "ackrpc-nats: " and the formatted line to stderr. */
void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The metadata of a message, decoded from its Ackrpc-Md-* headers. */
typedef struct md_buf {
  ackrpc_metadata md[ACKRPC_MAX_METADATA];
  char keys[ACKRPC_MAX_METADATA][ACKRPC_MAX_METADATA_KEY + 1];
  uint8_t *values[ACKRPC_MAX_METADATA];
  size_t n;
  char why[256]; /* what md_decode() or the policy refused */
  int denied;    /* refused PERMISSION_DENIED, not INVALID_ARGUMENT */
  /* "nats:ACCOUNT/USER" (a valid principal, ackrpc/common.h), or "" */
  char principal[ACKRPC_MAX_PRINCIPAL + 1];
} md_buf;

/* Decodes the Ackrpc-Md-* headers of `msg` into mb->md[] (sorted by key,
 * the values malloc'd into mb->values). The reserved principal key
 * (ACKRPC_PRINCIPAL_KEY) is refused, mb->denied set: only the bridge names
 * the caller. Returns the count, or -1 with *why set (a static text or
 * mb->why) and nothing left to free. Release with md_free(). */
int md_decode(natsMsg *msg, md_buf *mb, const char **why);

/* Frees the values md_decode() allocated; mb->n becomes 0. */
void md_free(md_buf *mb);

#endif
