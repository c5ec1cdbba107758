/* test_outbox_power.c: the durable outbox through a power cut at every
 * sync point of a delivery (tests/support/powerloss_vfs.h).
 *
 * A receiver process (an ackrpc server that deduplicates by call id, as a
 * real receiver must, and records each effect in memory shared with this
 * process, so that effects outlive the sender) serves two methods. Each
 * scenario (drawn from a seed: messages, methods, producers, batch sizes,
 * window, worker or pump, poison messages that are dead-lettered, messages
 * refused once with UNAVAILABLE) runs first whole, to count its syncs, then
 * once per sync point k, in a child process whose k-th sync loses power:
 * every write not synced is gone and the process dies there. This process
 * then reopens the outbox from what was synced and delivers what is left
 * (the recovery); at every eighth crash point, a first recovery in a child
 * loses power too, at one of its first syncs, before the one that
 * finishes. Checked for every crash point:
 *   - nothing lost: every message whose enqueue returned OK took effect
 *     (or, poisoned, was dead-lettered), after the recovery;
 *   - nothing doubled: no message took effect twice;
 *   - order: per method, effects in enqueue order;
 *   - outcomes durable: a message reported ACKED or DEAD by on_attempt
 *     before a crash (the sender's, or a first recovery's) is never sent
 *     again, and a DEAD one is in the dead letters;
 *   - the mark: reopening succeeds (no false damage), and the synced mark
 *     is at most the one interrupted commit behind the database.
 * At least POWER_POINTS crash points per test (two tests, run in
 * parallel by Criterion: >= 10,000 in all). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ackrpc/ackrpc.h>
#include <ackrpc/outbox.h>

#include "ackrpc/bench.pb-c.h"
#include "powerloss_vfs.h"

#define POWER_POINTS 5100 /* per test; two tests */
#define TIME_LIMIT_S 240  /* a bound, not a measurement: fail if not reached */
#define MAX_LOG 4096
#define MAX_MSGS 40

static const ackrpc_method METHODS[2] = {
    {"power.Sink/A", &ackrpc__bench__request__descriptor,
     &ackrpc__bench__ack__descriptor},
    {"power.Sink/B", &ackrpc__bench__request__descriptor,
     &ackrpc__bench__ack__descriptor},
};

typedef struct rec {
  uint32_t run, method, seq, fate;
  uint64_t id;
} rec;

typedef struct rec_log {
  _Atomic uint32_t n;
  rec r[MAX_LOG];
} rec_log;

/* Shared by this process, the receiver and the children. */
typedef struct shared {
  rec_log effects; /* the receiver: what took effect */
  rec_log stored;  /* the sender: enqueue returned OK */
  rec_log settled; /* the sender: on_attempt said ACKED or DEAD */
  rec_log again;   /* the recovery: ids attempted */
  _Atomic uint64_t syncs;
} shared;

static shared *sh;

static void log_add(rec_log *l, rec r) {
  uint32_t i = atomic_fetch_add(&l->n, 1);
  if (i < MAX_LOG) l->r[i] = r;
}

/* --- a scenario -------------------------------------------------------- */

typedef struct params {
  uint32_t run;
  unsigned n, methods, producers, batch, window, worker_first, pump;
  uint32_t group_commit_us;
  unsigned poison_every, flaky_every; /* 0: none */
} params;

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static params draw(uint64_t seed) {
  uint64_t s = seed * 2654435761u + 88172645463325252u;
  params p = {0};
  p.n = 4 + (unsigned)(rng_next(&s) % 16);
  p.methods = 1 + (unsigned)(rng_next(&s) % 2);
  p.producers = rng_next(&s) % 4 == 0 ? 2 : 1;
  if (p.producers == 2) p.methods = 2; /* one producer per method: its order */
  static const unsigned batches[] = {1, 1, 2, 3, 5};
  p.batch = batches[rng_next(&s) % 5];
  static const unsigned windows[] = {1, 1, 2, 4, 8};
  p.window = windows[rng_next(&s) % 5];
  p.pump = rng_next(&s) % 4 == 0;
  p.worker_first = !p.pump && rng_next(&s) % 2;
  p.group_commit_us = rng_next(&s) % 3 == 0 ? 200 : 0;
  p.poison_every = rng_next(&s) % 3 == 0 ? 3 + (unsigned)(rng_next(&s) % 5) : 0;
  /* A refusal with a retryable status may let messages already sent behind
   * it go first (docs/DELIVERY.md): only with one call in flight. */
  p.flaky_every =
      p.window == 1 && rng_next(&s) % 3 == 0 ? 2 + (unsigned)(rng_next(&s) % 4) : 0;
  return p;
}

