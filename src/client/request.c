/* request.c: call ids, timeouts and request frames (request.h). */
#include "client/request.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/result.h"
#include "platform/memfd.h"

#define IOV_FRAME_MIN (64u << 10) /* blocking calls send larger frames in pieces */

void akr_ids_init(akr_ids *ids, const void *salt) {
  akr_rng_init(&ids->rng, salt);
  uint64_t prefix = akr_rng_next(&ids->rng);
  memcpy(ids->prefix, &prefix, sizeof ids->prefix);
  atomic_init(&ids->next, 1);
}

static void ids_take(akr_ids *ids, uint8_t out[16]) {
  uint64_t n = atomic_fetch_add_explicit(&ids->next, 1, memory_order_relaxed);
  memcpy(out, ids->prefix, 8);
  for (int i = 0; i < 8; i++)
    out[8 + i] = (uint8_t)(n >> (56 - 8 * i));
}

int akr_call_args_ok(const ackrpc_method *method, const ProtobufCMessage *request) {
  return method && method->name && method->request && method->reply &&
         (!request || request->descriptor == method->request);
}

uint32_t akr_timeout_ms(const ackrpc_call_options *o, uint32_t default_ms) {
  return o && o->timeout_ms ? o->timeout_ms : default_ms;
}

ackrpc_status akr_request_prepare(akr_ids *ids, const akr_call_args *a,
                                  const ackrpc_call_options *opt, uint32_t timeout_ms,
                                  unsigned memfd, akr_request_spec *spec,
                                  size_t *ret_len, ackrpc_result *r) {
  if (r->call_id_len == 0) {
    if (opt && opt->call_id) {
      if (opt->call_id_len == 0 || opt->call_id_len > ACKRPC_MAX_CALL_ID)
        return akr_result_fail(r, ACKRPC_E_INVAL, 0, "call id must be 1 to %d bytes",
                               ACKRPC_MAX_CALL_ID);
      memcpy(r->call_id, opt->call_id, opt->call_id_len);
      r->call_id_len = opt->call_id_len;
    } else {
      ids_take(ids, r->call_id);
      r->call_id_len = 16;
    }
  }
  if (opt && opt->n_fds &&
      (!opt->fds || opt->n_fds > AKR_FDS_MAX || !akr_fds_open(opt->fds, opt->n_fds)))
    return akr_result_fail(r, ACKRPC_E_INVAL, 0,
                           "descriptors: 1 to %d open ones, or none", AKR_FDS_MAX);
  if (opt && opt->body &&
      (!(memfd & AKR_MEMFD_SEND) || !akr_body_sealed(opt->body) || a->request ||
       a->raw_len || opt->n_fds >= AKR_FDS_MAX))
    return akr_result_fail(r, ACKRPC_E_INVAL, 0,
                           "options.body: a sealed body, in place of the request, "
                           "for a blocking call or a session");
  *spec = (akr_request_spec){
      .method = a->method,
      .timeout_us = (uint64_t)timeout_ms * 1000u,
      .call_id = r->call_id,
      .call_id_len = r->call_id_len,
      .metadata = opt ? opt->metadata : NULL,
      .n_metadata = opt ? opt->metadata_count : 0,
      .body = a->request,
      .raw_body = a->raw,
      .raw_body_len = a->raw_len,
      .fd_count = opt ? (uint32_t)opt->n_fds : 0,
      .accept_body_memfd = (memfd & AKR_MEMFD_REPLIES) != 0,
  };
  *ret_len = akr_request_size(spec);
  if (*ret_len == 0)
    return akr_result_fail(
        r, ACKRPC_E_INVAL, 0,
        "request breaks a protocol limit (method name, metadata, or size)");
  return ACKRPC_OK;
}

void akr_request_frame_free(akr_request_frame *f) {
  free(f->heap);
  f->heap = NULL;
  free(f->fds_heap);
  f->fds_heap = NULL;
  akr_resend_free(&f->resend);
}

/* --- what the client knows of its server ------------------------------- */

akr_memo *akr_memo_new(void) {
  akr_memo *m = malloc(sizeof *m);
  if (!m) return NULL;
  atomic_init(&m->refs, 1);
  atomic_init(&m->memfd, AKR_MEMO_UNKNOWN);
  return m;
}

akr_memo *akr_memo_ref(akr_memo *m) {
  if (m) atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
  return m;
}

void akr_memo_unref(akr_memo *m) {
  if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) free(m);
}

int akr_memfd_wanted(const akr_link_conf *conf, size_t body_len) {
  return conf->memfd_min && body_len >= conf->memfd_min && body_len <= UINT32_MAX &&
         (!conf->memo ||
          atomic_load_explicit(&conf->memo->memfd, memory_order_relaxed) !=
              AKR_MEMO_REFUSES);
}

