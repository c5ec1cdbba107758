/* test_outbox_reply_store_power.c: the durable reply store through a power
 * cut at every sync point of a receiver (tests/support/powerloss_vfs.h).
 *
 * A receiver (a server with the reply store attached, whose handler writes
 * an effect row and answers, through the store, with that row's id as its
 * receipt) and its caller run in one child process whose k-th sync loses
 * power: every write not synced is gone and the process dies there. What
 * the caller was acknowledged is kept in memory shared with this process.
 * Then this process reopens the database from what was synced and calls
 * every call id again, with the same request. Each scenario (drawn from a
 * seed: how many calls, which are sent twice, which the handler first
 * refuses with UNAVAILABLE, i.e. aborts) runs first whole, to count its
 * syncs, then once per sync point. Checked for every crash point:
 *   - nothing lost: after the recovery every call is acknowledged, and the
 *     database holds exactly one effect per call;
 *   - nothing doubled: no call id has two effects;
 *   - answers durable: a call acknowledged before the crash gets the same
 *     receipt after it (the answer came from disk, not from a second run);
 *   - a repeat before the crash got the first call's receipt.
 * At least POWER_POINTS crash points (ACKRPC_POWER_POINTS overrides). */
#include <criterion/criterion.h>
#include <errno.h>
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

#include <sqlite3.h>

#include <ackrpc/ackrpc.h>
#include <ackrpc/reply_store.h>

#include "ackrpc/bench.pb-c.h"
#include "powerloss_vfs.h"

#define POWER_POINTS 1000
#define TIME_LIMIT_S 240 /* a bound, not a measurement: fail if not reached */
#define MAX_CALLS 24

static const ackrpc_method METHOD = {"power.Store/Put", &ackrpc__bench__request__descriptor,
                                     &ackrpc__bench__ack__descriptor};

/* Shared by this process and the children. */
typedef struct shared {
  _Atomic uint64_t acked[MAX_CALLS]; /* receipt + 1 once acknowledged; 0: not */
  _Atomic int bad_repeat;            /* a repeat got another receipt */
  _Atomic uint64_t syncs;
} shared;

static shared *sh;

typedef struct params {
  unsigned n;
  unsigned twice_every; /* 0: none */
  unsigned flaky_every; /* 0: none */
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
  p.n = 3 + (unsigned)(rng_next(&s) % (MAX_CALLS - 3));
  p.twice_every = rng_next(&s) % 2 ? 2 + (unsigned)(rng_next(&s) % 3) : 0;
  p.flaky_every = rng_next(&s) % 2 ? 2 + (unsigned)(rng_next(&s) % 4) : 0;
  return p;
}

/* --- the receiver ------------------------------------------------------ */

typedef struct receiver {
  ackrpc_reply_store *store;
  ackrpc_server *srv;
  pthread_t t;
  const params *p;
  uint8_t refused[MAX_CALLS]; /* flaky calls refused once, in this process */
} receiver;

static void on_put(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  receiver *r = user;
  const Ackrpc__Bench__Request *req = (const Ackrpc__Bench__Request *)request;
  unsigned seq = (unsigned)req->id;
  sqlite3 *db = NULL;
  if (ackrpc_reply_store_begin(r->store, call, &db) != ACKRPC_OK) return;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "INSERT INTO effects(seq) VALUES (?1)", -1, &st, NULL) !=
          SQLITE_OK ||
      sqlite3_bind_int64(st, 1, (sqlite3_int64)seq) != SQLITE_OK ||
      sqlite3_step(st) != SQLITE_DONE) {
    sqlite3_finalize(st);
    ackrpc_reply_store_abort(r->store, call, ACKRPC_UNAVAILABLE, "effect not written");
    return;
  }
  sqlite3_finalize(st);
  if (r->p->flaky_every && seq % r->p->flaky_every == 1 && seq < MAX_CALLS &&
      !r->refused[seq]) {
    r->refused[seq] = 1; /* written, then rolled back: must leave nothing */
    ackrpc_reply_store_abort(r->store, call, ACKRPC_UNAVAILABLE, "not now");
    return;
  }
  Ackrpc__Bench__Ack ack = ACKRPC__BENCH__ACK__INIT;
  ack.id = (uint64_t)sqlite3_last_insert_rowid(db);
  ackrpc_reply_store_commit(r->store, call, ACKRPC_OK, NULL, &ack.base);
}