static unsigned method_of(const params *p, unsigned seq, unsigned producer) {
  return p->producers == 2 ? producer : seq % p->methods;
}

static uint8_t kind_of(const params *p, unsigned seq) {
  if (p->poison_every && seq % p->poison_every == 0) return 'P';
  if (p->flaky_every && seq % p->flaky_every == 1) return 'F';
  return 'N';
}

/* --- the receiver ------------------------------------------------------ */

typedef struct receiver {
  uint32_t run;
  size_t n_ids;
  uint8_t ids[4 * MAX_MSGS][16];
  uint8_t refused[2][MAX_MSGS + 1];
} receiver;

static receiver rv;

static int seen_id(const uint8_t *id, size_t len) {
  if (len != 16) return 0;
  for (size_t i = 0; i < rv.n_ids; i++)
    if (memcmp(rv.ids[i], id, 16) == 0) return 1;
  if (rv.n_ids < sizeof rv.ids / sizeof rv.ids[0]) memcpy(rv.ids[rv.n_ids++], id, 16);
  return 0;
}

static void on_call(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  const Ackrpc__Bench__Request *req = (const Ackrpc__Bench__Request *)request;
  uint32_t method = (uint32_t)(uintptr_t)user;
  uint32_t run = (uint32_t)(req->id >> 32), seq = (uint32_t)(req->id & 0xffffff);
  uint8_t kind = req->body.len ? req->body.data[0] : 'N';
  Ackrpc__Bench__Ack ack = ACKRPC__BENCH__ACK__INIT;
  ack.id = req->id;
  if (run < rv.run || seq > MAX_MSGS) { /* a late call of an earlier run */
    ackrpc_call_reply(call, ACKRPC_OK, NULL, &ack.base);
    return;
  }
  if (run > rv.run) {
    memset(&rv, 0, sizeof rv);
    rv.run = run;
  }
  if (kind == 'P') {
    ackrpc_call_reply(call, ACKRPC_INVALID_ARGUMENT, "poison", NULL);
    return;
  }
  if (kind == 'F' && !rv.refused[method][seq]) {
    rv.refused[method][seq] = 1;
    ackrpc_call_reply(call, ACKRPC_UNAVAILABLE, "not now", NULL);
    return;
  }
  size_t len = 0;
  const uint8_t *id = ackrpc_call_id(call, &len);
  if (!seen_id(id, len))
    log_add(&sh->effects, (rec){.run = run, .method = method, .seq = seq});
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &ack.base);
}

static void receiver_main(const char *sock) {
  ackrpc_server *srv = NULL;
  ackrpc_server_options so = {.address = sock};
  if (ackrpc_server_new(&so, &srv) != ACKRPC_OK) _exit(2);
  for (uintptr_t m = 0; m < 2; m++)
    if (ackrpc_server_add_method(srv, &METHODS[m], on_call, (void *)m) != ACKRPC_OK)
      _exit(2);
  ackrpc_server_run(srv);
  _exit(0);
}

/* --- the sender: a scenario run until its power is cut ------------------ */

/* Which process reports (rec.method in `settled` and `again`): 0 the
 * sender, 1 a recovery cut short itself, 2 the recovery that finishes. */
static uint32_t phase;

static void on_attempt(void *user, const ackrpc_outbox_attempt *a) {
  const params *p = user;
  if (a->fate == ACKRPC_OUTBOX_ACKED || a->fate == ACKRPC_OUTBOX_DEAD)
    log_add(&sh->settled,
            (rec){.run = p->run, .method = phase, .id = a->id, .fate = a->fate});
}

typedef struct producer {
  const params *p;
  ackrpc_outbox *ob;
  unsigned index;
} producer;

