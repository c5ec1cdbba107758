/* hardening_calls: N calls (default 10,000) of several kinds through one
 * server, then a clean stop; exits 0 if every call got the status it should.
 * Not a Criterion test: a plain program, so that valgrind's leak report
 * (scripts/test.sh, tests labelled `valgrind`) covers exactly the library
 * and this file. Kinds of call, in turn:
 *   - OK with a small body, answered inline;
 *   - OK with a 64 KiB body (buffers grow, then shrink in the pool);
 *   - an error status chosen by the request, answered inline;
 *   - an unknown method (UNIMPLEMENTED, answered by the server);
 *   - a deferred reply from another thread;
 *   - a reply from a libevent timer on the server's loop;
 *   - every 1,000th: a handler that answers 1 s after a call whose deadline
 *     is 200 ms (DEADLINE_EXCEEDED or E_ACK_TIMEOUT for the client, then
 *     ackrpc_call_reply gives E_ALREADY_ANSWERED).
 *
 *   hardening_calls [N]
 */
#define _GNU_SOURCE /* mkdtemp, nanosleep */

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ackrpc/ackrpc.h>

#include "ackrpc/bench.pb-c.h"

#define METHOD "ackrpc.bench.Bench/Call"

static const ackrpc_method call_method = {METHOD, &ackrpc__bench__request__descriptor,
                                          &ackrpc__bench__ack__descriptor};
static const ackrpc_method missing_method = {"ackrpc.bench.Bench/Missing",
                                             &ackrpc__bench__request__descriptor,
                                             &ackrpc__bench__ack__descriptor};

/* The request's id says how to answer: id % 8 picks the kind. */
enum { K_OK, K_BIG, K_ERROR, K_MISSING, K_THREAD, K_TIMER, K_OK2, K_OK3 };

static ackrpc_server *g_server;
static atomic_int g_late_bad; /* late replies that were not E_ALREADY_ANSWERED */

typedef struct later {
  ackrpc_call *call;
  uint64_t id;
  uint32_t body_len;
  unsigned delay_ms;
  int expect_late;
  struct event *ev;
} later;

static ackrpc_status answer(later *l) {
  Ackrpc__Bench__Ack ack = ACKRPC__BENCH__ACK__INIT;
  ack.id = l->id;
  ack.body_len = l->body_len;
  ackrpc_status st = ackrpc_call_reply(l->call, ACKRPC_OK, NULL, &ack.base);
  if (l->expect_late ? st != ACKRPC_E_ALREADY_ANSWERED : st != ACKRPC_OK)
    atomic_fetch_add(&g_late_bad, 1);
  return st;
}

static void *later_thread(void *arg) {
  later *l = arg;
  struct timespec ts = {l->delay_ms / 1000, (long)(l->delay_ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  answer(l);
  free(l);
  return NULL;
}

static void later_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  later *l = arg;
  answer(l);
  event_free(l->ev);
  free(l);
}

static void on_call(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)user;
  const Ackrpc__Bench__Request *req = (const Ackrpc__Bench__Request *)request;
  Ackrpc__Bench__Ack ack = ACKRPC__BENCH__ACK__INIT;
  ack.id = req->id;
  ack.body_len = (uint32_t)req->body.len;
  int kind = (int)(req->id % 8);
  int late = req->id % 1000 == 999;
  if (kind == K_THREAD || kind == K_TIMER || late) {
    later *l = calloc(1, sizeof *l);
    if (!l) abort();
    l->call = call;
    l->id = req->id;
    l->body_len = (uint32_t)req->body.len;
    l->delay_ms = late ? 1000 : 0;
    l->expect_late = late;
    if (kind == K_TIMER && !late) {
      l->ev = evtimer_new(ackrpc_server_base(g_server), later_timer, l);
      struct timeval tv = {0, 0};
      if (!l->ev || evtimer_add(l->ev, &tv) != 0) abort();
      return;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, later_thread, l) != 0) abort();
    pthread_detach(t);
    return;
  }
  if (kind == K_ERROR) {
    ackrpc_call_reply(call, ACKRPC_FAILED_PRECONDITION, "asked for an error", &ack.base);
    return;
  }
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &ack.base);
}

