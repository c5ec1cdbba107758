/* fd_server: hands out open files (privilege separation by descriptor).
 *
 *   fd_server SOCKET DIR
 *
 * Serves ackrpc.example.Files (files.proto) on SOCKET (mode 0666: any local
 * user may call), with the generated handler table. Open: for a name in
 * DIR it opens the file read-only, as the server's user, and replies with
 * the open descriptor in the reply's ackrpc.Fd field: the client reads a
 * file it could not open itself, and only the files the server chooses to
 * hand out. Count: reads the descriptor the client put in the request to
 * its end and answers its bytes and lines. SIGTERM or SIGINT stops it
 * cleanly.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ackrpc/ackrpc.h>

#include "files.ackrpc.h"

static _Atomic(ackrpc_server *) g_server;

static void on_signal(int sig) {
  (void)sig;
  ackrpc_server_stop(atomic_load(&g_server));
}

/* Opens `name` in the served directory (`user`: its descriptor) and hands
 * the descriptor over; the library closes the server's copy once sent. */
static void on_open(ackrpc_call *call, const Ackrpc__Example__OpenRequest *req,
                    void *user) {
  int dir = *(const int *)user;
  const char *name = req->name;
  if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) {
    ackrpc_call_reply(call, ACKRPC_INVALID_ARGUMENT, "a plain file name, please", NULL);
    return;
  }
  int fd = openat(dir, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    char msg[300];
    snprintf(msg, sizeof msg, "%s: %s", name, fd < 0 ? strerror(errno) : "not a file");
    if (fd >= 0) close(fd);
    ackrpc_call_reply(call, ACKRPC_NOT_FOUND, msg, NULL);
    return;
  }
  Ackrpc__Example__OpenReply rep = ACKRPC__EXAMPLE__OPEN_REPLY__INIT;
  Ackrpc__Fd file = ACKRPC__FD__INIT;
  file.fd = fd;
  rep.file = &file;
  rep.size = (uint64_t)st.st_size;
  printf("handing out %s (%lld bytes) to uid %u\n", name, (long long)st.st_size,
         (unsigned)ackrpc_call_peer(call)->uid);
  fflush(stdout);
  /* `fd` is the library's now, whatever this returns. */
  ackrpc__example__Files_Open_reply(call, ACKRPC_OK, NULL, &rep);
}

/* Counts what the client's descriptor holds. The descriptor is the call's
 * (the generated handler checked it against the request first): valid
 * until the answer, closed by the library after it. It is read here, on
 * the loop: fine for an example; a server that may be handed a slow pipe
 * would read it on a thread and answer from there. */
static void on_count(ackrpc_call *call, const Ackrpc__Example__CountRequest *req,
                     void *user) {
  (void)user;
  Ackrpc__Example__CountReply rep = ACKRPC__EXAMPLE__COUNT_REPLY__INIT;
  char buf[4096];
  ssize_t n;
  while ((n = read(req->input->fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    for (ssize_t i = 0; i < n; i++)
      rep.lines += buf[i] == '\n';
    rep.bytes += n > 0 ? (uint64_t)n : 0;
  }
  if (n < 0) {
    ackrpc_call_reply(call, ACKRPC_FAILED_PRECONDITION, strerror(errno), NULL);
    return;
  }
  printf("counted %llu bytes for uid %u\n", (unsigned long long)rep.bytes,
         (unsigned)ackrpc_call_peer(call)->uid);
  fflush(stdout);
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &rep.base);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s SOCKET DIR\n", argv[0]);
    return 2;
  }
  int dir = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    fprintf(stderr, "fd_server: %s: %s\n", argv[2], strerror(errno));
    return 1;
  }
  ackrpc_server_options o = {.address = argv[1], .socket_mode = 0666};
  ackrpc_server *s;
  ackrpc_status st = ackrpc_server_new(&o, &s);
  ackrpc__example__Files_handlers h = {.Open = on_open, .Count = on_count};
  if (st == ACKRPC_OK) st = ackrpc__example__Files_register(s, &h, &dir);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "fd_server: %s\n", ackrpc_strerror(st));
    close(dir);
    return 1;
  }
  atomic_store(&g_server, s);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  printf("serving %s from %s\n", argv[1], argv[2]);
  fflush(stdout);
  st = ackrpc_server_run(s);
  ackrpc_server_free(s);
  close(dir);
  return st == ACKRPC_OK ? 0 : 1;
}
