/* request.h: what a call sends (internal: not installed): its call id, its
 * timeout and its request frame, decided in one place for every path.
 *
 * Call ids: 64 random bits fixed per id source, then a 64-bit counter:
 * unique across clients and restarts without a system call per call. */
#ifndef AKR_CLIENT_REQUEST_H
#define AKR_CLIENT_REQUEST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <protobuf-c/protobuf-c.h>

#include "ackrpc/client.h"
#include "core/rng.h"
#include "client/engine.h"
#include "wire/encode.h"

#define AKR_REQUEST_STACK 4096 /* frames up to this size need no malloc */
#define AKR_SCRATCH 2048       /* the small pieces of a body written to a memfd */

typedef struct akr_ids {
  uint8_t prefix[8];
  atomic_uint_least64_t next;
  akr_rng rng; /* the prefix, and the backoff's jitter */
} akr_ids;

void akr_ids_init(akr_ids *ids, const void *salt);

/* What a call sends: a method and either a message or serialized bytes,
 * and how its reply is decoded (NULL: kept as bytes). */
typedef struct akr_call_args {
  const char *method;
  const ProtobufCMessage *request; /* NULL: raw/raw_len (or empty) */
  const uint8_t *raw;
  size_t raw_len;
  const ProtobufCMessageDescriptor *reply_desc;
} akr_call_args;

/* A method fully described, and a request (if any) of its request type. */
int akr_call_args_ok(const ackrpc_method *method, const ProtobufCMessage *request);

/* The call's timeout: the options', else the default. */
uint32_t akr_timeout_ms(const ackrpc_call_options *options, uint32_t default_ms);

/* What the client knows about whether its server takes request bodies in
 * a memfd (docs/PROTOCOL.md §2.6), learnt from the replies to calls sent
 * so: a refusal (UNIMPLEMENTED or INVALID_ARGUMENT, the call not run)
 * before any such call was served means it does not, and later calls send
 * their bodies inline at once; any other answer means it does, and from
 * then on such a status is the handler's own, final. Shared by the client
 * and everything that copies its conf (sessions, asynchronous calls, which
 * may outlive it): reference-counted, updated atomically. */
#define AKR_MEMO_UNKNOWN 0
#define AKR_MEMO_TAKES 1
#define AKR_MEMO_REFUSES 2
typedef struct akr_memo {
  atomic_uint refs;
  atomic_int memfd; /* AKR_MEMO_* */
} akr_memo;

/* A new memo (one reference), or NULL if out of memory. */
akr_memo *akr_memo_new(void);
/* Another reference to `m` (NULL: none); returns m. */
akr_memo *akr_memo_ref(akr_memo *m);
/* Drops a reference; the last frees it. NULL is ignored. */
void akr_memo_unref(akr_memo *m);
/* Whether the server is known to refuse bodies in a memfd. */
static inline int akr_memo_refuses(akr_memo *m) {
  return m && atomic_load_explicit(&m->memfd, memory_order_relaxed) == AKR_MEMO_REFUSES;
}
/* Whether a body of `body_len` bytes goes in a memfd: at least memfd_min
 * (0: never), and the server not known to refuse them. */
int akr_memfd_wanted(const akr_link_conf *conf, size_t body_len);

/* What a call whose body went in a memfd needs in order to send it again
 * with its body inline, with the same call id, if the server refuses the
 * memfd: the prefix and head of that inline frame, and the memfd (whose
 * content is the body, read back through a mapping). */
typedef struct akr_resend {
  int fd;        /* the body memfd; -1: the body is inline */
  int own;       /* fd was made for this call: closed by akr_resend_free() */
  int done;      /* already sent again */
  uint8_t *head; /* heap: prefix and head of the inline frame */
  size_t head_len, body_len;
  const uint8_t *map; /* the memfd mapped, once sent again */
  struct iovec iov[2];
} akr_resend;

/* An empty one (fd -1). */
static inline void akr_resend_init(akr_resend *rs) {
  *rs = (akr_resend){.fd = -1};
}

/* Decides, for a call about to be encoded from `spec`, whether its body
 * goes in a sealed memfd: `body` (options->body, already one) or a body of
 * spec's at least what akr_memfd_wanted() asks for (written into a new
 * memfd from the request, `scratch`/`cap` for small pieces; if no memfd
 * can be had, the body stays inline). If so, fills `rs` (the inline
 * frame's head is encoded first, from `spec` as it is), turns `spec` into
 * the frame with the body in the memfd (body_memfd, one more descriptor)
 * and stores its new size in *ret_len; returns 1. 0: the body stays inline
 * (rs untouched). -1: out of memory (nothing left open). */
