/* dispatch.c: from an admitted frame to a handler and back (dispatch.h):
 * the head checked against the registry and the policies, the body
 * decoded, the handler run, its reply delivered (inline, or from another
 * thread through the wake queue), deadlines, and the reply cache.
 *
 * Whoever first sets a call's `answered` answers it: the handler (through
 * ackrpc_call_reply()) or the loop (a deadline, shutdown). A reply made on
 * the loop inside the handler is written at once; any other goes through
 * the queue. */
#include "server/dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ackrpc/wire.pb-c.h"
#include "core/clock.h"
#include "server/call.h"
#include "server/conn.h"
#include "server/tap.h"
#include "wire/depth.h"
#include "wire/encode.h"
#include "wire/unknown.h"
#include "wire/utf8.h"

#define DEADLINE_GRACE_US 5000 /* past a client's deadline, see dispatch() */
/* Decoding a request may allocate this much (protobuf-c can need ~30x the
 * wire size for pathological input); beyond it: RESOURCE_EXHAUSTED. */
#define DECODE_BUDGET(frame_len) (16 * (size_t)(frame_len) + (64u << 10))

/* The call whose handler is running on this thread, if any. */
static _Thread_local ackrpc_call *tl_in_handler;

/* Refuses the frame being admitted: the call goes, the answer is sent. */
static int refuse(akr_conn *c, ackrpc_status status, const char *message,
                  int complete) {
  if (c->server->tap && c->call) akr_tap_answer(c->server, c->call, status, message);
  akr_conn_part(c);
  akr_conn_answer(c, status, message, !complete);
  return 0;
}

/* Refuses the frame if its connection or its uid has too many calls in
 * progress, or if buffering it would go over a memory budget (account.h):
 * 1 if refused. */
static int over_limits(akr_conn *c, const akr_frame *f, int complete) {
  ackrpc_server *s = c->server;
  akr_event_kind kind = AKR_EV_CALL_LIMIT;
  const char *why = NULL;
  if (c->acct.calls >= s->opt.max_calls_per_connection) {
    why = "too many calls in progress on this connection";
  } else if (c->uacct && c->uacct->a.calls >= s->opt.max_calls_per_uid) {
    why = "too many calls in progress for this uid";
  } else if (f->frame_len > c->in_cap && f->frame_len - c->in_cap > akr_acct_room(c)) {
    kind = AKR_EV_OVER_BUDGET;
    why = "server memory budget exhausted";
  }
  if (!why) return 0;
  akr_event(s, kind, ACKRPC_LOG_INFO, "peer_uid=%u peer_pid=%d error=\"%s\"",
            (unsigned)c->peer.uid, (int)c->peer.pid, why);
  refuse(c, ACKRPC_RESOURCE_EXHAUSTED, why, complete);
  return 1;
}

/* Moves the frame's descriptors to the call if they check out
 * (docs/PROTOCOL.md §2.5); else closes them and refuses: 1 if refused. */
static int check_fds(akr_conn *c, ackrpc_call *call, const akr_method_entry *m,
                     int complete) {
  akr_fd_batch fds;
  akr_conn_claim_fds(c, &fds);
  uint32_t want = call->req.fd_count;
  unsigned body = call->req.body_memfd ? 1 : 0; /* the last one, not the method's */
  if (!fds.n && !fds.ctrunc && !want && !body) return 0;
  ackrpc_server *s = c->server;
  char msg[160];
  ackrpc_status st = ACKRPC_INVALID_ARGUMENT;
  if (body && !want) {
    snprintf(msg, sizeof msg, "body_memfd set, but no descriptor announced");
  } else if (fds.ctrunc || want > s->opt.max_fds_per_call) {
    st = ACKRPC_RESOURCE_EXHAUSTED;
    snprintf(msg, sizeof msg, "more descriptors than the server takes (%u)",
             s->opt.max_fds_per_call);
  } else if (fds.n != want) {
    snprintf(msg, sizeof msg, "%u descriptor(s) received, the head says %u", fds.n,
             (unsigned)want);
  } else if (fds.n - body > m->max_fds) {
    snprintf(msg, sizeof msg, "%s takes %u descriptor(s), %u sent", m->m.name,
             m->max_fds, fds.n - body);
  } else {
    call->fds = fds;
    return 0;
  }
  akr_fd_batch_close(&fds);
  akr_event(s, AKR_EV_BAD_REQUEST, ACKRPC_LOG_INFO,
            "method=%s peer_uid=%u peer_pid=%d error=\"%s\"", m->m.name,
            (unsigned)c->peer.uid, (int)c->peer.pid, msg);
  refuse(c, st, msg, complete);
  return 1;
}

