/* test_hardening_memory.c: what calls may hold (docs/SECURITY.md §2, the
 * memory account):
 *   - calls a connection leaves with their handler (its deadline passed)
 *     are limited per connection, calls in progress per uid;
 *   - unknown fields of a request are dropped before the handler runs, so a
 *     padded request held by its handler keeps only what the server knows;
 *   - with them kept, the per-uid budget refuses new work while the calls
 *     already admitted are answered as promised.
 * Real servers in a thread, the fixture's Echo handler (mode HOLD parks a
 * call for the test), raw sessions and real clients. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ackrpc/reflection.pb-c.h"
#include "hardening_support.h"

HS_SUITE(hmemory);

/* Waits (bounded) until the server holds at most `n` calls in progress
 * besides the Stats call asking. */
static void wait_calls_at_most(ackrpc_client *c, uint64_t n) {
  uint64_t end = fx_now_us() + fx_slack_us() * 5;
  while (fx_counters(c).calls_in_progress > n + 1) {
    cr_assert_lt(fx_now_us(), end, "calls in progress did not drop to %lu",
                 (unsigned long)n);
    fx_sleep_ms(10);
  }
}

/* One call on a raw session: sends a request frame, reads one reply. */
static uint32_t session_call(int fd, const Ackrpc__Test__EchoRequest *req,
                             uint64_t timeout_us, char *msg, size_t msg_cap) {
  uint8_t *frame;
  size_t n = fx_frame_request(&frame, FX_ECHO, timeout_us, NULL, 0, &req->base);
  cr_assert_eq(hs_send_all(fd, frame, n), 0); /* the fixture frees the frame */
  uint8_t buf[4096];
  size_t len = 0;
  uint64_t end = fx_now_us() + fx_slack_us() * 5;
  for (;;) {
    uint32_t status;
    char *m = NULL;
    if (fx_parse_reply(buf, len, &status, &m, NULL, NULL)) {
      snprintf(msg, msg_cap, "%s", m ? m : "");
      free(m);
      return status;
    }
    cr_assert_lt(fx_now_us(), end, "no reply on the session");
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t r = read(fd, buf + len, sizeof buf - len);
    cr_assert_gt(r, 0, "the session ended: %s", r < 0 ? strerror(errno) : "EOF");
    len += (size_t)r;
  }
}

HS_TEST(hmemory, calls_left_behind_are_limited_per_connection) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {
      .address = sock, .max_calls_per_connection = 4, .log = ackrpc_log_discard};
  hs_server_start(&o);
  ackrpc_client *c = fx_client(sock, 10000);
  int fd = hs_connect(sock);
  cr_assert_geq(fd, 0);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  char msg[256];
  /* Deadline 1 ms: the server answers DEADLINE_EXCEEDED and leaves each
   * call with its handler. */
  for (int i = 0; i < 4; i++) {
    uint32_t st = session_call(fd, &req, 1000, msg, sizeof msg);
    cr_assert_eq(st, ACKRPC_DEADLINE_EXCEEDED, "call %d: %u %s", i, st, msg);
  }
  cr_assert_eq(fx_held_wait(4, 2000), 4);
  uint32_t st = session_call(fd, &req, 1000, msg, sizeof msg);
  cr_assert_eq(st, ACKRPC_RESOURCE_EXHAUSTED, "a 5th call left behind: %u %s", st, msg);
  cr_assert(strstr(msg, "too many calls in progress"), "%s", msg);
  cr_assert_eq(fx_held_wait(5, 200), 4, "the refused call never reached its handler");
  Ackrpc__Reflection__Counters k = fx_counters(c);
  cr_assert_eq(k.call_limit, 1);
  cr_assert_geq(k.calls_in_progress, 4);
  /* The handler lets them go: the session may call again. */
  for (size_t i = 0; i < 4; i++)
    cr_assert_eq(fx_held_reply(i, ACKRPC_OK, NULL), ACKRPC_E_ALREADY_ANSWERED);
  wait_calls_at_most(c, 0);
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE;
  st = session_call(fd, &req, 1000000, msg, sizeof msg);
  cr_assert_eq(st, ACKRPC_OK, "after the held calls ended: %u %s", st, msg);
  close(fd);
}

HS_TEST(hmemory, calls_in_progress_are_limited_per_uid) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {
      .address = sock, .max_calls_per_uid = 3, .log = ackrpc_log_discard};
  hs_server_start(&o);
  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  fx_bg_call *bg[3];
  for (int i = 0; i < 3; i++)
    bg[i] = fx_bg_echo(c, &req, 10000);
  cr_assert_eq(fx_held_wait(3, 5000), 3);
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE;
  ackrpc_status st = fx_echo(c, &req, NULL, NULL);
  cr_assert_eq(st, ACKRPC_RESOURCE_EXHAUSTED, "a 4th call of the uid: %s",
               ackrpc_status_name(st));
  /* The calls admitted keep their promise. */
  /* Held calls are numbered in arrival order, not in bg[] order: answer
   * all, then join all. */
  for (int i = 0; i < 3; i++)
    cr_assert_eq(fx_held_reply((size_t)i, ACKRPC_OK, NULL), ACKRPC_OK);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(fx_bg_join(bg[i], 5000, NULL), ACKRPC_OK, "held call %d", i);
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK, "a call once they ended");
}

/* An EchoRequest in HOLD mode padded with an unknown field (number 1000)
 * of `pad` bytes; `store` holds the field's bytes (freed by the caller). */
