/* test_server_signals.c: ackrpc_server_run_until_signal() with real
 * signals sent to this process: SIGTERM and SIGINT stop the server, a call
 * in flight is drained and answered, and the signals' previous handlers are
 * back afterwards. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "fixture.h"

FX_SUITE(signals);

static atomic_int caught_before; /* by the handler installed before the run */

static void counting_handler(int sig) {
  (void)sig;
  atomic_fetch_add(&caught_before, 1);
}

typedef struct sender {
  ackrpc_server *server;
  int sig;
  int hold; /* wait for a held call, signal, then answer it */
  int answered;
  atomic_int done; /* set by the test: the fallback is not needed */
} sender;

/* Sends the signal to the whole process, as kill(1) would. If the server
 * has not stopped 10 s later, stops it so that the test fails instead of
 * hanging (the signal was not caught). */
static void *send_signal(void *arg) {
  sender *s = arg;
  if (s->hold && fx_held_wait(1, 5000) != 1) return NULL;
  fx_sleep_ms(50);
  kill(getpid(), s->sig);
  if (s->hold) {
    fx_sleep_ms(100); /* the drain has begun: the call is still answered */
    s->answered = fx_held_reply(0, ACKRPC_OK, "drained") == ACKRPC_OK;
  }
  for (int i = 0; i < 1000 && !atomic_load(&s->done); i++)
    fx_sleep_ms(10);
  if (!atomic_load(&s->done)) ackrpc_server_stop(s->server);
  return NULL;
}

static ackrpc_server *new_server(void) {
  ackrpc_server_options o = {.address = fx_sock()};
  ackrpc_server *srv = NULL;
  cr_assert_eq(ackrpc_server_new(&o, &srv), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(srv, &fx_echo_method, fx_echo_handler, NULL),
               ACKRPC_OK);
  return srv;
}

static void install_counting(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = counting_handler;
  sigemptyset(&sa.sa_mask);
  cr_assert_eq(sigaction(sig, &sa, NULL), 0);
}

FX_TEST(signals, sigterm_drains_the_call_in_flight_and_restores_the_handler) {
  install_counting(SIGTERM);
  ackrpc_server *srv = new_server();
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "in flight";
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  fx_bg_call *bg = fx_bg_echo(c, &req, 10000);
  sender s = {.server = srv, .sig = SIGTERM, .hold = 1};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, send_signal, &s), 0);

  int sig = -1;
  ackrpc_status st = ackrpc_server_run_until_signal(srv, &sig);
  cr_assert_eq(st, ACKRPC_OK, "%s", ackrpc_status_name(st));
  cr_assert_eq(sig, SIGTERM, "stopped by %d, not by the signal", sig);
  cr_assert_eq(atomic_load(&caught_before), 0, "the old handler took the signal");

  ackrpc_result *r = NULL;
  st = fx_bg_join(bg, 10000, &r);
  cr_assert_eq(st, ACKRPC_OK, "the call in flight got %s", ackrpc_status_name(st));
  cr_assert_str_eq(fx_echo_reply(r)->text, "in flight");
  cr_assert_eq(access(fx_sock(), F_OK), -1, "the socket file is still there");

  /* The handler from before the run is back. */
  struct sigaction now;
  cr_assert_eq(sigaction(SIGTERM, NULL, &now), 0);
  cr_assert(now.sa_handler == counting_handler, "SIGTERM's handler was not restored");
  raise(SIGTERM);
  cr_assert_eq(atomic_load(&caught_before), 1);

  atomic_store(&s.done, 1); /* ends its 10 s fallback */
  pthread_join(t, NULL);
  cr_assert(s.answered, "the held call could not be answered during the drain");
  ackrpc_server_free(srv);
}

FX_TEST(signals, sigint_stops_an_idle_server) {
  install_counting(SIGINT);
  ackrpc_server *srv = new_server();
  sender s = {.server = srv, .sig = SIGINT};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, send_signal, &s), 0);
  int sig = -1;
  cr_assert_eq(ackrpc_server_run_until_signal(srv, &sig), ACKRPC_OK);
  cr_assert_eq(sig, SIGINT);
  cr_assert_eq(atomic_load(&caught_before), 0);
  atomic_store(&s.done, 1);
  pthread_join(t, NULL);
  ackrpc_server_free(srv);
}

FX_TEST(signals, a_plain_stop_reports_no_signal) {
  ackrpc_server *srv = new_server();
  ackrpc_server_stop(srv); /* before the run: it returns at once */
  int sig = -1;
  cr_assert_eq(ackrpc_server_run_until_signal(srv, &sig), ACKRPC_OK);
  cr_assert_eq(sig, 0);
  ackrpc_server_free(srv);
}

FX_TEST(signals, misuse) {
  int sig = 7;
  cr_assert_eq(ackrpc_server_run_until_signal(NULL, &sig), ACKRPC_E_INVAL);
  cr_assert_eq(sig, 7);
  /* A server on the caller's base: the caller watches signals there. */
  struct event_base *base = event_base_new();
  cr_assert_not_null(base);
  ackrpc_server_options o = {.address = fx_sock(), .base = base};
  ackrpc_server *srv = NULL;
  cr_assert_eq(ackrpc_server_new(&o, &srv), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_run_until_signal(srv, &sig), ACKRPC_E_STATE);
  cr_assert_eq(sig, 7);
  ackrpc_server_free(srv);
  event_base_free(base);
}