/* Maps the request's body from the last of its descriptors (a sealed
 * memfd, docs/PROTOCOL.md §2.6), which is closed here whatever happens:
 * the mapping, kept until the call ends, is charged to the memory
 * account. 1 if refused. */
static int map_body(akr_conn *c, ackrpc_call *call, const akr_method_entry *m,
                    const akr_frame *f, int complete) {
  ackrpc_server *s = c->server;
  int fd = call->fds.fds[--call->fds.n];
  call->fds.fds[call->fds.n] = -1;
  char msg[200];
  ackrpc_status st = ACKRPC_INVALID_ARGUMENT;
  size_t limit = s->opt.max_request_size - f->frame_len, len = 0;
  const uint8_t *map = NULL;
  akr_memfd_error e = AKR_MEMFD_OK;
  akr_event_kind kind = AKR_EV_BAD_REQUEST;
  if (s->opt.refuse_body_memfd) {
    st = ACKRPC_UNIMPLEMENTED;
    snprintf(msg, sizeof msg, "this server does not take bodies in a memfd");
  } else if (f->body_len != 1) {
    snprintf(msg, sizeof msg,
             "a frame whose body is in a memfd must have a "
             "body of one byte");
  } else if ((e = akr_memfd_map(fd, limit, !m->raw, &map, &len)) != AKR_MEMFD_OK) {
    if (e == AKR_MEMFD_TOO_LARGE) st = ACKRPC_RESOURCE_EXHAUSTED;
    snprintf(msg, sizeof msg, "%s (%zu bytes allowed)", akr_memfd_error_text(e), limit);
  } else if (len > akr_acct_room(c)) {
    akr_memfd_unmap(map, len);
    st = ACKRPC_RESOURCE_EXHAUSTED;
    kind = AKR_EV_OVER_BUDGET;
    snprintf(msg, sizeof msg, "server memory budget exhausted");
  } else {
    close(fd);
    call->map = map;
    call->map_len = len;
    call->memfd_read = 1;
    akr_acct_call_bytes(call, call->arena.total + len);
    return 0;
  }
  close(fd);
  akr_event(s, kind, ACKRPC_LOG_INFO, "method=%s peer_uid=%u peer_pid=%d error=\"%s\"",
            call->req.method, (unsigned)c->peer.uid, (int)c->peer.pid, msg);
  refuse(c, st, msg, complete);
  return 1;
}

/* The principal of a call (ACKRPC_PRINCIPAL_KEY), taken only from a
 * bridge: from another peer the key is refused, never passed on. A bridge
 * may send it once, valid (policy.h), or not at all (anonymous). 1 if
 * refused. */
