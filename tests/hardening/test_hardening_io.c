/* test_hardening_io.c: awkward but legal I/O (docs/SECURITY.md): peers that
 * close before reading their ack (the server must never die of SIGPIPE, nor
 * leak the connection), blocking calls interrupted by a signal every 100 us,
 * a 4 MiB request through 4 KiB socket buffers, and requests written one
 * byte per send(). Zero failures allowed. Server in a thread of this
 * process, with SIGPIPE at its default action: a send without MSG_NOSIGNAL
 * would kill the test. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "hardening_support.h"

HS_SUITE(hio);

static size_t echo_frame(uint8_t **ret, const Ackrpc__Test__EchoRequest *req) {
  size_t bl;
  uint8_t *body = hs_pack(&req->base, &bl);
  size_t n = hs_frame(ret, FX_ECHO, 10000000, body, bl);
  free(body);
  return n;
}

HS_TEST(hio, peers_that_close_before_the_ack) {
  signal(SIGPIPE, SIG_DFL);
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock, .log = ackrpc_log_discard};
  hs_server_start(&o);
  /* Three ways to be gone when the reply is written: a small inline reply
   * (written into the buffer of a closed socket: EPIPE), a 64 KiB inline
   * reply (larger than the socket buffer: EAGAIN, then the peer is gone),
   * and a reply from a loop timer 2 ms later. */
  static char big[64 * 1024 + 1];
  memset(big, 't', sizeof big - 1);
  uint8_t *frames[3];
  size_t lens[3];
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "bye";
  lens[0] = echo_frame(&frames[0], &req);
  req.text = big;
  lens[1] = echo_frame(&frames[1], &req);
  req.text = "later";
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__DEFER_TIMER;
  req.delay_ms = 2;
  lens[2] = echo_frame(&frames[2], &req);
  int n = hs_slow() ? 300 : 1000;
  int sent = 0;
  for (int i = 0; i < n; i++) {
    int fd = hs_connect(sock);
    cr_assert_geq(fd, 0, "connect #%d: %s", i, strerror(errno));
    if (hs_send_all(fd, frames[i % 3], lens[i % 3]) == 0) sent++;
    close(fd); /* before reading anything */
  }
  for (int k = 0; k < 3; k++) free(frames[k]);
  /* Every one was dispatched (complete frames) and every connection ends. */
  uint64_t end = fx_now_us() + 10000000u;
  while (fx_handler_calls() < (unsigned)n && fx_now_us() < end) fx_sleep_ms(5);
  size_t conns = 99;
  while ((conns = hs_server_conns(sock)) != 0 && fx_now_us() < end) fx_sleep_ms(10);
  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Test__EchoRequest ok = ACKRPC__TEST__ECHO_REQUEST__INIT;
  int good = 0;
  for (int i = 0; i < 100; i++) good += fx_echo(c, &ok, NULL, NULL) == ACKRPC_OK;
  printf("hardening: %d peers closed before their ack (%d sent whole); handlers ran "
         "%u times; connections left %zu; 100 calls after: %d OK\n",
         n, sent, fx_handler_calls() - (unsigned)good, conns, good);
  cr_assert_eq(sent, n, "a request could not be sent whole");
  cr_assert_geq(fx_handler_calls(), (unsigned)n, "not every request was dispatched");
  cr_assert_eq(conns, 0, "%zu connections of departed peers are still open", conns);
  cr_assert_eq(good, 100);
}

/* --- EINTR ---------------------------------------------------------------- */

static atomic_ulong g_alarms;

static void on_alarm(int sig) {
  (void)sig;
  atomic_fetch_add(&g_alarms, 1);
}

