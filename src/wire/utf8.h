/* utf8.h: UTF-8 in decoded string fields (internal: not installed).
 *
 * protobuf-c does not check that a `string` field holds UTF-8; the other
 * protobuf runtimes refuse a proto3 string that does not at parse time.
 * akr_utf8_valid() is the strict check (RFC 3629: no overlong forms, no
 * surrogates U+D800..U+DFFF, nothing above U+10FFFF, no truncated
 * sequence). akr_check_utf8() applies it to every string field of a
 * decoded message that the check covers, at every depth: singular,
 * repeated, in oneofs, in submessages and in map entries.
 *
 * Which fields the check covers. protobuf-c 1.4.1's descriptors do not
 * record a file's syntax, so it is told from the labels: protoc-c 1.4.1
 * labels proto3 fields NONE (singular, oneof members, map keys and values)
 * or REPEATED, and refuses proto3 `optional`; proto2 fields are REQUIRED,
 * OPTIONAL (oneof members too) or REPEATED. So a message type with a
 * REQUIRED or OPTIONAL field is proto2 and its strings are not checked
 * (proto2 strings carry no UTF-8 promise, as with the other runtimes); every
 * other type is checked: all proto3 types, and a proto2 type whose fields
 * are all repeated, which cannot be told from proto3 (checked: the rule
 * errs on the strict side). Submessages of a proto2 type are still walked.
 * A newer protoc-c that labels proto3 `optional` fields OPTIONAL would make
 * a proto3 type whose singular fields are all `optional` look proto2; the
 * build pins protobuf-c 1.4.1.
 *
 * protobuf-c NUL-terminates strings and keeps no length: a string is
 * checked up to its first NUL, which is all that C code can see of it. */
#ifndef AKR_UTF8_H
#define AKR_UTF8_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/* 1 if the `len` bytes at `data` are UTF-8, 0 if not. */
int akr_utf8_valid(const void *data, size_t len);

/* 1 if a message of this type can hold a string field the check covers
 * (its own or a submessage's, at any depth), 0 if not: then
 * akr_check_utf8() has nothing to do and need not be called. Walks the type
 * graph: compute it once per type (the server does at registration). */
int akr_message_has_strings(const ProtobufCMessageDescriptor *desc);

typedef struct akr_utf8_error {
  const ProtobufCMessageDescriptor *message; /* the type holding `field` */
  const ProtobufCFieldDescriptor *field;
  const char *what; /* "invalid UTF-8", or "nesting deeper than allowed" */
} akr_utf8_error;

/* 0 if every covered string in `msg` is UTF-8. Otherwise -1, and the first
 * field found wanting is in *ret_error. Recurses once per level of nesting,
 * up to `max_depth` (the message itself is depth 1): a submessage deeper
 * than that is an error too, with the field that holds it. Callers bound
 * the nesting before decoding (depth.h) with the same limit, so that error
 * cannot happen for them. Allocates nothing. */
int akr_check_utf8(const ProtobufCMessage *msg, unsigned max_depth,
                   akr_utf8_error *ret_error);

#endif /* AKR_UTF8_H */
