/* test_client_async_session.c: pipelined calls (typed and raw) on one connection from a
 * caller's event_base, against a real server. */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "fixture.h"

FX_SUITE(asession);

#define MAX_CALLS 64

typedef struct tracker {
  int calls; /* callbacks run */
  ackrpc_status status[MAX_CALLS];
  char text[MAX_CALLS][32];            /* the reply's text, "" if none */
  int order[MAX_CALLS];                /* call index in completion order */
  int inside_call;                     /* set while ackrpc_async_session_call runs */
  int ran_inside;                      /* a callback ran inside it: a contract breach */
  ackrpc_async_session *close_from_cb; /* close the session in callback 0 */
} tracker;

typedef struct slot {
  tracker *t;
  int index;
} slot;

static void on_done(ackrpc_result *r, void *user) {
  slot *sl = user;
  tracker *t = sl->t;
  if (t->inside_call) t->ran_inside = 1;
  t->status[sl->index] = r->status;
  const Ackrpc__Test__EchoReply *rep = (const Ackrpc__Test__EchoReply *)r->reply;
  snprintf(t->text[sl->index], sizeof t->text[0], "%s",
           rep && rep->text ? rep->text : "");
  t->order[t->calls++] = sl->index;
  if (sl->index == 0 && t->close_from_cb) {
    ackrpc_async_session_close(t->close_from_cb);
    t->close_from_cb = NULL;
  }
}

static ackrpc_status queue(ackrpc_async_session *s, tracker *t, slot *sl, int i,
                           const char *text, Ackrpc__Test__EchoRequest__Mode mode,
                           uint32_t timeout_ms) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = (char *)text;
  req.mode = mode;
  ackrpc_call_options o = {.timeout_ms = timeout_ms};
  sl[i].t = t;
  sl[i].index = i;
  t->inside_call = 1;
  ackrpc_status st =
      ackrpc_async_session_call(s, &fx_echo_method, &req.base, &o, on_done, &sl[i]);
  t->inside_call = 0;
  return st;
}

/* Runs the base until `want` callbacks ran or `ms` passed. */
static void run_until(struct event_base *base, tracker *t, int want, uint32_t ms) {
  uint64_t until = fx_now_us() + (uint64_t)ms * 1000 + fx_slack_us();
  while (t->calls < want && fx_now_us() < until) {
    struct timeval tv = {0, 20000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
  }
}

FX_TEST(asession, pipelined_calls_complete_in_order_on_one_connection) {
  fx_server *fs = fx_server_start(&(ackrpc_server_options){.address = fx_sock()});
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  struct event_base *base = event_base_new();
  ackrpc_async_session *s = NULL;
  cr_assert_eq(ackrpc_async_session_open(c, base, &s), ACKRPC_OK);
  tracker t = {0};
  slot sl[MAX_CALLS];
  char text[MAX_CALLS][16];
  for (int i = 0; i < 50; i++) {
    snprintf(text[i], sizeof text[i], "p%d", i);
    cr_assert_eq(
        queue(s, &t, sl, i, text[i], ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE, 0),
        ACKRPC_OK);
  }
  cr_assert_eq(t.calls, 0, "no callback before the loop runs");
  run_until(base, &t, 50, 5000);
  cr_assert_eq(t.calls, 50);
  cr_assert_not(t.ran_inside, "a callback never runs inside ackrpc_async_session_call");
  for (int i = 0; i < 50; i++) {
    cr_assert_eq(t.status[i], ACKRPC_OK, "call %d: %s", i,
                 ackrpc_status_name(t.status[i]));
    cr_assert_str_eq(t.text[i], text[i], "call %d got its own reply", i);
    cr_assert_eq(t.order[i], i, "completions in queue order");
  }
  cr_assert_eq(fx_server_connections(fs), 1, "all 50 went over one connection");
  ackrpc_async_session_close(s);
  run_until(base, &t, 51, 200); /* lets the close finish */
  event_base_free(base);
}

FX_TEST(asession, a_late_reply_is_not_given_to_the_next_call) {
  fx_server_start(&(ackrpc_server_options){.address = fx_sock()});
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  struct event_base *base = event_base_new();
  ackrpc_async_session *s = NULL;
  cr_assert_eq(ackrpc_async_session_open(c, base, &s), ACKRPC_OK);
  tracker t = {0};
  slot sl[MAX_CALLS];
  /* Call 0 is held by the server past its 200 ms deadline. */
  cr_assert_eq(queue(s, &t, sl, 0, "held", ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD, 200),
               ACKRPC_OK);
  run_until(base, &t, 1, 3000);
  cr_assert_eq(t.calls, 1);
  cr_assert_eq(t.status[0], ACKRPC_E_ACK_TIMEOUT, "%s",
               ackrpc_status_name(t.status[0]));
  /* Call 1 is queued behind it; then the held call is answered late. */
  cr_assert_eq(queue(s, &t, sl, 1, "next", ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE, 0),
               ACKRPC_OK);
  cr_assert_eq(fx_held_wait(1, 2000), 1);
  fx_held_reply(0, ACKRPC_OK, NULL);
  run_until(base, &t, 2, 3000);
  cr_assert_eq(t.calls, 2, "the late reply ran no second callback for call 0");
  cr_assert_eq(t.status[1], ACKRPC_OK);
  cr_assert_str_eq(t.text[1], "next",
                   "call 1 got its own reply, not call 0's late one");
  ackrpc_async_session_close(s);
  run_until(base, &t, 3, 200);
  event_base_free(base);
}

FX_TEST(asession, no_server_fails_every_call_through_its_callback) {
  ackrpc_client *c = fx_client(fx_sock(), 2000);
  struct event_base *base = event_base_new();
  ackrpc_async_session *s = NULL;
  cr_assert_eq(ackrpc_async_session_open(c, base, &s), ACKRPC_OK);
  tracker t = {0};
  slot sl[MAX_CALLS];
  for (int i = 0; i < 3; i++)
    cr_assert_eq(queue(s, &t, sl, i, "x", ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE, 0),
                 ACKRPC_OK);
  run_until(base, &t, 3, 2000);
  cr_assert_eq(t.calls, 3);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(t.status[i], ACKRPC_E_CONNECT, "%s", ackrpc_status_name(t.status[i]));
    cr_assert_eq(ackrpc_status_outcome(t.status[i]), ACKRPC_OUTCOME_NOT_DELIVERED);
  }
  ackrpc_async_session_close(s);
  run_until(base, &t, 4, 100);
  event_base_free(base);
}

