/* depth.h: nesting of protobuf messages (internal: not installed).
 *
 * protobuf-c has no recursion limit (a ~30 KB message nested 9,000 deep
 * overflows its stack). akr_message_depth() returns the deepest nesting of
 * `desc`'s type, counting the message itself as 1, or AKR_DEPTH_UNBOUNDED
 * for a recursive type: only such types need the scan below.
 * akr_check_depth() walks the wire bytes guided by the descriptor without
 * allocating, and returns 0 if no message or group in them nests deeper than
 * `max_depth`, -1 if one does. Malformed input that does not nest too deep
 * returns 0: the decoder will refuse it. */
#ifndef AKR_DEPTH_H
#define AKR_DEPTH_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define AKR_DEPTH_UNBOUNDED 0xffffffffu
unsigned akr_message_depth(const ProtobufCMessageDescriptor *desc);
int akr_check_depth(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                    size_t len, unsigned max_depth);

#endif /* AKR_DEPTH_H */
