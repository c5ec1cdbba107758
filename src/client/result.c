/* result.c: ackrpc_result: clearing it, local failures, decoded replies
 * (result.h). */
#include "client/result.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem/arena.h"
#include "mem/budget.h"
#include "platform/memfd.h"
#include "wire/encode.h"
#include "wire/depth.h"
#include "wire/fdfields.h"
#include "wire/head.h"

/* A reply head (a status and a short message) is decoded on the stack; a
 * long message spills into allocated chunks, up to the budget. */
#define REPLY_HEAD_BUDGET (256u << 10)
#define REPLY_HEAD_ROOM 1024u

void ackrpc_result_clear(ackrpc_result *r) {
  if (!r) return;
  free(r->message);
  if (r->reply) {
    akr_fdfields_close(r->reply, 1); /* a reply's descriptors go with it */
    protobuf_c_message_free_unpacked(r->reply, NULL);
  }
  free(r->reply_bytes);
  if (r->fds) akr_fds_close(r->fds, r->n_fds);
  free(r->fds);
  memset(r, 0, sizeof *r);
}

ackrpc_status akr_result_fail(ackrpc_result *r, ackrpc_status st, int err,
                              const char *fmt, ...) {
  r->status = st;
  r->sys_errno = err;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (err) {
    char eb[128];
    size_t used = strlen(buf);
    snprintf(buf + used, sizeof buf - used, ": %s", strerror_r(err, eb, sizeof eb));
  }
  free(r->message);
  r->message = strdup(buf);
  return st;
}

/* The body's bytes as sent, for a raw call. */
static void keep_bytes(ackrpc_result *r, const akr_reply *reply) {
  if (!reply->body_len) return;
  r->reply_bytes = malloc(reply->body_len);
  if (!r->reply_bytes) {
    akr_result_fail(r, ACKRPC_E_BAD_REPLY, ENOMEM, "no memory for the reply body");
    return;
  }
  memcpy(r->reply_bytes, reply->body, reply->body_len);
  r->reply_bytes_len = reply->body_len;
}

/* Whether `desc` has a message field: only then can a body nest. */
static int may_nest(const ProtobufCMessageDescriptor *desc) {
  for (unsigned i = 0; i < desc->n_fields; i++)
    if (desc->fields[i].type == PROTOBUF_C_TYPE_MESSAGE) return 1;
  return 0;
}

/* Decodes a reply body with `desc`, within the nesting and memory limits.
 * NULL if it does not decode; then *ret_why says why (for `desc`). */
static ProtobufCMessage *decode_body(const ProtobufCMessageDescriptor *desc,
                                     const akr_reply *reply, unsigned max_depth,
                                     char *why, size_t why_len) {
  if (reply->body_len && may_nest(desc) &&
      akr_check_depth(desc, reply->body, reply->body_len, max_depth)) {
    snprintf(why, why_len, "reply body nests deeper than %u levels (max_reply_depth)",
             max_depth);
    return NULL;
  }
  akr_budget b;
  akr_budget_init(&b, AKR_REPLY_DECODE_BUDGET(reply->body_len));
  ProtobufCMessage *m =
      protobuf_c_message_unpack(desc, &b.pc, reply->body_len, reply->body);
  if (!m)
    snprintf(why, why_len, "reply body %s as %s",
             b.refused ? "needs too much memory to decode" : "does not decode",
             desc->name);
  return m;
}

/* Moves the reply's descriptors into its ackrpc.Fd fields (the reply
 * holds them from now on), or, if they do not check out, closes them and
 * drops the reply: E_BAD_REPLY for an OK one (docs/PROTOCOL.md §2.5). */
static void bind_reply(ackrpc_result *r) {
  char why[256];
  if (akr_fdfields_bind(r->reply, r->fds, r->n_fds, why, sizeof why) != 0) {
    protobuf_c_message_free_unpacked(r->reply, NULL);
    r->reply = NULL;
    if (r->fds) akr_fds_close(r->fds, r->n_fds);
    if (r->status == ACKRPC_OK)
      akr_result_fail(r, ACKRPC_E_BAD_REPLY, 0, "reply: %s", why);
  }
  free(r->fds);
  r->fds = NULL;
  r->n_fds = 0;
}

