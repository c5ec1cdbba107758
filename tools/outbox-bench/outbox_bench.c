/* outbox-bench: measures the durable outbox (ackrpc/outbox.h): how many
 * messages per second it stores (each enqueue is one fsync'ed commit) and
 * delivers (a call, then an fsync'ed delete), with every commit on the disk
 * holding --dir. A measurement, not a test.
 *
 *   outbox-bench [--messages N] [--size BYTES] [--dir DIR]
 *
 * It serves ackrpc.bench.Bench/Call itself (a server on its own loop in a
 * thread, acking inline), so the numbers are the outbox's cost plus one
 * local call per message. Three phases on a fresh database:
 *   enqueue   N messages, no worker: the durable-write rate;
 *   deliver   the worker empties those N: the delivery rate;
 *   both      N more enqueued while the worker delivers: end-to-end rate.
 * One line per phase on stdout:
 *   phase=enqueue messages=2000 size=64 seconds=0.61 msgs_per_s=3279
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ackrpc/ackrpc.h>
#include <ackrpc/outbox.h>

#include "ackrpc/bench.pb-c.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const ackrpc_method CALL = {"ackrpc.bench.Bench/Call",
                                   &ackrpc__bench__request__descriptor,
                                   &ackrpc__bench__ack__descriptor};

static void on_call(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)user;
  const Ackrpc__Bench__Request *req = (const Ackrpc__Bench__Request *)request;
  Ackrpc__Bench__Ack ack = ACKRPC__BENCH__ACK__INIT;
  ack.id = req->id;
  ack.body_len = (uint32_t)req->body.len;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &ack.base);
}

static void *serve(void *arg) {
  ackrpc_server_run(arg);
  return NULL;
}

static int enqueue_n(ackrpc_outbox *ob, uint64_t first, size_t n, size_t size) {
  uint8_t *body = calloc(1, size ? size : 1);
  uint8_t *buf = malloc(size + 64);
  if (!body || !buf) return -1;
  for (size_t i = 0; i < n; i++) {
    Ackrpc__Bench__Request req = ACKRPC__BENCH__REQUEST__INIT;
    req.id = first + i;
    req.body.data = body;
    req.body.len = size;
    size_t len = protobuf_c_message_pack(&req.base, buf);
    ackrpc_status st = ackrpc_outbox_enqueue(ob, CALL.name, buf, len, NULL);
    if (st != ACKRPC_OK) {
      fprintf(stderr, "outbox-bench: enqueue: %s\n", ackrpc_status_name(st));
      free(body);
      free(buf);
      return -1;
    }
  }
  free(body);
  free(buf);
  return 0;
}

static void report(const char *phase, size_t n, size_t size, double secs) {
  printf("phase=%s messages=%zu size=%zu seconds=%.2f msgs_per_s=%.0f\n", phase, n,
         size, secs, (double)n / secs);
}

static int usage(FILE *out, int rc) {
  fprintf(out,
          "usage: outbox-bench [--messages N] [--size BYTES] [--dir DIR]\n"
          "Measures the durable outbox: enqueue, deliver, and both at once, N\n"
          "messages (default 2000) of BYTES body bytes (default 64), the database\n"
          "in a new directory under DIR (default /tmp). See docs/DELIVERY.md.\n");
  return rc;
}

int main(int argc, char **argv) {
  size_t n = 2000, size = 64;
  const char *dir = "/tmp";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0) return usage(stdout, 0);
    if (i + 1 >= argc) return usage(stderr, 2);
    if (strcmp(argv[i], "--messages") == 0)
      n = strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--size") == 0)
      size = strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--dir") == 0)
      dir = argv[++i];
    else
      return usage(stderr, 2);
  }
  if (n == 0 || n > 10000000 || size > (64u << 20)) return usage(stderr, 2);

  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s/outbox-bench.XXXXXX", dir);
  if (!mkdtemp(tmp)) {
    fprintf(stderr, "outbox-bench: mkdtemp %s: %s\n", tmp, strerror(errno));
    return 1;
  }
  char sock[4200], db[4200], wal[4300];
  snprintf(sock, sizeof sock, "%s/bench.sock", tmp);
  snprintf(db, sizeof db, "%s/outbox.db", tmp);
  snprintf(wal, sizeof wal, "%s-wal", db);

  int rc = 1;
  ackrpc_server *srv = NULL;
  ackrpc_outbox *ob = NULL;
  pthread_t thread;
  int serving = 0;
  ackrpc_server_options so = {.address = sock, .max_request_size = size + (1u << 20)};
  if (ackrpc_server_new(&so, &srv) != ACKRPC_OK ||
      ackrpc_server_add_method(srv, &CALL, on_call, NULL) != ACKRPC_OK ||
      pthread_create(&thread, NULL, serve, srv) != 0) {
    fprintf(stderr, "outbox-bench: cannot start the server on %s\n", sock);
    goto out;
  }
  serving = 1;
  ackrpc_outbox_options oo = {.path = db, .address = sock};
  ackrpc_status st = ackrpc_outbox_open(&oo, &ob);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "outbox-bench: open %s: %s\n", db, ackrpc_status_name(st));
    goto out;
  }

  double t0 = now_s();
  if (enqueue_n(ob, 1, n, size) != 0) goto out;
  report("enqueue", n, size, now_s() - t0);

  t0 = now_s();
  if (ackrpc_outbox_start(ob) != ACKRPC_OK ||
      ackrpc_outbox_wait_idle(ob, 600000) != ACKRPC_OK) {
    fprintf(stderr, "outbox-bench: delivery did not finish\n");
    goto out;
  }
  report("deliver", n, size, now_s() - t0);

  t0 = now_s();
  if (enqueue_n(ob, n + 1, n, size) != 0) goto out;
  if (ackrpc_outbox_wait_idle(ob, 600000) != ACKRPC_OK) {
    fprintf(stderr, "outbox-bench: delivery did not finish\n");
    goto out;
  }
  report("both", n, size, now_s() - t0);
  ackrpc_outbox_counts c;
  if (ackrpc_outbox_count(ob, &c) == ACKRPC_OK && (c.pending || c.dead)) {
    fprintf(stderr, "outbox-bench: %" PRIu64 " pending, %" PRIu64 " dead\n", c.pending,
            c.dead);
    goto out;
  }
  rc = 0;
out:
  ackrpc_outbox_close(ob);
  if (serving) {
    ackrpc_server_stop(srv);
    pthread_join(thread, NULL);
  }
  ackrpc_server_free(srv);
  unlink(wal);
  unlink(db);
  rmdir(tmp);
  return rc;
}
