/* test_integration_memfd.c: large bodies in sealed memfds (docs/PROTOCOL.md
 * §2.6) between a real client and a real server: 1 and 8 MiB bodies both
 * ways, one-shot and in a session, blocking and asynchronous (async calls,
 * async sessions), byte for byte; bodies built in place (ackrpc_body) and
 * read in place (raw methods); a server that refuses them and an "old
 * server" on a raw socket that cannot decode them, to which the client
 * sends the body again inline, once, with the same call id, and then
 * inline at once; a handler's own refusal, which is not sent again; and
 * hostile peers on raw sockets (an unsealed memfd, one without
 * F_SEAL_SHRINK that the peer then shrinks, a regular file, a FIFO,
 * /dev/null, a memfd over the size limit, a body flag without a
 * descriptor): each refused with a clear status, never dispatched, the
 * session goes on, and the server in its own process ends with the
 * descriptors and the memory it had (fixture checks this process's
 * descriptors too; the test runs under valgrind --track-fds). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "ackrpc/wire.pb-c.h"
#include "hardening_support.h"
#include "pattern.h"

HS_SUITE(memfd);

#define BLOB "ackrpc.test.Blob/Echo"
#define VIEW "ackrpc.test.Blob/View"
#define MiB ((size_t)1 << 20)
#define LIMIT (16 * MiB)

static const ackrpc_method blob_method = {BLOB, &ackrpc__test__echo_request__descriptor,
                                          &ackrpc__test__echo_reply__descriptor};
static const ackrpc_method view_method = {VIEW, &ackrpc__test__echo_request__descriptor,
                                          &ackrpc__test__echo_reply__descriptor};

static atomic_uint handled;

/* Echoes the blob back; text says how the request's body came: "memfd" or
 * "inline". */
static void blob_handler(ackrpc_call *call, const ProtobufCMessage *request,
                         void *user) {
  (void)user;
  atomic_fetch_add(&handled, 1);
  const Ackrpc__Test__EchoRequest *req = (const Ackrpc__Test__EchoRequest *)request;
  Ackrpc__Test__EchoReply rep = ACKRPC__TEST__ECHO_REPLY__INIT;
  rep.text = ackrpc_call_body_in_memfd(call) ? "memfd" : "inline";
  rep.blob = req->blob;
  rep.blob_len = (uint32_t)req->blob.len;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &rep.base);
}

/* A raw method: request is NULL; reads the body in place, answers its
 * length and a checksum of its bytes in meta. */
static void view_handler(ackrpc_call *call, const ProtobufCMessage *request,
                         void *user) {
  (void)user;
  atomic_fetch_add(&handled, 1);
  size_t len;
  const uint8_t *body = ackrpc_call_request_body(call, &len);
  uint32_t sum = 0;
  for (size_t i = 0; i < len; i++)
    sum = sum * 31u + body[i];
  char meta[64];
  snprintf(meta, sizeof meta, "%s %u", request ? "decoded" : "raw", sum);
  Ackrpc__Test__EchoReply rep = ACKRPC__TEST__ECHO_REPLY__INIT;
  rep.text = ackrpc_call_body_in_memfd(call) ? "memfd" : "inline";
  rep.blob_len = (uint32_t)len;
  rep.meta = meta;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &rep.base);
}

typedef struct srv {
  ackrpc_server *s;
  pthread_t thr;
} srv;

static void *srv_main(void *arg) {
  ackrpc_server_run(((srv *)arg)->s);
  return NULL;
}

static void srv_start(srv *v, int refuse) {
  ackrpc_server_options o = {.address = fx_sock(),
                             .max_request_size = LIMIT,
                             .refuse_body_memfd = refuse,
                             .memfd_threshold = 64 << 10,
                             .log = ackrpc_log_discard};
  cr_assert_eq(ackrpc_server_new(&o, &v->s), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(v->s, &blob_method, blob_handler, NULL),
               ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(v->s, &view_method, view_handler, NULL),
               ACKRPC_OK);
  cr_assert_eq(ackrpc_server_set_method_raw(v->s, VIEW, 1), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_set_method_raw(v->s, "no.Such/Method", 1),
               ACKRPC_E_NOT_FOUND);
  cr_assert_eq(pthread_create(&v->thr, NULL, srv_main, v), 0);
}

static void srv_stop(srv *v) {
  ackrpc_server_stop(v->s);
  pthread_join(v->thr, NULL);
  v->s = ackrpc_server_free(v->s);
}

static ackrpc_client *client(size_t threshold) {
  ackrpc_client_options o = {
      .address = fx_sock(), .max_reply_size = LIMIT, .memfd_threshold = threshold};
  return fx_client_opts(&o);
}

