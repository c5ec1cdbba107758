/* test_hardening_limits.c: the connection limits of docs/SECURITY.md that
 * the other hardening tests raise out of the way: at max_connections_per_uid
 * a uid's oldest idle connection makes room for its new one, and a new one
 * is answered RESOURCE_EXHAUSTED only when all are busy; max_pending
 * drops the connection that has waited longest for its request so that a
 * real call gets through. Server in a thread, raw sockets. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hardening_support.h"

HS_SUITE(hlimits);

HS_TEST(hlimits, per_uid_limit_drops_the_uids_idle_connection_first) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {
      .address = sock, .max_connections_per_uid = 3, .log = ackrpc_log_discard};
  hs_server_start(&o);
  int fds[3];
  for (int i = 0; i < 3; i++) {
    fds[i] = hs_connect(sock);
    cr_assert_geq(fds[i], 0);
  }
  fx_sleep_ms(150); /* accepted, and old enough to be dropped */
  /* A 4th connection of the uid: its oldest idle one makes room. */
  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK,
               "a working call of a uid whose 3 connections (limit 3) are idle");
  hs_reply r;
  hs_read_reply(fds[0], 5000, &r);
  int got = r.got, closed = r.closed;
  uint32_t st = r.status;
  hs_reply_free(&r);
  cr_assert(got && st == ACKRPC_RESOURCE_EXHAUSTED && closed,
            "the uid's oldest idle connection was dropped: got %d status %u closed %d",
            got, st, closed);
  close(fds[0]);
  /* Three calls that keep their connections busy: a 4th connection of
   * the uid has nothing to drop and is refused. */
  fx_sleep_ms(100);
  close(fds[1]);
  close(fds[2]);
  fx_sleep_ms(100);
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  fx_bg_call *bg[3];
  for (int i = 0; i < 3; i++)
    bg[i] = fx_bg_echo(c, &req, 10000);
  cr_assert_eq(fx_held_wait(3, 5000), 3);
  int extra = hs_connect(sock);
  cr_assert_geq(extra, 0);
  hs_read_reply(extra, 5000, &r);
  close(extra);
  got = r.got;
  closed = r.closed;
  st = r.status;
  hs_reply_free(&r);
  cr_assert(
      got && st == ACKRPC_RESOURCE_EXHAUSTED && closed,
      "a 4th connection of one uid (limit 3, all busy): got %d status %u closed %d",
      got, st, closed);
  /* Held calls are numbered in arrival order, not in bg[] order: answer
   * all, then join all. */
  for (int i = 0; i < 3; i++)
    cr_assert_eq(fx_held_reply((size_t)i, ACKRPC_OK, NULL), ACKRPC_OK);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(fx_bg_join(bg[i], 5000, NULL), ACKRPC_OK, "held call %d", i);
}

/* Opens n idle connections (nothing sent), in a definite order. */
static void open_idle(const char *sock, int *fds, int n) {
  for (int i = 0; i < n; i++) {
    fds[i] = hs_connect(sock);
    cr_assert_geq(fds[i], 0, "connect: %s", strerror(errno));
    fx_sleep_ms(20);
  }
}

/* The idle connection `fd` was dropped with RESOURCE_EXHAUSTED. */
static void assert_evicted(int fd, const char *what) {
  hs_reply r;
  hs_read_reply(fd, 5000, &r);
  int got = r.got, closed = r.closed;
  uint32_t status = r.status;
  hs_reply_free(&r);
  cr_assert(got && status == ACKRPC_RESOURCE_EXHAUSTED && closed,
            "%s: got %d status %u closed %d", what, got, status, closed);
}

static int still_open(int fd) {
  hs_reply r;
  hs_read_reply(fd, 100, &r);
  int open = !r.closed && !r.len;
  hs_reply_free(&r);
  return open;
}

HS_TEST(hlimits, max_pending_evicts_the_oldest_idle_connection) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {
      .address = sock, .max_pending = 4, .log = ackrpc_log_discard};
  hs_server_start(&o);
  int fds[5];
  open_idle(sock, fds, 5);
  assert_evicted(fds[0], "the oldest of 5 idle connections (max_pending 4)");
  for (int i = 1; i < 5; i++)
    cr_assert(still_open(fds[i]), "idle connection #%d was dropped too", i);
  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK);
  for (int i = 0; i < 5; i++)
    close(fds[i]);
}

HS_TEST(hlimits, max_connections_full_of_idle_peers_admits_a_real_call) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock,
                             .max_connections = 4,
                             .read_timeout_ms = 30000,
                             .log = ackrpc_log_discard};
  hs_server_start(&o);
  int fds[4];
  open_idle(sock, fds, 4);
  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  uint64_t t0 = fx_now_us();
  ackrpc_status st = fx_echo(c, &req, NULL, NULL);
  uint64_t dt = fx_now_us() - t0;
  cr_assert_eq(st, ACKRPC_OK, "a real call behind 4 idle connections (max 4): %s",
               ackrpc_status_name(st));
  cr_assert_lt(dt, 5000000u, "the call waited %.1f ms (for a read deadline?)",
               (double)dt / 1000.0);
  assert_evicted(fds[0], "the oldest idle connection at max_connections");
  for (int i = 0; i < 4; i++)
    close(fds[i]);
}