HS_TEST(hio, blocking_calls_under_a_100us_signal_storm) {
  const char *sock = fx_sock();
  /* The server's thread inherits a mask that blocks SIGALRM: the signals go
   * to this thread, the client's. */
  sigset_t alrm, old;
  sigemptyset(&alrm);
  sigaddset(&alrm, SIGALRM);
  pthread_sigmask(SIG_BLOCK, &alrm, &old);
  ackrpc_server_options o = {.address = sock, .log = ackrpc_log_discard};
  hs_server_start(&o);
  pthread_sigmask(SIG_UNBLOCK, &alrm, NULL);

  struct sigaction sa, old_sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: every interrupted syscall gives EINTR */
  cr_assert_eq(sigaction(SIGALRM, &sa, &old_sa), 0);
  struct itimerval it = {{0, 100}, {0, 100}};
  cr_assert_eq(setitimer(ITIMER_REAL, &it, NULL), 0);

  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  uint8_t blob[8192];
  memset(blob, 'e', sizeof blob);
  int n = hs_slow() ? 3000 : 10000;
  int failed = 0;
  ackrpc_status first_bad = ACKRPC_OK;
  uint64_t t0 = fx_now_us();
  for (int i = 0; i < n; i++) {
    /* Some requests and replies larger than one read or write. */
    req.text = i % 10 == 0 ? "interrupted, larger" : "interrupted";
    req.blob.data = blob;
    req.blob.len = i % 10 == 0 ? sizeof blob : 0;
    ackrpc_result r = {0};
    ackrpc_status st = fx_echo(c, &req, NULL, &r);
    int ok = st == ACKRPC_OK && r.reply &&
             ((Ackrpc__Test__EchoReply *)r.reply)->blob_len == req.blob.len;
    if (!ok && !failed++) first_bad = st;
    ackrpc_result_clear(&r);
  }
  uint64_t dt = fx_now_us() - t0;
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  sigaction(SIGALRM, &old_sa, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  unsigned long alarms = atomic_load(&g_alarms);
  printf("hardening: %d blocking calls in %.2f s under SIGALRM every 100 us (no "
         "SA_RESTART): %lu signals, %d failed\n",
         n, (double)dt / 1e6, alarms, failed);
  cr_assert_eq(failed, 0, "%d of %d calls failed under signals, first: %s", failed, n,
               ackrpc_status_name(first_bad));
  cr_assert_gt(alarms, (unsigned long)n / 10, "only %lu signals arrived: the storm did "
                                              "not happen",
               alarms);
}

/* --- big requests, small buffers, 1-byte writes --------------------------- */

static void check_echo_reply(const hs_reply *r, const char *what, size_t text_len,
                             size_t blob_len) {
  cr_assert(r->got, "%s: no reply (read %zu bytes)", what, r->len);
  cr_assert_eq(r->status, 0, "%s: status %u (%s)", what, r->status, r->message);
  Ackrpc__Test__EchoReply *rep =
      ackrpc__test__echo_reply__unpack(NULL, r->body_len, r->buf + r->body_off);
  cr_assert_not_null(rep, "%s: the reply does not decode", what);
  size_t tl = strlen(rep->text), bl = rep->blob_len;
  ackrpc__test__echo_reply__free_unpacked(rep, NULL);
  cr_assert_eq(tl, text_len, "%s: echoed %zu text bytes of %zu", what, tl, text_len);
  cr_assert_eq(bl, blob_len, "%s: the server saw %zu blob bytes of %zu", what, bl,
               blob_len);
}

HS_TEST(hio, four_mib_request_through_4k_socket_buffers) {
  signal(SIGPIPE, SIG_DFL);
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock,
                             .max_request_size = (4u << 20) + (64u << 10),
                             .read_timeout_ms = 60000,
                             .log = ackrpc_log_discard};
  hs_server_start(&o);
  /* 3 MiB of blob and 1 MiB of text: a 4 MiB request and a 1 MiB reply,
   * which the server must write in many EAGAIN-interrupted pieces. */
  size_t text_len = 1u << 20, blob_len = (3u << 20) - 64;
  char *text = malloc(text_len + 1);
  uint8_t *blob = malloc(blob_len);
  cr_assert(text && blob);
  memset(text, 'T', text_len);
  text[text_len] = 0;
  memset(blob, 0xb7, blob_len);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = text;
  req.blob.data = blob;
  req.blob.len = blob_len;
  uint8_t *f;
  size_t n = echo_frame(&f, &req);
  cr_assert_geq(n, 4u << 20, "the request is %zu bytes", n);

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(fd, 0);
  int small = 4096;
  cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  strcpy(sa.sun_path, sock);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect: %s",
               strerror(errno));
  int snd = 0;
  socklen_t sl = sizeof snd;
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, &sl);
  uint64_t t0 = fx_now_us();
  cr_assert_eq(hs_send_all(fd, f, n), 0, "send: %s", strerror(errno));
  shutdown(fd, SHUT_WR);
  hs_reply r;
  hs_read_reply(fd, 60000, &r);
  close(fd);
  printf("hardening: %zu-byte request through SO_SNDBUF=%d (asked 4096), 1 MiB reply: "
         "%.1f ms\n",
         n, snd, (double)(fx_now_us() - t0) / 1000.0);
  check_echo_reply(&r, "4 MiB through 4 KiB buffers", text_len, blob_len);
  hs_reply_free(&r);

  /* The same through the library's client. */
  ackrpc_client_options co = {.address = sock, .timeout_ms = 60000,
                              .max_reply_size = 2u << 20};
  ackrpc_client *c = fx_client_opts(&co);
  ackrpc_result res = {0};
  ackrpc_status st = fx_echo(c, &req, NULL, &res);
  cr_assert_eq(st, ACKRPC_OK, "4 MiB through the client: %s (%s)", ackrpc_status_name(st),
               res.message ? res.message : "");
  cr_assert_eq(fx_echo_reply(&res)->blob_len, blob_len);
  ackrpc_result_clear(&res);
  free(f);
  free(text);
  free(blob);
}

