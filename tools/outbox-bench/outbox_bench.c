/* outbox-bench: measures the durable outbox (ackrpc/outbox.h): how many
 * messages per second it stores (every commit fsync'ed) and delivers
 * (calls, then their outcomes committed, fsync'ed), with every commit on
 * the disk holding --dir. A measurement, not a test.
 *
 *   outbox-bench [--messages N] [--size BYTES] [--dir DIR] [--batch B]
 *                [--producers P] [--window W] [--group-commit-us US]
 *
 * It serves ackrpc.bench.Bench/Call itself (a server on its own loop in a
 * thread, acking inline), so the numbers are the outbox's cost plus one
 * local call per message. Three phases on a fresh database:
 *   enqueue   N messages, no worker: the durable-write rate;
 *   deliver   the worker empties those N: the delivery rate;
 *   both      N more enqueued while the worker delivers: end-to-end rate.
 * P producer threads share the N messages and enqueue B at a time
 * (ackrpc_outbox_enqueue_batch(); B 1: ackrpc_outbox_enqueue()); the worker
 * keeps W calls in flight. The defaults (B 1, P 1, W 1) are the outbox as
 * it was used before batching. One line per phase on stdout:
 *   phase=enqueue messages=2000 size=64 seconds=0.61 msgs_per_s=3279 batch=1
 *   producers=1 window=1 group_commit_us=0   (on one line)
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

typedef struct bench {
  ackrpc_outbox *ob;
  size_t size, batch, producers;
  unsigned window;
  uint32_t group_commit_us;
} bench;

/* One producer: messages first .. first+n-1, `batch` per enqueue. */
typedef struct producer {
  const bench *b;
  uint64_t first;
  size_t n;
  int rc;
  pthread_t thread;
} producer;

static void *produce(void *arg) {
  producer *p = arg;
  const bench *b = p->b;
  size_t cap = b->size + 64;
  uint8_t *body = calloc(1, b->size ? b->size : 1);
  uint8_t *bufs = malloc(cap * b->batch);
  ackrpc_outbox_entry *e = calloc(b->batch, sizeof *e);
  p->rc = -1;
  if (!body || !bufs || !e) goto out;
  for (size_t done = 0; done < p->n;) {
    size_t k = p->n - done < b->batch ? p->n - done : b->batch;
    for (size_t i = 0; i < k; i++) {
      Ackrpc__Bench__Request req = ACKRPC__BENCH__REQUEST__INIT;
      req.id = p->first + done + i;
      req.body.data = body;
      req.body.len = b->size;
      e[i].method = CALL.name;
      e[i].body = bufs + i * cap;
      e[i].body_len = protobuf_c_message_pack(&req.base, bufs + i * cap);
    }
    ackrpc_status st = k == 1 ? ackrpc_outbox_enqueue(b->ob, e[0].method, e[0].body,
                                                      e[0].body_len, NULL)
                              : ackrpc_outbox_enqueue_batch(b->ob, e, k, NULL);
    if (st != ACKRPC_OK) {
      fprintf(stderr, "outbox-bench: enqueue: %s\n", ackrpc_status_name(st));
      goto out;
    }
    done += k;
  }
  p->rc = 0;
out:
  free(body);
  free(bufs);
  free(e);
  return NULL;
}

/* Enqueues messages first .. first+n-1 with b->producers threads. */
static int enqueue_n(const bench *b, uint64_t first, size_t n) {
  producer *ps = calloc(b->producers, sizeof *ps);
  if (!ps) return -1;
  size_t started = 0, at = 0;
  for (; started < b->producers; started++) {
    producer *p = &ps[started];
    size_t share = n / b->producers + (started < n % b->producers);
    *p = (producer){.b = b, .first = first + at, .n = share};
    at += share;
    if (pthread_create(&p->thread, NULL, produce, p) != 0) break;
  }
  int rc = started == b->producers ? 0 : -1;
  for (size_t i = 0; i < started; i++) {
    pthread_join(ps[i].thread, NULL);
    if (ps[i].rc != 0) rc = -1;
  }
  free(ps);
  return rc;
}

static void report(const bench *b, const char *phase, size_t n, double secs) {
  printf("phase=%s messages=%zu size=%zu seconds=%.2f msgs_per_s=%.0f batch=%zu "
         "producers=%zu window=%u group_commit_us=%u\n",
         phase, n, b->size, secs, (double)n / secs, b->batch, b->producers, b->window,
         (unsigned)b->group_commit_us);
}

