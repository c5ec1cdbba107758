/* fdfields.h: message fields of type ackrpc.Fd (proto/ackrpc/fd.proto),
 * the descriptors a typed message carries (internal: not installed).
 *
 * In memory such a field holds a descriptor; on the wire, its index in the
 * frame's descriptor list (docs/PROTOCOL.md §2.5). The sender encodes a
 * shallow copy of the message whose Fd fields hold indices 0, 1, ... in
 * field order, and sends the descriptors in that order; the receiver checks
 * the decoded indices against the descriptors that came and writes the
 * descriptors in their place. Only fields of the message itself count (the
 * generator refuses Fd fields deeper). No I/O; the descriptors are never
 * closed here except by akr_fdfields_close(). */
#ifndef AKR_FDFIELDS_H
#define AKR_FDFIELDS_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#define AKR_FD_TYPE "ackrpc.Fd"

/* How many descriptors a message of type `desc` may carry: its singular Fd
 * fields, or `repeated_max` if it has a repeated one. 0 without Fd fields
 * (or a NULL desc). */
unsigned akr_fdfields_capacity(const ProtobufCMessageDescriptor *desc,
                               unsigned repeated_max);

/* What a sender encodes: `msg` itself (no descriptors) or a copy. */
typedef struct akr_fdfields_out {
  const ProtobufCMessage *msg; /* to encode */
  const int *fds;              /* the descriptors, in index order */
  size_t n_fds;
  void *mem; /* the copy, the index messages and fds (NULL if msg is the
              * original): akr_fdfields_out_free() */
} akr_fdfields_out;

/* Fills *ret for `msg`. Returns 0; or -1 with `why` set (a singular Fd
 * field absent, a negative descriptor, more than `max` descriptors, no
 * memory: *ret_nomem set). The descriptors stay the caller's. */
int akr_fdfields_pack(const ProtobufCMessage *msg, unsigned max, akr_fdfields_out *ret,
                      int *ret_nomem, char *why, size_t why_len);
void akr_fdfields_out_free(akr_fdfields_out *out);

/* Receiver: checks that the Fd fields of the decoded `msg` name each of
 * fds[0..n) exactly once (every index below n, none twice, every singular
 * Fd field present), then writes fds[index] into each field. Returns 0; or
 * -1 with `why` set and `msg` unchanged. Ownership of the descriptors is
 * the caller's to settle. */
int akr_fdfields_bind(ProtobufCMessage *msg, const int *fds, size_t n, char *why,
                      size_t why_len);

/* Closes the descriptors held by msg's Fd fields (those >= 0) and, if
 * `reset`, sets them to -1 (`msg` is written only then). For a message
 * that holds descriptors, not indices. NULL is ignored. */
void akr_fdfields_close(const ProtobufCMessage *msg, int reset);

#endif /* AKR_FDFIELDS_H */
