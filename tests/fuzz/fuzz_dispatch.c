/* fuzz_dispatch: a whole request stream through the real server.
 *
 * Each input is written, as a client would, into one end of a socketpair
 * whose other end the server adopts as an accepted connection; the client
 * then half-closes. The server reads, frames, checks heads and policies,
 * decodes bodies (with the depth scan and the capped arena), dispatches to
 * an inline or a deferred handler and writes replies. The properties checked
 * (abort() on failure):
 *   - everything the server sends back is a sequence of well-formed reply
 *     frames with canonical statuses;
 *   - after the half-close the server always finishes: it closes the
 *     connection within a bounded number of loop turns and holds no
 *     connection afterwards;
 *   - no request with a string that is not UTF-8 reaches a handler;
 *   - no descriptor leaks: each input also sends descriptors (the read
 *     end of a pipe, up to 3 copies, over the server's limit of 2) with
 *     SCM_RIGHTS, the number and where in the stream taken from the
 *     input's last bytes; once the connection is over, the pipe must have
 *     no reader left but this target's own copy (docs/PROTOCOL.md §2.5);
 *   - the same for bodies in memfds (§2.6): chosen by the input's fourth
 *     last byte, the descriptors are instead a memfd holding the input's
 *     first bytes, sealed as a body must be or not at all (a frame whose
 *     head says body_memfd then maps it or refuses it); none of them is
 *     left open after the input.
 * Method types come from wire.proto (RequestHead nests Metadata messages),
 * so the target needs no test protos.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ackrpc/ackrpc.h"
#include "ackrpc/wire.pb-c.h"
#include "mem/arena.h"
#include "wire/depth.h"
#include "wire/encode.h"
#include "wire/frame.h"
#include "wire/head.h"
#include "wire/names.h"
#include "wire/utf8.h"
#include "server/server_internal.h"

#define MAX_TURNS 2000

static struct event_base *base;
static ackrpc_server *server;

static const ackrpc_method ECHO = {"fuzz.Fuzz/Echo",
                                   &ackrpc__wire__request_head__descriptor,
                                   &ackrpc__wire__reply_head__descriptor};
static const ackrpc_method DEFER = {"fuzz.Fuzz/Defer",
                                    &ackrpc__wire__request_head__descriptor,
                                    &ackrpc__wire__reply_head__descriptor};
static const ackrpc_method FDS = {"fuzz.Fuzz/Fds",
                                  &ackrpc__wire__request_head__descriptor,
                                  &ackrpc__wire__reply_head__descriptor};
static const ackrpc_method FAIL = {"fuzz.Fuzz/Fail",
                                   &ackrpc__wire__request_head__descriptor,
                                   &ackrpc__wire__reply_head__descriptor};

/* Echo: answers inline with a reply built from the request. */
static void on_echo(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)user;
  const Ackrpc__Wire__RequestHead *h = (const Ackrpc__Wire__RequestHead *)request;
  if (!akr_utf8_valid(h->method, strlen(h->method))) abort();
  for (size_t i = 0; i < h->n_metadata; i++)
    if (!akr_utf8_valid(h->metadata[i]->key, strlen(h->metadata[i]->key))) abort();
  Ackrpc__Wire__ReplyHead r = ACKRPC__WIRE__REPLY_HEAD__INIT;
  r.status = (uint32_t)h->n_metadata;
  r.message = h->method;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &r.base);
}

static void reply_later(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ackrpc_call_reply(arg, ACKRPC_ABORTED, "deferred", NULL);
}

/* Defer: answers from a later loop turn. */
static void on_defer(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)request;
  (void)user;
  if (event_base_once(base, -1, EV_TIMEOUT, reply_later, call, NULL) != 0)
    ackrpc_call_reply(call, ACKRPC_INTERNAL, NULL, NULL);
}

/* Fail: a non-canonical status, which the server must turn into INTERNAL. */
static void on_fail(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)request;
  (void)user;
  ackrpc_call_reply(call, (ackrpc_status)150, "bad", NULL);
}

static void setup(void) {
  if (server) return;
  signal(SIGPIPE, SIG_IGN); /* the leak check writes to a pipe with no reader */
  base = event_base_new();
  char address[64];
  snprintf(address, sizeof address, "@ackrpc-fuzz-dispatch-%ld", (long)getpid());
  ackrpc_server_options o = {
      .address = address,
      .base = base,
      .max_request_size = 64 << 10,
      .max_depth = 4,
      .max_fds_per_call = 2,
      .log = ackrpc_log_discard,
  };
  if (!base || ackrpc_server_new(&o, &server) != ACKRPC_OK ||
      ackrpc_server_add_method(server, &ECHO, on_echo, NULL) != ACKRPC_OK ||
      ackrpc_server_add_method(server, &DEFER, on_defer, NULL) != ACKRPC_OK ||
      ackrpc_server_add_method(server, &FAIL, on_fail, NULL) != ACKRPC_OK ||
      ackrpc_server_add_method(server, &FDS, on_echo, NULL) != ACKRPC_OK ||
      ackrpc_server_set_method_fds(server, FDS.name, 2) != ACKRPC_OK)
    abort();
}