static int usage(FILE *out, int rc) {
  fprintf(out,
          "usage: outbox-bench [--messages N] [--size BYTES] [--dir DIR] [--batch B]\n"
          "                    [--producers P] [--window W] [--group-commit-us US]\n"
          "Measures the durable outbox: enqueue, deliver, and both at once, N\n"
          "messages (default 2000) of BYTES body bytes (default 64), the database\n"
          "in a new directory under DIR (default /tmp). P producer threads\n"
          "(default 1) enqueue B messages per call (default 1); delivery keeps W\n"
          "calls in flight (default 1); US is the outbox's group_commit_us\n"
          "(default 0). See docs/DELIVERY.md.\n");
  return rc;
}

int main(int argc, char **argv) {
  size_t n = 2000;
  bench b = {.size = 64, .batch = 1, .producers = 1, .window = 1};
  const char *dir = "/tmp";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0) return usage(stdout, 0);
    if (i + 1 >= argc) return usage(stderr, 2);
    if (strcmp(argv[i], "--messages") == 0)
      n = strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--size") == 0)
      b.size = strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--dir") == 0)
      dir = argv[++i];
    else if (strcmp(argv[i], "--batch") == 0)
      b.batch = strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--producers") == 0)
      b.producers = strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--window") == 0)
      b.window = (unsigned)strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--group-commit-us") == 0)
      b.group_commit_us = (uint32_t)strtoul(argv[++i], NULL, 10);
    else
      return usage(stderr, 2);
  }
  if (n == 0 || n > 10000000 || b.size > (64u << 20) || b.batch == 0 ||
      b.batch > 100000 || b.producers == 0 || b.producers > 256 || b.window == 0 ||
      b.window > 4096 || b.group_commit_us > 1000000)
    return usage(stderr, 2);

  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s/outbox-bench.XXXXXX", dir);
  if (!mkdtemp(tmp)) {
    fprintf(stderr, "outbox-bench: mkdtemp %s: %s\n", tmp, strerror(errno));
    return 1;
  }
  char sock[4200], db[4200], wal[4300], mark[4300];
  snprintf(sock, sizeof sock, "%s/bench.sock", tmp);
  snprintf(db, sizeof db, "%s/outbox.db", tmp);
  snprintf(wal, sizeof wal, "%s-wal", db);
  snprintf(mark, sizeof mark, "%s-mark", db);

  int rc = 1;
  ackrpc_server *srv = NULL;
  ackrpc_outbox *ob = NULL;
  pthread_t thread;
  int serving = 0;
  ackrpc_server_options so = {.address = sock, .max_request_size = b.size + (1u << 20)};
  if (ackrpc_server_new(&so, &srv) != ACKRPC_OK ||
      ackrpc_server_add_method(srv, &CALL, on_call, NULL) != ACKRPC_OK ||
      pthread_create(&thread, NULL, serve, srv) != 0) {
    fprintf(stderr, "outbox-bench: cannot start the server on %s\n", sock);
    goto out;
  }
  serving = 1;
  ackrpc_outbox_options oo = {.path = db,
                              .address = sock,
                              .window = b.window,
                              .group_commit_us = b.group_commit_us};
  ackrpc_status st = ackrpc_outbox_open(&oo, &ob);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "outbox-bench: open %s: %s\n", db, ackrpc_status_name(st));
    goto out;
  }

  double t0 = now_s();
  b.ob = ob;
  if (enqueue_n(&b, 1, n) != 0) goto out;
  report(&b, "enqueue", n, now_s() - t0);

  t0 = now_s();
  if (ackrpc_outbox_start(ob) != ACKRPC_OK ||
      ackrpc_outbox_wait_idle(ob, 600000) != ACKRPC_OK) {
    fprintf(stderr, "outbox-bench: delivery did not finish\n");
    goto out;
  }
  report(&b, "deliver", n, now_s() - t0);

  t0 = now_s();
  if (enqueue_n(&b, n + 1, n) != 0) goto out;
  if (ackrpc_outbox_wait_idle(ob, 600000) != ACKRPC_OK) {
    fprintf(stderr, "outbox-bench: delivery did not finish\n");
    goto out;
  }
  report(&b, "both", n, now_s() - t0);
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
  unlink(mark);
  unlink(db);
  rmdir(tmp);
  return rc;
}
