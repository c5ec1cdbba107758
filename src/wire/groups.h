/* groups.h: protobuf groups (wire types 3 and 4) in heads (internal: not
 * installed).
 *
 * protobuf-c refuses any message holding a group, even in a field it does
 * not know; google.protobuf and every other runtime skip an unknown group
 * like any unknown field. PROTOCOL.md §2.3 says a head's unknown fields are
 * ignored, so a head with an unknown group must decode: akr_strip_groups()
 * copies a message's bytes without its groups, so that protobuf-c can
 * decode the rest. It is only called after protobuf-c refused a head, so a
 * head without groups pays nothing. No I/O, no allocation. */
#ifndef AKR_GROUPS_H
#define AKR_GROUPS_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* Groups nest at most this deep (a group inside a group counts 2), as in
 * google.protobuf, whose default recursion limit is 100; deeper is
 * malformed. The skipper does not recurse: it keeps the open groups' field
 * numbers in an array of this size. */
#define AKR_MAX_GROUP_DEPTH 100

/* Steps over the rest of a group whose start tag (field `field`) was just
 * read at *p: its fields, the groups nested in it, and its end tag, which
 * must carry the same field number. Returns 0 and moves *p past the end
 * tag, or -1 (then *p is undefined) if the bytes end first, a field inside
 * is malformed, an end tag names another field, or groups nest deeper than
 * AKR_MAX_GROUP_DEPTH. */
int akr_skip_group(const uint8_t **p, const uint8_t *end, uint64_t field);

/* Copies the `len` bytes of a message of type `desc` at `in` to `out`
 * (room for `len` bytes: the copy is never longer) without its groups, at
 * any depth: inside the message and inside every field of a message type
 * that `desc` knows (their lengths are rewritten). Every other field is
 * copied byte for byte. Returns the number of groups dropped (*ret_len is
 * the copy's length), or -1 if a group is malformed (akr_skip_group()), an
 * end tag stands outside any group, or other bytes are malformed (then the
 * message would not decode either). `in` and `out` must not overlap. */
long akr_strip_groups(const ProtobufCMessageDescriptor *desc, const uint8_t *in,
                      size_t len, uint8_t *out, size_t *ret_len);

#endif /* AKR_GROUPS_H */
