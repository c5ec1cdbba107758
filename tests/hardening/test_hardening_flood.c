/* test_hardening_flood.c: floods a peer can aim at the server's log and at
 * its connection slots (docs/SECURITY.md §2, §5):
 *   - a stderr pipe nobody reads, already full, does not stop the server
 *     (ackrpc_log_stderr never waits);
 *   - floods are counted (the built-in Stats' counters) and logged at most
 *     10 lines a second per kind, with a summary of the lines left out;
 *   - idle connections of a uid at its limit, or at EMFILE, make room for a
 *     working client instead of locking it out.
 * Real servers (in a thread, or a child process), raw sockets. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ackrpc/reflection.pb-c.h"
#include "hardening_support.h"

HS_SUITE(hflood);

/* The server's counters, through the built-in Stats service. */
static Ackrpc__Reflection__Counters counters(const char *sock) {
  return fx_counters(fx_client(sock, 10000));
}

/* `n` connections that each send 12 bytes that are not a frame and close:
 * each is a bad_request the server would log. */
static void bad_frames(const char *sock, int n) {
  static const uint8_t junk[12] = "not a frame";
  for (int i = 0; i < n; i++) {
    int fd = hs_connect(sock);
    cr_assert_geq(fd, 0, "connect #%d: %s", i, strerror(errno));
    cr_assert_eq(hs_send_all(fd, junk, sizeof junk), 0);
    hs_reply r;
    hs_read_reply(fd, 5000, &r);
    int closed = r.closed;
    hs_reply_free(&r);
    close(fd);
    cr_assert(closed, "the server ends a connection that sent junk (#%d)", i);
  }
}

static ackrpc_status echo_with(ackrpc_client *c) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "still here";
  return fx_echo(c, &req, NULL, NULL);
}

static ackrpc_status echo_once(const char *sock, uint32_t timeout_ms) {
  ackrpc_client *c = fx_client(sock, timeout_ms);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "still here";
  return fx_echo(c, &req, NULL, NULL);
}

/* --- the log ------------------------------------------------------------ */

HS_TEST(hflood, full_stderr_pipe_does_not_stop_the_server) {
  const char *sock = fx_sock();
  int p[2];
  cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
  /* Fill the pipe through a file description of our own that does not
   * block: the server's stderr (p[1]) stays a blocking one. */
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
  int filler = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  cr_assert_geq(filler, 0, "reopen the pipe: %s", strerror(errno));
  static char block[4096];
  memset(block, 'x', sizeof block);
  size_t filled = 0;
  for (int i = 0; i < 4096 && write(filler, block, sizeof block) > 0; i++)
    filled += sizeof block;
  cr_assert_eq(errno, EAGAIN, "the pipe is full after %zu bytes", filled);
  close(filler);
  /* The child's stderr is the full pipe; nobody reads it. */
  int saved = dup(STDERR_FILENO);
  cr_assert_geq(saved, 0);
  cr_assert_eq(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
  ackrpc_server_options o = {.address = sock, .log_level = ACKRPC_LOG_INFO};
  ackrpc_status st;
  pid_t pid = hs_server_proc(&o, 0, &st);
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(p[1]);
  cr_assert_eq(st, ACKRPC_OK);
  bad_frames(sock, 50); /* 50 lines to log at INFO, none can be written */
  st = echo_once(sock, 5000);
  cr_assert_eq(st, ACKRPC_OK, "a call after a log flood into a full pipe: %s",
               ackrpc_status_name(st));
  Ackrpc__Reflection__Counters k = counters(sock);
  cr_assert_eq(k.bad_requests, 50);
  cr_assert_geq(k.log_dropped, 1, "the lines that could not be written are counted");
  int ws = hs_server_proc_stop(pid, 10000); /* asserts the exit */
  cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "clean exit (status %#x)", ws);
  close(p[0]);
}

/* A log sink that keeps the lines of one test (called on the loop's
 * thread, read by the test's). */
static struct {
  pthread_mutex_t mu;
  char lines[256][160];
  size_t n, total;
} sink = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void keep_line(void *user, ackrpc_log_level level, const char *message) {
  (void)user;
  (void)level;
  pthread_mutex_lock(&sink.mu);
  if (sink.n < 256) snprintf(sink.lines[sink.n++], sizeof sink.lines[0], "%s", message);
  sink.total++;
  pthread_mutex_unlock(&sink.mu);
}

static size_t lines_with(const char *needle) {
  size_t n = 0;
  pthread_mutex_lock(&sink.mu);
  for (size_t i = 0; i < sink.n; i++)
    n += strstr(sink.lines[i], needle) != NULL;
  pthread_mutex_unlock(&sink.mu);
  return n;
}

