/* test_ops_takeover.c: zero-downtime restarts (src/platform/handover.c): a server
 * started with `handover` takes the listening socket over from the one
 * running, which stops accepting and drains, while a client keeps calling:
 * no call fails, and none needs a retry (the client has no retry policy).
 * Also: a bad control request leaves the running server serving, a
 * handover server with no predecessor binds as usual, and a successor never
 * takes over a listener whose socket file was removed or replaced (nobody
 * could reach it), whether the predecessor notices or not. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ackrpc/reflection.pb-c.h"
#include "fixture.h"

FX_SUITE(ops_takeover);

#define LOOP_MAX_CALLS 200000
#define LOOP_MAX_MS 30000

typedef struct loop {
  const char *address;
  atomic_int stop;
  atomic_uint ok, failed;
  ackrpc_status first_error;
  pthread_t thr;
} loop;

/* Calls Echo back to back, one connection per call, until told to stop
 * (bounded in calls and time). No assertion here: another thread. */
static void *loop_main(void *arg) {
  loop *l = arg;
  ackrpc_client *c = NULL;
  ackrpc_client_options co = {.address = l->address, .timeout_ms = 10000};
  if (ackrpc_client_new(&co, &c) != ACKRPC_OK) {
    atomic_fetch_add(&l->failed, 1);
    return NULL;
  }
  uint64_t end = fx_now_us() + (uint64_t)LOOP_MAX_MS * 1000u;
  for (unsigned i = 0;
       i < LOOP_MAX_CALLS && !atomic_load(&l->stop) && fx_now_us() < end; i++) {
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    req.text = "through the restart";
    ackrpc_result res = {0};
    ackrpc_status st = fx_echo(c, &req, NULL, &res);
    ackrpc_result_clear(&res);
    if (st == ACKRPC_OK) {
      atomic_fetch_add(&l->ok, 1);
    } else {
      if (!atomic_load(&l->failed)) l->first_error = st;
      atomic_fetch_add(&l->failed, 1);
    }
  }
  ackrpc_client_free(c);
  return NULL;
}

static void wait_calls(loop *l, unsigned more) {
  unsigned target = atomic_load(&l->ok) + more;
  uint64_t end = fx_now_us() + 10 * fx_slack_us();
  while (atomic_load(&l->ok) < target && fx_now_us() < end)
    fx_sleep_ms(1);
  cr_assert_geq(atomic_load(&l->ok), target, "the call loop stalled");
}

static uint64_t echo_calls_on(const char *address) {
  static const ackrpc_method m_stats = {"ackrpc.reflection.Stats/Get",
                                        &ackrpc__reflection__stats_request__descriptor,
                                        &ackrpc__reflection__stats_reply__descriptor};
  ackrpc_client *c = fx_client(address, 5000);
  Ackrpc__Reflection__StatsRequest req = ACKRPC__REFLECTION__STATS_REQUEST__INIT;
  ackrpc_result res = {0};
  cr_assert_eq(ackrpc_client_call(c, &m_stats, &req.base, NULL, &res), ACKRPC_OK);
  const Ackrpc__Reflection__StatsReply *r =
      (const Ackrpc__Reflection__StatsReply *)res.reply;
  uint64_t n = 0;
  for (size_t i = 0; i < r->n_methods; i++)
    if (strcmp(r->methods[i]->method, FX_ECHO) == 0) n = r->methods[i]->calls;
  ackrpc_result_clear(&res);
  return n;
}

