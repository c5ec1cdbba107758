/* deliver.c: the outbox's delivery: fetching the messages that are due,
 * sending them on one pipelined session, recording what came of them in
 * batches, and the worker thread (include/ackrpc/outbox.h,
 * docs/DELIVERY.md).
 *
 * The pipeline: up to `window` calls in flight on one asynchronous session
 * (ackrpc_async_session_call_raw()) on a private event base, run by the
 * delivering thread (the worker, or the caller of pump). The receiver
 * serves a session's calls one at a time, in order, so messages of a method
 * reach it in enqueue order. Answers are acted on at once for what is sent
 * next (a failure stops its method: backoff, then the failed message again,
 * alone, until it is acked), and recorded in the database later, many per
 * group commit (commit.c): when `settle_at` answers wait, when nothing more
 * is in flight, or at once after a failure. on_attempt is told of each
 * attempt only once its outcome is committed. An answer not yet recorded
 * when the process dies is as if it never came: the message is sent again,
 * with its call id.
 *
 * Per method, a cursor (the largest id sent) says where the next fetch
 * starts: one index seek for up to `window` messages, not one per message.
 *
 * Not here: the calls themselves (the client library), the rule of what to
 * retry and the backoff (client/retry.c), the group commit (commit.c). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/retry.h"
#include "core/clock.h"
#include "outbox/outbox_internal.h"

#define DB_ERROR_RETRY_US 100000
#define IDLE_POLL_MS 20 /* wait_idle: checks the fault this often at least */
#define MIN_SETTLE 32   /* answers recorded together, at least (window 1 too) */

/* One attempt at a message: sent, then answered, then recorded. */
typedef struct flight {
  ackrpc_outbox *ob;
  uint64_t id;
  const char *qname; /* the method's method_queue name (stable while here) */
  uint8_t *body;
  size_t body_len;
  uint8_t call_id[ACKRPC_MAX_CALL_ID];
  size_t call_id_len;
  int64_t enqueued_at_ms;
  unsigned attempts; /* counting this one */
  int replied, seen;
  ackrpc_outbox_fate fate; /* once seen */
  ackrpc_status status;
  char *message;
  uint8_t *reply;
  size_t reply_len;
} flight;

static void flight_free(flight *f) {
  if (!f) return;
  free(f->body);
  free(f->message);
  free(f->reply);
  free(f);
}

/* Answers kept before they are recorded, at most. */
static size_t settle_at(const ackrpc_outbox *ob) {
  size_t half = ob->window / 2;
  return half > MIN_SETTLE ? half : MIN_SETTLE;
}

static size_t in_flight(const ackrpc_outbox *ob) {
  return ob->n_flights - ob->n_replied;
}

/* The session, its base and the list of flights, made on first use by the
 * delivering thread. Returns a status. */
static ackrpc_status ensure_session(ackrpc_outbox *ob) {
  if (!ob->flights) {
    ob->flights = calloc(ob->window + settle_at(ob), sizeof *ob->flights);
    if (!ob->flights) return ACKRPC_E_NOMEM;
  }
  if (!ob->base && !(ob->base = event_base_new())) return ACKRPC_E_NOMEM;
  if (!ob->session)
    return ackrpc_async_session_open(ob->client, ob->base, &ob->session);
  return ACKRPC_OK;
}

void akr_ob_deliver_free(ackrpc_outbox *ob) {
  if (ob->session) {
    ackrpc_async_session_close(ob->session); /* frees itself on the loop */
    ob->session = NULL;
    event_base_dispatch(ob->base);
  }
  if (ob->base) event_base_free(ob->base);
  ob->base = NULL;
  for (size_t i = 0; i < ob->n_flights; i++)
    flight_free(ob->flights[i]);
  free(ob->flights);
  ob->flights = NULL;
  ob->n_flights = ob->n_replied = 0;
}

/* The answer to a call (on the delivering thread, from the event loop). */
static void on_reply(ackrpc_result *r, void *user) {
  flight *f = user;
  f->status = r->status;
  f->message = r->message;
  r->message = NULL;
  f->reply = r->reply_bytes;
  f->reply_len = r->reply_bytes_len;
  r->reply_bytes = NULL;
  f->replied = 1;
  f->ob->n_replied++;
}