FX_TEST(asession, close_lets_queued_calls_finish_even_from_a_callback) {
  fx_server_start(&(ackrpc_server_options){.address = fx_sock()});
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  struct event_base *base = event_base_new();
  ackrpc_async_session *s = NULL;
  cr_assert_eq(ackrpc_async_session_open(c, base, &s), ACKRPC_OK);
  tracker t = {0};
  t.close_from_cb = s;
  slot sl[MAX_CALLS];
  for (int i = 0; i < 5; i++)
    cr_assert_eq(queue(s, &t, sl, i, "c", ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE, 0),
                 ACKRPC_OK);
  run_until(base, &t, 5, 5000);
  cr_assert_eq(t.calls, 5, "calls queued before the close still complete");
  for (int i = 0; i < 5; i++)
    cr_assert_eq(t.status[i], ACKRPC_OK);
  /* The session freed itself (ASan and valgrind check that); the loop has
   * nothing of it left. */
  cr_assert_eq(event_base_loop(base, EVLOOP_NONBLOCK), 1,
               "no event of the session is left");
  event_base_free(base);
}

FX_TEST(asession, argument_errors_never_call_back) {
  ackrpc_client *c = fx_client(fx_sock(), 1000);
  struct event_base *base = event_base_new();
  ackrpc_async_session *s = NULL;
  cr_assert_eq(ackrpc_async_session_open(NULL, base, &s), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_async_session_open(c, NULL, &s), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_async_session_open(c, base, &s), ACKRPC_OK);
  tracker t = {0};
  slot sl = {&t, 0};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  cr_assert_eq(ackrpc_async_session_call(s, NULL, &req.base, NULL, on_done, &sl),
               ACKRPC_E_INVAL);
  cr_assert_eq(
      ackrpc_async_session_call(s, &fx_echo_method, &req.base, NULL, NULL, &sl),
      ACKRPC_E_INVAL);
  ackrpc_async_session_close(s);
  /* Closed: no new calls (the session is freed on the next loop turn). */
  cr_assert_eq(
      ackrpc_async_session_call(s, &fx_echo_method, &req.base, NULL, on_done, &sl),
      ACKRPC_E_STATE);
  run_until(base, &t, 1, 100);
  cr_assert_eq(t.calls, 0, "no callback for a call that returned an error");
  event_base_free(base);
}

/* Pipelined frames answered in different ways (inline, from another thread,
 * from a loop timer, with an error status): every call gets its own reply,
 * in order, whether the server sent it alone or batched with others. */