typedef ackrpc_status (*call_fn)(void *ctx, const ackrpc_method *m,
                                 const ProtobufCMessage *req, ackrpc_result *r);

static ackrpc_status by_client(void *ctx, const ackrpc_method *m,
                               const ProtobufCMessage *req, ackrpc_result *r) {
  return ackrpc_client_call(ctx, m, req, NULL, r);
}

static ackrpc_status by_session(void *ctx, const ackrpc_method *m,
                                const ProtobufCMessage *req, ackrpc_result *r) {
  return ackrpc_session_call(ctx, m, req, NULL, r);
}

/* An EchoRequest whose blob is the n bytes at data (not copied). */
static Ackrpc__Test__EchoRequest blob_request(uint8_t *data, size_t n) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.blob.data = data;
  req.blob.len = n;
  return req;
}

/* A sealed body (ackrpc_body_from_message) of an EchoRequest whose blob is
 * fx_pattern(n, seed); those bytes in *ret_data. The test frees both. */
static ackrpc_body *pattern_body(size_t n, unsigned seed, uint8_t **ret_data) {
  *ret_data = fx_pattern(n, seed);
  Ackrpc__Test__EchoRequest req = blob_request(*ret_data, n);
  ackrpc_body *b;
  cr_assert_eq(ackrpc_body_from_message(&req.base, &b), ACKRPC_OK);
  return b;
}

/* Sends a blob of n bytes, checks that it came back byte for byte and how
 * the request's body travelled. */
static void round_trip(call_fn fn, void *ctx, size_t n, unsigned seed,
                       const char *how) {
  uint8_t *data = fx_pattern(n, seed);
  Ackrpc__Test__EchoRequest req = blob_request(data, n);
  ackrpc_result r = {0};
  cr_assert_eq(fn(ctx, &blob_method, &req.base, &r), ACKRPC_OK, "%zu bytes: %s", n,
               r.message ? r.message : "");
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
  cr_assert_str_eq(rep->text, how, "%zu bytes went %s", n, rep->text);
  cr_assert_eq(rep->blob_len, n);
  cr_assert_eq(rep->blob.len, n, "reply blob of %zu bytes, %zu sent", rep->blob.len, n);
  cr_assert(memcmp(rep->blob.data, data, n) == 0, "the bytes came back changed");
  ackrpc_result_clear(&r);
  free(data);
}

HS_TEST(memfd, large_bodies_round_trip_in_memfds_one_shot_and_in_sessions) {
  srv v;
  srv_start(&v, 0);
  ackrpc_client *c = client(64 << 10);
  round_trip(by_client, c, 1 * MiB, 1, "memfd");
  round_trip(by_client, c, 8 * MiB, 2, "memfd");
  round_trip(by_client, c, 100, 3, "inline");
  ackrpc_session *s;
  cr_assert_eq(ackrpc_session_open(c, 0, &s), ACKRPC_OK);
  for (unsigned i = 0; i < 3; i++) {
    round_trip(by_session, s, 1 * MiB, 10 + i, "memfd");
    round_trip(by_session, s, 64, 20 + i, "inline");
    round_trip(by_session, s, 8 * MiB, 30 + i, "memfd");
  }
  ackrpc_session_close(s);
  /* Off on the client (the default): the same bodies go through the
   * socket. */
  round_trip(by_client, client(0), 1 * MiB, 5, "inline");
  ackrpc_client *off = client(SIZE_MAX);
  round_trip(by_client, off, 1 * MiB, 4, "inline");
  srv_stop(&v);
}

/* The reply frame of a raw request sent with accept_body_memfd: whether
 * its body came in a memfd (then its bytes are checked against `want`). */
