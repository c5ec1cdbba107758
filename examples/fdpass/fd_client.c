/* fd_client: asks fd_server for a file and copies it to standard output.
 *
 *   fd_client SOCKET NAME
 *
 * The file is never opened here: the reply brings it open
 * (ackrpc_call_options.max_reply_fds = 1, ackrpc_result.fds). Exit 0 when
 * the whole file was copied, 1 on the server's refusal or any error.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <ackrpc/ackrpc.h>

#include "files_method.h"

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s SOCKET NAME\n", argv[0]);
    return 2;
  }
  ackrpc_client_options co = {.address = argv[1], .timeout_ms = 5000};
  ackrpc_client *client;
  if (ackrpc_client_new(&co, &client) != ACKRPC_OK) return 1;
  Ackrpc__Example__OpenRequest req = ACKRPC__EXAMPLE__OPEN_REQUEST__INIT;
  req.name = argv[2];
  ackrpc_call_options opt = {.max_reply_fds = 1};
  ackrpc_result r = {0};
  ackrpc_status st =
      ackrpc_client_call(client, &files_open_method, &req.base, &opt, &r);
  int rc = 1;
  if (st != ACKRPC_OK || r.n_fds != 1) {
    fprintf(stderr, "fd_client: %s: %s\n", ackrpc_status_name(st),
            r.message ? r.message : "no descriptor");
  } else {
    const Ackrpc__Example__OpenReply *rep = (const Ackrpc__Example__OpenReply *)r.reply;
    uint64_t copied = 0;
    char buf[4096];
    ssize_t n;
    /* The descriptor stays the result's: ackrpc_result_clear() closes it. */
    while ((n = read(r.fds[0], buf, sizeof buf)) > 0 &&
           fwrite(buf, 1, (size_t)n, stdout) == (size_t)n)
      copied += (uint64_t)n;
    rc = n == 0 && copied == rep->size ? 0 : 1;
    if (rc)
      fprintf(stderr, "fd_client: copied %llu of %llu bytes\n",
              (unsigned long long)copied, (unsigned long long)rep->size);
  }
  ackrpc_result_clear(&r);
  ackrpc_client_free(client);
  return rc;
}
