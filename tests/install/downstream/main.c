/* A downstream program: uses only the installed public headers and library.
 * It is a link and smoke check of the installed package, not a test of the
 * library's behaviour (tests/test_*.c do that). */
#include <ackrpc/ackrpc.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  const char *name = ackrpc_status_name(ACKRPC_UNAVAILABLE);
  if (strcmp(name, "UNAVAILABLE") != 0) {
    fprintf(stderr, "ackrpc_status_name(ACKRPC_UNAVAILABLE) = \"%s\"\n", name);
    return 1;
  }

  /* Creating a client checks the address but does not connect. */
  ackrpc_client_options options = {.address = "@ackrpc-downstream-test"};
  ackrpc_client *client = NULL;
  ackrpc_status status = ackrpc_client_new(&options, &client);
  if (status != ACKRPC_OK || client == NULL) {
    fprintf(stderr, "ackrpc_client_new: %s\n", ackrpc_status_name(status));
    return 1;
  }
  client = ackrpc_client_free(client);

  printf("downstream: ackrpc %s OK\n", ACKRPC_VERSION_STRING);
  return 0;
}