/* Enqueues the producer's messages, p->batch at a time. */
static void *produce(void *arg) {
  producer *pr = arg;
  const params *p = pr->p;
  uint8_t bufs[8][64];
  ackrpc_outbox_entry e[8];
  unsigned seqs[8], k = 0;
  for (unsigned seq = 1; seq <= p->n; seq++) {
    if (p->producers == 2 && seq % 2 != pr->index) continue;
    unsigned m = method_of(p, seq, pr->index);
    uint8_t kind = kind_of(p, seq);
    Ackrpc__Bench__Request req = ACKRPC__BENCH__REQUEST__INIT;
    req.id = (uint64_t)p->run << 32 | seq;
    req.body.data = &kind;
    req.body.len = 1;
    e[k] =
        (ackrpc_outbox_entry){.method = METHODS[m].name,
                              .body = bufs[k],
                              .body_len = protobuf_c_message_pack(&req.base, bufs[k])};
    seqs[k++] = seq;
    if (k < p->batch && seq + p->producers <= p->n) continue;
    uint64_t first = 0;
    ackrpc_status st = k == 1 ? ackrpc_outbox_enqueue(pr->ob, e[0].method, e[0].body,
                                                      e[0].body_len, &first)
                              : ackrpc_outbox_enqueue_batch(pr->ob, e, k, &first);
    if (st != ACKRPC_OK) _exit(20);
    for (unsigned i = 0; i < k; i++)
      log_add(&sh->stored, (rec){.run = p->run,
                                 .method = method_of(p, seqs[i], pr->index),
                                 .seq = seqs[i],
                                 .id = first + i});
    k = 0;
  }
  return NULL;
}

static ackrpc_outbox *open_outbox(const char *db, const char *sock, const params *p,
                                  ackrpc_outbox_attempt_fn fn) {
  ackrpc_outbox_options o = {.path = db,
                             .address = sock,
                             .call_timeout_ms = 5000,
                             .initial_backoff_ms = 1,
                             .max_backoff_ms = 4,
                             .on_attempt = fn,
                             .on_attempt_user = (void *)p,
                             .window = p->window,
                             .group_commit_us = p->group_commit_us};
  ackrpc_outbox *ob = NULL;
  return ackrpc_outbox_open(&o, &ob) == ACKRPC_OK ? ob : NULL;
}

/* Pumps until the outbox is empty (5 s at most). 0 if it emptied. */
static int pump_all(ackrpc_outbox *ob) {
  for (int i = 0; i < 5000; i++) {
    ackrpc_outbox_counts c;
    if (ackrpc_outbox_count(ob, &c) != ACKRPC_OK) return -1;
    if (!c.pending) return 0;
    unsigned n = 0;
    if (ackrpc_outbox_pump(ob, 64, &n) != ACKRPC_OK) return -1;
    if (!n) usleep(1000); /* backing off */
  }
  return -1;
}

static void sender_main(const params *p, const char *db, const char *sock,
                        uint64_t crash_at) {
  phase = 0;
  if (powerloss_vfs_register(1) != 0) _exit(21);
  powerloss_vfs_crash_at(crash_at);
  ackrpc_outbox *ob = open_outbox(db, sock, p, on_attempt);
  if (!ob) _exit(22);
  if (p->worker_first && ackrpc_outbox_start(ob) != ACKRPC_OK) _exit(23);
  producer pr[2] = {{p, ob, 0}, {p, ob, 1}};
  pthread_t t;
  if (p->producers == 2 && pthread_create(&t, NULL, produce, &pr[1]) != 0) _exit(24);
  produce(&pr[0]);
  if (p->producers == 2) pthread_join(t, NULL);
  if (p->pump) {
    if (pump_all(ob) != 0) _exit(25);
  } else {
    if (!p->worker_first && ackrpc_outbox_start(ob) != ACKRPC_OK) _exit(23);
    if (ackrpc_outbox_wait_idle(ob, 5000) != ACKRPC_OK) _exit(26);
  }
  ackrpc_outbox_close(ob);
  atomic_store(&sh->syncs, powerloss_vfs_syncs());
  _exit(0);
}

/* --- the recovery: reopen what was synced, deliver the rest ------------- */

typedef struct mark {
  int valid;
  uint64_t nonce, commits;
} mark;

/* The mark file as on disk (`seen` 0), or as the program sees it (1). */
static mark read_mark(const char *db, int seen) {
  char path[512];
  snprintf(path, sizeof path, "%s-mark", db);
  mark m = {0};
  uint8_t b[24];
  int got = seen ? powerloss_vfs_peek(path, b, sizeof b, 0) : -1;
  if (got < 0) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return m;
    got = (int)read(fd, b, sizeof b);
    close(fd);
  }
  if (got == (int)sizeof b && memcmp(b, "AKROBMK1", 8) == 0) {
    m.valid = 1;
    for (int i = 7; i >= 0; i--) {
      m.nonce = m.nonce << 8 | b[8 + i];
      m.commits = m.commits << 8 | b[16 + i];
    }
  }
  return m;
}

static void on_attempt_again(void *user, const ackrpc_outbox_attempt *a) {
  const params *p = user;
  log_add(&sh->again,
          (rec){.run = p->run, .method = phase, .id = a->id, .fate = a->fate});
  on_attempt(user, a);
}

/* Reopens the outbox from what was synced and delivers what is left, in
 * this process (it makes no thread, so later forks stay safe). Returns 0,
 * or which check failed. */