/* --- bodies in memfds, and sending them again inline ------------------- */

/* The body of `spec` (body_len_ bytes) in a new sealed memfd, written from
 * where its large byte strings are (the pieces of encode_iov.c, past the
 * prefix and the head), so that this is the body's one copy; a message
 * made mostly of small fields is packed first. `scratch` (cap bytes) is
 * for the pieces' small parts. 0, or an errno. */
static int body_memfd(const akr_request_spec *spec, uint8_t *scratch, size_t cap,
                      int *ret_fd) {
  if (!spec->body) return akr_memfd_from(spec->raw_body, spec->raw_body_len, ret_fd);
  struct iovec iov[AKR_IOV_MAX];
  size_t n_iov, need;
  uint8_t *heap = NULL;
  size_t len =
      akr_request_encode_iov(spec, scratch, cap, iov, AKR_IOV_MAX, &n_iov, &need);
  if (!len && need && (heap = malloc(need)) != NULL)
    len = akr_request_encode_iov(spec, heap, need, iov, AKR_IOV_MAX, &n_iov, &need);
  int e;
  if (len) {
    size_t skip = AKR_PREFIX_LEN + spec->head_len_, i = 0;
    while (i < n_iov && skip >= iov[i].iov_len)
      skip -= iov[i++].iov_len;
    iov[i].iov_base = (uint8_t *)iov[i].iov_base + skip;
    iov[i].iov_len -= skip;
    e = akr_memfd_writev(iov + i, n_iov - i, spec->body_len_, ret_fd);
  } else {
    e = akr_memfd_pack(spec->body, spec->body_len_, ret_fd);
  }
  free(heap);
  return e;
}

/* The frame's descriptors: the options', then the body's memfd `fd`: f->fds.
 * 0, or -1 if out of memory. */
static int to_memfd(akr_request_frame *f, int fd, const ackrpc_call_options *opt) {
  size_t n = opt ? opt->n_fds : 0;
  f->fds_heap = malloc((n + 1) * sizeof *f->fds_heap);
  if (!f->fds_heap) return -1;
  if (n) memcpy(f->fds_heap, opt->fds, n * sizeof *f->fds_heap);
  f->fds_heap[n] = fd;
  f->fds = f->fds_heap;
  f->n_fds = n + 1;
  return 0;
}

int akr_resend_prepare(akr_resend *rs, akr_request_spec *spec, const ackrpc_body *b,
                       const akr_link_conf *conf, uint8_t *scratch, size_t cap,
                       size_t *ret_len) {
  if (!b && !akr_memfd_wanted(conf, spec->body_len_)) return 0;
  if (spec->fd_count >= AKR_FDS_MAX) return 0;
  /* The inline frame's head first, while `spec` still describes it. */
  size_t head_len = AKR_PREFIX_LEN + spec->head_len_;
  akr_resend r = {.fd = -1, .head = malloc(head_len)};
  if (!r.head) return -1;
  r.head_len = head_len;
  r.body_len = spec->body_len_;
  if (b) {
    r.fd = akr_body_fd(b);
    r.body_len = ackrpc_body_len(b);
    /* The inline frame's head says a raw body of that length; only the
     * head is written, so raw_body is never read (but must be set for the
     * length to count). */
    akr_request_spec inl = *spec;
    inl.body = NULL;
    inl.raw_body = r.head;
    inl.raw_body_len = r.body_len;
    if (akr_request_size(&inl) == 0) {
      free(r.head);
      return 0;
    }
    r.head_len = AKR_PREFIX_LEN + inl.head_len_;
    akr_request_head_encode(&inl, r.head);
  } else {
    if (body_memfd(spec, scratch, cap, &r.fd) != 0) {
      free(r.head);
      return 0; /* no memfd to be had: the body goes inline */
    }
    r.own = 1;
    akr_request_head_encode(spec, r.head);
  }
  spec->body_memfd = 1;
  spec->fd_count++;
  *ret_len = akr_request_size(spec);
  *rs = r;
  return 1;
}

int akr_resend_wanted(akr_resend *rs, akr_memo *memo, ackrpc_status st, int read) {
  if (rs->fd < 0 || rs->done) return 0;
  int refused = !read && (st == ACKRPC_UNIMPLEMENTED || st == ACKRPC_INVALID_ARGUMENT);
  if (ackrpc_status_outcome(st) != ACKRPC_OUTCOME_ACKED || st == ACKRPC_E_BAD_REPLY)
    return 0;
  int known = memo ? atomic_load(&memo->memfd) : AKR_MEMO_UNKNOWN;
  if (!refused) {
    if (memo && known == AKR_MEMO_UNKNOWN) {
      int expect = AKR_MEMO_UNKNOWN;
      atomic_compare_exchange_strong(&memo->memfd, &expect, AKR_MEMO_TAKES);
    }
    return 0;
  }
  /* A server seen serving such calls answered this one after running it. */
  if (known == AKR_MEMO_TAKES) return 0;
  if (memo) atomic_store(&memo->memfd, AKR_MEMO_REFUSES);
  return 1;
}