static void restart_under_load(const char *address) {
  ackrpc_server_options o = {
      .address = address, .handover = 1, .drain_timeout_ms = 5000};
  fx_server *a = fx_server_start(&o);
  loop l = {.address = address};
  cr_assert_eq(pthread_create(&l.thr, NULL, loop_main, &l), 0);
  wait_calls(&l, 50);

  /* B takes over from A: A's ackrpc_server_run() returns once drained. */
  fx_server *b = fx_server_start(&o);
  cr_assert_eq(fx_server_join(a, 5000 + (uint32_t)(fx_slack_us() / 1000)), ACKRPC_OK);
  fx_server_free(a);
  wait_calls(&l, 50);
  /* And C from B: the control socket moved on with the listening one. */
  fx_server *c = fx_server_start(&o);
  cr_assert_eq(fx_server_join(b, 5000 + (uint32_t)(fx_slack_us() / 1000)), ACKRPC_OK);
  fx_server_free(b);
  wait_calls(&l, 50);
  atomic_store(&l.stop, 1);
  pthread_join(l.thr, NULL);
  cr_assert_eq(atomic_load(&l.failed), 0, "%u call(s) failed, the first with %s",
               atomic_load(&l.failed), ackrpc_status_name(l.first_error));
  cr_assert_geq(atomic_load(&l.ok), 150);
  cr_assert_gt(echo_calls_on(address), 0, "the last server served calls");
  fx_server_stop(c);
}

FX_TEST(ops_takeover, restart_refuses_no_call_path) {
  restart_under_load(fx_sock());
  struct stat st;
  cr_assert_neq(lstat(fx_path("s.sock.ctl"), &st), 0, "the control socket is removed");
  cr_assert_neq(lstat(fx_path("s.sock.lock"), &st), 0, "the lock file is removed");
}

FX_TEST(ops_takeover, restart_refuses_no_call_abstract) {
  restart_under_load(fx_abstract());
}

FX_TEST(ops_takeover, bad_control_request_changes_nothing) {
  ackrpc_server_options o = {
      .address = fx_sock(), .handover = 1, .log = ackrpc_log_discard};
  fx_server *a = fx_server_start(&o);
  char ctl[512];
  snprintf(ctl, sizeof ctl, "%s.ctl", fx_sock());
  /* Garbage, then a peer that says nothing and leaves. */
  int fd = fx_raw_connect(ctl);
  cr_assert_geq(fd, 0);
  cr_assert_eq(fx_raw_send(fd, "NOTTAKE!", 8), 0);
  size_t got;
  int eof;
  uint8_t *buf = fx_raw_read_all(fd, 5000, &got, &eof);
  (void)buf;
  cr_assert(eof);
  cr_assert_eq(got, 0, "no descriptors, no reply");
  close(fd);
  fd = fx_raw_connect(ctl);
  cr_assert_geq(fd, 0);
  close(fd);
  fx_sleep_ms(50);
  /* Still serving, and still offering the socket: a real successor gets
   * it. */
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result res = {0};
  cr_assert_eq(fx_echo(c, &req, NULL, &res), ACKRPC_OK);
  ackrpc_result_clear(&res);
  fx_server *b = fx_server_start(&o);
  cr_assert_eq(fx_server_join(a, 10000), ACKRPC_OK);
  fx_server_free(a);
  cr_assert_eq(fx_echo(c, &req, NULL, &res), ACKRPC_OK);
  ackrpc_result_clear(&res);
  fx_server_stop(b);
}

/* The handover exchange runs on the server's loop: a successor that asks,
 * gets the descriptors and then never acknowledges must not hold up the
 * calls meanwhile (a blocking exchange stalled the loop for up to 3 s a
 * step, so these calls, each with 1.5 s to live, failed). */
FX_TEST(ops_takeover, stalled_successor_does_not_stall_calls) {
  ackrpc_server_options o = {
      .address = fx_sock(), .handover = 1, .log = ackrpc_log_discard};
  fx_server *a = fx_server_start(&o);
  char ctl[512];
  snprintf(ctl, sizeof ctl, "%s.ctl", fx_sock());
  int fd = fx_raw_connect(ctl);
  cr_assert_geq(fd, 0);
  cr_assert_eq(fx_raw_send(fd, "AKTAKE01", 8), 0);
  int quiet = fx_raw_connect(ctl); /* and one that says nothing at all */
  cr_assert_geq(quiet, 0);
  fx_sleep_ms(50);
  ackrpc_client *c = fx_client(fx_sock(), 1500);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "during a stalled handover";
  for (int i = 0; i < 5; i++) {
    ackrpc_result res = {0};
    ackrpc_status st = fx_echo(c, &req, NULL, &res);
    ackrpc_result_clear(&res);
    cr_assert_eq(st, ACKRPC_OK, "call %d during the stalled handover: %s", i,
                 ackrpc_status_name(st));
  }
  close(fd);
  close(quiet);
  /* The offer still stands: a real successor takes the socket. */
  fx_server *b = fx_server_start(&o);
  cr_assert_eq(fx_server_join(a, 10000), ACKRPC_OK);
  fx_server_free(a);
  ackrpc_result res = {0};
  cr_assert_eq(fx_echo(c, &req, NULL, &res), ACKRPC_OK);
  ackrpc_result_clear(&res);
  fx_server_stop(b);
}