static void *run_main(void *arg) {
  ackrpc_status *ret = arg;
  *ret = ackrpc_server_run(g_server);
  return NULL;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
  if (n <= 0) {
    fprintf(stderr, "usage: hardening_calls [N]\n");
    return 2;
  }
  char dir[] = "/tmp/ackrpc-hcalls-XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  char sock[64];
  snprintf(sock, sizeof sock, "%s/s.sock", dir);
  ackrpc_server_options so = {.address = sock, 
                              .log = ackrpc_log_discard};
  ackrpc_status st = ackrpc_server_new(&so, &g_server);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "hardening_calls: server: %s\n", ackrpc_status_name(st));
    rmdir(dir);
    return 1;
  }
  if (ackrpc_server_add_method(g_server, &call_method, on_call, NULL) != ACKRPC_OK) {
    ackrpc_server_free(g_server);
    rmdir(dir);
    return 1;
  }
  ackrpc_status run_st = ACKRPC_E_STATE;
  pthread_t thr;
  if (pthread_create(&thr, NULL, run_main, &run_st) != 0) return 1;

  ackrpc_client_options co = {.address = sock, .timeout_ms = 30000};
  ackrpc_client *client = NULL;
  if (ackrpc_client_new(&co, &client) != ACKRPC_OK) return 1;
  static uint8_t big[64 * 1024];
  memset(big, 'x', sizeof big);
  long bad = 0;
  for (long i = 0; i < n; i++) {
    Ackrpc__Bench__Request req = ACKRPC__BENCH__REQUEST__INIT;
    req.id = (uint64_t)i;
    int kind = (int)(i % 8);
    int late = i % 1000 == 999;
    req.body.data = big;
    req.body.len = kind == K_BIG ? sizeof big : 16;
    ackrpc_call_options opt = {.timeout_ms = late ? 200 : 0};
    ackrpc_result r = {0};
    const ackrpc_method *m = kind == K_MISSING ? &missing_method : &call_method;
    st = ackrpc_client_call(client, m, &req.base, &opt, &r);
    /* A late call: the client gives up at 200 ms and the server, whose
     * deadline counts from the complete frame, answers DEADLINE_EXCEEDED at
     * about the same time: either outcome is right. */
    if (late && st == ACKRPC_E_ACK_TIMEOUT) st = ACKRPC_DEADLINE_EXCEEDED;
    ackrpc_status want = late               ? ACKRPC_DEADLINE_EXCEEDED
                         : kind == K_ERROR   ? ACKRPC_FAILED_PRECONDITION
                         : kind == K_MISSING ? ACKRPC_UNIMPLEMENTED
                                             : ACKRPC_OK;
    int ok = st == want;
    if (ok && st == ACKRPC_OK) {
      const Ackrpc__Bench__Ack *ack = (const Ackrpc__Bench__Ack *)r.reply;
      ok = ack && ack->id == (uint64_t)i && ack->body_len == req.body.len;
    }
    if (!ok && bad++ < 10)
      fprintf(stderr, "hardening_calls: call %ld: got %s, want %s (%s)\n", i,
              ackrpc_status_name(st), ackrpc_status_name(want),
              r.message ? r.message : "");
    ackrpc_result_clear(&r);
  }
  ackrpc_client_free(client);
  /* Late handlers (1 s) must have answered before the drain ends. */
  struct timespec ts = {1, 500 * 1000000L};
  nanosleep(&ts, NULL);
  ackrpc_server_stop(g_server);
  pthread_join(thr, NULL);
  g_server = ackrpc_server_free(g_server);
  rmdir(dir);
  int late_bad = atomic_load(&g_late_bad);
  printf("hardening_calls: %ld calls, %ld unexpected statuses, %d unexpected reply "
         "results, server run: %s\n",
         n, bad, late_bad, ackrpc_status_name(run_st));
  return bad == 0 && late_bad == 0 && run_st == ACKRPC_OK ? 0 : 1;
}
