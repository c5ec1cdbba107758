/* result.h: filling an ackrpc_result (internal: not installed): a local
 * failure with its explanation, or a reply frame decoded into the server's
 * status, message and reply. Shared by the engine and the entry points, so
 * that a status always comes with the same kind of message. */
#ifndef AKR_CLIENT_RESULT_H
#define AKR_CLIENT_RESULT_H

#include <protobuf-c/protobuf-c.h>

#include "ackrpc/client.h"
#include "platform/fdpass.h"
#include "wire/frame.h"

/* Sets a local status, its errno (0: none) and an explanation
 * (printf-style; ": strerror(err)" is appended when err is not 0) in `r`.
 * Returns `st`. */
ackrpc_status akr_result_fail(ackrpc_result *r, ackrpc_status st, int err,
                              const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The memory a reply body may take once decoded: protobuf-c can need ~30
 * times the wire size for pathological input (many empty submessages); the
 * same bound as the server's for requests. */
#define AKR_REPLY_DECODE_BUDGET(body_len) (16 * (size_t)(body_len) + (64u << 10))

/* Fills `r` from a complete reply frame: the server's status and message,
 * and the reply decoded with `desc` (an OK reply always gives a message, an
 * error reply one only if it has a body); with `desc` NULL, the body's bytes
 * in reply_bytes whatever the status. A body is decoded only if it nests no
 * deeper than `max_depth` (protobuf-c recurses without a limit) and within
 * AKR_REPLY_DECODE_BUDGET. E_BAD_REPLY if the head does not decode, or an
 * OK body does not decode with `desc` within those limits (an error
 * status's body that does not is dropped; the status stands).
 * `fds` is the batch read with the frame: its descriptors move to
 * r->fds if they match the head's count, are no more than `max_fds` and
 * were not cut (ctrunc); otherwise the reply is E_BAD_REPLY. What is left
 * in `fds` is the caller's to close.
 * A body in a memfd (the batch's last descriptor, docs/PROTOCOL.md §2.6)
 * is taken only with `accept_memfd`, and only a sealed memfd within
 * `max_reply` (head and body): it is mapped, decoded (or copied, without
 * `desc`), unmapped and closed here; otherwise E_BAD_REPLY.
 * Returns 1 if the head says the server took the request's body memfd
 * (`body_memfd_read`), else 0. */
int akr_result_from_reply(ackrpc_result *r, const akr_frame *frame,
                          const ProtobufCMessageDescriptor *desc, unsigned max_depth,
                          akr_fd_batch *fds, unsigned max_fds, int accept_memfd,
                          size_t max_reply);

#endif /* AKR_CLIENT_RESULT_H */