FX_TEST(ops_takeover, without_handover_a_second_server_is_refused) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server *a = fx_server_start(&o);
  ackrpc_server *s = NULL;
  ackrpc_server_options o2 = {
      .address = fx_sock(), .handover = 1, .log = ackrpc_log_discard};
  /* A does not offer its socket: B binds as usual and finds it in use. */
  cr_assert_eq(ackrpc_server_new(&o2, &s), ACKRPC_E_ADDR_IN_USE);
  cr_assert_null(s);
  fx_server_stop(a);
}

/* --- a socket file that is gone (issue 11, item 8) ----------------------- */

static char successor_log[1024];

static void capture(void *user, ackrpc_log_level level, const char *message) {
  (void)user;
  (void)level;
  size_t n = strlen(successor_log);
  snprintf(successor_log + n, sizeof successor_log - n, "%s\n", message);
}

/* Starts a handover successor on `address`; returns its status (a server
 * that starts is freed at once: it should not have). */
static ackrpc_status start_successor(const char *address) {
  successor_log[0] = 0;
  ackrpc_server_options o = {.address = address, .handover = 1, .log = capture};
  ackrpc_server *s = NULL;
  ackrpc_status st = ackrpc_server_new(&o, &s);
  if (st == ACKRPC_OK) ackrpc_server_free(s);
  return st;
}

static int exists(const char *p) {
  struct stat st;
  return lstat(p, &st) == 0;
}

static int bound_socket(const char *path, int backlog) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(fd, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  cr_assert_lt(strlen(path), sizeof sa.sun_path);
  strcpy(sa.sun_path, path);
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0, "bind %s", path);
  if (backlog) cr_assert_eq(listen(fd, backlog), 0);
  return fd;
}

/* `rm S` (or S replaced) under a running server: nobody can reach its
 * listener any more, so a successor must not take it over and report
 * success while the predecessor leaves (clients would get E_CONNECT until a
 * plain restart). The successor is refused and says why; the predecessor
 * keeps serving and offering; at stop it leaves a replacement alone; then a
 * plain start serves the path again. */
FX_TEST(ops_takeover, successor_refuses_a_listener_whose_file_is_gone) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock, .handover = 1, .log = ackrpc_log_discard};
  fx_server *a = fx_server_start(&o);
  ackrpc_client *c = fx_client(sock, 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result res = {0};
  cr_assert_eq(unlink(sock), 0);

  ackrpc_status st = start_successor(sock);
  cr_assert_eq(st, ACKRPC_E_ADDRESS, "successor with the socket file gone: %s",
               ackrpc_status_name(st));
  cr_assert_not_null(strstr(successor_log, "restart without handover"),
                     "the successor does not say why: %s", successor_log);
  cr_assert(exists(fx_path("s.sock.ctl")), "the predecessor stopped offering");
  cr_assert(!exists(sock), "the refused successor created a socket file");

  /* Replaced by another socket: refused the same way. */
  int other = bound_socket(sock, 0);
  struct stat before;
  cr_assert_eq(lstat(sock, &before), 0);
  st = start_successor(sock);
  cr_assert_eq(st, ACKRPC_E_ADDRESS, "successor with the socket file replaced: %s",
               ackrpc_status_name(st));
  cr_assert(exists(fx_path("s.sock.ctl")), "the predecessor stopped offering");
  /* The predecessor is still running (its run did not return): the stop
   * below drains it, and it leaves the replacement where it is. */
  fx_server_stop(a);
  struct stat after;
  cr_assert_eq(lstat(sock, &after), 0, "the predecessor removed the replacement");
  cr_assert_eq(after.st_ino, before.st_ino, "the replacement was replaced");
  cr_assert(!exists(fx_path("s.sock.lock")), "the predecessor left its lock");
  close(other);
  unlink(sock);

  /* A plain (handover) start now binds afresh and serves. */
  fx_server *b = fx_server_start(&o);
  cr_assert_eq(fx_echo(c, &req, NULL, &res), ACKRPC_OK);
  ackrpc_result_clear(&res);
  fx_server_stop(b);
}