static int recover(const params *p, const char *db, const char *sock) {
  mark before = read_mark(db, 0); /* what the power cut left */
  ackrpc_outbox *ob = open_outbox(db, sock, p, on_attempt_again);
  if (!ob) return 31; /* damage reported where there is none */
  /* Rewritten at open: the database's count. */
  mark after = read_mark(db, 1);
  int rc = 0;
  /* Synced after each commit, the mark lags at most the one commit the
   * power cut interrupted between the commit's sync and its own. */
  if (after.commits > 0 && (!before.valid || before.nonce != after.nonce ||
                            before.commits + 1 < after.commits))
    rc = 32;
  uint32_t n = atomic_load(&sh->settled.n);
  for (uint32_t i = 0; !rc && i < n && i < MAX_LOG; i++) {
    const rec *r = &sh->settled.r[i];
    if (r->fate != ACKRPC_OUTBOX_DEAD) continue;
    ackrpc_outbox_message m = {0};
    if (ackrpc_outbox_dead_letter(ob, r->id - 1, &m) != ACKRPC_OK || m.id != r->id)
      rc = 33; /* reported dead, not in the dead letters */
    ackrpc_outbox_message_clear(&m);
  }
  if (!rc && pump_all(ob) != 0) rc = 34;
  ackrpc_outbox_close(ob);
  return rc;
}

/* --- the checks -------------------------------------------------------- */

/* A child that dies with this process (a failed assertion ends it
 * without cleaning up). */
static pid_t fork_child(void) {
  pid_t parent = getpid(), pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
  }
  return pid;
}

static pid_t spawn_sender(const params *p, const char *db, const char *sock,
                          uint64_t crash_at) {
  pid_t pid = fork_child();
  if (pid == 0) sender_main(p, db, sock, crash_at);
  return pid;
}