static int reply_in_memfd(const uint8_t *want, size_t n) {
  Ackrpc__Test__EchoRequest req = blob_request((uint8_t *)want, n);
  Ackrpc__Wire__RequestHead h = ACKRPC__WIRE__REQUEST_HEAD__INIT;
  h.method = BLOB;
  h.call_id.data = (uint8_t *)"memfd-reply";
  h.call_id.len = 11;
  h.accept_body_memfd = 1;
  size_t hl = ackrpc__wire__request_head__get_packed_size(&h);
  size_t bl = ackrpc__test__echo_request__get_packed_size(&req);
  uint8_t *f = malloc(12 + hl + bl);
  fx_frame_prefix(f, 1, (uint32_t)hl, (uint32_t)bl);
  ackrpc__wire__request_head__pack(&h, f + 12);
  ackrpc__test__echo_request__pack(&req, f + 12 + hl);
  int s = fx_raw_connect(fx_sock());
  cr_assert_geq(s, 0);
  cr_assert_eq(fx_raw_send(s, f, 12 + hl + bl), 0);
  free(f);
  shutdown(s, SHUT_WR);
  uint8_t in[4096];
  union {
    struct cmsghdr a;
    char b[CMSG_SPACE(4 * sizeof(int))];
  } ctl;
  struct iovec iov = {.iov_base = in, .iov_len = sizeof in};
  struct msghdr m = {.msg_iov = &iov,
                     .msg_iovlen = 1,
                     .msg_control = ctl.b,
                     .msg_controllen = sizeof ctl.b};
  ssize_t got = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
  close(s);
  cr_assert_gt(got, 12);
  struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
  int fd = -1;
  if (cm && cm->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(cm), sizeof fd);
  uint32_t hlen = (uint32_t)in[4] | (uint32_t)in[5] << 8;
  Ackrpc__Wire__ReplyHead *rh = ackrpc__wire__reply_head__unpack(NULL, hlen, in + 12);
  cr_assert_not_null(rh);
  int memfd = rh->body_memfd;
  cr_assert_eq(rh->status, 0);
  cr_assert_eq(memfd, fd >= 0, "body_memfd %d, descriptor %d", memfd, fd);
  if (memfd) {
    cr_assert_eq(rh->fd_count, 1);
    cr_assert_eq(in[4 + 4] | in[9] << 8, 1, "the frame's own body is one byte");
    cr_assert_eq(in[12 + hlen], 0x00);
    int seals = fcntl(fd, F_GET_SEALS);
    cr_assert_eq(seals & (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK),
                 F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK, "seals %#x", seals);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    uint8_t *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    cr_assert_neq(map, MAP_FAILED);
    Ackrpc__Test__EchoReply *rep =
        ackrpc__test__echo_reply__unpack(NULL, (size_t)st.st_size, map);
    cr_assert_not_null(rep);
    cr_assert_eq(rep->blob.len, n);
    cr_assert(memcmp(rep->blob.data, want, n) == 0);
    ackrpc__test__echo_reply__free_unpacked(rep, NULL);
    munmap(map, (size_t)st.st_size);
    close(fd);
  }
  ackrpc__wire__reply_head__free_unpacked(rh, NULL);
  return memfd;
}

HS_TEST(memfd, replies_come_in_a_sealed_memfd_only_to_a_client_that_takes_one) {
  srv v;
  srv_start(&v, 0);
  uint8_t *data = fx_pattern(1 * MiB, 7);
  cr_assert(reply_in_memfd(data, 1 * MiB), "a 1 MiB reply was not put in a memfd");
  cr_assert(!reply_in_memfd(data, 1000), "a small reply was put in a memfd");
  free(data);
  srv_stop(&v);
}

HS_TEST(memfd, a_body_built_in_place_is_read_in_place_by_a_raw_method) {
  srv v;
  srv_start(&v, 0);
  ackrpc_client *c = client(SIZE_MAX); /* only options.body sends a memfd */
  uint8_t *data;
  ackrpc_body *b = pattern_body(3 * MiB, 5, &data);
  Ackrpc__Test__EchoRequest req = blob_request(data, 3 * MiB);
  size_t n = ackrpc_body_len(b);
  cr_assert_null(ackrpc_body_data(b), "a sealed body is not writable");
  uint8_t *enc = malloc(n);
  ackrpc__test__echo_request__pack(&req, enc);
  uint32_t sum = 0;
  for (size_t i = 0; i < n; i++)
    sum = sum * 31u + enc[i];
  free(enc);
  char want[64];
  snprintf(want, sizeof want, "raw %u", sum);
  ackrpc_call_options o = {.body = b};
  for (int i = 0; i < 2; i++) { /* one body, sent twice */
    ackrpc_result r = {0};
    cr_assert_eq(ackrpc_client_call(c, &view_method, NULL, &o, &r), ACKRPC_OK, "%s",
                 r.message ? r.message : "");
    const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
    cr_assert_str_eq(rep->text, "memfd");
    cr_assert_eq(rep->blob_len, n);
    cr_assert_str_eq(rep->meta, want, "the handler read %s, not the body sent",
                     rep->meta);
    ackrpc_result_clear(&r);
  }
  /* The same through the decoding method: the blob arrives whole. */
  ackrpc_result r = {0};
  cr_assert_eq(ackrpc_client_call(c, &blob_method, NULL, &o, &r), ACKRPC_OK);
  cr_assert(memcmp(fx_echo_reply(&r)->blob.data, data, 3 * MiB) == 0);
  ackrpc_result_clear(&r);
  /* With the request as well, or unsealed: refused before sending. */
  cr_assert_eq(ackrpc_client_call(c, &blob_method, &req.base, &o, &r), ACKRPC_E_INVAL);
  ackrpc_result_clear(&r);
  ackrpc_body *open;
  cr_assert_eq(ackrpc_body_new(100, &open), ACKRPC_OK);
  memset(ackrpc_body_data(open), 0, 100);
  o.body = open;
  cr_assert_eq(ackrpc_client_call(c, &blob_method, NULL, &o, &r), ACKRPC_E_INVAL);
  ackrpc_result_clear(&r);
  ackrpc_body_free(open);
  ackrpc_body_free(b);
  free(data);
  srv_stop(&v);
}