/* A predecessor that does not check its own socket file (one built before
 * this check, speaking the same messages): the successor checks the path
 * itself. Played by a thread: a listening socket, PATH.lock locked, and a
 * control socket that answers one request. */
typedef struct old_predecessor {
  int ctl, lst, lock;
  int acked; /* the successor acknowledged: it kept the descriptors */
  pthread_t thr;
} old_predecessor;

static void *old_predecessor_main(void *arg) {
  old_predecessor *p = arg;
  struct pollfd pf = {p->ctl, POLLIN, 0};
  if (poll(&pf, 1, 5000) != 1) return NULL;
  int fd = accept4(p->ctl, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return NULL;
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[8];
  if (recv(fd, buf, 8, MSG_WAITALL) == 8 && memcmp(buf, "AKTAKE01", 8) == 0) {
    int fds[2] = {p->lst, p->lock};
    union {
      struct cmsghdr align;
      char space[CMSG_SPACE(sizeof fds)];
    } u;
    memset(&u, 0, sizeof u);
    struct iovec iov = {.iov_base = "AKFDS001", .iov_len = 8};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = u.space,
                        .msg_controllen = sizeof u.space};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(cm), fds, sizeof fds);
    if (sendmsg(fd, &mh, MSG_NOSIGNAL) == 8)
      p->acked = recv(fd, buf, 8, MSG_WAITALL) == 8 && memcmp(buf, "AKACK001", 8) == 0;
  }
  close(fd);
  return NULL;
}

static void old_predecessor_start(old_predecessor *p, const char *sock) {
  p->lst = bound_socket(sock, 16);
  p->lock = open(fx_path("s.sock.lock"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  cr_assert_geq(p->lock, 0);
  cr_assert_eq(flock(p->lock, LOCK_EX | LOCK_NB), 0);
  p->ctl = bound_socket(fx_path("s.sock.ctl"), 4);
  p->acked = 0;
  cr_assert_eq(pthread_create(&p->thr, NULL, old_predecessor_main, p), 0);
}

static void old_predecessor_end(old_predecessor *p) {
  pthread_join(p->thr, NULL); /* bounded: each wait in it is */
  close(p->ctl);
  close(p->lst);
  close(p->lock);
  unlink(fx_path("s.sock.ctl"));
}

FX_TEST(ops_takeover, successor_checks_the_path_itself) {
  const char *sock = fx_sock();
  old_predecessor p;
  /* Faithful enough: with the file in place, the successor takes over. */
  old_predecessor_start(&p, sock);
  ackrpc_status st = start_successor(sock);
  old_predecessor_end(&p);
  cr_assert_eq(st, ACKRPC_OK, "takeover from the played predecessor: %s (%s)",
               ackrpc_status_name(st), successor_log);
  cr_assert(p.acked, "the successor did not acknowledge");
  cr_assert(!exists(sock) && !exists(fx_path("s.sock.lock")),
            "the successor, freed, left the files it took over");

  /* The socket file removed: the successor refuses and keeps nothing. */
  old_predecessor_start(&p, sock);
  cr_assert_eq(unlink(sock), 0);
  st = start_successor(sock);
  old_predecessor_end(&p);
  cr_assert_eq(st, ACKRPC_E_ADDRESS, "successor with the socket file gone: %s",
               ackrpc_status_name(st));
  cr_assert(!p.acked, "the successor acknowledged a listener nobody can reach");
  cr_assert(!exists(sock), "the refused successor created a socket file");
  unlink(fx_path("s.sock.lock"));
}
