/* call.c: call objects and the public accessors of a call (call.h,
 * include/ackrpc/server.h). */
#include "server/call.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ackrpc/wire.pb-c.h"
#include "wire/encode.h"

#define POOL_MAX 256
#define KEEP_BUFFER (64u << 10) /* pooled calls keep reply buffers this small */

ackrpc_call *akr_call_new(ackrpc_server *s) {
  ackrpc_call *c = s->call_pool;
  if (c) {
    s->call_pool = c->next;
    s->n_call_pool--;
  } else {
    c = calloc(1, sizeof *c);
    if (!c) return NULL;
    akr_arena_init(&c->arena, 0);
  }
  c->server = s;
  c->arena.spare = &s->spare;
  c->conn = NULL;
  c->method = NULL;
  c->bridged = 0;
  c->principal = NULL;
  c->request = NULL;
  c->frame_len = 0;
  c->t_start_us = c->deadline_us = 0;
  c->out_len = 0;
  c->reply_status = 0;
  c->fds = (akr_fd_batch){0};
  c->reply_fds = (akr_fd_batch){0};
  c->map = NULL;
  c->map_len = 0;
  c->memfd_read = 0;
  c->req = (akr_request){0};
  c->rc_entry = NULL;
  c->rc_wait = (akr_rc_waiter){0};
  c->has_digest = 0;
  c->waiting = 0;
  c->rc_ready = 0;
  c->accounted = 0;
  c->charged = 0;
  c->uacct = NULL;
  c->acct_conn = NULL;
  c->acct_prev = c->acct_next = NULL;
  c->next = NULL;
  atomic_store_explicit(&c->answered, 1, memory_order_relaxed);
  atomic_store_explicit(&c->held, 0, memory_order_relaxed);
  atomic_store_explicit(&c->refs, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  return c;
}

static void call_free(ackrpc_call *c) {
  akr_arena_release(&c->arena);
  free(c->out);
  free(c);
}

void akr_call_unref(ackrpc_call *c, int on_loop) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
  ackrpc_server *s = c->server;
  akr_fd_batch_close(&c->fds);
  akr_fd_batch_close(&c->reply_fds);
  akr_memfd_unmap(c->map, c->map_len);
  c->map = NULL;
  c->map_len = 0;
  /* The spare store and the pool are the loop's, and only while the server
   * is open. */
  int keep = on_loop && !s->closed;
  /* Off the loop only once the server is closed (a call that outlives its
   * connection is handed to the loop to end): the account is gone then. */
  if (keep) akr_acct_call_end(c);
  if (!keep) c->arena.spare = NULL;
  if (keep && s->n_call_pool < POOL_MAX) {
    akr_arena_reset(&c->arena, 0);
    if (c->out_cap > KEEP_BUFFER) {
      free(c->out);
      c->out = NULL;
      c->out_cap = 0;
    }
    c->next = s->call_pool;
    s->call_pool = c;
    s->n_call_pool++;
  } else {
    call_free(c);
  }
  akr_server_unref(s);
}

void akr_call_pool_free(ackrpc_server *s) {
  while (s->call_pool) {
    ackrpc_call *c = s->call_pool;
    s->call_pool = c->next;
    c->arena.spare = NULL;
    call_free(c);
  }
  s->n_call_pool = 0;
}

static int reserve(ackrpc_call *c, size_t n) {
  if (n <= c->out_cap) return 0;
  uint8_t *p = realloc(c->out, n);
  if (!p) return -1;
  c->out = p;
  c->out_cap = n;
  return 0;
}

/* Puts a large reply body in a sealed memfd, the last of the reply's
 * descriptors (docs/PROTOCOL.md §2.6), if the client takes one. Not with
 * the reply cache on: a reply with descriptors is not kept there, and its
 * repeats must get the first answer. Anything failing here leaves the body
 * inline. */
static void body_to_memfd(ackrpc_call *c, akr_reply_spec *spec) {
  if (c->server->opt.memfd_threshold == SIZE_MAX || c->server->cache ||
      !c->req.accept_body_memfd || c->reply_fds.n >= AKR_FDS_MAX)
    return;
  size_t n = spec->body ? protobuf_c_message_get_packed_size(spec->body)
                        : (spec->raw_body ? spec->raw_body_len : 0);
  if (n < c->server->opt.memfd_threshold || n > UINT32_MAX) return;
  int *fds = realloc(c->reply_fds.fds, (c->reply_fds.n + 1) * sizeof *fds);
  if (!fds) return;
  c->reply_fds.fds = fds;
  int fd, e;
  if (spec->body)
    e = akr_memfd_pack(spec->body, n, &fd);
  else
    e = akr_memfd_from(spec->raw_body, n, &fd);
  if (e != 0) return;
  fds[c->reply_fds.n++] = fd;
  spec->body_memfd = 1;
}

