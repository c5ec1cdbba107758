/* demo_client: delivers notes to the demo's Inbox server (inbox.proto).
 *
 *   demo_client SOCKET [COUNT]
 *
 * Sends COUNT notes (default 5), one blocking call each, and prints each
 * receipt with its status. A failed call is printed with its status name, the
 * message and what it means for delivery; the client then exits 1.
 *
 * It uses ackrpc's generic API (inbox_method.h), to show what the typed
 * stubs of protoc-gen-ackrpc wrap; examples/mailbox uses the stubs.
 */
/* getpid: POSIX beyond C11. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ackrpc/ackrpc.h>

#include "inbox_method.h"

/* Delivers note `seq`; prints the receipt or the failure. Returns 0 if the
 * server acknowledged it OK with the right sequence number. */
static int deliver(ackrpc_client *client, uint64_t seq, uint64_t count,
                   const char *sender) {
  char text[64];
  snprintf(text, sizeof text, "note %" PRIu64 " of %" PRIu64, seq, count);
  Ackrpc__Demo__Note note = ACKRPC__DEMO__NOTE__INIT;
  note.seq = seq;
  note.sender = (char *)sender;
  note.text = text;

  ackrpc_result result = {0};
  ackrpc_status st =
      ackrpc_client_call(client, &inbox_deliver_method, &note.base, NULL, &result);
  int rc = 0;
  if (st != ACKRPC_OK) {
    char why[512]; /* "NAME (code): message [outcome]" */
    ackrpc_status_format(why, sizeof why, st, result.message);
    printf("note seq=%" PRIu64 " failed: %s\n", seq, why);
    rc = -1;
  } else if (!result.reply) {
    printf("note seq=%" PRIu64 " failed: status=OK but no receipt\n", seq);
    rc = -1;
  } else {
    const Ackrpc__Demo__Receipt *receipt = (const Ackrpc__Demo__Receipt *)result.reply;
    printf("ack seq=%" PRIu64 " received=%" PRIu64 " status=%s\n", receipt->seq,
           receipt->received, ackrpc_status_name(st));
    if (receipt->seq != seq) {
      printf("note seq=%" PRIu64 " failed: the receipt is for seq=%" PRIu64 "\n", seq,
             receipt->seq);
      rc = -1;
    }
  }
  ackrpc_result_clear(&result);
  return rc;
}

static int usage(FILE *out, int rc) {
  fprintf(out, "usage: demo_client SOCKET [COUNT]\n"
               "Delivers COUNT notes (default 5) to the Inbox server on SOCKET.\n");
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
    return usage(stdout, 0);
  if (argc < 2 || argc > 3 || argv[1][0] == '-') return usage(stderr, 2);
  const char *address = argv[1];
  uint64_t count = 5;
  if (argc == 3) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(argv[2], &end, 10);
    if (argv[2][0] < '0' || argv[2][0] > '9' || *end != '\0' || errno != 0 || v < 1 ||
        v > 1000000) {
      fprintf(stderr, "demo_client: COUNT must be 1 to 1000000, got '%s'\n", argv[2]);
      return 2;
    }
    count = v;
  }

  ackrpc_client_options options = {.address = address, .timeout_ms = 5000};
  ackrpc_client *client = NULL;
  ackrpc_status st = ackrpc_client_new(&options, &client);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "demo_client: cannot use address %s: %s: %s\n", address,
            ackrpc_status_name(st), ackrpc_strerror(st));
    return 2;
  }

  char sender[64];
  snprintf(sender, sizeof sender, "demo_client[%ld]", (long)getpid());
  uint64_t failed = 0;
  for (uint64_t seq = 1; seq <= count; seq++)
    if (deliver(client, seq, count, sender) != 0) failed++;
  ackrpc_client_free(client);

  printf("%" PRIu64 " of %" PRIu64 " notes acknowledged\n", count - failed, count);
  return failed ? 1 : 0;
}