static int take_principal(akr_conn *c, ackrpc_call *call, int complete) {
  ackrpc_server *s = c->server;
  call->bridged = c->bridge;
  const Ackrpc__Wire__Metadata *found = NULL;
  const char *why = NULL;
  ackrpc_status st = ACKRPC_INVALID_ARGUMENT;
  for (size_t i = 0; i < call->req.n_metadata && !why; i++) {
    const Ackrpc__Wire__Metadata *md = call->req.metadata[i];
    if (strcmp(md->key, ACKRPC_PRINCIPAL_KEY) != 0) continue;
    if (found) why = "metadata " ACKRPC_PRINCIPAL_KEY " sent more than once";
    found = md;
  }
  if (!found) return 0;
  if (!why && !c->bridge) {
    st = ACKRPC_PERMISSION_DENIED;
    why = "metadata " ACKRPC_PRINCIPAL_KEY " is taken only from a trusted bridge";
  } else if (!why && !akr_principal_valid(found->value.data, found->value.len)) {
    why = "metadata " ACKRPC_PRINCIPAL_KEY " is not a valid principal";
  }
  char *copy = NULL;
  if (!why && !(copy = akr_arena_alloc(&call->arena, found->value.len + 1))) {
    st = ACKRPC_RESOURCE_EXHAUSTED;
    why = "server memory budget exhausted";
  }
  if (why) {
    akr_event(s, AKR_EV_REFUSED, ACKRPC_LOG_INFO,
              "method=%s peer_uid=%u peer_pid=%d error=\"%s\"", call->req.method,
              (unsigned)c->peer.uid, (int)c->peer.pid, why);
    refuse(c, st, why, complete);
    return 1;
  }
  memcpy(copy, found->value.data, found->value.len);
  copy[found->value.len] = '\0';
  akr_acct_call_bytes(call, call->arena.total);
  call->principal = copy;
  return 0;
}

int akr_dispatch_admit(akr_conn *c, const akr_frame *f, int complete) {
  ackrpc_server *s = c->server;
  c->stat_m = NULL;
  c->t_start_us = 0;
  if (over_limits(c, f, complete)) return 0;
  ackrpc_call *call = akr_call_new(s);
  if (!call) return refuse(c, ACKRPC_RESOURCE_EXHAUSTED, "out of memory", complete);
  c->call = call;
  call->conn = c;
  call->peer = c->peer;
  call->frame_len = f->frame_len;
  akr_acct_call_start(call, c);
  /* The head too decodes within the room the account has. */
  size_t cap = DECODE_BUDGET(f->frame_len), room = akr_acct_room(c);
  akr_arena_reset(&call->arena, cap < room ? cap : room);
  akr_frame_error fe = akr_request_decode(f, &call->arena, &call->req);
  akr_acct_call_bytes(call, call->arena.total);
  if (fe != AKR_FRAME_OK) {
    akr_event(s, AKR_EV_BAD_REQUEST, ACKRPC_LOG_INFO,
              "peer_uid=%u peer_pid=%d error=\"%s\"", (unsigned)c->peer.uid,
              (int)c->peer.pid, akr_frame_error_text(fe));
    return refuse(c, akr_frame_error_status(fe), akr_frame_error_text(fe), complete);
  }
  const akr_method_entry *m = akr_registry_find(&s->registry, call->req.method);
  if (!m && s->registry.fallback.raw_fn) m = &s->registry.fallback;
  if (!m) {
    char msg[ACKRPC_MAX_METHOD_NAME + 32];
    snprintf(msg, sizeof msg, "unknown method %s", call->req.method);
    return refuse(c, ACKRPC_UNIMPLEMENTED, msg, complete);
  }
  c->stat_m = m;
  if (take_principal(c, call, complete)) return 0;
  int allowed = call->bridged ? akr_policy_allows_principal(m->policy, call->principal)
                              : akr_policy_allows(m->policy, s->euid, &c->peer, c->fd);
  if (!allowed) {
    akr_event(s, AKR_EV_REFUSED, ACKRPC_LOG_INFO,
              "method=%s peer_uid=%u peer_pid=%d%s%s%s by=policy", call->req.method,
              (unsigned)c->peer.uid, (int)c->peer.pid,
              call->bridged ? " principal=\"" : "",
              call->bridged ? (call->principal ? call->principal : "") : "",
              call->bridged ? "\"" : "");
    return refuse(c, ACKRPC_PERMISSION_DENIED, "not allowed to call this method",
                  complete);
  }
  if (check_fds(c, call, m, complete)) return 0;
  if (call->req.body_memfd && map_body(c, call, m, f, complete)) return 0;
  call->method = m;
  return 1;
}