/* Checks that `buf` holds whole, well-formed reply frames only. */
static void check_replies(const uint8_t *buf, size_t len) {
  while (len) {
    akr_frame f;
    size_t need;
    if (akr_frame_scan(buf, len, AKR_FRAME_REPLY, 1u << 20, &f, &need) != AKR_FRAME_OK)
      abort();
    akr_arena arena;
    akr_arena_init(&arena, 1u << 20);
    akr_reply r;
    if (akr_reply_decode(&f, &arena, &r) != AKR_FRAME_OK) abort();
    if (!ackrpc_status_is_canonical((ackrpc_status)r.status)) abort();
    akr_arena_release(&arena);
    buf += f.frame_len;
    len -= f.frame_len;
  }
}

/* Sends data[0..len) as send() would, with n_fds copies of `fd`. */
static ssize_t send_fds(int s, const uint8_t *data, size_t len, int fd, size_t n_fds) {
  if (!n_fds) return send(s, data, len, MSG_NOSIGNAL);
  int fds[3] = {fd, fd, fd};
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(sizeof fds)];
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
  struct msghdr m = {.msg_iov = &iov,
                     .msg_iovlen = 1,
                     .msg_control = ctl.bytes,
                     .msg_controllen = CMSG_SPACE(n_fds * sizeof(int))};
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
  memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
  return sendmsg(s, &m, MSG_NOSIGNAL);
}

/* Descriptors of this process that are body memfds made here (their
 * link in /proc/self/fd names them): the target closes its own right after
 * sending, so after an input none may be left. Counted by name, not in
 * all: libFuzzer's own threads open files now and then. */
static int body_fds_open(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) abort();
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char path[300], link[256];
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    ssize_t len = readlink(path, link, sizeof link - 1);
    if (len <= 0) continue;
    link[len] = 0;
    if (strstr(link, "memfd:fuzz-body")) n++;
  }
  closedir(d);
  return n;
}

/* A memfd holding data[0..len) (at most 4 KiB of it), sealed as a body
 * must be if `sealed`, else not at all. */
static int body_fd(const uint8_t *data, size_t len, int sealed) {
  int fd = memfd_create("fuzz-body", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) abort();
  if (len > 4096) len = 4096;
  if (len && write(fd, data, len) != (ssize_t)len) abort();
  if (sealed && fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK) != 0)
    abort();
  return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup();
  int kind = size > 3 ? data[size - 4] % 3 : 0; /* pipe, sealed memfd, unsealed */
  /* The descriptor plan: how many go with the first send, and from which
   * offset a second send starts, with how many. */
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) abort();
  size_t first_fds = size ? data[size - 1] % 4 : 0;
  size_t split = size > 1 ? data[size - 2] % size : size;
  size_t split_fds = size > 2 ? data[size - 3] % 4 : 0;
  if (split == 0) split = size;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
    abort();
  if (akr_server_adopt(server, sv[0]) != 0) abort();

  uint8_t *out = NULL;
  size_t out_len = 0, out_cap = 0, sent = 0;
  int half_closed = 0, eof = 0;
  for (int turn = 0; turn < MAX_TURNS && !eof; turn++) {
    if (sent < size) {
      size_t end = sent < split ? split : size;
      size_t n_fds = sent == 0 ? first_fds : sent == split ? split_fds : 0;
      int fd = kind && n_fds ? body_fd(data, size, kind == 1) : pipe_fds[0];
      ssize_t n = send_fds(sv[1], data + sent, end - sent, fd, n_fds);
      if (fd != pipe_fds[0]) close(fd);
      if (n > 0)
        sent += (size_t)n;
      else if (n < 0 && errno != EAGAIN)
        sent = size; /* the server closed */
    }
    if (sent == size && !half_closed) {
      shutdown(sv[1], SHUT_WR);
      half_closed = 1;
    }
    event_base_loop(base, EVLOOP_NONBLOCK);
    for (;;) {
      if (out_cap - out_len < 4096) {
        out_cap = out_cap ? 2 * out_cap : 8192;
        out = realloc(out, out_cap);
        if (!out) abort();
      }
      ssize_t n = read(sv[1], out + out_len, out_cap - out_len);
      if (n > 0) {
        out_len += (size_t)n;
        continue;
      }
      if (n == 0 || errno == ECONNRESET) eof = 1;
      break;
    }
  }
  /* The server must have finished the connection by now. */
  if (!eof) abort();
  event_base_loop(base, EVLOOP_NONBLOCK);
  if (ackrpc_server_connections(server) != 0) abort();
  check_replies(out, out_len);
  free(out);
  close(sv[1]);
  /* Every copy the server received is closed: with ours gone, the pipe
   * has no reader. */
  close(pipe_fds[0]);
  if (write(pipe_fds[1], "x", 1) != -1 || errno != EPIPE) abort();
  close(pipe_fds[1]);
  if (body_fds_open() != 0) abort();
  return 0;
}
