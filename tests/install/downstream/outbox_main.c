/* A downstream program of the outbox library: uses only the installed
 * <ackrpc/outbox.h> and libackrpc-outbox. A link and smoke check of the
 * installed package: stores one message in a new outbox at argv[1]. */
#include <ackrpc/ackrpc.h>
#include <ackrpc/outbox.h>

#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DATABASE\n", argv[0]);
    return 2;
  }
  ackrpc_outbox_options options = {.path = argv[1]};
  ackrpc_outbox *outbox = NULL;
  ackrpc_status status = ackrpc_outbox_open(&options, &outbox);
  if (status != ACKRPC_OK) {
    fprintf(stderr, "ackrpc_outbox_open: %s\n", ackrpc_status_name(status));
    return 1;
  }
  uint64_t id = 0;
  status = ackrpc_outbox_enqueue(outbox, "demo.Inbox/Deliver", (const uint8_t *)"x", 1, &id);
  ackrpc_outbox_counts counts = {0};
  if (status == ACKRPC_OK) status = ackrpc_outbox_count(outbox, &counts);
  ackrpc_outbox_close(outbox);
  if (status != ACKRPC_OK || id != 1 || counts.pending != 1) {
    fprintf(stderr, "outbox: %s, id %llu, %llu pending\n", ackrpc_status_name(status),
            (unsigned long long)id, (unsigned long long)counts.pending);
    return 1;
  }
  printf("downstream: ackrpc-outbox %s OK\n", ACKRPC_VERSION_STRING);
  return 0;
}