int akr_resend_prepare(akr_resend *rs, akr_request_spec *spec, const ackrpc_body *body,
                       const akr_link_conf *conf, uint8_t *scratch, size_t cap,
                       size_t *ret_len);

/* After call `c`, sent with its body in rs's memfd, completed with status
 * `st`: records what this says about the server in `memo`, and returns 1 if
 * the call is to be sent again with its body inline (the server refused
 * the memfd without running the call, and it was not sent again yet).
 * `read`: the reply said the server took the memfd (body_memfd_read), so
 * the status is the call's own, never a refusal of the memfd. */
int akr_resend_wanted(akr_resend *rs, akr_memo *memo, ackrpc_status st, int read);

/* Points `c` at the inline frame (the memfd's content mapped) without the
 * body memfd among its descriptors (the last of c->fds); marks rs done.
 * 0, or -1 (the mapping failed: c unchanged). */
int akr_resend_inline(akr_resend *rs, struct akr_ccall *c);

/* Frees the head, unmaps, closes an own memfd; rs is empty after. */
void akr_resend_free(akr_resend *rs);

/* Clears r for a call sent again, keeping its call id and attempts. */
void akr_result_keep_id(ackrpc_result *r);

/* The encoded frame: `iov`/`n_iov` (`len` bytes in all) point into `stack`,
 * a heap buffer, or (for in-place frames) the caller's request. */
typedef struct akr_request_frame {
  size_t len;
  size_t n_iov;
  struct iovec iov[AKR_IOV_MAX];
  uint8_t *heap;
  /* The descriptors to send: options->fds, then the body's memfd if the
   * body is in one (docs/PROTOCOL.md §2.6). */
  const int *fds;
  size_t n_fds;
  int *fds_heap;
  akr_resend resend; /* the body's memfd, if it is in one */
  uint8_t stack[AKR_REQUEST_STACK];
} akr_request_frame;

/* Sets r's call id if it has none yet (a retry keeps the first one): the
 * options' (E_INVAL if not 1 to 64 bytes), else a new one from `ids`. Then
 * checks the request against the protocol's limits and fills *ret_spec,
 * its frame's size in *ret_len. `memfd` (AKR_MEMFD_*) says whether the
 * request says it takes a reply body in a memfd, and whether options->body
 * may be sent (E_INVAL otherwise). On error the status and an explanation
 * are in r. */
#define AKR_MEMFD_REPLIES 1u /* the head says: a reply body in a memfd is taken */
#define AKR_MEMFD_SEND 2u    /* a body in a memfd may be sent (blocking paths) */
ackrpc_status akr_request_prepare(akr_ids *ids, const akr_call_args *args,
                                  const ackrpc_call_options *options,
                                  uint32_t timeout_ms, unsigned memfd,
                                  akr_request_spec *ret_spec, size_t *ret_len,
                                  ackrpc_result *r);

/* akr_request_prepare(), then encodes the frame into `f`. With `in_place` (the
 * request stays unchanged until the frame is sent: the blocking calls) a
 * large frame is encoded as pieces that leave its large byte strings where
 * they are: copying them into one buffer was most of a large call's CPU.
 * A body that akr_memfd_wanted() puts in a memfd (see akr_resend_prepare()),
 * or options->body, goes in a sealed memfd instead, passed as the frame's
 * last descriptor, and f->resend can send it again inline. Free with
 * akr_request_frame_free() (which closes the memfd made here). */
ackrpc_status akr_request_frame_encode(akr_request_frame *f, akr_ids *ids,
                                       const akr_call_args *args,
                                       const ackrpc_call_options *options,
                                       uint32_t timeout_ms, int in_place,
                                       const akr_link_conf *conf, unsigned memfd,
                                       ackrpc_result *r);
void akr_request_frame_free(akr_request_frame *f);

/* A sealed ackrpc_body (body.c), and its memfd. */
int akr_body_sealed(const ackrpc_body *body);
int akr_body_fd(const ackrpc_body *body);

/* Where an asynchronous call keeps its copy of options->fds (and its body
 * memfd): after its frame of `frame_len` bytes, in the same allocation. */
#define AKR_FDS_AFTER(frame_len)                                                       \
  (((frame_len) + sizeof(int) - 1) / sizeof(int) * sizeof(int))

#endif /* AKR_CLIENT_REQUEST_H */