static ackrpc_status encode_spec(ackrpc_call *c, akr_reply_spec spec) {
  if (spec.status == 0 && (spec.body || spec.raw_body_len)) body_to_memfd(c, &spec);
  spec.fd_count = c->reply_fds.n;
  spec.body_memfd_read = c->memfd_read;
  size_t n = akr_reply_size(&spec);
  if (n == 0) {
    akr_fd_batch_close(&c->reply_fds);
    spec = (akr_reply_spec){.status = ACKRPC_INTERNAL,
                            .message = "reply larger than the protocol allows",
                            .body_memfd_read = c->memfd_read};
    n = akr_reply_size(&spec);
  }
  c->out_len = 0;
  if (reserve(c, n) != 0) {
    akr_fd_batch_close(&c->reply_fds); /* the INTERNAL answer goes without */
    return ACKRPC_E_NOMEM;
  }
  c->out_len = akr_reply_encode(&spec, c->out);
  c->reply_status = spec.status;
  return ACKRPC_OK;
}

ackrpc_status akr_call_encode(ackrpc_call *c, uint32_t status, const char *message,
                              const ProtobufCMessage *body) {
  return encode_spec(
      c, (akr_reply_spec){.status = status, .message = message, .body = body});
}

ackrpc_status akr_call_encode_raw(ackrpc_call *c, uint32_t status, const char *message,
                                  const uint8_t *body, size_t body_len) {
  return encode_spec(c, (akr_reply_spec){.status = status,
                                         .message = message,
                                         .raw_body = body,
                                         .raw_body_len = body_len});
}

int akr_call_set_reply(ackrpc_call *c, const uint8_t *frame, size_t len) {
  if (reserve(c, len) != 0) return -1;
  memcpy(c->out, frame, len);
  c->out_len = len;
  return 0;
}

/* --- accessors --------------------------------------------------------- */

const char *ackrpc_call_method(const ackrpc_call *c) {
  return c ? c->req.method : NULL;
}

const ackrpc_peer *ackrpc_call_peer(const ackrpc_call *c) {
  return c ? &c->peer : NULL;
}

int ackrpc_call_bridged(const ackrpc_call *c) {
  return c ? c->bridged : 0;
}

const char *ackrpc_call_principal(const ackrpc_call *c) {
  return c ? c->principal : NULL;
}

const uint8_t *ackrpc_call_id(const ackrpc_call *c, size_t *ret_len) {
  if (!c) return NULL;
  if (ret_len) *ret_len = c->req.call_id_len;
  return c->req.call_id;
}

uint64_t ackrpc_call_deadline_us(const ackrpc_call *c) {
  return c ? c->deadline_us : 0;
}

size_t ackrpc_call_metadata_count(const ackrpc_call *c) {
  return c ? c->req.n_metadata : 0;
}

int ackrpc_call_metadata_at(const ackrpc_call *c, size_t index, const char **ret_key,
                            const uint8_t **ret_value, size_t *ret_value_len) {
  if (!c || index >= c->req.n_metadata) return -1;
  const Ackrpc__Wire__Metadata *m = c->req.metadata[index];
  if (ret_key) *ret_key = m->key;
  if (ret_value) *ret_value = m->value.data;
  if (ret_value_len) *ret_value_len = m->value.len;
  return 0;
}

const uint8_t *ackrpc_call_request_body(const ackrpc_call *c, size_t *ret_len) {
  if (!c) return NULL;
  if (ret_len) *ret_len = c->req.body_len;
  return c->req.body ? c->req.body : (const uint8_t *)"";
}

int ackrpc_call_body_in_memfd(const ackrpc_call *c) {
  return c && c->map != NULL;
}

size_t ackrpc_call_fd_count(const ackrpc_call *c) {
  return c ? c->fds.n : 0;
}

int ackrpc_call_take_fd(ackrpc_call *c, size_t index) {
  if (!c || index >= c->fds.n) return -1;
  int fd = c->fds.fds[index];
  c->fds.fds[index] = -1;
  return fd;
}

const uint8_t *ackrpc_call_metadata(const ackrpc_call *c, const char *key,
                                    size_t *ret_len) {
  if (!c || !key) return NULL;
  for (size_t i = 0; i < c->req.n_metadata; i++) {
    const Ackrpc__Wire__Metadata *m = c->req.metadata[i];
    if (strcmp(m->key, key) == 0) {
      if (ret_len) *ret_len = m->value.len;
      /* An empty value decodes as NULL; hand out a valid pointer anyway so
       * "present but empty" differs from "absent". */
      return m->value.data ? m->value.data : (const uint8_t *)"";
    }
  }
  return NULL;
}
