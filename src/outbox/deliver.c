/* deliver.c: the outbox's delivery: picking the message that is due,
 * one attempt at it, recording what came of it, and the worker thread
 * (include/ackrpc/outbox.h, docs/DELIVERY.md).
 *
 * Order: per method, only the oldest message (smallest id) is ever sent,
 * so a message goes out only once its predecessor is gone (acked or dead).
 * The methods with messages are kept in memory (with each one's backoff),
 * so picking the next message is one index seek per method, not a scan.
 * The worker never holds `mu` during a call.
 *
 * Not here: the calls themselves (ackrpc_client_call_raw()), the rule of
 * what to retry and the backoff (client/retry.c). */
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
#define IDLE_POLL_MS 20

static void message_free(message *m) {
  free(m->method_name);
  free(m->body);
  memset(m, 0, sizeof *m);
}

/* Takes the head of the method that is due first. Returns SQLITE_OK with
 * *ret_found 1 (m filled) or 0 (nothing due; *ret_wait_us is how long until
 * something is, UINT64_MAX if the outbox is empty). Under mu. */
static int pick(ackrpc_outbox *ob, message *m, int *ret_found, uint64_t *ret_wait_us) {
  uint64_t now = akr_now_us(), wait = UINT64_MAX;
  *ret_found = 0;
  for (size_t i = 0; i < ob->n_methods; i++) {
    method_queue *q = &ob->methods[i];
    if (q->next_at_us > now) {
      /* Still backing off; it has messages (an empty queue is dropped). */
      if (q->next_at_us - now < wait) wait = q->next_at_us - now;
      continue;
    }
    sqlite3_stmt *st = ob->st[S_HEAD];
    sqlite3_bind_text(st, 1, q->name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      m->id = (uint64_t)sqlite3_column_int64(st, 0);
      m->method = i;
      m->method_name = strdup(q->name);
      m->body_len = (size_t)sqlite3_column_bytes(st, 1);
      m->body = malloc(m->body_len ? m->body_len : 1);
      if (m->body && m->body_len)
        memcpy(m->body, sqlite3_column_blob(st, 1), m->body_len);
      size_t idl = (size_t)sqlite3_column_bytes(st, 2);
      m->call_id_len = idl > sizeof m->call_id ? sizeof m->call_id : idl;
      memcpy(m->call_id, sqlite3_column_blob(st, 2), m->call_id_len);
      m->enqueued_at_ms = sqlite3_column_int64(st, 3);
      m->attempts = (unsigned)sqlite3_column_int64(st, 4);
      int has_sum = sqlite3_column_type(st, 5) != SQLITE_NULL;
      int64_t sum = sqlite3_column_int64(st, 5);
      sqlite3_reset(st);
      sqlite3_clear_bindings(st);
      if (!m->method_name || !m->body) {
        message_free(m);
        return SQLITE_NOMEM;
      }
      if (has_sum && sum != akr_ob_sum(m->method_name, m->body, m->body_len, m->call_id,
                                       m->call_id_len, m->enqueued_at_ms)) {
        /* Bytes changed under SQLite's feet: never send them. */
        ob->bad_sum_id = m->id;
        message_free(m);
        return SQLITE_CORRUPT;
      }
      *ret_found = 1;
      return SQLITE_OK;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) return rc;
    /* No message for this method: forget it (enqueue adds it again). */
    free(q->name);
    ob->methods[i] = ob->methods[--ob->n_methods];
    i--;
  }
  *ret_wait_us = wait;
  return SQLITE_OK;
}

static uint64_t backoff_us(ackrpc_outbox *ob, unsigned attempts) {
  return akr_backoff_us(ob->initial_backoff_ms, ob->max_backoff_ms, attempts, &ob->rng);
}

/* Commits what one attempt did to message m. Under mu. Returns the fate;
 * a database error leaves the message as it was, to be sent again (with
 * its call id) after a backoff, unless it is damage (E_STORE_CORRUPT):
 * then delivery stops (ACKRPC_OUTBOX_HALTED, ob->fault set). */