static void send_flight(ackrpc_outbox *ob, flight *f) {
  ackrpc_call_options co = {.call_id = f->call_id,
                            .call_id_len = f->call_id_len,
                            .timeout_ms = ob->call_timeout_ms};
  ob->flights[ob->n_flights++] = f;
  ackrpc_status st = ackrpc_async_session_call_raw(ob->session, f->qname, f->body,
                                                   f->body_len, &co, on_reply, f);
  if (st != ACKRPC_OK) { /* never sent: an outcome of its own */
    f->status = st;
    f->replied = 1;
    ob->n_replied++;
  }
}

static method_queue *queue_of(ackrpc_outbox *ob, const char *qname) {
  for (size_t i = 0; i < ob->n_methods; i++)
    if (ob->methods[i].name == qname) return &ob->methods[i];
  return NULL;
}

/* Whether message `id` has a flight (in flight, or answered and not yet
 * recorded). */
static int busy(const ackrpc_outbox *ob, uint64_t id) {
  for (size_t i = 0; i < ob->n_flights; i++)
    if (ob->flights[i]->id == id) return 1;
  return 0;
}

/* A flight from the fetch statement's row; checks the checksum. */
static int flight_from_row(ackrpc_outbox *ob, sqlite3_stmt *st, const char *qname,
                           flight **ret) {
  flight *f = calloc(1, sizeof *f);
  size_t len = (size_t)sqlite3_column_bytes(st, 1);
  if (f) f->body = malloc(len ? len : 1);
  if (!f || !f->body) {
    flight_free(f);
    return SQLITE_NOMEM;
  }
  f->ob = ob;
  f->id = (uint64_t)sqlite3_column_int64(st, 0);
  f->qname = qname;
  f->body_len = len;
  if (len) memcpy(f->body, sqlite3_column_blob(st, 1), len);
  size_t idl = (size_t)sqlite3_column_bytes(st, 2);
  f->call_id_len = idl > sizeof f->call_id ? sizeof f->call_id : idl;
  memcpy(f->call_id, sqlite3_column_blob(st, 2), f->call_id_len);
  f->enqueued_at_ms = sqlite3_column_int64(st, 3);
  f->attempts = (unsigned)sqlite3_column_int64(st, 4) + 1;
  if (sqlite3_column_type(st, 5) != SQLITE_NULL &&
      sqlite3_column_int64(st, 5) != akr_ob_sum(qname, f->body, f->body_len, f->call_id,
                                                f->call_id_len, f->enqueued_at_ms)) {
    /* Bytes changed under SQLite's feet: never send them. */
    ob->bad_sum_id = f->id;
    flight_free(f);
    return SQLITE_CORRUPT;
  }
  *ret = f;
  return SQLITE_OK;
}

/* Fetches and sends up to `room` messages of method q (a copy), after its
 * cursor. With the token. Returns an SQLite code; *ret_got the number
 * sent. */
static int fetch_method(ackrpc_outbox *ob, method_queue *q, size_t room,
                        size_t *ret_got) {
  sqlite3_stmt *st = ob->st[S_FETCH];
  size_t limit = room + (q->rewound ? ob->n_flights : 0);
  sqlite3_bind_text(st, 1, q->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)q->cursor);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
  size_t got = 0;
  int rc;
  while (got < room && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
    q->cursor = id;
    if (q->rewound && busy(ob, id)) continue; /* already on its way */
    flight *f = NULL;
    rc = flight_from_row(ob, st, q->name, &f);
    if (rc != SQLITE_OK) break;
    send_flight(ob, f);
    q->in_flight++;
    got++;
  }
  if (got == room || rc == SQLITE_DONE) rc = SQLITE_OK;
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  *ret_got = got;
  return rc;
}

/* Whether a flight of method `qname` is on the list. */
static int has_flights(const ackrpc_outbox *ob, const char *qname) {
  for (size_t i = 0; i < ob->n_flights; i++)
    if (ob->flights[i]->qname == qname) return 1;
  return 0;
}

/* Forgets the methods found empty (gone[i] set), unless a commit stored
 * messages since `gen` was read (its method might be one of them). Under
 * mu. */