static int wait_exit(pid_t pid) {
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void reset_logs(void) {
  atomic_store(&sh->stored.n, 0);
  atomic_store(&sh->settled.n, 0);
  atomic_store(&sh->again.n, 0);
  atomic_store(&sh->effects.n, 0);
}

/* Checks one crash point's logs (run p->run). */
static void check_run(const params *p, uint64_t seed, uint64_t k) {
  uint8_t applied[2][MAX_MSGS + 1] = {{0}};
  uint32_t last[2] = {0, 0};
  uint32_t n = atomic_load(&sh->effects.n);
  cr_assert(n < MAX_LOG);
  for (uint32_t i = 0; i < n; i++) {
    const rec *e = &sh->effects.r[i];
    if (e->run != p->run) continue;
    cr_assert(kind_of(p, e->seq) != 'P', "seed %llu crash %llu: poison took effect",
              (unsigned long long)seed, (unsigned long long)k);
    cr_assert(!applied[e->method][e->seq],
              "seed %llu crash %llu: message %u of method %u took effect twice",
              (unsigned long long)seed, (unsigned long long)k, e->seq, e->method);
    cr_assert(e->seq > last[e->method],
              "seed %llu crash %llu: message %u of method %u after %u",
              (unsigned long long)seed, (unsigned long long)k, e->seq, e->method,
              last[e->method]);
    applied[e->method][e->seq] = 1;
    last[e->method] = e->seq;
  }
  n = atomic_load(&sh->stored.n);
  for (uint32_t i = 0; i < n; i++) {
    const rec *s = &sh->stored.r[i];
    cr_assert(applied[s->method][s->seq] || kind_of(p, s->seq) == 'P',
              "seed %llu crash %llu: message %u of method %u stored, then lost",
              (unsigned long long)seed, (unsigned long long)k, s->seq, s->method);
  }
  uint32_t na = atomic_load(&sh->again.n), ns = atomic_load(&sh->settled.n);
  for (uint32_t i = 0; i < na; i++)
    for (uint32_t j = 0; j < ns; j++)
      cr_assert(sh->again.r[i].id != sh->settled.r[j].id ||
                    sh->again.r[i].method <= sh->settled.r[j].method,
                "seed %llu crash %llu: message id %llu was reported %s, then sent "
                "again: its outcome was not durable",
                (unsigned long long)seed, (unsigned long long)k,
                (unsigned long long)sh->settled.r[j].id,
                sh->settled.r[j].fate == ACKRPC_OUTBOX_DEAD ? "DEAD" : "ACKED");
}

static uint64_t second_cuts; /* first recoveries that lost power too */

/* One crash point: the scenario cut at sync k, then the recovery. Returns
 * 1 if the power was cut (0: the run ended before its k-th sync). */
static int crash_point(params *p, uint64_t seed, uint64_t k, const char *dir,
                       const char *sock) {
  static uint32_t run;
  p->run = ++run;
  char db[512];
  snprintf(db, sizeof db, "%s/ob%u.db", dir, p->run);
  reset_logs();
  int rc = wait_exit(spawn_sender(p, db, sock, k));
  cr_assert(rc == POWERLOSS_EXIT || rc == 0, "seed %llu crash %llu: sender exit %d",
            (unsigned long long)seed, (unsigned long long)k, rc);
  if (rc == POWERLOSS_EXIT && k % 8 == 0) {
    /* A second power cut, during the first recovery, at one of its first
     * syncs (reopening, the first outcomes). */
    pid_t pid = fork_child();
    if (pid == 0) {
      phase = 1;
      powerloss_vfs_crash_at(1 + (seed + k) % 8);
      _exit(recover(p, db, sock));
    }
    int r1 = wait_exit(pid);
    second_cuts += r1 == POWERLOSS_EXIT;
    cr_assert(r1 == POWERLOSS_EXIT || r1 == 0,
              "seed %llu crash %llu: first recovery failed check %d",
              (unsigned long long)seed, (unsigned long long)k, r1);
  }
  phase = 2;
  int rrc = recover(p, db, sock);
  cr_assert(rrc == 0, "seed %llu crash %llu: recovery failed check %d",
            (unsigned long long)seed, (unsigned long long)k, rrc);
  check_run(p, seed, k);
  char f[600];
  static const char *const suffix[] = {"", "-wal", "-mark", "-shm", "-journal"};
  for (int i = 0; i < 5; i++) {
    snprintf(f, sizeof f, "%s%s", db, suffix[i]);
    unlink(f);
  }
  powerloss_vfs_forget();
  return rc == POWERLOSS_EXIT;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Scenarios from `seed0` on, each cut at every sync point, until
 * POWER_POINTS crash points were checked. */
static void run_shard(uint64_t seed0) {
  sh =
      mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  cr_assert(sh != MAP_FAILED);
  /* One malloc arena: each child's threads would otherwise fault in arenas
   * of their own, most of a crash point's cost. */
  mallopt(M_ARENA_MAX, 1);
  cr_assert(powerloss_vfs_register(1) == 0); /* the recovery's, and the children's */
  char dir[] = "/tmp/ackrpc-power.XXXXXX";
  cr_assert(mkdtemp(dir));
  char sock[600];
  snprintf(sock, sizeof sock, "%s/recv.sock", dir);
  pid_t recv = fork_child();
  if (recv == 0) receiver_main(sock);
  for (int i = 0; i < 200 && access(sock, F_OK) != 0; i++)
    usleep(5000);
  /* ACKRPC_POWER_POINTS lowers the count for a quick run by hand. */
  const char *env = getenv("ACKRPC_POWER_POINTS");
  uint64_t want = env && *env ? strtoull(env, NULL, 10) : POWER_POINTS;
  double t0 = now_s();
  uint64_t points = 0, scenarios = 0;
  for (uint64_t seed = seed0; points < want && now_s() - t0 < TIME_LIMIT_S;
       seed++, scenarios++) {
    params p = draw(seed);
    crash_point(&p, seed, 0, dir, sock); /* whole: how many syncs */
    uint64_t total = atomic_load(&sh->syncs);
    cr_assert(total > 0);
    for (uint64_t k = 1; k <= total + 1; k++) {
      if (!crash_point(&p, seed, k, dir, sock)) break; /* fewer syncs this time */
      points++;
    }
  }
  kill(recv, SIGKILL);
  wait_exit(recv);
  /* The receiver was killed: its socket and the lock file beside it stay. */
  char lock[640];
  snprintf(lock, sizeof lock, "%s.lock", sock);
  unlink(sock);
  unlink(lock);
  cr_assert_eq(rmdir(dir), 0, "%s left behind: %s", dir, strerror(errno));
  munmap(sh, sizeof *sh);
  cr_log_info("%llu crash points (%llu more in a recovery) in %llu scenarios, %.1f s",
              (unsigned long long)points, (unsigned long long)second_cuts,
              (unsigned long long)scenarios, now_s() - t0);
  cr_assert(points >= want, "only %llu crash points within %d s",
            (unsigned long long)points, TIME_LIMIT_S);
}

Test(outbox_power, first_half, .timeout = 280) {
  run_shard(1);
}

Test(outbox_power, second_half, .timeout = 280) {
  run_shard(1000001);
}
