/* test_soak.c: a million calls through one server; the process's resident
 * memory may not grow by 1 MiB or more between the 100,000th and the
 * 1,000,000th call (pools, buffers and arenas must reach a steady state;
 * anything kept per call would show). Server in a thread, two client
 * threads; ~30-60 s in a plain build on 2 cores. Skipped, with the reason
 * printed, under valgrind and ASan, where it would take far too long and
 * where the allocator's own bookkeeping makes RSS meaningless. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hardening_support.h"

HS_SUITE(soak);

#define TOTAL 1000000u
#define FIRST 100000u
#define THREADS 2

typedef struct soak {
  ackrpc_client *client;
  atomic_uint next; /* calls handed out */
  atomic_uint done;
  atomic_uint failed;
  atomic_int first_bad;
  atomic_int pause; /* workers wait while the RSS is read */
  atomic_uint parked;
} soak;

static void *worker(void *arg) {
  soak *s = arg;
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  uint8_t blob[256];
  memset(blob, 's', sizeof blob);
  req.blob.data = blob;
  for (;;) {
    while (atomic_load(&s->pause)) {
      atomic_fetch_add(&s->parked, 1);
      while (atomic_load(&s->pause)) fx_sleep_ms(1);
      atomic_fetch_sub(&s->parked, 1);
    }
    unsigned i = atomic_fetch_add(&s->next, 1);
    if (i >= TOTAL) return NULL;
    /* Vary the sizes, so buffers grow and shrink: every 1,000th call carries
     * 100 KiB, above the size pooled connections keep. */
    static uint8_t big[100 * 1024];
    req.text = i % 2 ? "soak" : "a somewhat longer text for the soak test";
    req.blob.data = i % 1000 == 0 ? big : blob;
    req.blob.len = i % 1000 == 0 ? sizeof big : i % 256;
    ackrpc_status st = fx_echo(s->client, &req, NULL, NULL);
    if (st != ACKRPC_OK && atomic_fetch_add(&s->failed, 1) == 0)
      atomic_store(&s->first_bad, (int)st);
    atomic_fetch_add(&s->done, 1);
  }
}

/* Waits until `n` calls are done, then holds the workers and reads RSS. */
static long rss_at(soak *s, unsigned n, uint64_t bound_us) {
  uint64_t end = fx_now_us() + bound_us;
  while (atomic_load(&s->done) < n && fx_now_us() < end) fx_sleep_ms(20);
  atomic_store(&s->pause, 1);
  while (atomic_load(&s->parked) + (atomic_load(&s->next) >= TOTAL ? THREADS : 0) <
             THREADS &&
         fx_now_us() < end)
    fx_sleep_ms(1);
  fx_sleep_ms(50); /* the server finishes the calls in flight */
  long kb = hs_status_kb(0, "VmRSS");
  atomic_store(&s->pause, 0);
  return kb;
}

HS_TEST(soak, rss_flat_from_1e5_to_1e6_calls) {
  if (fx_valgrind() || hs_asan()) {
    printf("soak: SKIPPED: a million calls under %s would take far too long, and its "
           "allocator makes RSS meaningless\n",
           fx_valgrind() ? "valgrind" : "AddressSanitizer");
    return;
  }
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock, .log = ackrpc_log_discard};
  hs_server_start(&o);
  soak s = {.client = fx_client(sock, 30000)};
  pthread_t thr[THREADS];
  uint64_t t0 = fx_now_us();
  for (int i = 0; i < THREADS; i++) cr_assert_eq(pthread_create(&thr[i], NULL, worker, &s), 0);
  long rss1 = rss_at(&s, FIRST, 120000000u);
  unsigned at1 = atomic_load(&s.done);
  uint64_t t1 = fx_now_us();
  long rss_mid = rss_at(&s, TOTAL / 2, 200000000u);
  long rss2 = rss_at(&s, TOTAL, 250000000u);
  unsigned at2 = atomic_load(&s.done);
  uint64_t t2 = fx_now_us();
  atomic_store(&s.next, TOTAL); /* stop, whatever happened */
  for (int i = 0; i < THREADS; i++) pthread_join(thr[i], NULL);
  unsigned failed = atomic_load(&s.failed);
  printf("soak: RSS %ld kB after %u calls, %ld kB at half way, %ld kB after %u calls "
         "(%+ld kB); %.0f calls/s; %u failed\n",
         rss1, at1, rss_mid, rss2, at2, rss2 - rss1,
         (double)(at2 - at1) / ((double)(t2 - t1) / 1e6), failed);
  (void)t0;
  cr_assert_eq(failed, 0, "%u calls failed, first: %s", failed,
               ackrpc_status_name((ackrpc_status)atomic_load(&s.first_bad)));
  cr_assert_geq(at1, FIRST);
  cr_assert_eq(at2, TOTAL, "only %u of %u calls were made in time", at2, TOTAL);
  cr_assert_lt(rss2 - rss1, 1024, "RSS grew %ld kB between call %u and call %u",
               rss2 - rss1, at1, at2);
}
