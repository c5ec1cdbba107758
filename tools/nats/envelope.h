/* The NATS envelope of ackrpc-nats (docs/SCALE.md): how a method name maps
 * to a NATS subject and back, and how the bytes of call ids and metadata
 * values become NATS header text (lowercase hex, padded base64) and back.
 * Pure functions: no allocation, no I/O. Every decoder takes untrusted text
 * (headers and subjects from the network) and rejects anything that is not
 * exactly what the matching encoder writes. */
#ifndef ACKRPC_NATS_ENVELOPE_H
#define ACKRPC_NATS_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

/* Header keys of the envelope (case-sensitive in nats.c 3.x). */
#define ACKRPC_NATS_H_CALL_ID "Ackrpc-Call-Id"
#define ACKRPC_NATS_H_TIMEOUT "Ackrpc-Timeout-Ms"
#define ACKRPC_NATS_H_STATUS "Ackrpc-Status"
#define ACKRPC_NATS_H_MESSAGE "Ackrpc-Message"
#define ACKRPC_NATS_H_MD_PREFIX "Ackrpc-Md-"
/* The error headers of NATS services (the micro protocol): on an answer
 * whose status is not OK, the status's name and message, and its code. */
/* On a message export --jetstream --dead-letter stored there (jetstream.h):
 * why it was terminated (one line), the ackrpc status code of the local
 * server's refusal (decimal; absent when the message was never delivered),
 * and where it was: subject, stream, stream sequence. */
#define ACKRPC_NATS_H_DEAD_REASON "Ackrpc-Dead-Reason"
#define ACKRPC_NATS_H_DEAD_STATUS "Ackrpc-Dead-Status"
#define ACKRPC_NATS_H_DEAD_SUBJECT "Ackrpc-Dead-Subject"
#define ACKRPC_NATS_H_DEAD_STREAM "Ackrpc-Dead-Stream"
#define ACKRPC_NATS_H_DEAD_SEQ "Ackrpc-Dead-Seq"
#define ACKRPC_NATS_H_SERVICE_ERROR "Nats-Service-Error"
#define ACKRPC_NATS_H_SERVICE_ERROR_CODE "Nats-Service-Error-Code"
/* An empty metadata value on NATS: "=" (never base64 output). Its base64,
 * "", is not carried: nats.c 3.4 reads an empty header value wrongly (it
 * takes the next header line as the value). */
#define ACKRPC_NATS_EMPTY_VALUE "="
/* Metadata key that only the export side sets (the caller's principal):
 * the library's ACKRPC_PRINCIPAL_KEY (ackrpc/common.h), which a server
 * takes only from a bridge its `bridges` option trusts. Its value is
 * ACKRPC_NATS_PRINCIPAL_PREFIX + "ACCOUNT/USER". */
#define ACKRPC_NATS_PRINCIPAL_KEY "ackrpc-principal"
#define ACKRPC_NATS_PRINCIPAL_PREFIX "nats:"

/* Writes the subject of `method` ("pkg.Service/Method", docs/PROTOCOL.md
 * §2.1) under `prefix` ("P.pkg.Service.Method") to out[0..cap), with its
 * NUL. Returns 0, or -1 if the method name is malformed, the prefix is
 * empty, or the subject does not fit (out is then unspecified). */
int ackrpc_nats_subject(const char *prefix, const char *method, char *out, size_t cap);

/* The reverse of ackrpc_nats_subject(): the method name of `subject` under
 * `prefix`, to out[0..cap) with its NUL. Returns 0, or -1 if `prefix` is
 * not well formed (as ackrpc_nats_subject() requires), `subject` is not
 * prefix "." service "." method with well-formed identifiers, or the name
 * does not fit. */
int ackrpc_nats_method(const char *prefix, const char *subject, char *out, size_t cap);

/* Characters that ackrpc_nats_b64_encode() writes for `len` bytes, without
 * the NUL. */
size_t ackrpc_nats_b64_len(size_t len);

/* Writes in[0..len) as padded base64 (RFC 4648 §4) to out, which must hold
 * ackrpc_nats_b64_len(len) + 1 bytes, NUL-terminated. */
void ackrpc_nats_b64_encode(const uint8_t *in, size_t len, char *out);

/* Decodes the padded base64 text `in` into out[0..cap); *out_len gets the
 * byte count. Returns 0, or -1 for text that ackrpc_nats_b64_encode() would
 * not write (bad length, characters or padding, non-zero unused bits) or
 * that does not fit. */
int ackrpc_nats_b64_decode(const char *in, uint8_t *out, size_t cap, size_t *out_len);

/* Writes in[0..len) as lowercase hex to out (2 * len + 1 bytes). */
void ackrpc_nats_hex_encode(const uint8_t *in, size_t len, char *out);

/* Decodes lowercase hex `in` into out[0..cap); *out_len gets the byte
 * count. Returns 0, or -1 for an odd length, another character, or too
 * many bytes. */
int ackrpc_nats_hex_decode(const char *in, uint8_t *out, size_t cap, size_t *out_len);

/* Decodes the decimal text `in` (what the Ackrpc-Timeout-Ms and
 * Ackrpc-Status headers carry): one or more ASCII digits, no sign, no
 * spaces, no leading zero unless the text is "0", and a value of at most
 * `max`. Returns 0 with *out set, or -1 (*out untouched). */
int ackrpc_nats_dec_decode(const char *in, uint64_t max, uint64_t *out);

/* Copies the status message `in` to out[0..cap), NUL-terminated, as the
 * Ackrpc-Message header carries it: CR, LF and other ASCII control
 * characters become spaces (a header value is one line), and a message
 * longer than cap - 1 bytes is cut at a UTF-8 character boundary. `in` NULL
 * gives "". cap must be at least 1. Returns the bytes written, without the
 * NUL. */
size_t ackrpc_nats_message_clean(const char *in, char *out, size_t cap);

#endif