static void drop_empty(ackrpc_outbox *ob, const unsigned char *gone, size_t n,
                       uint64_t gen) {
  if (ob->enq_commits != gen) return;
  for (size_t i = n; i-- > 0;) {
    if (!gone[i]) continue;
    free(ob->methods[i].name);
    ob->methods[i] = ob->methods[--ob->n_methods];
  }
}

/* Sends what is due, up to the window. *ret_wait_us: how long until a
 * method backing off is due (UINT64_MAX: none). Returns an SQLite code. */
static int fill(ackrpc_outbox *ob, uint64_t *ret_wait_us) {
  uint64_t wait = UINT64_MAX;
  size_t cap = ob->window + settle_at(ob);
  akr_ob_db_enter(ob);
  pthread_mutex_lock(&ob->mu);
  uint64_t gen = ob->enq_commits;
  size_t n = ob->n_methods;
  pthread_mutex_unlock(&ob->mu);
  unsigned char *gone = calloc(n ? n : 1, 1);
  int rc = gone ? SQLITE_OK : SQLITE_NOMEM;
  for (size_t k = 0; rc == SQLITE_OK && k < n; k++) {
    size_t room = ob->window - in_flight(ob);
    if (cap - ob->n_flights < room) room = cap - ob->n_flights;
    if (!room) break;
    size_t i = (ob->rr + k) % n, got = 0;
    pthread_mutex_lock(&ob->mu);
    method_queue q = ob->methods[i];
    pthread_mutex_unlock(&ob->mu);
    uint64_t now = akr_now_us();
    if (q.next_at_us > now) {
      if (q.next_at_us - now < wait) wait = q.next_at_us - now;
      continue;
    }
    if (q.slow && q.in_flight) continue;
    rc = fetch_method(ob, &q, q.slow ? 1 : room, &got);
    pthread_mutex_lock(&ob->mu);
    ob->methods[i].cursor = q.cursor;
    ob->methods[i].in_flight = q.in_flight;
    pthread_mutex_unlock(&ob->mu);
    if (rc == SQLITE_OK && !got && !q.in_flight && !has_flights(ob, q.name))
      gone[i] = 1;
  }
  ob->rr++;
  pthread_mutex_lock(&ob->mu);
  if (rc == SQLITE_OK) drop_empty(ob, gone, n, gen);
  pthread_mutex_unlock(&ob->mu);
  akr_ob_db_leave(ob);
  free(gone);
  *ret_wait_us = wait;
  return rc;
}

static uint64_t backoff_us(ackrpc_outbox *ob, unsigned attempts) {
  return akr_backoff_us(ob->initial_backoff_ms, ob->max_backoff_ms, attempts, &ob->rng);
}

/* Sends method q's messages again from message `id` on, after a backoff,
 * one at a time until one is acked. Under mu. */
static void rewind_to(ackrpc_outbox *ob, method_queue *q, uint64_t id,
                      unsigned attempts) {
  if (!q) return;
  if (q->cursor >= id) q->cursor = id - 1;
  q->rewound = 1;
  q->slow = 1;
  q->next_at_us = akr_now_us() + backoff_us(ob, attempts);
}

/* Acts on the answers that came since the last look: decides each one's
 * fate, and what its method sends next. */
static void observe(ackrpc_outbox *ob) {
  pthread_mutex_lock(&ob->mu);
  for (size_t i = 0; i < ob->n_flights; i++) {
    flight *f = ob->flights[i];
    if (!f->replied || f->seen) continue;
    f->seen = 1;
    method_queue *q = queue_of(ob, f->qname);
    if (q && q->in_flight) q->in_flight--;
    if (f->status == ACKRPC_OK) {
      f->fate = ACKRPC_OUTBOX_ACKED;
      if (q) q->slow = 0;
      continue;
    }
    /* An impostor in the real server's way (E_SERVER_IDENTITY) got
     * nothing; the server may come back: try again, within the limits. */
    int dead = (!akr_retryable(ob->retry_on, f->status) &&
                f->status != ACKRPC_E_SERVER_IDENTITY) ||
               (ob->max_attempts && f->attempts >= ob->max_attempts) ||
               (ob->max_age_ms &&
                akr_ob_wall_ms() - f->enqueued_at_ms >= (int64_t)ob->max_age_ms);
    f->fate = dead ? ACKRPC_OUTBOX_DEAD : ACKRPC_OUTBOX_RETRY;
    if (!dead) {
      rewind_to(ob, q, f->id, f->attempts);
      ob->force_settle = 1; /* its attempt is recorded before it is sent again */
    }
  }
  pthread_mutex_unlock(&ob->mu);
}