/* Decodes the body anew without its unknown fields (keep_unknown_fields
 * is off): the copies protobuf-c made of them go with the arena's chunks
 * allocated since `mark`. 0, or -1 if out of memory. */
static int drop_unknown(ackrpc_call *call, akr_arena_mark mark) {
  if (!akr_drop_unknown(call->request)) return 0;
  size_t n = protobuf_c_message_get_packed_size(call->request);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return -1;
  protobuf_c_message_pack(call->request, buf);
  akr_arena_rewind(&call->arena, mark);
  call->request =
      protobuf_c_message_unpack(call->method->m.request, &call->arena.pc, n, buf);
  free(buf);
  return call->request ? 0 : -1;
}

/* Decodes the body into the call's arena, within the decoding budget and
 * the room the memory account has; 0, or -1 after answering. */
static int decode(akr_conn *c, ackrpc_call *call, const akr_frame *f) {
  ackrpc_server *s = c->server;
  const akr_method_entry *m = call->method;
  char msg[512];
  const uint8_t *body = call->req.body;
  size_t body_len = call->req.body_len, frame_len = f->frame_len + call->map_len;
  if (m->raw_fn) {
    /* The fallback: the body as it came, undecoded. One in a memfd stays
     * mapped until the call ends; one in the connection's buffer is copied
     * into the call's arena, since that buffer moves on (a large frame's
     * goes back to the spare store while its call waits). */
    if (call->map || body_len == 0) return 0;
    call->arena.cap = call->arena.total + akr_acct_room(c);
    uint8_t *copy = akr_arena_alloc(&call->arena, body_len);
    akr_acct_call_bytes(call, call->arena.total);
    if (!copy) {
      refuse(c, ACKRPC_RESOURCE_EXHAUSTED, "server memory budget exhausted", 1);
      return -1;
    }
    memcpy(copy, body, body_len);
    call->req.body = copy;
    return 0;
  }
  if (m->raw) return 0; /* the handler reads the body itself */
  if (m->depth > s->opt.max_depth &&
      akr_check_depth(m->m.request, body, body_len, s->opt.max_depth)) {
    snprintf(msg, sizeof msg, "request nests deeper than %u levels", s->opt.max_depth);
    refuse(c, ACKRPC_INVALID_ARGUMENT, msg, 1);
    return -1;
  }
  size_t room = call->arena.total + akr_acct_room(c);
  int by_account = room < DECODE_BUDGET(frame_len);
  call->arena.cap = by_account ? room : DECODE_BUDGET(frame_len);
  akr_arena_mark mark = akr_arena_mark_now(&call->arena);
  call->request =
      protobuf_c_message_unpack(m->m.request, &call->arena.pc, body_len, body);
  if (call->request && !s->opt.keep_unknown_fields && drop_unknown(call, mark) != 0) {
    call->request = NULL;
    call->arena.refused = 1;
  }
  akr_acct_call_bytes(call, call->arena.total + call->map_len);
  akr_utf8_error bad;
  if (call->request && m->strings &&
      akr_check_utf8(call->request, s->opt.max_depth, &bad)) {
    snprintf(msg, sizeof msg, "%s in field %s.%s", bad.what, bad.message->name,
             bad.field->name);
    refuse(c, ACKRPC_INVALID_ARGUMENT, msg, 1);
    return -1;
  }
  if (call->request) return 0;
  int over = call->arena.refused;
  if (over && by_account) {
    akr_event(s, AKR_EV_OVER_BUDGET, ACKRPC_LOG_INFO,
              "peer_uid=%u peer_pid=%d error=\"decoding over the memory budget\"",
              (unsigned)c->peer.uid, (int)c->peer.pid);
    refuse(c, ACKRPC_RESOURCE_EXHAUSTED, "server memory budget exhausted", 1);
    return -1;
  }
  snprintf(msg, sizeof msg, "request body %s %s",
           over ? "needs more memory to decode than allowed as" : "does not decode as",
           m->m.request->name);
  refuse(c, over ? ACKRPC_RESOURCE_EXHAUSTED : ACKRPC_INVALID_ARGUMENT, msg, 1);
  return -1;
}