/* Maps the reply's body from the last of its descriptors (closed here),
 * into reply->body: 0, or -1 after failing r. */
static int map_body(ackrpc_result *r, const akr_frame *frame, akr_reply *reply,
                    akr_fd_batch *fds, int accept, size_t max_reply) {
  int fd = fds->fds[--fds->n];
  fds->fds[fds->n] = -1;
  size_t limit = max_reply > frame->frame_len ? max_reply - frame->frame_len : 0, len;
  const uint8_t *map = NULL;
  akr_memfd_error e = AKR_MEMFD_OK;
  if (accept && frame->body_len == 1 && frame->body[0] == AKR_MEMFD_STUB)
    e = akr_memfd_map(fd, limit, 1, &map, &len);
  close(fd);
  if (!map) {
    akr_result_fail(r, ACKRPC_E_BAD_REPLY, 0, "reply: %s",
                    !accept ? "a body in a memfd, which the call did not accept"
                    : e     ? akr_memfd_error_text(e)
                            : "a body in a memfd with a frame body other than 0x00");
    return -1;
  }
  reply->body = map;
  reply->body_len = len;
  return 0;
}

int akr_result_from_reply(ackrpc_result *r, const akr_frame *frame,
                          const ProtobufCMessageDescriptor *desc, unsigned max_depth,
                          akr_fd_batch *fds, unsigned max_fds, int accept_memfd,
                          size_t max_reply) {
  _Alignas(max_align_t) uint8_t room[REPLY_HEAD_ROOM];
  akr_arena arena;
  akr_arena_init_on(&arena, REPLY_HEAD_BUDGET, room, sizeof room);
  akr_reply reply;
  akr_frame_error fe = akr_reply_decode(frame, &arena, &reply);
  if (fe != AKR_FRAME_OK) {
    akr_arena_release(&arena);
    akr_result_fail(r, ACKRPC_E_BAD_REPLY, 0, "reply: %s", akr_frame_error_text(fe));
    return 0;
  }
  unsigned body = reply.body_memfd ? 1 : 0;
  if (fds->ctrunc || fds->n != reply.fd_count || fds->n - body > max_fds ||
      fds->n < body) {
    akr_arena_release(&arena);
    akr_result_fail(r, ACKRPC_E_BAD_REPLY, 0,
                    "reply: %u descriptor(s) received, %u announced, %u accepted%s",
                    fds->n, reply.fd_count, max_fds,
                    fds->ctrunc ? ", some cut off or misplaced" : "");
    return reply.body_memfd_read;
  }
  if (body && map_body(r, frame, &reply, fds, accept_memfd, max_reply) != 0) {
    akr_arena_release(&arena);
    return reply.body_memfd_read;
  }
  if (fds->n) {
    r->fds = fds->fds;
    r->n_fds = fds->n;
    fds->fds = NULL;
    fds->n = 0;
  }
  r->status = (ackrpc_status)reply.status;
  r->sys_errno = 0;
  free(r->message);
  r->message = reply.message[0] ? strdup(reply.message) : NULL;
  akr_arena_release(&arena);
  if (!desc) {
    keep_bytes(r, &reply);
  } else if (reply.status == ACKRPC_OK || reply.body_len) {
    /* An OK reply always yields a message (an empty body is the default
     * message); an error reply yields one only if it sent a body. */
    char why[256];
    r->reply = decode_body(desc, &reply, max_depth, why, sizeof why);
    if (!r->reply && reply.status == ACKRPC_OK)
      akr_result_fail(r, ACKRPC_E_BAD_REPLY, 0, "%s", why);
    if (r->reply && akr_fdfields_capacity(desc, 1)) bind_reply(r);
  }
  if (body) akr_memfd_unmap(reply.body, reply.body_len);
  return reply.body_memfd_read;
}
