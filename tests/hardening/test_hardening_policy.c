/* test_hardening_policy.c: peers of another uid (docs/SECURITY.md, "Who may
 * call"). As root, a child process drops to nobody:nogroup (setgroups,
 * setresgid, setresuid: what `setpriv --reuid=nobody --regid=nogroup
 * --clear-groups` does) and talks to a server of this process through a
 * socket it can reach (socket_mode 0666, directory 0711). The kernel records
 * the child's credentials at connect (SO_PEERCRED), so the server sees uid
 * 65534. A refusal must come before any byte of the body is read: the child
 * sends the prefix and the head, never the body, and keeps its side open;
 * the answer PERMISSION_DENIED must come well before the read deadline.
 * Without root the tests skip, saying so. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hardening_support.h"

HS_SUITE(hpolicy);

#define NOBODY 65534
#define READ_TIMEOUT_MS 8000
#define PROMPT_US 3000000u /* well under the read deadline */

typedef struct as_nobody {
  const char *sock;
  const uint8_t *bytes;
  size_t len;
  int half_close; /* shutdown(SHUT_WR) after sending */
  int out;        /* pipe to the parent */
} as_nobody;

/* What the child reports. */
typedef struct nobody_report {
  int32_t step_errno; /* 0, or errno of the step that failed */
  int32_t step;       /* 1 privileges, 2 connect */
  uint64_t elapsed_us;
  uint32_t n;
  uint8_t bytes[1024];
} nobody_report;

static int nobody_main(void *arg) {
  as_nobody *a = arg;
  nobody_report rep;
  memset(&rep, 0, sizeof rep);
  if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
      setresuid(NOBODY, NOBODY, NOBODY) != 0) {
    rep.step = 1;
    rep.step_errno = errno;
  } else {
    uint64_t t0 = fx_now_us();
    int fd = hs_connect(a->sock);
    if (fd < 0) {
      rep.step = 2;
      rep.step_errno = errno;
    } else {
      if (a->len) hs_send_all(fd, a->bytes, a->len);
      if (a->half_close) shutdown(fd, SHUT_WR);
      uint64_t end = t0 + 6000000u;
      while (rep.n < sizeof rep.bytes && fx_now_us() < end) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 50) <= 0) continue;
        ssize_t r = recv(fd, rep.bytes + rep.n, sizeof rep.bytes - rep.n, MSG_DONTWAIT);
        if (r > 0) {
          rep.n += (uint32_t)r;
          hs_reply probe = {0};
          if (hs_parse_reply(rep.bytes, rep.n, &probe)) break; /* a whole reply */
          continue;
        }
        if (r == 0 || (errno != EINTR && errno != EAGAIN)) break;
      }
      rep.elapsed_us = fx_now_us() - t0;
      close(fd);
    }
  }
  ssize_t w = write(a->out, &rep, sizeof rep);
  return w == (ssize_t)sizeof rep ? 0 : 1;
}

/* Runs one exchange as nobody; returns the reply (status in r->status). */
static void exchange_as_nobody(const char *sock, const uint8_t *bytes, size_t len,
                               int half_close, hs_reply *r, uint64_t *ret_elapsed) {
  int p[2];
  cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
  as_nobody a = {.sock = sock, .bytes = bytes, .len = len, .half_close = half_close,
                 .out = p[1]};
  pid_t pid = hs_fork(nobody_main, &a);
  close(p[1]);
  nobody_report rep;
  size_t got = 0;
  uint64_t end = fx_now_us() + 15000000u;
  while (got < sizeof rep && fx_now_us() < end) {
    struct pollfd pf = {p[0], POLLIN, 0};
    if (poll(&pf, 1, 100) <= 0) continue;
    ssize_t n = read(p[0], (uint8_t *)&rep + got, sizeof rep - got);
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(p[0]);
  int ws = 0;
  if (hs_wait(pid, 10000, &ws) != 0) hs_kill(pid);
  cr_assert_eq(got, sizeof rep, "the nobody child reported nothing");
  cr_assert_eq(rep.step_errno, 0, "as nobody, step %d failed: %s", rep.step,
               strerror(rep.step_errno));
  memset(r, 0, sizeof *r);
  hs_parse_reply(rep.bytes, rep.n, r);
  *ret_elapsed = rep.elapsed_us;
}

/* The prefix and the head of a request to `method` announcing a 100-byte
 * body that never comes. */
static size_t prefix_and_head(uint8_t **ret, const char *method) {
  uint8_t body[100];
  memset(body, 0, sizeof body);
  uint8_t *f;
  size_t n = hs_frame(&f, method, 10000000, body, sizeof body);
  *ret = f;
  return n - sizeof body;
}

static void *run_server(void *srv) {
  ackrpc_server_run(srv);
  return NULL;
}

static int setup_reachable(void) {
  if (geteuid() != 0) {
    printf("hardening: SKIPPED: peers of another uid need root (to become nobody)\n");
    return 0;
  }
  cr_assert_eq(chmod(fx_dir(), 0711), 0, "chmod %s: %s", fx_dir(), strerror(errno));
  return 1;
}

HS_TEST(hpolicy, server_policy_refuses_other_uid_before_reading) {
  if (!setup_reachable()) return;
  const char *sock = fx_sock();
  ackrpc_policy same = {.same_uid = 1};
  ackrpc_server_options o = {.address = sock, .socket_mode = 0666,
                             .read_timeout_ms = READ_TIMEOUT_MS, .policy = &same,
                             .log = ackrpc_log_discard};
  hs_server_start(&o);
  hs_reply r;
  uint64_t us;

  /* Nothing sent at all: refused at accept. */
  exchange_as_nobody(sock, NULL, 0, 0, &r, &us);
  printf("hardening: server policy {same_uid}: nobody, nothing sent: status %u in "
         "%.1f ms\n", r.status, (double)us / 1000.0);
  cr_assert(r.got, "nobody got no reply");
  cr_assert_eq(r.status, ACKRPC_PERMISSION_DENIED, "nobody got status %u", r.status);
  cr_assert_lt(us, PROMPT_US, "the refusal took %.1f ms", (double)us / 1000.0);

  /* Prefix and head, no body, no EOF. */
  uint8_t *f;
  size_t n = prefix_and_head(&f, FX_ECHO);
  exchange_as_nobody(sock, f, n, 0, &r, &us);
  free(f);
  printf("hardening: server policy {same_uid}: nobody, prefix+head without body: "
         "status %u in %.1f ms\n", r.status, (double)us / 1000.0);
  cr_assert(r.got && r.status == ACKRPC_PERMISSION_DENIED, "got %d status %u", r.got,
            r.status);
  cr_assert_lt(us, PROMPT_US, "the refusal waited for the body (%.1f ms)",
               (double)us / 1000.0);

  cr_assert_eq(fx_handler_calls(), 0);
  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK, "the same uid is refused");
  cr_assert_eq(fx_handler_calls(), 1);
}

