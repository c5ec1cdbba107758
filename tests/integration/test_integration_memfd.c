/* test_integration_memfd.c: large bodies in sealed memfds (docs/PROTOCOL.md
 * §2.6) between a real client and a real server: 1 and 8 MiB bodies both
 * ways, one-shot and in a session, byte for byte; bodies built in place
 * (ackrpc_body) and read in place (raw methods); a server that refuses
 * them; and hostile peers on raw sockets (an unsealed memfd, one without
 * F_SEAL_SHRINK that the peer then shrinks, a regular file, a FIFO,
 * /dev/null, a memfd over the size limit, a body flag without a
 * descriptor): each refused with a clear status, never dispatched, the
 * session goes on, and the server in its own process ends with the
 * descriptors and the memory it had (fixture checks this process's
 * descriptors too; the test runs under valgrind --track-fds). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* Sends a blob of n bytes, checks that it came back byte for byte and how
 * the request's body travelled. */
static void round_trip(call_fn fn, void *ctx, size_t n, unsigned seed,
                       const char *how) {
  uint8_t *data = fx_pattern(n, seed);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.blob.data = data;
  req.blob.len = n;
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
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.blob.data = (uint8_t *)want;
  req.blob.len = n;
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
  uint8_t *data = fx_pattern(3 * MiB, 5);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.blob.data = data;
  req.blob.len = 3 * MiB;
  ackrpc_body *b;
  cr_assert_eq(ackrpc_body_from_message(&req.base, &b), ACKRPC_OK);
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

HS_TEST(memfd, a_server_that_refuses_memfd_bodies_answers_unimplemented) {
  srv v;
  srv_start(&v, 1);
  unsigned before = atomic_load(&handled);
  uint8_t *data = fx_pattern(1 * MiB, 9);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.blob.data = data;
  req.blob.len = 1 * MiB;
  ackrpc_result r = {0};
  cr_assert_eq(ackrpc_client_call(client(64 << 10), &blob_method, &req.base, NULL, &r),
               ACKRPC_UNIMPLEMENTED);
  ackrpc_result_clear(&r);
  cr_assert_eq(atomic_load(&handled), before, "a refused call was dispatched");
  /* The fallback: the body inline. */
  round_trip(by_client, client(SIZE_MAX), 1 * MiB, 9, "inline");
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
  union {
    struct cmsghdr a;
    char b[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    memset(&ctl, 0, sizeof ctl);
    m.msg_control = ctl.b;
    m.msg_controllen = sizeof ctl.b;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  cr_assert_eq(sendmsg(s, &m, MSG_NOSIGNAL), (ssize_t)len);
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
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.blob.len = 3 * MiB;
  req.blob.data = calloc(1, req.blob.len);
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
