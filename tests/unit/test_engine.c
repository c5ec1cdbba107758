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
#include "hardening.pb-c.h"
#include "pieces.pb-c.h"

#define T0 1000000000ull /* the engine's clock in these tests */
#define FD 42            /* a connection's descriptor, never used for I/O */

typedef struct tcall {
  akr_ccall c;
  struct iovec iov;
  uint8_t frame[64];
  ackrpc_result r;
} tcall;

static akr_link_conf conf;
static const int *no_fds;
static size_t no_n_fds;

static void link_new(akr_link *l, akr_link_mode mode) {
  memset(&conf, 0, sizeof conf);
  cr_assert_eq(akr_address_parse("/tmp/engine-test.sock", &conf.addr), ACKRPC_OK);
  conf.max_reply = 4096;
  conf.max_depth = 100;
  akr_link_init(l, &conf, mode, NULL, 0);
}

/* A server running as root: every check trusts it. */
static const akr_peer root_peer = {.uid = 0, .self = 1000, .owner_errno = ENODATA};

static void connected(akr_link *l, int fd) {
  akr_link_connected(l, fd, &root_peer);
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
  while ((n = akr_link_output(l, iov, 8, &no_fds, &no_n_fds)) != 0) {
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
  connected(&l, FD);
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
  connected(&l, FD);
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
  connected(&l, FD);
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
  connected(&l, FD);
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
  connected(&l, FD);
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
  connected(&l, FD);
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
  connected(&l, FD);
  send_all(&l);
  receive_reply(&l, ACKRPC_OK);
  cr_assert_eq(a.r.status, ACKRPC_OK);
  /* The server ended the idle session: the next call's write fails. */
  call_new(&b, 30, 1000);
  akr_link_push(&l, &b.c);
  akr_link_write_failed(&l, EPIPE);
  akr_link_closed(&l, 0);
  cr_assert(!b.c.completed, "nothing was delivered: the call goes out again");
  connected(&l, FD + 1);
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
  connected(&l, FD);
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
  connected(&l, FD);
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

/* --- who the server is ------------------------------------------------ */

/* Connects a one-shot link with one queued call to a server described by
 * `p`, under `check`; returns the call's status, or -1 if the link trusted
 * the server (the call is still waiting for its reply). */
static int judge(ackrpc_server_check check, uid_t server_uid, int abstract,
                 const akr_peer *p, int *ret_errno) {
  akr_link l;
  link_new(&l, AKR_LINK_ONE_SHOT);
  if (abstract) cr_assert_eq(akr_address_parse("@engine-test", &conf.addr), ACKRPC_OK);
  conf.server_check = check;
  conf.server_uid = server_uid;
  tcall a;
  call_new(&a, 30, 1000);
  akr_link_push(&l, &a.c);
  akr_link_connected(&l, FD, p);
  int st = a.c.completed ? (int)a.r.status : -1;
  if (ret_errno) *ret_errno = a.r.sys_errno;
  if (st >= 0) {
    struct iovec iov[4];
    cr_assert_eq(akr_link_output(&l, iov, 4, &no_fds, &no_n_fds), 0,
                 "nothing is sent to an untrusted server");
    cr_assert(akr_link_wants_drop(&l));
    cr_assert(a.c.released);
    cr_assert_not_null(a.r.message);
    akr_link_closed(&l, 0);
  } else {
    cr_assert(!akr_link_wants_drop(&l));
    akr_link_closed(&l, 0);
  }
  done(&a);
  akr_link_free(&l);
  return st;
}

Test(engine, default_check_trusts_root_self_and_the_directory_owner_only) {
  const int untrusted = ACKRPC_E_SERVER_IDENTITY;
  akr_peer p = {.uid = 0, .self = 1000, .owner = 2000, .owner_errno = 0};
  cr_assert_eq(judge(ACKRPC_SERVER_CHECK_DEFAULT, 0, 0, &p, NULL), -1, "root");
  p.uid = 1000;
  cr_assert_eq(judge(ACKRPC_SERVER_CHECK_DEFAULT, 0, 0, &p, NULL), -1, "self");
  p.uid = 2000;
  cr_assert_eq(judge(ACKRPC_SERVER_CHECK_DEFAULT, 0, 0, &p, NULL), -1, "owner");
  p.uid = 3000;
  cr_assert_eq(judge(ACKRPC_SERVER_CHECK_DEFAULT, 0, 0, &p, NULL), untrusted, "other");
  /* The owner could not be looked up: only root and self. */
  int err = 0;
  p.uid = 2000;
  p.owner_errno = EACCES;
  cr_assert_eq(judge(ACKRPC_SERVER_CHECK_DEFAULT, 0, 0, &p, &err), untrusted);
  cr_assert_eq(err, EACCES);
  /* An abstract name has no owner: a server of another user is untrusted. */
  p.owner_errno = 0;
  cr_assert_eq(judge(ACKRPC_SERVER_CHECK_DEFAULT, 0, 1, &p, NULL), untrusted,
               "abstract: the owner of a path means nothing");
  p.uid = 1000;
  cr_assert_eq(judge(ACKRPC_SERVER_CHECK_DEFAULT, 0, 1, &p, NULL), -1);
  /* Unknown credentials: untrusted, with the reason. */
  p.cred_errno = ENOTCONN;
  cr_assert_eq(judge(ACKRPC_SERVER_CHECK_DEFAULT, 0, 0, &p, &err), untrusted);
  cr_assert_eq(err, ENOTCONN);
}

Test(engine, explicit_uid_is_exact_and_none_trusts_anyone) {
  const int untrusted = ACKRPC_E_SERVER_IDENTITY;
  akr_peer p = {.uid = 1234, .self = 1234, .owner_errno = ENODATA};
  cr_assert_eq(judge(ACKRPC_SERVER_CHECK_UID, 1234, 0, &p, NULL), -1);
  p.uid = 0;
  cr_assert_eq(judge(ACKRPC_SERVER_CHECK_UID, 1234, 0, &p, NULL), untrusted,
               "not even root passes for another uid");
  p.uid = 1234;
  cr_assert_eq(judge(ACKRPC_SERVER_CHECK_UID, 1235, 1, &p, NULL), untrusted,
               "not even this process's own uid");
  p.uid = 777;
  p.cred_errno = ENOTCONN;
  cr_assert_eq(judge(ACKRPC_SERVER_CHECK_NONE, 0, 0, &p, NULL), -1);
}

Test(engine, owner_is_looked_up_only_when_it_decides) {
  akr_link l;
  link_new(&l, AKR_LINK_ONE_SHOT);
  akr_peer p = {.uid = 0, .self = 1000};
  cr_assert_not(akr_link_wants_owner(&l, &p), "root: trusted anyway");
  p.uid = 1000;
  cr_assert_not(akr_link_wants_owner(&l, &p), "self: trusted anyway");
  p.uid = 2000;
  cr_assert(akr_link_wants_owner(&l, &p));
  conf.server_check = ACKRPC_SERVER_CHECK_UID;
  cr_assert_not(akr_link_wants_owner(&l, &p));
  conf.server_check = ACKRPC_SERVER_CHECK_DEFAULT;
  cr_assert_eq(akr_address_parse("@engine-test", &conf.addr), ACKRPC_OK);
  cr_assert_not(akr_link_wants_owner(&l, &p), "an abstract name has no owner");
  akr_link_free(&l);
}

Test(engine, untrusted_server_fails_every_queued_call_and_the_session_connect) {
  akr_link l;
  link_new(&l, AKR_LINK_PIPELINE);
  tcall open, a, b;
  call_new(&open, 0, 1000); /* a session's connect: an empty call */
  call_new(&a, 30, 1000);
  call_new(&b, 30, 1000);
  akr_link_push(&l, &open.c);
  akr_link_push(&l, &a.c);
  akr_link_push(&l, &b.c);
  akr_peer p = {.uid = 4321, .self = 1000, .owner = 1000, .owner_errno = 0};
  akr_link_connected(&l, FD, &p);
  struct iovec iov[4];
  cr_assert_eq(akr_link_output(&l, iov, 4, &no_fds, &no_n_fds), 0);
  for (tcall *t = &open; t; t = t == &open ? &a : t == &a ? &b : NULL) {
    cr_assert(t->c.completed && t->c.released);
    cr_assert_eq(t->r.status, ACKRPC_E_SERVER_IDENTITY, "%s",
                 ackrpc_status_name(t->r.status));
    cr_assert_eq(ackrpc_status_outcome(t->r.status), ACKRPC_OUTCOME_NOT_DELIVERED);
    cr_assert(strstr(t->r.message, "uid 4321"), "%s", t->r.message);
  }
  cr_assert(akr_link_wants_drop(&l));
  akr_link_closed(&l, 0);
  int ev;
  uint64_t until;
  cr_assert_eq(akr_link_wait(&l, T0, &ev, &until), AKR_WAIT_NONE);
  done(&open);
  done(&a);
  done(&b);
  akr_link_free(&l);
}

/* --- what a reply may cost to decode ---------------------------------- */

/* A reply frame (status OK, empty head) around `body`. */
static uint8_t *reply_frame(const uint8_t *body, size_t len, size_t *ret_len) {
  uint8_t *f = malloc(12 + len);
  cr_assert_not_null(f);
  fx_frame_prefix(f, 2, 0, (uint32_t)len);
  memcpy(f + 12, body, len);
  *ret_len = 12 + len;
  return f;
}

/* A Node body `levels` deep (the top message is level 1), written from the
 * inside out. */
static uint8_t *nested(size_t levels, size_t *ret_len) {
  size_t cap = 6 * levels + 16, pos = cap;
  uint8_t *b = malloc(cap);
  cr_assert_not_null(b);
  for (size_t i = 1; i < levels; i++) {
    size_t inner = cap - pos;
    uint8_t v[10];
    size_t n = 0;
    do {
      v[n++] = (uint8_t)((inner & 0x7f) | (inner > 0x7f ? 0x80 : 0));
      inner >>= 7;
    } while (inner);
    pos -= n;
    memcpy(b + pos, v, n);
    b[--pos] = 0x0a; /* field 1 (child), length-delimited */
  }
  memmove(b, b + pos, cap - pos);
  *ret_len = cap - pos;
  return b;
}

/* Feeds one reply with `body` to a one-shot call whose reply type is
 * `desc`; returns the call's status (its result in *t). */
static ackrpc_status decode_reply(const ProtobufCMessageDescriptor *desc,
                                  const uint8_t *body, size_t len, tcall *t) {
  akr_link l;
  link_new(&l, AKR_LINK_ONE_SHOT);
  conf.max_reply = 64u << 20;
  call_new(t, 30, 1000);
  t->c.reply_desc = desc;
  akr_link_push(&l, &t->c);
  connected(&l, FD);
  send_all(&l);
  size_t flen;
  uint8_t *f = reply_frame(body, len, &flen);
  receive(&l, f, flen);
  free(f);
  cr_assert(t->c.completed);
  akr_link_closed(&l, 0);
  akr_link_free(&l);
  return t->r.status;
}

Test(engine, reply_nested_deeper_than_max_depth_is_bad_reply_not_a_crash) {
  tcall t;
  size_t len;
  uint8_t *body = nested(100, &len);
  cr_assert_eq(decode_reply(&ackrpc__hardening__node__descriptor, body, len, &t),
               ACKRPC_OK, "100 levels: the default limit");
  cr_assert_not_null(t.r.reply);
  done(&t);
  free(body);
  body = nested(101, &len);
  cr_assert_eq(decode_reply(&ackrpc__hardening__node__descriptor, body, len, &t),
               ACKRPC_E_BAD_REPLY);
  cr_assert_null(t.r.reply);
  cr_assert(strstr(t.r.message, "deeper than 100"), "%s", t.r.message);
  done(&t);
  free(body);
  /* 200,000 levels (~1 MB) would overflow protobuf-c's stack. */
  body = nested(200000, &len);
  cr_assert_eq(decode_reply(&ackrpc__hardening__node__descriptor, body, len, &t),
               ACKRPC_E_BAD_REPLY);
  done(&t);
  free(body);
}

Test(engine, reply_over_the_decoding_memory_cap_is_bad_reply) {
  /* Mixed: the required `must`, then empty Inner messages, two wire bytes
   * each and some 64 bytes decoded: 32 times the wire size. */
  enum { ITEMS = 200000 };
  size_t len = 2 + 2 * (size_t)ITEMS;
  uint8_t *body = malloc(len);
  cr_assert_not_null(body);
  body[0] = 0x0a; /* must = "" */
  body[1] = 0;
  for (size_t i = 0; i < ITEMS; i++) {
    body[2 + 2 * i] = 0x5a; /* field 11 (inners), length-delimited */
    body[3 + 2 * i] = 0;
  }
  tcall t;
  cr_assert_eq(decode_reply(&ackrpc__pieces__mixed__descriptor, body, len, &t),
               ACKRPC_E_BAD_REPLY);
  cr_assert(strstr(t.r.message, "memory"), "%s", t.r.message);
  done(&t);
  /* A few of them decode. */
  cr_assert_eq(decode_reply(&ackrpc__pieces__mixed__descriptor, body, 2 + 2 * 100, &t),
               ACKRPC_OK);
  cr_assert_eq(((const Ackrpc__Pieces__Mixed *)t.r.reply)->n_inners, 100);
  done(&t);
  free(body);
}