static void *serve(void *arg) {
  ackrpc_server_run(((receiver *)arg)->srv);
  return NULL;
}

/* Opens the store on `db` and serves it on `sock` in a thread; 0 or -1. */
static int receiver_start(receiver *r, const params *p, const char *db, const char *sock) {
  memset(r, 0, sizeof *r);
  r->p = p;
  sqlite3 *h = NULL;
  int rc = sqlite3_open(db, &h);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(h,
                      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                      " CREATE TABLE IF NOT EXISTS effects(seq INTEGER NOT NULL)",
                      NULL, NULL, NULL);
  sqlite3_close(h);
  if (rc != SQLITE_OK) return -1;
  ackrpc_reply_store_options so = {.path = db};
  if (ackrpc_reply_store_open(&so, &r->store) != ACKRPC_OK) return -1;
  ackrpc_server_options o = {.address = sock, .log = ackrpc_log_discard};
  ackrpc_reply_store_attach(r->store, &o);
  if (ackrpc_server_new(&o, &r->srv) != ACKRPC_OK ||
      ackrpc_server_add_method(r->srv, &METHOD, on_put, r) != ACKRPC_OK ||
      pthread_create(&r->t, NULL, serve, r) != 0)
    return -1;
  return 0;
}

static void receiver_stop(receiver *r) {
  ackrpc_server_stop(r->srv);
  pthread_join(r->t, NULL);
  r->srv = ackrpc_server_free(r->srv);
  r->store = ackrpc_reply_store_close(r->store);
}

/* --- the caller -------------------------------------------------------- */

/* Calls seq under its own call id until it is acknowledged (UNAVAILABLE is
 * retried, 50 attempts at most). The receipt, or 0 if never acked. */
static uint64_t put(ackrpc_client *c, unsigned seq) {
  char id[16];
  snprintf(id, sizeof id, "call-%u", seq);
  Ackrpc__Bench__Request req = ACKRPC__BENCH__REQUEST__INIT;
  req.id = seq;
  ackrpc_call_options o = {.call_id = (const uint8_t *)id, .call_id_len = strlen(id)};
  for (int i = 0; i < 50; i++) {
    ackrpc_result res = {0};
    ackrpc_status st = ackrpc_client_call(c, &METHOD, &req.base, &o, &res);
    uint64_t receipt = st == ACKRPC_OK && res.reply ? ((Ackrpc__Bench__Ack *)res.reply)->id : 0;
    ackrpc_result_clear(&res);
    if (receipt) return receipt;
    if (st != ACKRPC_UNAVAILABLE) break;
  }
  return 0;
}

static void child_main(const params *p, const char *db, const char *sock,
                       uint64_t crash_at) {
  if (powerloss_vfs_register(1) != 0) _exit(21);
  powerloss_vfs_crash_at(crash_at);
  receiver r;
  if (receiver_start(&r, p, db, sock) != 0) _exit(22);
  ackrpc_client_options co = {.address = sock, .timeout_ms = 5000};
  ackrpc_client *c = NULL;
  if (ackrpc_client_new(&co, &c) != ACKRPC_OK) _exit(23);
  for (unsigned seq = 1; seq <= p->n; seq++) {
    uint64_t receipt = put(c, seq);
    if (!receipt) _exit(24);
    atomic_store(&sh->acked[seq], receipt + 1);
    if (p->twice_every && seq % p->twice_every == 0 && put(c, seq) != receipt)
      atomic_store(&sh->bad_repeat, 1);
  }
  ackrpc_client_free(c);
  receiver_stop(&r);
  atomic_store(&sh->syncs, powerloss_vfs_syncs());
  _exit(0);
}

/* --- the recovery and the checks ---------------------------------------- */

static pid_t fork_child(void) {
  pid_t parent = getpid(), pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
  }
  return pid;
}

static int wait_exit(pid_t pid) {
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Effects per seq in the database as synced. */
static void count_effects(const char *db, unsigned counts[MAX_CALLS + 1]) {
  memset(counts, 0, (MAX_CALLS + 1) * sizeof counts[0]);
  sqlite3 *h = NULL;
  cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
  sqlite3_stmt *st = NULL;
  cr_assert_eq(sqlite3_prepare_v2(h, "SELECT seq FROM effects", -1, &st, NULL), SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW) {
    sqlite3_int64 seq = sqlite3_column_int64(st, 0);
    cr_assert(seq >= 1 && seq <= MAX_CALLS);
    counts[seq]++;
  }
  sqlite3_finalize(st);
  sqlite3_close(h);
}

static void remove_db(const char *db) {
  char path[512];
  static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
    snprintf(path, sizeof path, "%s%s", db, suffix[i]);
    unlink(path);
  }
}

