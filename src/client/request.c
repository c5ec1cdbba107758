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
  if (f->own_fd >= 0) close(f->own_fd);
  f->own_fd = -1;
}

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

/* Turns `spec` into a frame whose body is in the memfd `fd`, sent after
 * the options' descriptors: f->fds. 0, or -1 if out of memory. */
static int to_memfd(akr_request_frame *f, akr_request_spec *spec, int fd,
                    const ackrpc_call_options *opt, size_t *ret_len) {
  size_t n = opt ? opt->n_fds : 0;
  f->fds_heap = malloc((n + 1) * sizeof *f->fds_heap);
  if (!f->fds_heap) return -1;
  if (n) memcpy(f->fds_heap, opt->fds, n * sizeof *f->fds_heap);
  f->fds_heap[n] = fd;
  f->fds = f->fds_heap;
  f->n_fds = n + 1;
  spec->body_memfd = 1;
  spec->fd_count = (uint32_t)(n + 1);
  *ret_len = akr_request_size(spec);
  return 0;
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
                                       size_t memfd_min, unsigned memfd,
                                       ackrpc_result *r) {
  akr_request_spec spec;
  size_t n;
  f->heap = NULL;
  f->n_iov = 0;
  f->fds = opt ? opt->fds : NULL;
  f->n_fds = opt ? opt->n_fds : 0;
  f->fds_heap = NULL;
  f->own_fd = -1;
  ackrpc_status st = akr_request_prepare(ids, a, opt, timeout_ms, memfd, &spec, &n, r);
  if (st != ACKRPC_OK) return st;
  const ackrpc_body *b = opt ? opt->body : NULL;
  if (!b && memfd_min && spec.body_len_ >= memfd_min && spec.body_len_ <= UINT32_MAX &&
      (!opt || opt->n_fds < AKR_FDS_MAX) &&
      body_memfd(&spec, f->stack, sizeof f->stack, &f->own_fd) != 0)
    f->own_fd = -1; /* no memfd to be had: the body goes inline */
  if ((b || f->own_fd >= 0) &&
      to_memfd(f, &spec, b ? akr_body_fd(b) : f->own_fd, opt, &n) != 0) {
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