HS_TEST(hpolicy, method_policy_refuses_other_uid_after_head_before_body) {
  if (!setup_reachable()) return;
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock, .socket_mode = 0666,
                             .read_timeout_ms = READ_TIMEOUT_MS,
                             .log = ackrpc_log_discard};
  /* Method policies are installed before the loop runs: a server built by
   * hand. */
  ackrpc_server *srv = NULL;
  cr_assert_eq(ackrpc_server_new(&o, &srv), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(srv, &fx_echo_method, fx_echo_handler, NULL),
               ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(srv, &fx_strict_method, fx_strict_handler, NULL),
               ACKRPC_OK);
  ackrpc_policy same = {.same_uid = 1};
  cr_assert_eq(ackrpc_server_set_method_policy(srv, FX_ECHO, &same), ACKRPC_OK);
  gid_t nogroup = NOBODY;
  ackrpc_policy group = {.gids = &nogroup, .n_gids = 1};
  cr_assert_eq(ackrpc_server_set_method_policy(srv, FX_STRICT, &group), ACKRPC_OK);
  pthread_t thr;
  cr_assert_eq(pthread_create(&thr, NULL, run_server, srv), 0);

  hs_reply r;
  uint64_t us;
  uint8_t *f;
  size_t n = prefix_and_head(&f, FX_ECHO);
  exchange_as_nobody(sock, f, n, 0, &r, &us);
  free(f);
  printf("hardening: method policy {same_uid}: nobody, prefix+head without body: "
         "status %u (%s) in %.1f ms\n", r.status, r.message, (double)us / 1000.0);
  int got1 = r.got;
  uint32_t st1 = r.status;

  /* Whole calls: nobody may call Strict (its group is listed), not Echo. */
  Ackrpc__Test__Strict s = ACKRPC__TEST__STRICT__INIT;
  s.must = "from nobody";
  size_t sl;
  uint8_t *sb = hs_pack(&s.base, &sl);
  n = hs_frame(&f, FX_STRICT, 10000000, sb, sl);
  free(sb);
  hs_reply r2;
  uint64_t us2;
  exchange_as_nobody(sock, f, n, 1, &r2, &us2);
  free(f);
  Ackrpc__Test__EchoRequest er = ACKRPC__TEST__ECHO_REQUEST__INIT;
  uint8_t *eb = hs_pack(&er.base, &sl);
  n = hs_frame(&f, FX_ECHO, 10000000, eb, sl);
  free(eb);
  hs_reply r3;
  uint64_t us3;
  exchange_as_nobody(sock, f, n, 1, &r3, &us3);
  free(f);
  unsigned calls_nobody = fx_handler_calls();

  /* This process (root): Echo yes (same uid), Strict no (gid 0 not listed). */
  ackrpc_client *c = fx_client(sock, 10000);
  ackrpc_status echo_root = fx_echo(c, &er, NULL, NULL);
  ackrpc_status strict_root =
      ackrpc_client_call(c, &fx_strict_method, &s.base, NULL, NULL);

  ackrpc_server_stop(srv);
  pthread_join(thr, NULL);
  ackrpc_server_free(srv);

  cr_assert(got1 && st1 == ACKRPC_PERMISSION_DENIED, "head only: got %d status %u", got1,
            st1);
  cr_assert_lt(us, PROMPT_US, "the method refusal waited for the body (%.1f ms)",
               (double)us / 1000.0);
  cr_assert(r2.got && r2.status == 0, "nobody calling Strict (group listed): status %u",
            r2.status);
  cr_assert(r3.got && r3.status == ACKRPC_PERMISSION_DENIED,
            "nobody calling Echo (same_uid only): status %u", r3.status);
  cr_assert_eq(calls_nobody, 1, "handlers ran %u times for nobody (Strict only)",
               calls_nobody);
  cr_assert_eq(echo_root, ACKRPC_OK, "root calling Echo: %s", ackrpc_status_name(echo_root));
  cr_assert_eq(strict_root, ACKRPC_PERMISSION_DENIED, "root calling Strict: %s",
               ackrpc_status_name(strict_root));
}
