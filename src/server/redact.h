/* redact.h: the sensitive fields of a server (internal: not installed):
 * the set ackrpc_server_add_sensitive_fields() fills, and the copy of a
 * body without them that a capture records (tap.c). No I/O; the body is
 * the peer's (untrusted) or the handler's, read within explicit limits. */
#ifndef AKR_REDACT_H
#define AKR_REDACT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "ackrpc/server.h"

typedef struct akr_redact_set akr_redact_set;

/* Adds fields to *set (made at the first call). E_INVAL, E_NOMEM (then
 * *set is as it was). */
ackrpc_status akr_redact_add(akr_redact_set **set, const ackrpc_sensitive_field *fields,
                             size_t n);

/* Frees the set; NULL is fine. */
void akr_redact_free(akr_redact_set *set);

/* Deepest nesting of messages a redacted body may have. */
#define AKR_REDACT_MAX_DEPTH 64

/* A copy of `body` (a message of type `type`, wire format) without the
 * sensitive fields, at any depth. Returns 1 with *ret (malloc'd, the
 * caller's) and *ret_len when some were left out; 0 when the body holds
 * none (nothing allocated); -1 when it cannot tell: the body does not
 * parse, nests deeper than AKR_REDACT_MAX_DEPTH, holds groups, or memory
 * ran out (the caller must then leave the body out). */
int akr_redact(const akr_redact_set *set, const ProtobufCMessageDescriptor *type,
               const uint8_t *body, size_t len, uint8_t **ret, size_t *ret_len);

#endif /* AKR_REDACT_H */