HS_TEST(hflood, floods_are_counted_and_logged_at_a_bounded_rate) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {
      .address = sock, .log = keep_line, .log_level = ACKRPC_LOG_INFO};
  hs_server_start(&o);
  uint64_t t0 = fx_now_us();
  int n = hs_slow() ? 100 : 400;
  bad_frames(sock, n);
  double secs = (double)(fx_now_us() - t0) / 1e6;
  size_t logged = lines_with("event=bad_request");
  /* 10 a second per kind, in calendar seconds: the flood spans at most
   * ceil(secs) + 1 of them. */
  size_t bound = 10 * ((size_t)secs + 2);
  cr_assert_leq(logged, bound, "%zu bad_request lines for %d bad frames in %.2f s",
                logged, n, secs);
  cr_assert_geq(logged, 1, "the first ones are logged");
  Ackrpc__Reflection__Counters k = counters(sock);
  cr_assert_eq(k.bad_requests, (uint64_t)n, "every bad frame is counted");
  cr_assert_eq(k.log_suppressed, (uint64_t)n - logged,
               "the rest are counted as left out");
  /* In a later second, the next line of the kind says how many were left
   * out. */
  fx_sleep_ms(1100);
  bad_frames(sock, 1);
  cr_assert_geq(lines_with("event=log_suppressed kind=bad_request lines="), 1,
                "a summary of the lines left out");
}

/* --- connection slots --------------------------------------------------- */

HS_TEST(hflood, idle_flood_of_a_uid_does_not_lock_out_its_working_client) {
  const char *sock = fx_sock();
  int idle_n = hs_slow() ? 300 : 1000;
  hs_raise_nofile((rlim_t)idle_n + 200);
  ackrpc_server_options o = {
      .address = sock, .read_timeout_ms = 60000, .log = ackrpc_log_discard};
  hs_server_start(&o);
  int *fds = malloc((size_t)idle_n * sizeof *fds);
  cr_assert_not_null(fds);
  for (int i = 0; i < idle_n; i++) {
    fds[i] = hs_connect(sock);
    cr_assert_geq(fds[i], 0, "idle connection #%d: %s", i, strerror(errno));
  }
  fx_sleep_ms(300); /* all accepted (or refused), and old enough to drop */
  int calls = hs_slow() ? 20 : 200;
  ackrpc_client *c = fx_client(sock, 5000);
  uint64_t t0 = fx_now_us();
  for (int i = 0; i < calls; i++) {
    ackrpc_status st = echo_with(c);
    cr_assert_eq(st, ACKRPC_OK, "call %d beside %d idle connections of its uid: %s", i,
                 idle_n, ackrpc_status_name(st));
  }
  double secs = (double)(fx_now_us() - t0) / 1e6;
  cr_log_info("%d calls in %.3f s (%.0f calls/s) beside %d idle connections", calls,
              secs, calls / secs, idle_n);
  Ackrpc__Reflection__Counters k = counters(sock);
  /* Past the uid's 256, each idle connection dropped an older one, and the
   * first call one more; none was refused for the uid's limit (none of its
   * connections was busy). */
  cr_assert_geq(k.evicted, (uint64_t)idle_n - 256 + 1, "%lu evicted",
                (unsigned long)k.evicted);
  cr_assert_eq(k.uid_limit, 0);
  for (int i = 0; i < idle_n; i++)
    close(fds[i]);
  free(fds);
}

HS_TEST(hflood, out_of_descriptors_an_idle_connection_makes_room) {
  const char *sock = fx_sock();
  hs_raise_nofile(1024);
  ackrpc_server_options o = {
      .address = sock, .read_timeout_ms = 60000, .log = ackrpc_log_discard};
  ackrpc_status st;
  pid_t pid = hs_server_proc(&o, 64, &st); /* RLIMIT_NOFILE 64 */
  cr_assert_eq(st, ACKRPC_OK);
  enum { IDLE = 200 };
  int fds[IDLE];
  for (int i = 0; i < IDLE; i++) {
    fds[i] = hs_connect(sock);
    cr_assert_geq(fds[i], 0, "idle connection #%d: %s", i, strerror(errno));
  }
  fx_sleep_ms(300);
  st = echo_once(sock, 3000);
  cr_assert_eq(st, ACKRPC_OK, "a call with the server out of descriptors: %s",
               ackrpc_status_name(st));
  /* The oldest idle connection was the one dropped. */
  hs_reply r;
  hs_read_reply(fds[0], 3000, &r);
  int got = r.got, closed = r.closed;
  uint32_t status = r.status;
  hs_reply_free(&r);
  cr_assert(got && status == ACKRPC_RESOURCE_EXHAUSTED && closed,
            "the oldest idle connection: got %d status %u closed %d", got, status,
            closed);
  for (int i = 0; i < IDLE; i++)
    close(fds[i]);
  hs_server_proc_stop(pid, 10000);
}
