/* demo_server: the Inbox service of the demo (inbox.proto).
 *
 *   demo_server SOCKET
 *
 * Serves ackrpc.demo.Inbox/Deliver on SOCKET (a path, or @name for the Linux
 * abstract namespace). For each note it prints one line when the note arrives
 * and one when its receipt is sent. SIGTERM or SIGINT stops it cleanly: it
 * finishes the calls in flight, removes its socket file and exits 0.
 *
 * It uses ackrpc's generic API (inbox_method.h), to show what the typed
 * stubs of protoc-gen-ackrpc wrap; examples/mailbox uses the stubs.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ackrpc/ackrpc.h>

#include "inbox_method.h"

typedef struct inbox {
  uint64_t received; /* notes received since start */
} inbox;

/* Handles one Deliver call, inline on the loop's thread. */
static void on_deliver(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  inbox *box = user;
  const Ackrpc__Demo__Note *note = (const Ackrpc__Demo__Note *)request;
  const ackrpc_peer *peer = ackrpc_call_peer(call);

  box->received++;
  printf("received note seq=%" PRIu64 " from=%s pid=%ld: \"%s\"\n", note->seq,
         note->sender, (long)peer->pid, note->text);

  Ackrpc__Demo__Receipt receipt = ACKRPC__DEMO__RECEIPT__INIT;
  receipt.seq = note->seq;
  receipt.received = box->received;
  /* The call and the note are invalid after the reply: nothing reads them. */
  ackrpc_status st = ackrpc_call_reply(call, ACKRPC_OK, NULL, &receipt.base);
  if (st == ACKRPC_OK)
    printf("sent ack seq=%" PRIu64 " received=%" PRIu64 "\n", receipt.seq,
           receipt.received);
  else
    printf("could not ack seq=%" PRIu64 ": %s: %s\n", receipt.seq,
           ackrpc_status_name(st), ackrpc_strerror(st));
}

static int usage(FILE *out, int rc) {
  fprintf(out, "usage: demo_server SOCKET\n"
               "Serves ackrpc.demo.Inbox/Deliver on SOCKET (a path or @name) until\n"
               "SIGTERM or SIGINT.\n");
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
    return usage(stdout, 0);
  if (argc != 2 || argv[1][0] == '-') return usage(stderr, 2);
  const char *address = argv[1];

  /* One line per event, visible at once even when stdout is a file. */
  if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) return 1;
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    perror("demo_server: signal");
    return 1;
  }

  inbox box = {0};
  ackrpc_server_options options = {.address = address};
  char why[160]; /* ACKRPC_LOG_LEVEL=debug: one line per call */
  if (ackrpc_log_level_from_env(&options.log_level, why, sizeof why) != ACKRPC_OK)
    fprintf(stderr, "demo_server: %s; using the default\n", why);
  ackrpc_server *server = NULL;
  ackrpc_status st = ackrpc_server_new(&options, &server);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "demo_server: cannot serve on %s: %s: %s\n", address,
            ackrpc_status_name(st), ackrpc_strerror(st));
    return 1;
  }
  st = ackrpc_server_add_method(server, &inbox_deliver_method, on_deliver, &box);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "demo_server: cannot register %s: %s: %s\n",
            inbox_deliver_method.name, ackrpc_status_name(st), ackrpc_strerror(st));
    ackrpc_server_free(server);
    return 1;
  }

  /* The socket is bound and listening from here on. SIGTERM or SIGINT
   * stop it: the calls in flight are finished, then run returns. */
  printf("serving %s on %s\n", inbox_deliver_method.name, address);
  int sig = 0;
  st = ackrpc_server_run_until_signal(server, &sig);
  ackrpc_server_free(server);

  if (st != ACKRPC_OK) {
    fprintf(stderr, "demo_server: the server loop failed: %s: %s\n",
            ackrpc_status_name(st), ackrpc_strerror(st));
    return 1;
  }
  printf("stopped by signal %d after %" PRIu64 " notes\n", sig, box.received);
  return 0;
}