/* --- the asynchronous paths ---------------------------------------------- */

typedef struct async_slot {
  uint8_t *data;
  size_t n;
  const char *how;
  int done;
} async_slot;

static int async_done;

/* Checks one asynchronous reply as round_trip() does. */
static void on_async(ackrpc_result *r, void *user) {
  async_slot *sl = user;
  sl->done = 1;
  async_done++;
  cr_assert_eq(r->status, ACKRPC_OK, "%zu bytes: %s", sl->n,
               r->message ? r->message : "");
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(r);
  cr_assert_str_eq(rep->text, sl->how, "%zu bytes went %s", sl->n, rep->text);
  cr_assert_eq(rep->blob.len, sl->n, "reply blob of %zu bytes, %zu sent", rep->blob.len,
               sl->n);
  cr_assert(memcmp(rep->blob.data, sl->data, sl->n) == 0,
            "the bytes came back changed");
}

static void run_until(struct event_base *base, int want, uint32_t ms) {
  uint64_t until = fx_now_us() + (uint64_t)ms * 1000 + fx_slack_us();
  while (async_done < want && fx_now_us() < until) {
    struct timeval tv = {0, 20000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
  }
  cr_assert_eq(async_done, want, "%d of %d calls answered", async_done, want);
}

/* Asynchronous one-shot calls (all started at once) and pipelined calls
 * on an asynchronous session, of the sizes in `sizes`; the request is
 * freed as soon as the call has started. `how` as in round_trip(). */
static void async_round_trips(ackrpc_client *c, int session, const size_t *sizes, int n,
                              const char *how_large) {
  struct event_base *base = event_base_new();
  ackrpc_async_session *s = NULL;
  if (session) cr_assert_eq(ackrpc_async_session_open(c, base, &s), ACKRPC_OK);
  async_slot sl[8];
  async_done = 0;
  for (int i = 0; i < n; i++) {
    sl[i] = (async_slot){.data = fx_pattern(sizes[i], 40u + (unsigned)i),
                         .n = sizes[i],
                         .how = sizes[i] >= (64u << 10) ? how_large : "inline"};
    uint8_t *copy = malloc(sizes[i]);
    memcpy(copy, sl[i].data, sizes[i]);
    Ackrpc__Test__EchoRequest req = blob_request(copy, sizes[i]);
    ackrpc_status st = session
                           ? ackrpc_async_session_call(s, &blob_method, &req.base, NULL,
                                                       on_async, &sl[i])
                           : ackrpc_client_call_async(c, base, &blob_method, &req.base,
                                                      NULL, on_async, &sl[i]);
    cr_assert_eq(st, ACKRPC_OK);
    memset(copy, 0xee, sizes[i]); /* the call must not read it any more */
    free(copy);
  }
  run_until(base, n, 20000);
  if (s) ackrpc_async_session_close(s);
  event_base_loop(base, EVLOOP_NONBLOCK);
  event_base_free(base);
  for (int i = 0; i < n; i++)
    free(sl[i].data);
}

HS_TEST(memfd, large_bodies_round_trip_in_memfds_on_the_asynchronous_paths) {
  /* Counted with the server stopped: its thread closes its side of each
   * connection in its own time. */
  int fds_before = fx_fd_count();
  srv v;
  srv_start(&v, 0);
  ackrpc_client *c = client(64 << 10);
  const size_t sizes[] = {1 * MiB, 8 * MiB, 100, 1 * MiB, 8 * MiB};
  async_round_trips(c, 0, sizes, 5, "memfd");
  async_round_trips(c, 1, sizes, 5, "memfd");
  /* Off on the client: through the socket. */
  async_round_trips(client(0), 0, sizes, 2, "inline");
  async_round_trips(client(0), 1, sizes, 2, "inline");
  srv_stop(&v);
  int fds_after = fx_fd_count();
  cr_assert_eq(fds_after, fds_before, "%d descriptors before, %d after", fds_before,
               fds_after);
}

/* --- a server that does not take bodies in memfds ------------------------ */

/* A blocking session opened on the client ctx for one call. */
static ackrpc_status by_new_session(void *ctx, const ackrpc_method *m,
                                    const ProtobufCMessage *req, ackrpc_result *r) {
  ackrpc_session *s;
  cr_assert_eq(ackrpc_session_open(ctx, 0, &s), ACKRPC_OK);
  ackrpc_status st = ackrpc_session_call(s, m, req, NULL, r);
  ackrpc_session_close(s);
  return st;
}

HS_TEST(memfd, a_refused_memfd_body_is_sent_again_inline_once_and_the_refusal_kept) {
  int fds_before = fx_fd_count(); /* as above */
  srv v;
  srv_start(&v, 1); /* refuse_body_memfd: UNIMPLEMENTED, the call not run */
  call_fn paths[] = {by_client, by_new_session};
  for (int p = 0; p < 2; p++) {
    ackrpc_client *c = client(64 << 10); /* knows nothing of the server yet */
    for (unsigned i = 0; i < 3; i++) {
      unsigned before = atomic_load(&handled);
      round_trip(paths[p], c, i == 1 ? 8 * MiB : 1 * MiB, 50 + i, "inline");
      cr_assert_eq(atomic_load(&handled), before + 1,
                   "path %d, call %u: the handler ran %u times", p, i,
                   atomic_load(&handled) - before);
    }
  }
  /* A body built in a memfd: read back from it, sent inline. */
  uint8_t *data;
  ackrpc_body *b = pattern_body(2 * MiB, 55, &data);
  ackrpc_call_options o = {.body = b};
  ackrpc_client *c = client(SIZE_MAX);
  for (int i = 0; i < 2; i++) { /* learnt, then known */
    unsigned before = atomic_load(&handled);
    ackrpc_result r = {0};
    cr_assert_eq(ackrpc_client_call(c, &blob_method, NULL, &o, &r), ACKRPC_OK, "%s",
                 r.message ? r.message : "");
    const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
    cr_assert_str_eq(rep->text, "inline");
    cr_assert_eq(rep->blob.len, 2 * MiB);
    cr_assert(memcmp(rep->blob.data, data, 2 * MiB) == 0);
    ackrpc_result_clear(&r);
    cr_assert_eq(atomic_load(&handled), before + 1);
  }
  ackrpc_body_free(b);
  free(data);
  const size_t sizes[] = {1 * MiB, 8 * MiB, 1 * MiB};
  unsigned before = atomic_load(&handled);
  async_round_trips(client(64 << 10), 0, sizes, 3, "inline");
  async_round_trips(client(64 << 10), 1, sizes, 3, "inline");
  cr_assert_eq(atomic_load(&handled), before + 6, "6 calls, the handler ran %u times",
               atomic_load(&handled) - before);
  srv_stop(&v);
  cr_assert_eq(fx_fd_count(), fds_before);
}

/* An "old server" on a raw socket: it reads with read() (the kernel drops
 * the descriptors it is sent, as for a peer that never asks for them) and
 * answers a frame whose body does not decode (the memfd stub, 0x00) with
 * INVALID_ARGUMENT, as a server older than §2.6 does; other frames get the
 * echo an ackrpc.test.Blob/Echo server gives. One-shot and session
 * connections, one at a time. */
typedef struct old_srv {
  int lfd;
  pthread_t thr;
  atomic_int stop;
  atomic_uint stubs, served;          /* frames refused, frames answered OK */
  uint8_t stub_id[64], inline_id[64]; /* the last call ids of each */
  size_t stub_id_len, inline_id_len;
} old_srv;

static int read_full(int fd, uint8_t *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, buf + got, len - got);
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

static void old_reply(int fd, uint32_t status, const ProtobufCMessage *body) {
  Ackrpc__Wire__ReplyHead h = ACKRPC__WIRE__REPLY_HEAD__INIT;
  h.status = status;
  h.message = status ? "request body does not decode" : "";
  size_t hl = ackrpc__wire__reply_head__get_packed_size(&h);
  size_t bl = body ? protobuf_c_message_get_packed_size(body) : 0;
  uint8_t *f = malloc(12 + hl + bl);
  fx_frame_prefix(f, 2, (uint32_t)hl, (uint32_t)bl);
  ackrpc__wire__reply_head__pack(&h, f + 12);
  if (body) protobuf_c_message_pack(body, f + 12 + hl);
  fx_raw_send(fd, f, 12 + hl + bl);
  free(f);
}

static void old_serve(old_srv *o, int fd) {
  uint8_t pre[12];
  while (read_full(fd, pre, 12) == 0) {
    uint32_t hl, bl;
    memcpy(&hl, pre + 4, 4);
    memcpy(&bl, pre + 8, 4);
    uint8_t *rest = malloc((size_t)hl + bl + 1);
    if (read_full(fd, rest, (size_t)hl + bl) != 0) {
      free(rest);
      return;
    }
    Ackrpc__Wire__RequestHead *h = ackrpc__wire__request_head__unpack(NULL, hl, rest);
    Ackrpc__Test__EchoRequest *req =
        h ? ackrpc__test__echo_request__unpack(NULL, bl, rest + hl) : NULL;
    if (!req) {
      atomic_fetch_add(&o->stubs, 1);
      if (h) memcpy(o->stub_id, h->call_id.data, o->stub_id_len = h->call_id.len);
      old_reply(fd, ACKRPC_INVALID_ARGUMENT, NULL);
    } else {
      atomic_fetch_add(&o->served, 1);
      memcpy(o->inline_id, h->call_id.data, o->inline_id_len = h->call_id.len);
      Ackrpc__Test__EchoReply rep = ACKRPC__TEST__ECHO_REPLY__INIT;
      rep.text = "inline";
      rep.blob = req->blob;
      rep.blob_len = (uint32_t)req->blob.len;
      old_reply(fd, 0, &rep.base);
      ackrpc__test__echo_request__free_unpacked(req, NULL);
    }
    if (h) ackrpc__wire__request_head__free_unpacked(h, NULL);
    free(rest);
  }
}

static void *old_main(void *arg) {
  old_srv *o = arg;
  while (!atomic_load(&o->stop)) {
    struct pollfd p = {.fd = o->lfd, .events = POLLIN};
    if (poll(&p, 1, 20) <= 0) continue;
    int fd = accept4(o->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue;
    old_serve(o, fd);
    close(fd);
  }
  return NULL;
}

static void old_start(old_srv *o) {
  memset(o, 0, sizeof *o);
  o->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", fx_sock());
  cr_assert_eq(bind(o->lfd, (struct sockaddr *)&a, sizeof a), 0);
  cr_assert_eq(listen(o->lfd, 8), 0);
  cr_assert_eq(pthread_create(&o->thr, NULL, old_main, o), 0);
}

static void old_stop(old_srv *o) {
  atomic_store(&o->stop, 1);
  pthread_join(o->thr, NULL);
  close(o->lfd);
  unlink(fx_sock());
}

HS_TEST(memfd, an_old_server_gets_the_body_inline_with_the_same_call_id) {
  old_srv o;
  old_start(&o);
  ackrpc_client *c = client(64 << 10);
  round_trip(by_client, c, 1 * MiB, 60, "inline");
  cr_assert_eq(atomic_load(&o.stubs), 1, "the body was not tried in a memfd first");
  cr_assert_eq(atomic_load(&o.served), 1);
  cr_assert_eq(o.stub_id_len, o.inline_id_len);
  cr_assert(memcmp(o.stub_id, o.inline_id, o.stub_id_len) == 0,
            "sent again under another call id");
  /* Known now: later calls of this client, in sessions too, go inline at
   * once. */
  round_trip(by_client, c, 8 * MiB, 61, "inline");
  round_trip(by_new_session, c, 1 * MiB, 62, "inline");
  const size_t sizes[] = {1 * MiB};
  async_round_trips(c, 0, sizes, 1, "inline");
  async_round_trips(c, 1, sizes, 1, "inline");
  cr_assert_eq(atomic_load(&o.stubs), 1, "a known refusal was tried again");
  cr_assert_eq(atomic_load(&o.served), 5);
  /* A new session of a new client learns it for itself. */
  ackrpc_client *c2 = client(64 << 10);
  round_trip(by_new_session, c2, 1 * MiB, 63, "inline");
  cr_assert_eq(atomic_load(&o.stubs), 2);
  cr_assert_eq(atomic_load(&o.served), 6);
  old_stop(&o);
}

/* A handler's own INVALID_ARGUMENT or UNIMPLEMENTED to a body that came in
 * a memfd is final, not sent again: the reply says the server took the
 * memfd (body_memfd_read), even to a client that has not yet seen this
 * server serve one. */
static void reject_handler(ackrpc_call *call, const ProtobufCMessage *request,
                           void *user) {
  (void)request;
  (void)user;
  atomic_fetch_add(&handled, 1);
  ackrpc_call_reply(call, ACKRPC_INVALID_ARGUMENT, "rejected by the handler", NULL);
}

HS_TEST(memfd, a_handler_refusal_from_a_server_known_to_take_memfds_is_final) {
  srv v;
  srv_start(&v, 0);
  static const ackrpc_method reject = {"ackrpc.test.Blob/Reject",
                                       &ackrpc__test__echo_request__descriptor,
                                       &ackrpc__test__echo_reply__descriptor};
  cr_assert_eq(ackrpc_server_add_method(v.s, &reject, reject_handler, NULL), ACKRPC_OK);
  uint8_t *data = fx_pattern(1 * MiB, 71);
  Ackrpc__Test__EchoRequest req = blob_request(data, 1 * MiB);
  /* 0: a new client's first call; 1: after a memfd body was served. */
  for (int known = 0; known < 2; known++) {
    ackrpc_client *c = client(64 << 10);
    if (known) round_trip(by_client, c, 1 * MiB, 70, "memfd");
    unsigned before = atomic_load(&handled);
    ackrpc_result r = {0};
    cr_assert_eq(ackrpc_client_call(c, &reject, &req.base, NULL, &r),
                 ACKRPC_INVALID_ARGUMENT);
    cr_assert_str_eq(r.message, "rejected by the handler");
    ackrpc_result_clear(&r);
    cr_assert_eq(atomic_load(&handled), before + 1,
                 "known %d: the handler ran %u times", known,
                 atomic_load(&handled) - before);
  }
  free(data);
  srv_stop(&v);
}

/* --- hostile peers, on raw sockets, against a server in a child process --- */

/* A request frame for FX_ECHO whose body is in a memfd: head with
 * fd_count and body_memfd, frame body `stub` (`stub_len` bytes). */
static size_t memfd_frame(uint8_t *out, uint32_t fd_count, const uint8_t *stub,
                          size_t stub_len) {
  Ackrpc__Wire__RequestHead h = ACKRPC__WIRE__REQUEST_HEAD__INIT;
  h.method = FX_ECHO;
  h.call_id.data = (uint8_t *)"hostile";
  h.call_id.len = 7;
  h.fd_count = fd_count;
  h.body_memfd = 1;
  size_t hl = ackrpc__wire__request_head__pack(&h, out + 12);
  fx_frame_prefix(out, 1, (uint32_t)hl, (uint32_t)stub_len);
  memcpy(out + 12 + hl, stub, stub_len);
  return 12 + hl + stub_len;
}

static void send_with(int s, const uint8_t *buf, size_t len, int fd) {
  cr_assert_eq(fx_raw_send_fds(s, buf, len, &fd, fd >= 0), 0);
}

/* Sends the memfd frame with `fd` (-1: none; fd_count says 1 either way
 * unless `count` is 0), then `after` (if set) runs, then a plain FX_ECHO
 * frame; returns the first reply's status and message, asserts the second
 * is OK (the session went on). */
static uint32_t hostile(int fd, uint32_t count, const uint8_t *stub, size_t stub_len,
                        void (*after)(int fd), char **ret_msg) {
  uint8_t f[256];
  size_t len = memfd_frame(f, count, stub, stub_len);
  int s = fx_raw_connect(fx_sock());
  cr_assert_geq(s, 0);
  send_with(s, f, len, fd);
  if (after) after(fd);
  static uint8_t *ok; /* the fixture's, freed at teardown */
  static size_t ok_len;
  if (!ok) {
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    ok_len = fx_frame_request(&ok, FX_ECHO, 0, NULL, 0, &req.base);
  }
  fx_sleep_ms(20); /* read apart from the first frame */
  send_with(s, ok, ok_len, -1);
  shutdown(s, SHUT_WR);
  size_t in_len;
  int eof;
  uint8_t *in = fx_raw_read_all(s, 5000, &in_len, &eof);
  close(s);
  uint32_t st[2] = {99, 99};
  size_t used = fx_parse_reply(in, in_len, &st[0], ret_msg, NULL, NULL);
  cr_assert_gt(used, 0, "no reply to the hostile frame");
  cr_assert_gt(fx_parse_reply(in + used, in_len - used, &st[1], NULL, NULL, NULL), 0,
               "the session ended after the refusal");
  cr_assert_eq(st[1], ACKRPC_OK);
  return st[0];
}

static int memfd_of(size_t len, unsigned seals) {
  int fd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  cr_assert_geq(fd, 0);
  cr_assert_eq(ftruncate(fd, (off_t)len), 0);
  if (seals) cr_assert_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
  return fd;
}

/* The peer shrinks its memfd right after sending it: a server that had
 * mapped it would fault (SIGBUS) reading past the new end. */
static void shrink(int fd) {
  cr_assert_eq(ftruncate(fd, 0), 0, "F_SEAL_SHRINK was not left out");
}

/* The message of the last hostile() reply (set before expect() reads it). */
static char *last_msg;

static void expect(uint32_t got, uint32_t want, const char *words) {
  char *msg = last_msg;
  last_msg = NULL;
  cr_assert_eq(got, want, "status %u (%s), expected %u", got, msg ? msg : "", want);
  cr_assert(msg && strstr(msg, words), "message \"%s\" does not say \"%s\"",
            msg ? msg : "", words);
  free(msg);
}

#define ALL_SEALS (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK)

HS_TEST(memfd, hostile_body_descriptors_are_refused_and_nothing_is_kept) {
  signal(SIGPIPE, SIG_IGN);
  ackrpc_server_options o = {
      .address = fx_sock(), .max_request_size = 4 * MiB, .log = ackrpc_log_discard};
  ackrpc_status st;
  pid_t pid = hs_server_proc(&o, 0, &st);
  cr_assert_eq(st, ACKRPC_OK);
  const uint8_t stub[2] = {0x00, 0x00};
  char *msg;
  /* A good one first (the server's pools and buffers are warm after it). */
  Ackrpc__Test__EchoRequest req = blob_request(calloc(1, 3 * MiB), 3 * MiB);
  size_t n = ackrpc__test__echo_request__get_packed_size(&req);
  int good = memfd_of(n, 0);
  uint8_t *map = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, good, 0);
  ackrpc__test__echo_request__pack(&req, map);
  munmap(map, n);
  free(req.blob.data);
  cr_assert_eq(fcntl(good, F_ADD_SEALS, ALL_SEALS), 0);
  cr_assert_eq(hostile(good, 1, stub, 1, NULL, &msg), ACKRPC_OK, "%s", msg ? msg : "");
  free(msg);
  long fds0 = hs_fd_count(pid), rss0 = hs_status_kb(pid, "VmRSS");

  char path[] = "/tmp/ackrpc-memfd-XXXXXX";
  int regular = mkstemp(path);
  cr_assert_geq(regular, 0);
  unlink(path);
  cr_assert_eq(ftruncate(regular, 4096), 0);
  const char *fifo_path = fx_path("fifo");
  cr_assert_eq(mkfifo(fifo_path, 0600), 0);
  int fifo = open(fifo_path, O_RDWR | O_CLOEXEC);
  cr_assert_geq(fifo, 0);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int sock[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock), 0);

  for (int round = 0; round < 3; round++) {
    int unsealed = memfd_of(4096, 0);
    expect(hostile(unsealed, 1, stub, 1, NULL, &last_msg), ACKRPC_INVALID_ARGUMENT,
           "not sealed");
    close(unsealed);
    int no_shrink = memfd_of(n, F_SEAL_WRITE | F_SEAL_GROW);
    expect(hostile(no_shrink, 1, stub, 1, shrink, &last_msg), ACKRPC_INVALID_ARGUMENT,
           "not sealed");
    close(no_shrink);
    expect(hostile(regular, 1, stub, 1, NULL, &last_msg), ACKRPC_INVALID_ARGUMENT,
           "not a memfd");
    expect(hostile(fifo, 1, stub, 1, NULL, &last_msg), ACKRPC_INVALID_ARGUMENT,
           "not a memfd");
    expect(hostile(devnull, 1, stub, 1, NULL, &last_msg), ACKRPC_INVALID_ARGUMENT,
           "not a memfd");
    expect(hostile(sock[0], 1, stub, 1, NULL, &last_msg), ACKRPC_INVALID_ARGUMENT,
           "not a memfd");
    int big = memfd_of(4 * MiB + 1, ALL_SEALS);
    expect(hostile(big, 1, stub, 1, NULL, &last_msg), ACKRPC_RESOURCE_EXHAUSTED,
           "larger than the size limit");
    close(big);
    expect(hostile(-1, 0, stub, 1, NULL, &last_msg), ACKRPC_INVALID_ARGUMENT,
           "no descriptor announced");
    expect(hostile(-1, 1, stub, 1, NULL, &last_msg), ACKRPC_INVALID_ARGUMENT,
           "descriptor(s) received");
    expect(hostile(good, 1, stub, 2, NULL, &last_msg), ACKRPC_INVALID_ARGUMENT,
           "one byte");
    const uint8_t not_stub = 0x08;
    expect(hostile(good, 1, &not_stub, 1, NULL, &last_msg), ACKRPC_INVALID_ARGUMENT,
           "0x00");
    /* And the good one, again: served. */
    cr_assert_eq(hostile(good, 1, stub, 1, NULL, &msg), ACKRPC_OK);
    free(msg);
  }
  cr_assert(hs_alive(pid), "the server died (SIGBUS?)");
  /* The server closes a connection's descriptors and unmaps its bodies as
   * its calls end; give its loop a moment after the last reply. */
  long fds1 = -1, rss1 = -1;
  for (int i = 0; i < 50; i++) {
    fds1 = hs_fd_count(pid);
    rss1 = hs_status_kb(pid, "VmRSS");
    if (fds1 <= fds0 && rss1 <= rss0 + 1024) break;
    fx_sleep_ms(20);
  }
  cr_assert_leq(fds1, fds0, "server descriptors: %ld before, %ld after", fds0, fds1);
  cr_assert_leq(rss1, rss0 + 1024, "server RSS: %ld kB before, %ld kB after", rss0,
                rss1);
  close(good);
  close(regular);
  close(fifo);
  close(devnull);
  close(sock[0]);
  close(sock[1]);
  cr_assert_eq(WEXITSTATUS(hs_server_proc_stop(pid, 5000)), 0);
}