void akr_dispatch_frame(akr_conn *c, const akr_frame *f) {
  ackrpc_server *s = c->server;
  ackrpc_call *call = c->call;
  call->t_start_us = c->t_start_us = akr_now_us(); /* the request is complete */
  /* The buffer may have moved since the head was checked. */
  call->req.body = call->map ? call->map : f->body;
  call->req.body_len = call->map ? call->map_len : f->body_len;
  if (call->map && f->body[0] != AKR_MEMFD_STUB) {
    refuse(c, ACKRPC_INVALID_ARGUMENT,
           "a frame whose body is in a memfd must have the body 0x00", 1);
    return;
  }
  if (s->cache) akr_cache_digest(call, call->req.body, call->req.body_len);
  if (s->tap) akr_tap_request(s, call, call->req.body, call->req.body_len);
  if (decode(c, call, f) != 0) return;
  uint64_t budget = (uint64_t)s->opt.handler_timeout_ms * 1000u;
  int client_deadline = call->req.timeout_us && call->req.timeout_us < budget;
  if (client_deadline) budget = call->req.timeout_us;
  call->deadline_us = call->t_start_us + budget;
  if (s->cache && akr_cache_begin(c, call)) return; /* a repeated call id */
  const akr_method_entry *m = call->method;
  c->state = AKR_CONN_BUSY;
  atomic_store_explicit(&call->answered, 0, memory_order_relaxed);
  atomic_store_explicit(&call->held, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&call->refs, 1, memory_order_relaxed);
  tl_in_handler = call;
  if (m->raw_fn)
    m->raw_fn(call, call->req.body_len ? call->req.body : NULL, call->req.body_len,
              m->user);
  else
    m->fn(call, call->request, m->user);
  tl_in_handler = NULL;
  /* Deferred. When the deadline is the client's, the server answers a
   * moment after it: the client has given up by then and reports its own
   * timeout, rather than racing the server's answer. An inline answer left
   * the connection as it was, which in a session saves an epoll_ctl pair
   * per call. */
  if (c->state == AKR_CONN_BUSY)
    akr_conn_busy(c, call->deadline_us + (client_deadline ? DEADLINE_GRACE_US : 0));
}

/* The loop's timer for a BUSY connection. */
void akr_dispatch_expired(akr_conn *c) {
  ackrpc_call *call = c->call;
  ackrpc_server *s = c->server;
  if (!call) return;
  if (call->waiting) {
    akr_cache_wait_over(c, call);
    return;
  }
  if (atomic_exchange_explicit(&call->answered, 1, memory_order_acq_rel))
    return; /* the handler answered first: its reply is on its way */
  akr_event(s, AKR_EV_HANDLER_DEADLINE, ACKRPC_LOG_WARNING,
            "method=%s peer_uid=%u peer_pid=%d "
            "error=\"no reply before the deadline\"",
            call->req.method, (unsigned)c->peer.uid, (int)c->peer.pid);
  /* The handler keeps the call (and the request in its arena) until it
   * replies; the connection goes on without it, so that the session, and
   * calls pipelined behind this one, are served. */
  static const char late[] = "the handler did not answer before the deadline "
                             "(it may still act on the request)";
  if (s->tap) akr_tap_answer(s, call, ACKRPC_DEADLINE_EXCEEDED, late);
  akr_conn_part(c);
  akr_conn_answer(c, ACKRPC_DEADLINE_EXCEEDED, late, 0);
}

