/* result.c: ackrpc_result: clearing it, local failures, decoded replies
 * (result.h). */
#include "client/result.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem/arena.h"
#include "mem/budget.h"
#include "wire/depth.h"
#include "wire/head.h"

/* A reply head (a status and a short message) is decoded on the stack; a
 * long message spills into allocated chunks, up to the budget. */
#define REPLY_HEAD_BUDGET (256u << 10)
#define REPLY_HEAD_ROOM 1024u

void ackrpc_result_clear(ackrpc_result *r) {
  if (!r) return;
  free(r->message);
  if (r->reply) protobuf_c_message_free_unpacked(r->reply, NULL);
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

void akr_result_from_reply(ackrpc_result *r, const akr_frame *frame,
                           const ProtobufCMessageDescriptor *desc, unsigned max_depth,
                           akr_fd_batch *fds, unsigned max_fds) {
  _Alignas(max_align_t) uint8_t room[REPLY_HEAD_ROOM];
  akr_arena arena;
  akr_arena_init_on(&arena, REPLY_HEAD_BUDGET, room, sizeof room);
  akr_reply reply;
  akr_frame_error fe = akr_reply_decode(frame, &arena, &reply);
  if (fe != AKR_FRAME_OK) {
    akr_arena_release(&arena);
    akr_result_fail(r, ACKRPC_E_BAD_REPLY, 0, "reply: %s", akr_frame_error_text(fe));
    return;
  }
  if (fds->ctrunc || fds->n != reply.fd_count || fds->n > max_fds) {
    akr_arena_release(&arena);
    akr_result_fail(r, ACKRPC_E_BAD_REPLY, 0,
                    "reply: %u descriptor(s) received, %u announced, %u accepted%s",
                    fds->n, reply.fd_count, max_fds,
                    fds->ctrunc ? ", some cut off or misplaced" : "");
    return;
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
    return;
  }
  /* An OK reply always yields a message (an empty body is the default
   * message); an error reply yields one only if it sent a body. */
  if (reply.status == ACKRPC_OK || reply.body_len) {
    char why[256];
    r->reply = decode_body(desc, &reply, max_depth, why, sizeof why);
    if (!r->reply && reply.status == ACKRPC_OK)
      akr_result_fail(r, ACKRPC_E_BAD_REPLY, 0, "%s", why);
  }
}