/* One run: crash at sync k (0: never), recover, check. */
static void run_point(const params *p, uint64_t seed, uint64_t k, const char *db,
                      const char *sock) {
  remove_db(db);
  memset(sh->acked, 0, sizeof sh->acked);
  atomic_store(&sh->bad_repeat, 0);
  pid_t pid = fork_child();
  cr_assert_geq(pid, 0);
  if (pid == 0) child_main(p, db, sock, k);
  int rc = wait_exit(pid);
  cr_assert(rc == 0 || (k && rc == POWERLOSS_EXIT), "seed %llu crash %llu: child exit %d",
            (unsigned long long)seed, (unsigned long long)k, rc);
  cr_assert(!atomic_load(&sh->bad_repeat),
            "seed %llu crash %llu: a repeat got another receipt", (unsigned long long)seed,
            (unsigned long long)k);
  unlink(sock);

  /* The recovery, in this process: every call again, the same request. */
  receiver r;
  cr_assert_eq(receiver_start(&r, p, db, sock), 0, "seed %llu crash %llu: reopening failed",
               (unsigned long long)seed, (unsigned long long)k);
  ackrpc_client_options co = {.address = sock, .timeout_ms = 5000};
  ackrpc_client *c = NULL;
  cr_assert_eq(ackrpc_client_new(&co, &c), ACKRPC_OK);
  for (unsigned seq = 1; seq <= p->n; seq++) {
    uint64_t receipt = put(c, seq), before = atomic_load(&sh->acked[seq]);
    cr_assert(receipt, "seed %llu crash %llu: call %u not acked after the recovery",
              (unsigned long long)seed, (unsigned long long)k, seq);
    cr_assert(!before || before - 1 == receipt,
              "seed %llu crash %llu: call %u acked with receipt %llu, then %llu",
              (unsigned long long)seed, (unsigned long long)k, seq,
              (unsigned long long)(before - 1), (unsigned long long)receipt);
  }
  ackrpc_client_free(c);
  receiver_stop(&r);
  unlink(sock);
  unsigned counts[MAX_CALLS + 1];
  count_effects(db, counts);
  for (unsigned seq = 1; seq <= MAX_CALLS; seq++)
    cr_assert_eq(counts[seq], seq <= p->n ? 1u : 0u,
                 "seed %llu crash %llu: call %u took effect %u times",
                 (unsigned long long)seed, (unsigned long long)k, seq, counts[seq]);
}

Test(power, reply_store_at_every_sync_point, .timeout = TIME_LIMIT_S + 60) {
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  cr_assert_neq(sh, MAP_FAILED);
  char dir[] = "/tmp/ackrpc-rspower-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char db[256], sock[256];
  snprintf(db, sizeof db, "%s/receiver.db", dir);
  snprintf(sock, sizeof sock, "%s/s.sock", dir);
  uint64_t want = POWER_POINTS;
  const char *env = getenv("ACKRPC_POWER_POINTS");
  if (env && atoll(env) > 0) want = (uint64_t)atoll(env);
  time_t t0 = time(NULL);
  uint64_t points = 0, seed = 1;
  for (; points < want; seed++) {
    params p = draw(seed);
    atomic_store(&sh->syncs, 0);
    run_point(&p, seed, 0, db, sock); /* whole: count the syncs */
    uint64_t syncs = atomic_load(&sh->syncs);
    cr_assert_gt(syncs, p.n, "seed %llu: %llu syncs for %u commits",
                 (unsigned long long)seed, (unsigned long long)syncs, p.n);
    for (uint64_t k = 1; k <= syncs && points < want; k++, points++) {
      run_point(&p, seed, k, db, sock);
      cr_assert_lt(time(NULL) - t0, TIME_LIMIT_S, "only %llu crash points in %d s",
                   (unsigned long long)points, TIME_LIMIT_S);
    }
  }
  remove_db(db);
  rmdir(dir);
  munmap(sh, sizeof *sh);
}