static ackrpc_outbox_fate record(ackrpc_outbox *ob, message *m,
                                 const ackrpc_result *r) {
  unsigned attempts = m->attempts + 1;
  method_queue *q = m->method < ob->n_methods &&
                            strcmp(ob->methods[m->method].name, m->method_name) == 0
                        ? &ob->methods[m->method]
                        : NULL;
  int rc;
  ackrpc_outbox_fate fate;
  if (r->status == ACKRPC_OK) {
    fate = ACKRPC_OUTBOX_ACKED;
    rc = akr_ob_exec(ob->db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK) {
      sqlite3_bind_int64(ob->st[S_DELETE], 1, (sqlite3_int64)m->id);
      rc = akr_ob_step_done(ob->st[S_DELETE]);
    }
    if (rc == SQLITE_OK) rc = akr_ob_bump(ob);
    if (rc == SQLITE_OK) rc = akr_ob_exec(ob->db, "COMMIT");
    if (rc != SQLITE_OK) akr_ob_rollback(ob);
  } else {
    /* An impostor in the real server's way (E_SERVER_IDENTITY) got
     * nothing; the server may come back: try again, within the limits. */
    int dead = (!akr_retryable(ob->retry_on, r->status) &&
                r->status != ACKRPC_E_SERVER_IDENTITY) ||
               (ob->max_attempts && attempts >= ob->max_attempts) ||
               (ob->max_age_ms &&
                akr_ob_wall_ms() - m->enqueued_at_ms >= (int64_t)ob->max_age_ms);
    fate = dead ? ACKRPC_OUTBOX_DEAD : ACKRPC_OUTBOX_RETRY;
    rc = akr_ob_exec(ob->db, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = ob->st[dead ? S_TO_DEAD : S_UPDATE];
    if (rc == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, (sqlite3_int64)m->id);
      sqlite3_bind_int64(st, 2, attempts);
      sqlite3_bind_int(st, 3, (int)r->status);
      if (r->message)
        sqlite3_bind_text(st, 4, r->message, -1, SQLITE_STATIC);
      else
        sqlite3_bind_null(st, 4);
      if (dead) sqlite3_bind_int64(st, 5, akr_ob_wall_ms());
      rc = akr_ob_step_done(st);
    }
    if (rc == SQLITE_OK && dead) {
      sqlite3_bind_int64(ob->st[S_DELETE], 1, (sqlite3_int64)m->id);
      rc = akr_ob_step_done(ob->st[S_DELETE]);
    }
    if (rc == SQLITE_OK) rc = akr_ob_bump(ob);
    if (rc == SQLITE_OK) rc = akr_ob_exec(ob->db, "COMMIT");
    if (rc != SQLITE_OK) akr_ob_rollback(ob);
  }
  if (rc == SQLITE_OK) akr_ob_committed(ob);
  if (rc != SQLITE_OK && (akr_ob_note_fault(ob, rc) || ob->fault != ACKRPC_OK))
    return ACKRPC_OUTBOX_HALTED;
  if (rc != SQLITE_OK) {
    /* Not recorded: the message stays the head and is sent again. */
    if (q) q->next_at_us = akr_now_us() + backoff_us(ob, attempts);
    return ACKRPC_OUTBOX_RETRY;
  }
  m->attempts = attempts;
  if (q)
    q->next_at_us =
        fate == ACKRPC_OUTBOX_RETRY ? akr_now_us() + backoff_us(ob, attempts) : 0;
  return fate;
}

/* Tells on_attempt that delivery stopped on damage (ob->fault), about
 * message m or (NULL) none. Outside mu. */
static void report_halt(ackrpc_outbox *ob, const message *m) {
  if (!ob->on_attempt) return;
  ackrpc_outbox_attempt a = {
      .status = ob->fault, .message = ob->fault_msg, .fate = ACKRPC_OUTBOX_HALTED};
  if (m) {
    a.id = m->id;
    a.method = m->method_name;
    a.call_id = m->call_id;
    a.call_id_len = m->call_id_len;
    a.attempt = m->attempts + 1;
  }
  ob->on_attempt(ob->on_attempt_user, &a);
}

