/* fd_client: asks fd_server for a file and copies it to standard output, or
 * has it count standard input.
 *
 *   fd_client SOCKET NAME      copy the file NAME, opened by the server
 *   fd_client SOCKET --count   print the bytes and lines of standard input,
 *                              read by the server from this very descriptor
 *
 * With the generated stubs of files.proto: a file is never opened here, the
 * reply brings it open in its ackrpc.Fd field; standard input goes to the
 * server in the request's. Exit 0 on success (the whole file copied), 1 on
 * the server's refusal or any error.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <ackrpc/ackrpc.h>

#include "files.ackrpc.h"

/* Copies the file the server opens to standard output. */
static int copy(ackrpc_client *client, const char *name) {
  Ackrpc__Example__OpenRequest req = ACKRPC__EXAMPLE__OPEN_REQUEST__INIT;
  Ackrpc__Example__OpenReply *rep = NULL;
  ackrpc_result r = {0};
  req.name = (char *)name;
  ackrpc_status st = ackrpc__example__Files_Open_call(client, &req, &rep, NULL, &r);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "fd_client: %s: %s\n", ackrpc_status_name(st),
            r.message ? r.message : ackrpc_strerror(st));
    ackrpc_result_clear(&r);
    return 1;
  }
  ackrpc_result_clear(&r);
  /* The reply and its descriptor are ours now: close it, then free it. */
  int fd = rep->file->fd;
  uint64_t copied = 0;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0 &&
         fwrite(buf, 1, (size_t)n, stdout) == (size_t)n)
    copied += (uint64_t)n;
  int rc = n == 0 && copied == rep->size ? 0 : 1;
  if (rc)
    fprintf(stderr, "fd_client: copied %llu of %llu bytes\n",
            (unsigned long long)copied, (unsigned long long)rep->size);
  close(fd);
  ackrpc__example__open_reply__free_unpacked(rep, NULL);
  return rc;
}

/* Hands standard input to the server (borrowed: it stays ours, open). */
static int count(ackrpc_client *client) {
  Ackrpc__Fd input = ACKRPC__FD__INIT;
  Ackrpc__Example__CountRequest req = ACKRPC__EXAMPLE__COUNT_REQUEST__INIT;
  Ackrpc__Example__CountReply *rep = NULL;
  ackrpc_result r = {0};
  input.fd = STDIN_FILENO;
  req.input = &input;
  ackrpc_status st = ackrpc__example__Files_Count_call(client, &req, &rep, NULL, &r);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "fd_client: %s: %s\n", ackrpc_status_name(st),
            r.message ? r.message : ackrpc_strerror(st));
    ackrpc_result_clear(&r);
    return 1;
  }
  printf("%llu bytes, %llu lines\n", (unsigned long long)rep->bytes,
         (unsigned long long)rep->lines);
  ackrpc__example__count_reply__free_unpacked(rep, NULL);
  ackrpc_result_clear(&r);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s SOCKET NAME | %s SOCKET --count\n", argv[0], argv[0]);
    return 2;
  }
  ackrpc_client_options co = {.address = argv[1], .timeout_ms = 5000};
  ackrpc_client *client;
  if (ackrpc_client_new(&co, &client) != ACKRPC_OK) return 1;
  int rc = strcmp(argv[2], "--count") == 0 ? count(client) : copy(client, argv[2]);
  ackrpc_client_free(client);
  return rc;
}