static void padded(Ackrpc__Test__EchoRequest *req, ProtobufCMessageUnknownField *uf,
                   uint8_t **store, size_t pad) {
  ackrpc__test__echo_request__init(req);
  req->mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  uint8_t *b = malloc(pad + 10);
  cr_assert_not_null(b);
  size_t n = 0;
  size_t v = pad;
  for (; v >= 0x80; v >>= 7)
    b[n++] = (uint8_t)(v | 0x80);
  b[n++] = (uint8_t)v;
  memset(b + n, 'p', pad);
  *uf =
      (ProtobufCMessageUnknownField){.tag = 1000,
                                     .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                                     .len = n + pad,
                                     .data = b};
  req->base.n_unknown_fields = 1;
  req->base.unknown_fields = uf;
  *store = b;
}

/* Four padded calls (1 MiB each) parked at once under a 4 MiB budget per
 * uid; returns how many were admitted (the others must be refused
 * RESOURCE_EXHAUSTED), and the server's memory while they are held. */
static size_t park_padded(int keep_unknown, uint64_t *ret_memory) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock,
                             .max_request_size = 2u << 20,
                             .max_memory_per_connection = 4u << 20,
                             .max_memory_per_uid = 4u << 20,
                             .keep_unknown_fields = keep_unknown,
                             .log = ackrpc_log_discard};
  hs_server_start(&o);
  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Test__EchoRequest req;
  ProtobufCMessageUnknownField uf;
  uint8_t *pad;
  padded(&req, &uf, &pad, 1u << 20);
  fx_bg_call *bg[4];
  size_t held = 0;
  for (int i = 0; i < 4; i++) {
    bg[i] = fx_bg_echo(c, &req, 10000);
    /* One at a time: each is parked or refused before the next. */
    uint64_t end = fx_now_us() + fx_slack_us() * 5;
    for (;;) {
      held = fx_held_wait((size_t)i + 1, 20);
      size_t done = 0;
      for (int k = 0; k <= i; k++)
        done += fx_bg_done(bg[k]) != 0;
      if (held + done == (size_t)i + 1) break;
      cr_assert_lt(fx_now_us(), end, "padded call %d neither parked nor refused", i);
    }
  }
  *ret_memory = fx_counters(c).memory_bytes;
  int refused = 0, was_refused[4] = {0};
  for (int i = 0; i < 4; i++)
    if (fx_bg_done(bg[i])) {
      was_refused[i] = 1;
      ackrpc_status st = fx_bg_join(bg[i], 1000, NULL);
      cr_assert_eq(st, ACKRPC_RESOURCE_EXHAUSTED, "call %d: %s", i,
                   ackrpc_status_name(st));
      refused++;
    }
  cr_assert_eq(held + (size_t)refused, 4, "%zu held, %d refused", held, refused);
  /* Those admitted are answered as promised. */
  for (size_t i = 0; i < held; i++)
    cr_assert_eq(fx_held_reply(i, ACKRPC_OK, NULL), ACKRPC_OK);
  for (int i = 0; i < 4; i++)
    if (!was_refused[i])
      cr_assert_eq(fx_bg_join(bg[i], 5000, NULL), ACKRPC_OK, "held call %d", i);
  Ackrpc__Reflection__Counters k = fx_counters(c);
  cr_assert_eq(k.over_budget, (uint64_t)refused);
  /* Once they are answered, the memory is free again. */
  wait_calls_at_most(c, 0);
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE;
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK, "a padded call afterwards");
  free(pad);
  return held;
}

HS_TEST(hmemory, unknown_fields_are_dropped_before_the_handler_holds_them) {
  uint64_t mem;
  size_t held = park_padded(0, &mem);
  cr_assert_eq(held, 4, "4 padded calls fit in 4 MiB once their padding is dropped");
  /* Each holds a small decoded request: not the padding, nor its 1 MiB
   * frame (the input buffer of a waiting call goes back). */
  cr_assert_lt(mem, (uint64_t)(1u << 20), "memory held: %lu", (unsigned long)mem);
}

HS_TEST(hmemory, memory_budget_refuses_new_work_and_keeps_the_old) {
  uint64_t mem;
  size_t held = park_padded(1, &mem);
  cr_assert_geq(held, 1);
  cr_assert_lt(held, 4, "with the padding kept, 4 calls do not fit in 4 MiB");
  cr_assert_leq(mem, (uint64_t)(4u << 20) + (256u << 10), "memory held: %lu",
                (unsigned long)mem);
}

HS_TEST(hmemory, announced_body_is_not_buffered_before_its_head_is_admitted) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {
      .address = sock, .read_timeout_ms = 30000, .log = ackrpc_log_discard};
  hs_server_start(&o);
  ackrpc_client *c = fx_client(sock, 10000);
  /* Prefixes that announce a 100-byte head and a 4 MiB body, and no more:
   * the server may read the head, not make room for the body yet. */
  enum { N = 20 };
  uint8_t prefix[12] = {'A', 'K', 1, 1};
  uint32_t head_len = 100, body_len = (4u << 20) - 200;
  memcpy(prefix + 4, &head_len, 4); /* little-endian on every Linux we run */
  memcpy(prefix + 8, &body_len, 4);
  int fds[N];
  for (int i = 0; i < N; i++) {
    fds[i] = hs_connect(sock);
    cr_assert_geq(fds[i], 0);
    cr_assert_eq(hs_send_all(fds[i], prefix, sizeof prefix), 0);
  }
  fx_sleep_ms(200);
  uint64_t mem = fx_counters(c).memory_bytes;
  cr_assert_lt(mem, (uint64_t)N * (128u << 10),
               "%d connections that sent a prefix hold %lu bytes", N,
               (unsigned long)mem);
  for (int i = 0; i < N; i++)
    close(fds[i]);
}