FX_TEST(asession, mixed_answers_in_a_pipeline_keep_their_order) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  struct event_base *base = event_base_new();
  ackrpc_async_session *s = NULL;
  cr_assert_eq(ackrpc_async_session_open(c, base, &s), ACKRPC_OK);
  tracker t = {0};
  slot sl[MAX_CALLS];
  char text[MAX_CALLS][16];
  static const Ackrpc__Test__EchoRequest__Mode modes[] = {
      ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE,
      ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE,
      ACKRPC__TEST__ECHO_REQUEST__MODE__DEFER_THREAD,
      ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE,
  };
  int n = 40;
  for (int i = 0; i < n; i++) {
    snprintf(text[i], sizeof text[i], "m%d", i);
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    req.text = text[i];
    req.mode = modes[i % 4];
    req.delay_ms = 5;
    if (i % 7 == 3) {
      req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__INLINE;
      req.reply_status = ACKRPC_NOT_FOUND;
      req.reply_message = "absent";
    }
    sl[i].t = &t;
    sl[i].index = i;
    cr_assert_eq(
        ackrpc_async_session_call(s, &fx_echo_method, &req.base, NULL, on_done, &sl[i]),
        ACKRPC_OK);
  }
  run_until(base, &t, n, 10000);
  cr_assert_eq(t.calls, n);
  for (int i = 0; i < n; i++) {
    cr_assert_eq(t.order[i], i, "completion %d was call %d", i, t.order[i]);
    if (i % 7 == 3) {
      cr_assert_eq(t.status[i], ACKRPC_NOT_FOUND, "call %d: %s", i,
                   ackrpc_status_name(t.status[i]));
    } else {
      cr_assert_eq(t.status[i], ACKRPC_OK, "call %d: %s", i,
                   ackrpc_status_name(t.status[i]));
      cr_assert_str_eq(t.text[i], text[i], "call %d got another call's reply", i);
    }
  }
  fx_deferred_join();
  ackrpc_async_session_close(s);
  run_until(base, &t, n + 1, 200);
  event_base_free(base);
}

/* Raw calls (a method name and serialized bytes, as the outbox sends what
 * it stored): pipelined in order, each reply body handed back undecoded. */
typedef struct raw_done {
  int calls;
  ackrpc_status status[8];
  char text[8][32];
} raw_done;

typedef struct raw_slot {
  raw_done *d;
  int index;
} raw_slot;

static void on_raw(ackrpc_result *r, void *user) {
  raw_slot *sl = user;
  raw_done *d = sl->d;
  d->status[sl->index] = r->status;
  Ackrpc__Test__EchoReply *rep =
      r->reply_bytes
          ? ackrpc__test__echo_reply__unpack(NULL, r->reply_bytes_len, r->reply_bytes)
          : NULL;
  snprintf(d->text[sl->index], sizeof d->text[0], "%s",
           rep && rep->text ? rep->text : "");
  if (rep) ackrpc__test__echo_reply__free_unpacked(rep, NULL);
  cr_assert_null(r->reply, "raw: nothing decoded");
  d->calls++;
}

FX_TEST(asession, raw_calls_pipeline_bytes_and_return_reply_bytes) {
  fx_server *fs = fx_server_start(&(ackrpc_server_options){.address = fx_sock()});
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  struct event_base *base = event_base_new();
  ackrpc_async_session *s = NULL;
  cr_assert_eq(ackrpc_async_session_open(c, base, &s), ACKRPC_OK);
  raw_done d = {0};
  raw_slot sl[8];
  for (int i = 0; i < 8; i++) {
    char text[16];
    snprintf(text, sizeof text, "raw%d", i);
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    req.text = text;
    uint8_t buf[64];
    size_t n = protobuf_c_message_pack(&req.base, buf);
    sl[i] = (raw_slot){&d, i};
    /* The body is copied: the buffer goes out of scope at once. */
    cr_assert_eq(
        ackrpc_async_session_call_raw(s, FX_ECHO, buf, n, NULL, on_raw, &sl[i]),
        ACKRPC_OK);
  }
  cr_assert_eq(
      ackrpc_async_session_call_raw(s, "no method", NULL, 0, NULL, on_raw, &sl[0]),
      ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_async_session_call_raw(s, FX_ECHO, NULL, 3, NULL, on_raw, &sl[0]),
               ACKRPC_E_INVAL);
  uint64_t until = fx_now_us() + 5000000 + fx_slack_us();
  while (d.calls < 8 && fx_now_us() < until) {
    struct timeval tv = {0, 20000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
  }
  cr_assert_eq(d.calls, 8);
  for (int i = 0; i < 8; i++) {
    char want[16];
    snprintf(want, sizeof want, "raw%d", i);
    cr_assert_eq(d.status[i], ACKRPC_OK);
    cr_assert_str_eq(d.text[i], want, "call %d got its own reply body", i);
  }
  cr_assert_eq(fx_server_connections(fs), 1, "one connection");
  ackrpc_async_session_close(s);
  struct timeval tv = {0, 100000};
  event_base_loopexit(base, &tv);
  event_base_dispatch(base);
  event_base_free(base);
}