/* Notes damage found by a commit or a fetch (rc): 1 if delivery must stop
 * (ob->fault set, now or before). */
static int note_damage(ackrpc_outbox *ob, int rc) {
  akr_ob_db_enter(ob);
  pthread_mutex_lock(&ob->mu);
  akr_ob_note_fault(ob, rc);
  int halted = ob->fault != ACKRPC_OK;
  pthread_mutex_unlock(&ob->mu);
  akr_ob_db_leave(ob);
  return halted;
}

/* Tells on_attempt that delivery stopped on damage (ob->fault), about
 * flight f or (NULL) none. */
static void report_halt(ackrpc_outbox *ob, const flight *f) {
  if (!ob->on_attempt) return;
  ackrpc_outbox_attempt a = {
      .status = ob->fault, .message = ob->fault_msg, .fate = ACKRPC_OUTBOX_HALTED};
  if (f) {
    a.id = f->id;
    a.method = f->qname;
    a.call_id = f->call_id;
    a.call_id_len = f->call_id_len;
    a.attempt = f->attempts;
  }
  ob->on_attempt(ob->on_attempt_user, &a);
}

static void report(ackrpc_outbox *ob, const flight *f) {
  if (!ob->on_attempt) return;
  ackrpc_outbox_attempt a = {.id = f->id,
                             .method = f->qname,
                             .call_id = f->call_id,
                             .call_id_len = f->call_id_len,
                             .attempt = f->attempts,
                             .status = f->status,
                             .message = f->message,
                             .reply = f->reply,
                             .reply_len = f->reply_len,
                             .fate = f->fate};
  ob->on_attempt(ob->on_attempt_user, &a);
}

/* After a commit that failed (not damage): nothing was recorded, so each
 * message is sent again, with its call id, after a backoff. */
static void unrecorded(ackrpc_outbox *ob, size_t k) {
  pthread_mutex_lock(&ob->mu);
  for (size_t i = 0; i < k; i++) {
    flight *f = ob->flights[i];
    f->fate = ACKRPC_OUTBOX_RETRY;
    rewind_to(ob, queue_of(ob, f->qname), f->id, f->attempts);
  }
  pthread_mutex_unlock(&ob->mu);
}

/* Records the answered flights at the head of the list in one group
 * commit, then reports them. Returns 0, or -1 if delivery stopped on
 * damage. */
static int settle(ackrpc_outbox *ob) {
  observe(ob); /* calls that failed before they were sent */
  size_t k = 0;
  while (k < ob->n_flights && ob->flights[k]->seen)
    k++;
  ob->force_settle = 0;
  if (!k) return 0;
  ob_outcome *oc = malloc(k * sizeof *oc);
  int rc = oc ? SQLITE_OK : SQLITE_NOMEM;
  for (size_t i = 0; oc && i < k; i++) {
    const flight *f = ob->flights[i];
    oc[i] = (ob_outcome){.id = f->id,
                         .attempts = f->attempts,
                         .fate = f->fate,
                         .status = f->status,
                         .message = f->message};
  }
  ob_write w = {.outcomes = oc, .n_outcomes = k};
  if (rc == SQLITE_OK) rc = akr_ob_commit(ob, &w);
  free(oc);
  int halted = rc != SQLITE_OK && note_damage(ob, rc);
  if (rc != SQLITE_OK && !halted) unrecorded(ob, k);
  if (halted) report_halt(ob, ob->flights[0]);
  for (size_t i = 0; i < k; i++) {
    if (!halted) report(ob, ob->flights[i]);
    flight_free(ob->flights[i]);
  }
  ob->n_flights -= k;
  ob->n_replied -= k;
  memmove(ob->flights, ob->flights + k, ob->n_flights * sizeof *ob->flights);
  if (!ob->n_flights) { /* nothing fetched can be on its way any more */
    pthread_mutex_lock(&ob->mu);
    for (size_t i = 0; i < ob->n_methods; i++)
      ob->methods[i].rewound = 0;
    pthread_mutex_unlock(&ob->mu);
  }
  return halted ? -1 : 0;
}

