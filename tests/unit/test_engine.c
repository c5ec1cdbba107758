/* test_engine.c: the client's protocol engine (src/client/engine.c) with no
 * socket at all: bytes and events go in, outcomes come out. Each test
 * plays one way a call can end and checks the status the engine decides,
 * and what it does with the connection and the other calls. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "client/engine.h"
#include "fixture.h"

#define T0 1000000000ull /* the engine's clock in these tests */
#define FD 42            /* a connection's descriptor, never used for I/O */

typedef struct tcall {
  akr_ccall c;
  struct iovec iov;
  uint8_t frame[64];
  ackrpc_result r;
} tcall;

static akr_address addr;

static void link_new(akr_link *l, akr_link_mode mode) {
  cr_assert_eq(akr_address_parse("/tmp/engine-test.sock", &addr), ACKRPC_OK);
  akr_link_init(l, &addr, 4096, mode, NULL, 0);
}

/* A call whose request frame is `len` bytes (their content does not matter
 * to the engine), due at T0 + deadline_ms. */
static void call_new(tcall *t, size_t len, uint32_t deadline_ms) {
  memset(t, 0, sizeof *t);
  memset(t->frame, 'q', sizeof t->frame);
  t->iov = (struct iovec){.iov_base = t->frame, .iov_len = len};
  t->c = (akr_ccall){.iov = &t->iov,
                     .n_iov = 1,
                     .len = len,
                     .deadline_us = T0 + (uint64_t)deadline_ms * 1000u,
                     .timeout_ms = deadline_ms,
                     .reply_desc = NULL,
                     .result = &t->r};
}

/* Sends everything the engine has to send. */
static void send_all(akr_link *l) {
  struct iovec iov[8];
  size_t n, bytes = 0;
  while ((n = akr_link_output(l, iov, 8)) != 0) {
    for (size_t i = 0; i < n; i++)
      bytes += iov[i].iov_len;
    akr_link_wrote(l, bytes);
    bytes = 0;
  }
}

/* Feeds bytes as the server's. */
static void receive(akr_link *l, const void *bytes, size_t len) {
  while (len) {
    uint8_t *buf;
    size_t room;
    cr_assert_eq(akr_link_input(l, &buf, &room), 0);
    size_t n = len < room ? len : room;
    memcpy(buf, bytes, n);
    akr_link_read(l, n);
    bytes = (const uint8_t *)bytes + n;
    len -= n;
  }
}

static void receive_reply(akr_link *l, ackrpc_status status) {
  uint8_t *frame;
  size_t n = fx_frame_reply(&frame, status, status ? "no" : NULL, NULL);
  receive(l, frame, n);
  free(frame);
}

static void done(tcall *t) {
  ackrpc_result_clear(&t->r);
}

Test(engine, reply_completes_the_call_with_the_servers_status) {
  akr_link l;
  link_new(&l, AKR_LINK_ONE_SHOT);
  tcall a;
  call_new(&a, 40, 1000);
  akr_link_push(&l, &a.c);
  int ev;
  uint64_t until;
  cr_assert_eq(akr_link_wait(&l, T0, &ev, &until), AKR_WAIT_CONNECT);
  akr_link_connected(&l, FD);
  send_all(&l);
  cr_assert(akr_link_wants_shut(&l), "a one-shot link half-closes after its frame");
  l.shut = 1;
  cr_assert_eq(akr_link_wait(&l, T0, &ev, &until), AKR_WAIT_IO);
  cr_assert_eq(ev, AKR_EV_READ);
  cr_assert_eq(until, a.c.deadline_us);
  receive_reply(&l, ACKRPC_NOT_FOUND);
  cr_assert(a.c.completed && a.c.released);
  cr_assert_eq(a.r.status, ACKRPC_NOT_FOUND);
  cr_assert_str_eq(a.r.message, "no");
  cr_assert_eq(akr_link_pop(&l), &a.c);
  cr_assert_eq(akr_link_wait(&l, T0, &ev, &until), AKR_WAIT_NONE);
  done(&a);
  akr_link_free(&l);
}