/* --- replies ----------------------------------------------------------- */

/* Hands a reply encoded on another thread (and the handler's reference) to
 * the loop. -1 if the server is closed: the caller drops the reference. */
static int queue_reply(ackrpc_server *s, ackrpc_call *call) {
  pthread_mutex_lock(&s->mu);
  if (s->closed) {
    pthread_mutex_unlock(&s->mu);
    return -1;
  }
  int was_empty = s->done_head == NULL;
  call->next = NULL;
  if (s->done_tail)
    s->done_tail->next = call;
  else
    s->done_head = call;
  s->done_tail = call;
  pthread_mutex_unlock(&s->mu);
  if (was_empty) {
    uint64_t one = 1;
    ssize_t w = write(s->wake_fd, &one, sizeof one); /* cannot block: eventfd */
    (void)w;
  }
  return 0;
}

/* The status and reply a handler gave, checked: a non-canonical status or
 * a reply of the wrong type becomes INTERNAL (and E_INVAL for the
 * handler). */
static ackrpc_status check_reply(const ackrpc_call *call, ackrpc_status *status,
                                 const char **message, const ProtobufCMessage **reply) {
  if (!ackrpc_status_is_canonical(*status)) {
    *message = "the handler answered a status that is not a canonical code";
  } else if (*reply && (*reply)->descriptor != call->method->m.reply) {
    *message = "the handler replied with a message of the wrong type";
  } else {
    return ACKRPC_OK;
  }
  *status = ACKRPC_INTERNAL;
  *reply = NULL;
  return ACKRPC_E_INVAL;
}

/* What a handler answers with: a message, or a body already encoded. */
typedef struct answer {
  ackrpc_status status;
  const char *message;
  const ProtobufCMessage *reply;
  const uint8_t *raw;
  size_t raw_len;
} answer;

static ackrpc_status encode_answer(ackrpc_call *call, const answer *a) {
  if (a->reply || !a->raw)
    return akr_call_encode(call, (uint32_t)a->status, a->message, a->reply);
  return akr_call_encode_raw(call, (uint32_t)a->status, a->message, a->raw, a->raw_len);
}

/* The answer of a call the loop had given up on: only the repeats waiting
 * in the reply cache want it. */
static ackrpc_status answer_late(ackrpc_call *call, int on_loop, const answer *a) {
  akr_fd_batch_close(&call->reply_fds); /* nobody to send them to */
  if (call->rc_entry) {
    if (encode_answer(call, a) != ACKRPC_OK) call->out_len = 0;
    if (queue_reply(call->server, call) == 0) return ACKRPC_E_ALREADY_ANSWERED;
  } else if (!on_loop && queue_reply(call->server, call) == 0) {
    /* The call's memory stays counted until the loop lets it go. */
    return ACKRPC_E_ALREADY_ANSWERED;
  }
  akr_call_unref(call, on_loop);
  return ACKRPC_E_ALREADY_ANSWERED;
}

ackrpc_status ackrpc_call_reply_fds(ackrpc_call *call, ackrpc_status status,
                                    const char *message, const ProtobufCMessage *reply,
                                    const int *fds, size_t n_fds) {
  if (!n_fds) return ackrpc_call_reply(call, status, message, reply);
  int ok = fds && n_fds <= AKR_FDS_MAX && akr_fds_open(fds, n_fds);
  int *copy = ok && call ? malloc(n_fds * sizeof *copy) : NULL;
  if (!copy) {
    if (fds) akr_fds_close(fds, n_fds <= AKR_FDS_MAX ? n_fds : AKR_FDS_MAX);
    if (!call) return ACKRPC_E_INVAL;
    ackrpc_status st = ackrpc_call_reply(
        call, ACKRPC_INTERNAL,
        ok ? "out of memory for the reply's descriptors" : "bad reply descriptors",
        NULL);
    return st == ACKRPC_OK ? (ok ? ACKRPC_E_NOMEM : ACKRPC_E_INVAL) : st;
  }
  memcpy(copy, fds, n_fds * sizeof *copy);
  /* Only the handler touches reply_fds until it replies. */
  akr_fd_batch_close(&call->reply_fds);
  call->reply_fds = (akr_fd_batch){.fds = copy, .n = (unsigned)n_fds};
  return ackrpc_call_reply(call, status, message, reply);
}

