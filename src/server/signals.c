/* signals.c: ackrpc_server_run_until_signal(), the SIGTERM/SIGINT shutdown
 * of a server that owns its loop (include/ackrpc/server.h). */
#include <signal.h>

#include <event2/event.h>

#include "server/server_internal.h"

typedef struct stop_on_signal {
  ackrpc_server *server;
  int signal; /* the first signal caught, 0 if none */
} stop_on_signal;

/* On the loop's thread (libevent turned the signal into an event). */
static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)what;
  stop_on_signal *st = arg;
  if (!st->signal) st->signal = (int)sig;
  ackrpc_server_stop(st->server);
}

ackrpc_status ackrpc_server_run_until_signal(ackrpc_server *server, int *ret_signal) {
  if (!server) return ACKRPC_E_INVAL;
  if (!server->own_base) return ACKRPC_E_STATE;
  stop_on_signal st = {.server = server, .signal = 0};
  /* Freeing a signal event puts back the handler that was there before. */
  struct event *term = evsignal_new(server->base, SIGTERM, on_signal, &st);
  struct event *intr = evsignal_new(server->base, SIGINT, on_signal, &st);
  ackrpc_status rc = ACKRPC_E_SYSTEM;
  if (term && intr && evsignal_add(term, NULL) == 0 && evsignal_add(intr, NULL) == 0)
    rc = ackrpc_server_run(server);
  if (term) event_free(term);
  if (intr) event_free(intr);
  if (rc == ACKRPC_OK && ret_signal) *ret_signal = st.signal;
  return rc;
}
