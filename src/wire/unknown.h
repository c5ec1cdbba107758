/* unknown.h: unknown fields of decoded protobuf messages (internal: not
 * installed).
 *
 * protobuf-c keeps every field it does not know in the decoded message, in
 * copies that cost several times their wire size; a request padded with
 * megabytes of them holds that memory for as long as its call lives.
 * akr_drop_unknown() forgets them in `msg` and every message inside it (the
 * memory stays where the allocator put it: the caller re-encodes the
 * message and decodes it afresh to get it back). Returns how many messages
 * had some. Recursion is bounded by the nesting the decoder accepted
 * (docs/SECURITY.md: max_depth). */
#ifndef AKR_UNKNOWN_H
#define AKR_UNKNOWN_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

size_t akr_drop_unknown(ProtobufCMessage *msg);

#endif /* AKR_UNKNOWN_H */