/* One attempt at a picked message, outside mu; then records it. */
static void attempt(ackrpc_outbox *ob, message *m) {
  ackrpc_call_options co = {.call_id = m->call_id,
                            .call_id_len = m->call_id_len,
                            .timeout_ms = ob->call_timeout_ms};
  ackrpc_result r = {0};
  ackrpc_client_call_raw(ob->client, m->method_name, m->body, m->body_len, &co, &r);
  pthread_mutex_lock(&ob->mu);
  ackrpc_outbox_fate fate = record(ob, m, &r);
  pthread_mutex_unlock(&ob->mu);
  if (fate == ACKRPC_OUTBOX_HALTED) {
    report_halt(ob, m);
  } else if (ob->on_attempt) {
    ackrpc_outbox_attempt a = {.id = m->id,
                               .method = m->method_name,
                               .call_id = m->call_id,
                               .call_id_len = m->call_id_len,
                               .attempt = m->attempts ? m->attempts : 1,
                               .status = r.status,
                               .message = r.message,
                               .reply = r.reply_bytes,
                               .reply_len = r.reply_bytes_len,
                               .fate = fate};
    ob->on_attempt(ob->on_attempt_user, &a);
  }
  ackrpc_result_clear(&r);
}

static void *worker_main(void *arg) {
  ackrpc_outbox *ob = arg;
  pthread_mutex_lock(&ob->mu);
  while (!ob->stopping && ob->fault == ACKRPC_OK) {
    message m = {0};
    int found = 0;
    uint64_t wait = UINT64_MAX;
    int rc = pick(ob, &m, &found, &wait);
    if (rc != SQLITE_OK && akr_ob_note_fault(ob, rc)) {
      /* Damage: retrying would only hide it. Say so once and stop. */
      pthread_mutex_unlock(&ob->mu);
      report_halt(ob, NULL);
      pthread_mutex_lock(&ob->mu);
      break;
    }
    if (rc != SQLITE_OK) wait = DB_ERROR_RETRY_US; /* e.g. I/O error: try later */
    if (found) {
      pthread_mutex_unlock(&ob->mu);
      attempt(ob, &m);
      message_free(&m);
      pthread_mutex_lock(&ob->mu);
      continue;
    }
    /* Nothing due: sleep until something is, or enqueue or stop wake us. */
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
  }
  pthread_mutex_unlock(&ob->mu);
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

ackrpc_status ackrpc_outbox_pump(ackrpc_outbox *ob, unsigned max,
                                 unsigned *ret_attempts) {
  if (!ob) return ACKRPC_E_INVAL;
  if (!ob->client || ob->running) return ACKRPC_E_STATE;
  unsigned n = 0;
  ackrpc_status status = ob->fault;
  while (status == ACKRPC_OK && n < max) {
    message m = {0};
    int found = 0;
    uint64_t wait;
    pthread_mutex_lock(&ob->mu);
    int rc = pick(ob, &m, &found, &wait);
    int halted = rc != SQLITE_OK && akr_ob_note_fault(ob, rc);
    pthread_mutex_unlock(&ob->mu);
    if (halted) report_halt(ob, NULL);
    if (rc != SQLITE_OK) {
      status = akr_ob_status(rc);
      break;
    }
    if (!found) break;
    attempt(ob, &m);
    message_free(&m);
    n++;
    status = ob->fault; /* the attempt's record may have met damage */
  }
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
    int rc = fault == ACKRPC_OK ? akr_ob_query_u64(ob->st[S_ANY], &any) : SQLITE_OK;
    pthread_mutex_unlock(&ob->mu);
    if (fault != ACKRPC_OK) return fault; /* delivery stopped: it never empties */
    if (rc != SQLITE_OK) return akr_ob_status(rc);
    if (!any) return ACKRPC_OK;
    if (akr_now_us() >= end) return ACKRPC_E_WAIT_TIMEOUT;
    struct timespec ts = {0, IDLE_POLL_MS * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
}