int akr_resend_inline(akr_resend *rs, akr_ccall *c) {
  const uint8_t *map;
  size_t len;
  if (akr_memfd_map(rs->fd, rs->body_len, 1, &map, &len) != AKR_MEMFD_OK ||
      len != rs->body_len) {
    if (map && len) akr_memfd_unmap(map, len);
    return -1;
  }
  rs->map = map;
  rs->done = 1;
  rs->iov[0] = (struct iovec){.iov_base = rs->head, .iov_len = rs->head_len};
  rs->iov[1] = (struct iovec){.iov_base = (void *)map, .iov_len = len};
  c->iov = rs->iov;
  c->n_iov = len ? 2 : 1;
  c->len = rs->head_len + len;
  c->n_fds--; /* the body memfd is the last */
  if (c->n_fds == 0) c->fds = NULL;
  return 0;
}

void akr_resend_free(akr_resend *rs) {
  free(rs->head);
  akr_memfd_unmap(rs->map, rs->map ? rs->body_len : 0);
  if (rs->own && rs->fd >= 0) close(rs->fd);
  akr_resend_init(rs);
}

void akr_result_keep_id(ackrpc_result *r) {
  uint8_t id[ACKRPC_MAX_CALL_ID];
  size_t id_len = r->call_id_len;
  unsigned attempts = r->attempts;
  memcpy(id, r->call_id, id_len);
  ackrpc_result_clear(r);
  memcpy(r->call_id, id, id_len);
  r->call_id_len = id_len;
  r->attempts = attempts;
}

/* Pieces that leave the request's large byte strings where they are; 0 if
 * the frame is better sent as one buffer. */
static int encode_pieces(akr_request_frame *f, const akr_request_spec *spec) {
  size_t need;
  f->len = akr_request_encode_iov(spec, f->stack, sizeof f->stack, f->iov, AKR_IOV_MAX,
                                  &f->n_iov, &need);
  if (!f->len && need) {
    f->heap = malloc(need);
    if (!f->heap) return 0;
    f->len = akr_request_encode_iov(spec, f->heap, need, f->iov, AKR_IOV_MAX, &f->n_iov,
                                    &need);
  }
  if (f->len) return 1;
  free(f->heap); /* mostly small fields: one buffer after all */
  f->heap = NULL;
  return 0;
}

ackrpc_status akr_request_frame_encode(akr_request_frame *f, akr_ids *ids,
                                       const akr_call_args *a,
                                       const ackrpc_call_options *opt,
                                       uint32_t timeout_ms, int in_place,
                                       const akr_link_conf *conf, unsigned memfd,
                                       ackrpc_result *r) {
  akr_request_spec spec;
  size_t n;
  f->heap = NULL;
  f->n_iov = 0;
  f->fds = opt ? opt->fds : NULL;
  f->n_fds = opt ? opt->n_fds : 0;
  f->fds_heap = NULL;
  akr_resend_init(&f->resend);
  ackrpc_status st = akr_request_prepare(ids, a, opt, timeout_ms, memfd, &spec, &n, r);
  if (st != ACKRPC_OK) return st;
  const ackrpc_body *b = opt ? opt->body : NULL;
  int in_memfd =
      akr_resend_prepare(&f->resend, &spec, b, conf, f->stack, sizeof f->stack, &n);
  if (in_memfd == 1 && to_memfd(f, f->resend.fd, opt) != 0) in_memfd = -1;
  if (in_memfd < 0) {
    akr_request_frame_free(f);
    return akr_result_fail(r, ACKRPC_E_NOMEM, ENOMEM, "request descriptors");
  }
  if (in_place && n >= IOV_FRAME_MIN && encode_pieces(f, &spec)) return ACKRPC_OK;
  uint8_t *p = f->stack;
  if (n > sizeof f->stack) {
    p = f->heap = malloc(n);
    if (!p) {
      akr_request_frame_free(f);
      return akr_result_fail(r, ACKRPC_E_NOMEM, ENOMEM, "request of %zu bytes", n);
    }
  }
  f->len = akr_request_encode(&spec, p);
  f->iov[0] = (struct iovec){.iov_base = p, .iov_len = f->len};
  f->n_iov = 1;
  return ACKRPC_OK;
}