/* Runs the event loop until a new answer comes (or nothing is in flight). */
static void run_loop(ackrpc_outbox *ob) {
  size_t before = ob->n_replied;
  while (ob->n_replied == before && in_flight(ob) > 0)
    if (event_base_loop(ob->base, EVLOOP_ONCE) != 0) break;
  observe(ob);
}

/* Waits for the answers still due, and forgets them unrecorded (delivery
 * stopped on damage: nothing more is written). */
static void abandon(ackrpc_outbox *ob) {
  while (in_flight(ob) > 0)
    run_loop(ob);
  for (size_t i = 0; i < ob->n_flights; i++)
    flight_free(ob->flights[i]);
  ob->n_flights = ob->n_replied = 0;
}

/* A fetch failed with rc: damage stops delivery (reported once, with no
 * message), anything else is retried later. Returns 1 if stopped. */
static int fetch_failed(ackrpc_outbox *ob, int rc) {
  if (!note_damage(ob, rc)) return 0;
  report_halt(ob, NULL);
  return 1;
}

/* Sleeps until something is due, an enqueue commits or stop is asked;
 * not if a commit stored messages since `gen`. */
static void idle_wait(ackrpc_outbox *ob, uint64_t gen, uint64_t wait) {
  pthread_mutex_lock(&ob->mu);
  if (ob->stopping || ob->enq_commits != gen) {
    pthread_mutex_unlock(&ob->mu);
    return;
  }
  if (wait == UINT64_MAX) {
    pthread_cond_wait(&ob->cv, &ob->mu);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (wait % 1000000u) * 1000u;
    ts.tv_sec += (time_t)(wait / 1000000u + ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_cond_timedwait(&ob->cv, &ob->mu, &ts);
  }
  pthread_mutex_unlock(&ob->mu);
}

static uint64_t commits_seen(ackrpc_outbox *ob, int *ret_stop) {
  pthread_mutex_lock(&ob->mu);
  uint64_t gen = ob->enq_commits;
  *ret_stop = ob->stopping || ob->fault != ACKRPC_OK;
  pthread_mutex_unlock(&ob->mu);
  return gen;
}

/* One turn of the worker: send, wait for answers, record. Returns 0 to go
 * on, -1 when delivery stopped on damage. */
static int worker_turn(ackrpc_outbox *ob) {
  int stop;
  uint64_t gen = commits_seen(ob, &stop), wait = UINT64_MAX;
  if (ensure_session(ob) != ACKRPC_OK) {
    idle_wait(ob, gen, DB_ERROR_RETRY_US);
    return 0;
  }
  int rc = ob->force_settle ? SQLITE_OK : fill(ob, &wait);
  if (rc != SQLITE_OK && fetch_failed(ob, rc)) return -1;
  if (rc != SQLITE_OK) wait = DB_ERROR_RETRY_US; /* e.g. I/O error: try later */
  if (ob->force_settle || (ob->n_flights && in_flight(ob) == 0))
    return settle(ob); /* nothing more could be sent: record what came */
  if (!ob->n_flights) {
    idle_wait(ob, gen, wait);
    return 0;
  }
  run_loop(ob);
  if (ob->force_settle || ob->n_replied >= settle_at(ob)) return settle(ob);
  return 0;
}

static void *worker_main(void *arg) {
  ackrpc_outbox *ob = arg;
  int stop = 0;
  while (!stop) {
    commits_seen(ob, &stop);
    if (!stop && worker_turn(ob) < 0) break;
  }
  /* Stopping: let the calls in flight end, and record them. */
  if (ob->fault == ACKRPC_OK) {
    while (in_flight(ob) > 0)
      run_loop(ob);
    settle(ob);
  }
  abandon(ob);
  return NULL;
}

ackrpc_status ackrpc_outbox_start(ackrpc_outbox *ob) {
  if (!ob) return ACKRPC_E_INVAL;
  if (ob->fault != ACKRPC_OK)
    return ob->fault; /* also while the dead worker is joined */
  if (!ob->client || ob->running) return ACKRPC_E_STATE;
  ob->stopping = 0;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int err = pthread_create(&ob->worker, NULL, worker_main, ob);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    errno = err;
    return ACKRPC_E_SYSTEM;
  }
  ob->running = 1;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_outbox_stop(ackrpc_outbox *ob) {
  if (!ob) return ACKRPC_E_INVAL;
  if (!ob->running) return ACKRPC_OK;
  pthread_mutex_lock(&ob->mu);
  ob->stopping = 1;
  pthread_cond_broadcast(&ob->cv);
  pthread_mutex_unlock(&ob->mu);
  pthread_join(ob->worker, NULL);
  ob->running = 0;
  return ACKRPC_OK;
}

/* One round of pump: sends up to `max` due messages, waits for all their
 * answers and records them. Returns an SQLite code (fetch) and the number
 * sent in *ret_sent. */
static int pump_round(ackrpc_outbox *ob, unsigned max, unsigned *ret_sent) {
  unsigned window = ob->window;
  if (max < window) ob->window = max; /* no more attempts than asked */
  size_t before = ob->n_flights;
  uint64_t wait;
  int rc = fill(ob, &wait);
  ob->window = window;
  *ret_sent = (unsigned)(ob->n_flights - before);
  while (in_flight(ob) > 0)
    run_loop(ob);
  return rc;
}

ackrpc_status ackrpc_outbox_pump(ackrpc_outbox *ob, unsigned max,
                                 unsigned *ret_attempts) {
  if (!ob) return ACKRPC_E_INVAL;
  if (!ob->client || ob->running) return ACKRPC_E_STATE;
  unsigned n = 0;
  ackrpc_status status = ob->fault;
  if (status == ACKRPC_OK) status = ensure_session(ob);
  while (status == ACKRPC_OK && n < max) {
    unsigned sent = 0;
    int rc = pump_round(ob, max - n, &sent);
    n += sent;
    if (settle(ob) < 0) status = ob->fault; /* a record met damage */
    if (status == ACKRPC_OK && rc != SQLITE_OK) {
      status = akr_ob_status(rc);
      if (fetch_failed(ob, rc)) status = ob->fault;
      break;
    }
    if (!sent) break;
  }
  if (ob->fault != ACKRPC_OK) abandon(ob);
  if (ret_attempts) *ret_attempts = n;
  return status;
}

ackrpc_status ackrpc_outbox_wait_idle(ackrpc_outbox *ob, uint32_t timeout_ms) {
  if (!ob) return ACKRPC_E_INVAL;
  uint64_t end = akr_now_us() + (uint64_t)timeout_ms * 1000u;
  for (;;) {
    uint64_t any = 0;
    pthread_mutex_lock(&ob->mu);
    ackrpc_status fault = ob->fault;
    uint64_t gen = ob->group_commits;
    pthread_mutex_unlock(&ob->mu);
    if (fault != ACKRPC_OK) return fault; /* delivery stopped: it never empties */
    akr_ob_db_enter(ob);
    int rc = akr_ob_query_u64(ob->st[S_ANY], &any);
    akr_ob_db_leave(ob);
    if (rc != SQLITE_OK) return akr_ob_status(rc);
    if (!any) return ACKRPC_OK;
    uint64_t now = akr_now_us();
    if (now >= end) return ACKRPC_E_WAIT_TIMEOUT;
    /* Until the next group commit (the one that may empty it), checking
     * the fault every IDLE_POLL_MS. */
    uint64_t wait = end - now < IDLE_POLL_MS * 1000u ? end - now : IDLE_POLL_MS * 1000u;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + wait * 1000u;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_mutex_lock(&ob->mu);
    while (ob->group_commits == gen && ob->fault == ACKRPC_OK &&
           pthread_cond_timedwait(&ob->db_cv, &ob->mu, &ts) == 0) {
    }
    pthread_mutex_unlock(&ob->mu);
  }
}