Test(engine, malformed_reply_is_bad_reply_and_drops_the_connection) {
  akr_link l;
  link_new(&l, AKR_LINK_PIPELINE);
  tcall a, b, c;
  call_new(&a, 30, 1000);
  call_new(&b, 30, 1000);
  call_new(&c, 30, 1000);
  akr_link_push(&l, &a.c);
  akr_link_push(&l, &b.c);
  akr_link_connected(&l, FD);
  send_all(&l);
  akr_link_push(&l, &c.c); /* queued, not started */
  receive(&l, "garbage, not a frame", 20);
  cr_assert_eq(a.r.status, ACKRPC_E_BAD_REPLY, "%s", ackrpc_status_name(a.r.status));
  cr_assert(akr_link_wants_drop(&l), "a broken reply stream must be dropped");
  akr_link_closed(&l, 0);
  cr_assert_eq(b.r.status, ACKRPC_E_NO_ACK, "sent, then the connection went: no ack");
  cr_assert(!c.c.completed, "a call not started goes out on the next connection");
  int ev;
  uint64_t until;
  cr_assert_eq(akr_link_wait(&l, T0, &ev, &until), AKR_WAIT_CONNECT);
  done(&a);
  done(&b);
  done(&c);
  akr_link_free(&l);
}

Test(engine, reply_over_the_limit_is_bad_reply) {
  akr_link l;
  link_new(&l, AKR_LINK_ONE_SHOT);
  tcall a;
  call_new(&a, 30, 1000);
  akr_link_push(&l, &a.c);
  akr_link_connected(&l, FD);
  send_all(&l);
  uint8_t prefix[12];
  fx_frame_prefix(prefix, 2, 0, 1u << 20); /* over the link's 4096 */
  receive(&l, prefix, sizeof prefix);
  cr_assert_eq(a.r.status, ACKRPC_E_BAD_REPLY, "%s", ackrpc_status_name(a.r.status));
  done(&a);
  akr_link_free(&l);
}

Test(engine, eof_mid_reply_is_no_ack) {
  akr_link l;
  link_new(&l, AKR_LINK_SESSION);
  tcall a;
  call_new(&a, 30, 1000);
  akr_link_push(&l, &a.c);
  akr_link_connected(&l, FD);
  send_all(&l);
  uint8_t *frame;
  size_t n = fx_frame_reply(&frame, ACKRPC_OK, NULL, NULL);
  receive(&l, frame, n / 2);
  free(frame);
  akr_link_closed(&l, 0);
  cr_assert_eq(a.r.status, ACKRPC_E_NO_ACK);
  cr_assert(strstr(a.r.message, "in the middle of its reply"), "%s", a.r.message);
  done(&a);
  akr_link_free(&l);
}

Test(engine, early_refusal_before_the_frame_is_sent_is_the_outcome) {
  akr_link l;
  link_new(&l, AKR_LINK_ONE_SHOT);
  tcall a;
  call_new(&a, 60, 1000);
  akr_link_push(&l, &a.c);
  akr_link_connected(&l, FD);
  akr_link_wrote(&l, 12); /* part of the frame went out */
  akr_link_write_failed(&l, EPIPE);
  receive_reply(&l, ACKRPC_RESOURCE_EXHAUSTED);
  cr_assert_eq(a.r.status, ACKRPC_RESOURCE_EXHAUSTED, "%s",
               ackrpc_status_name(a.r.status));
  akr_link_closed(&l, 0);
  cr_assert(a.c.released);
  done(&a);
  akr_link_free(&l);
}

Test(engine, broken_mid_frame_without_reply_is_not_delivered) {
  akr_link l;
  link_new(&l, AKR_LINK_ONE_SHOT);
  tcall a;
  call_new(&a, 60, 1000);
  akr_link_push(&l, &a.c);
  akr_link_connected(&l, FD);
  akr_link_wrote(&l, 12);
  akr_link_write_failed(&l, EPIPE);
  akr_link_closed(&l, 0);
  cr_assert_eq(a.r.status, ACKRPC_E_SEND, "%s", ackrpc_status_name(a.r.status));
  cr_assert_eq(a.r.sys_errno, EPIPE);
  cr_assert_eq(ackrpc_status_outcome(a.r.status), ACKRPC_OUTCOME_NOT_DELIVERED);
  done(&a);
  akr_link_free(&l);
}

Test(engine, idle_session_closed_by_the_server_sends_the_call_again_once) {
  akr_link l;
  link_new(&l, AKR_LINK_SESSION);
  tcall a, b;
  call_new(&a, 30, 1000);
  akr_link_push(&l, &a.c);
  akr_link_connected(&l, FD);
  send_all(&l);
  receive_reply(&l, ACKRPC_OK);
  cr_assert_eq(a.r.status, ACKRPC_OK);
  /* The server ended the idle session: the next call's write fails. */
  call_new(&b, 30, 1000);
  akr_link_push(&l, &b.c);
  akr_link_write_failed(&l, EPIPE);
  akr_link_closed(&l, 0);
  cr_assert(!b.c.completed, "nothing was delivered: the call goes out again");
  akr_link_connected(&l, FD + 1);
  send_all(&l);
  cr_assert(b.c.sent);
  /* And a second break before anything is outstanding is not retried. */
  akr_link_closed(&l, 0);
  cr_assert_eq(b.r.status, ACKRPC_E_NO_ACK, "it was sent: no ack");
  done(&a);
  done(&b);
  akr_link_free(&l);
}