HS_TEST(hio, requests_written_one_byte_at_a_time) {
  signal(SIGPIPE, SIG_DFL);
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock,
                             .max_request_size = (4u << 20) + (64u << 10),
                             .read_timeout_ms = 120000,
                             .log = ackrpc_log_discard};
  hs_server_start(&o);
  /* Small requests, then one of 4 MiB (256 KiB under ASan, where a syscall
   * costs several times more): each byte its own send(), so the server sees
   * every possible split of prefix, head and body. */
  size_t sizes[] = {0, 1, 100, 4000, hs_slow() ? 256u << 10 : (4u << 20) - 64};
  uint8_t *blob = malloc(4u << 20);
  cr_assert_not_null(blob);
  memset(blob, 0x5a, 4u << 20);
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    req.text = "byte by byte";
    req.blob.data = blob;
    req.blob.len = sizes[k];
    uint8_t *f;
    size_t n = echo_frame(&f, &req);
    int fd = hs_connect(sock);
    cr_assert_geq(fd, 0);
    uint64_t t0 = fx_now_us();
    int failed = 0;
    for (size_t i = 0; i < n && !failed; i++) {
      ssize_t w;
      do {
        w = send(fd, f + i, 1, MSG_NOSIGNAL);
      } while (w < 0 && errno == EINTR);
      failed = w != 1;
    }
    shutdown(fd, SHUT_WR);
    hs_reply r;
    hs_read_reply(fd, 60000, &r);
    close(fd);
    free(f);
    if (k + 1 == sizeof sizes / sizeof *sizes)
      printf("hardening: a %zu-byte request in %zu one-byte writes: %.1f ms\n", n, n,
             (double)(fx_now_us() - t0) / 1000.0);
    cr_assert(!failed, "a one-byte send failed: %s", strerror(errno));
    check_echo_reply(&r, "one-byte writes", strlen("byte by byte"), sizes[k]);
    hs_reply_free(&r);
  }
  free(blob);
  cr_assert_eq(fx_handler_calls(), sizeof sizes / sizeof *sizes);
}