static ackrpc_status reply(ackrpc_call *call, answer *a) {
  int on_loop = tl_in_handler == call;
  /* A second reply would drop the handler's reference twice. Caught here
   * while the object still exists; after that it is use after free. */
  if (!atomic_exchange_explicit(&call->held, 0, memory_order_acq_rel))
    return ACKRPC_E_INVAL;
  ackrpc_status ret = check_reply(call, &a->status, &a->message, &a->reply);
  if (ret != ACKRPC_OK) akr_fd_batch_close(&call->reply_fds);
  if (atomic_exchange_explicit(&call->answered, 1, memory_order_acq_rel))
    return answer_late(call, on_loop, a);
  if (encode_answer(call, a) != ACKRPC_OK) {
    ret = ACKRPC_E_NOMEM;
    akr_call_encode(call, ACKRPC_INTERNAL, "out of memory encoding the reply", NULL);
  }
  if (on_loop) {
    /* Inside the handler, on the loop: write now. The connection's
     * reference keeps the call alive until then. */
    akr_cache_finish(call);
    akr_conn_reply(call->conn, call);
    akr_call_unref(call, 1); /* the handler's */
    return ret;
  }
  if (queue_reply(call->server, call) != 0) {
    akr_call_unref(call, 0);
    return ACKRPC_E_ALREADY_ANSWERED;
  }
  return ret;
}

ackrpc_status ackrpc_call_reply(ackrpc_call *call, ackrpc_status status,
                                const char *message,
                                const ProtobufCMessage *reply_msg) {
  if (!call) return ACKRPC_E_INVAL;
  answer a = {.status = status, .message = message, .reply = reply_msg};
  return reply(call, &a);
}

ackrpc_status ackrpc_call_reply_encoded(ackrpc_call *call, ackrpc_status status,
                                        const char *message, const uint8_t *body,
                                        size_t body_len) {
  if (!call || (!body && body_len)) return ACKRPC_E_INVAL;
  static const uint8_t empty[1];
  answer a = {.status = status,
              .message = message,
              .raw = body ? body : empty,
              .raw_len = body_len};
  return reply(call, &a);
}

void akr_dispatch_wake(ackrpc_server *s) {
  pthread_mutex_lock(&s->mu);
  ackrpc_call *call = s->done_head;
  s->done_head = s->done_tail = NULL;
  pthread_mutex_unlock(&s->mu);
  while (call) {
    ackrpc_call *next = call->next;
    akr_conn *c = call->conn;
    akr_cache_finish(call);
    if (c) {
      akr_conn_reply(c, call); /* the connection's reference goes with it */
      akr_call_unref(call, 1); /* the handler's */
      akr_conn_resume(c);
    } else {
      akr_call_unref(call, 1); /* answered late: the cache had what it wanted */
    }
    call = next;
  }
}

void akr_dispatch_shutdown(akr_conn *c) {
  ackrpc_call *call = c->call;
  if (c->state != AKR_CONN_BUSY || !call) return;
  if (!call->waiting &&
      atomic_exchange_explicit(&call->answered, 1, memory_order_acq_rel))
    return;
  static const char closing[] = "the server is shutting down";
  if (c->server->tap) akr_tap_answer(c->server, call, ACKRPC_UNAVAILABLE, closing);
  akr_conn_part(c);
  akr_conn_answer(c, ACKRPC_UNAVAILABLE, closing, 1);
}