Test(engine, deadline_in_a_pipeline_keeps_the_call_in_line_for_its_late_reply) {
  akr_link l;
  link_new(&l, AKR_LINK_PIPELINE);
  tcall a, b;
  call_new(&a, 30, 10);
  call_new(&b, 30, 1000);
  akr_link_push(&l, &a.c);
  akr_link_push(&l, &b.c);
  akr_link_connected(&l, FD);
  send_all(&l);
  akr_link_tick(&l, T0 + 20000);
  cr_assert_eq(a.r.status, ACKRPC_E_ACK_TIMEOUT);
  cr_assert(!a.c.released, "kept in line for its late reply");
  cr_assert(!akr_link_wants_drop(&l));
  receive_reply(&l, ACKRPC_ABORTED); /* a's late reply: dropped */
  cr_assert(a.c.released);
  cr_assert_eq(a.r.status, ACKRPC_E_ACK_TIMEOUT, "a late reply changes nothing");
  cr_assert(!b.c.completed, "b's reply is the next one");
  receive_reply(&l, ACKRPC_OK);
  cr_assert_eq(b.r.status, ACKRPC_OK);
  done(&a);
  done(&b);
  akr_link_free(&l);
}

Test(engine, deadline_mid_frame_is_send_timeout_and_drops) {
  akr_link l;
  link_new(&l, AKR_LINK_PIPELINE);
  tcall a, b;
  call_new(&a, 60, 10);
  call_new(&b, 30, 1000);
  akr_link_push(&l, &a.c);
  akr_link_push(&l, &b.c);
  akr_link_connected(&l, FD);
  akr_link_wrote(&l, 20);
  akr_link_tick(&l, T0 + 20000);
  cr_assert_eq(a.r.status, ACKRPC_E_SEND_TIMEOUT);
  cr_assert(akr_link_wants_drop(&l), "half a frame cannot be taken back");
  akr_link_closed(&l, 0);
  cr_assert(!b.c.completed, "b was not started: it goes on the next connection (%s)",
            ackrpc_status_name(b.r.status));
  done(&a);
  done(&b);
  akr_link_free(&l);
}

Test(engine, full_queue_backs_off_then_is_busy) {
  akr_link l;
  link_new(&l, AKR_LINK_ONE_SHOT);
  tcall a;
  call_new(&a, 30, 5);
  akr_link_push(&l, &a.c);
  int ev;
  uint64_t until, now = T0;
  akr_link_connect_failed(&l, EAGAIN, now);
  cr_assert(!a.c.completed, "a full queue is tried again");
  cr_assert_eq(akr_link_wait(&l, now, &ev, &until), AKR_WAIT_TIMER);
  cr_assert_gt(until, now);
  for (int i = 0; i < 20 && !a.c.completed; i++) {
    now = until;
    akr_link_connect_failed(&l, EAGAIN, now);
    akr_link_wait(&l, now, &ev, &until);
  }
  cr_assert_eq(a.r.status, ACKRPC_E_BUSY, "%s", ackrpc_status_name(a.r.status));
  cr_assert_eq(ackrpc_status_outcome(a.r.status), ACKRPC_OUTCOME_NOT_DELIVERED);
  done(&a);
  akr_link_free(&l);
}

Test(engine, refused_connection_fails_every_queued_call) {
  akr_link l;
  link_new(&l, AKR_LINK_PIPELINE);
  tcall a, b;
  call_new(&a, 30, 1000);
  call_new(&b, 30, 1000);
  akr_link_push(&l, &a.c);
  akr_link_push(&l, &b.c);
  akr_link_connect_failed(&l, ECONNREFUSED, T0);
  cr_assert_eq(a.r.status, ACKRPC_E_CONNECT);
  cr_assert_eq(b.r.status, ACKRPC_E_CONNECT);
  cr_assert_eq(a.r.sys_errno, ECONNREFUSED);
  cr_assert(a.c.released && b.c.released);
  done(&a);
  done(&b);
  akr_link_free(&l);
}
