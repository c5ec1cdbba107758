/* commit.c: the outbox's group commit, and the token that says who holds
 * the SQLite connection (outbox_internal.h).
 *
 * Every write (enqueued messages, the outcomes of attempts) is queued as an
 * ob_write; the first writer that finds the connection free becomes the
 * leader: it takes every write queued so far, runs them in one transaction
 * with the commit counter's bump, commits (one WAL fsync), writes and
 * syncs the mark, and wakes their writers. Writers that arrive while it
 * waits for the disk queue up for the next group. So N producers that
 * enqueue at once pay about one fsync, not N, and each still returns only
 * once its messages are on disk.
 *
 * A group is all or nothing: if any write in it fails, the transaction is
 * rolled back and every writer of the group gets the error (nothing of
 * theirs was stored), as if each had failed alone.
 *
 * Not here: the statements and the mark file (store.c). */
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "outbox/outbox_internal.h"

void akr_ob_db_enter(ackrpc_outbox *ob) {
  pthread_mutex_lock(&ob->mu);
  while (ob->db_busy)
    pthread_cond_wait(&ob->db_cv, &ob->mu);
  ob->db_busy = 1;
  pthread_mutex_unlock(&ob->mu);
}

void akr_ob_db_leave(ackrpc_outbox *ob) {
  pthread_mutex_lock(&ob->mu);
  ob->db_busy = 0;
  pthread_cond_broadcast(&ob->db_cv);
  pthread_mutex_unlock(&ob->mu);
}

/* Stores one writer's messages in the open transaction. */
static int insert_entries(ackrpc_outbox *ob, ob_write *w, int64_t now) {
  sqlite3_stmt *st = ob->st[S_INSERT];
  for (size_t i = 0; i < w->n; i++) {
    const ackrpc_outbox_entry *e = &w->entries[i];
    sqlite3_bind_text(st, 1, e->method, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, e->body_len ? (const void *)e->body : (const void *)"",
                      (int)e->body_len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, w->call_ids[i], 16, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(
        st, 5, akr_ob_sum(e->method, e->body, e->body_len, w->call_ids[i], 16, now));
    int rc = akr_ob_step_done(st);
    if (rc != SQLITE_OK) return rc;
    if (i == 0) w->first_id = (uint64_t)sqlite3_last_insert_rowid(ob->db);
  }
  return SQLITE_OK;
}

/* Records one attempt's outcome in the open transaction: an ack deletes the
 * message, a dead letter moves it, a retry counts the attempt. */
static int record_outcome(ackrpc_outbox *ob, const ob_outcome *o, int64_t now) {
  int rc = SQLITE_OK;
  if (o->fate != ACKRPC_OUTBOX_ACKED) {
    int dead = o->fate == ACKRPC_OUTBOX_DEAD;
    sqlite3_stmt *st = ob->st[dead ? S_TO_DEAD : S_UPDATE];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)o->id);
    sqlite3_bind_int64(st, 2, o->attempts);
    sqlite3_bind_int(st, 3, (int)o->status);
    if (o->message)
      sqlite3_bind_text(st, 4, o->message, -1, SQLITE_STATIC);
    else
      sqlite3_bind_null(st, 4);
    if (dead) sqlite3_bind_int64(st, 5, now);
    rc = akr_ob_step_done(st);
    if (rc != SQLITE_OK || !dead) return rc;
  }
  sqlite3_bind_int64(ob->st[S_DELETE], 1, (sqlite3_int64)o->id);
  return akr_ob_step_done(ob->st[S_DELETE]);
}

/* One transaction for the whole group. With the token, without mu. */
static int run_group(ackrpc_outbox *ob, ob_write *group) {
  int64_t now = akr_ob_wall_ms();
  int rc = akr_ob_exec(ob->db, "BEGIN IMMEDIATE");
  for (ob_write *w = group; rc == SQLITE_OK && w; w = w->next) {
    rc = insert_entries(ob, w, now);
    for (size_t i = 0; rc == SQLITE_OK && i < w->n_outcomes; i++)
      rc = record_outcome(ob, &w->outcomes[i], now);
  }
  if (rc == SQLITE_OK) rc = akr_ob_bump(ob);
  if (rc == SQLITE_OK) rc = akr_ob_exec(ob->db, "COMMIT");
  if (rc != SQLITE_OK) {
    akr_ob_rollback(ob);
    return rc;
  }
  akr_ob_committed(ob);
  return SQLITE_OK;
}

/* The leader's optional wait for more writers (group_commit_us). Under mu. */
static void gather(ackrpc_outbox *ob) {
  if (!ob->group_commit_us) return;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)ob->group_commit_us * 1000u;
  ts.tv_sec += (time_t)(ns / 1000000000u);
  ts.tv_nsec = (long)(ns % 1000000000u);
  while (pthread_cond_timedwait(&ob->db_cv, &ob->mu, &ts) == 0) {
  }
}

int akr_ob_commit(ackrpc_outbox *ob, ob_write *w) {
  w->next = NULL;
  w->done = 0;
  pthread_mutex_lock(&ob->mu);
  if (ob->wq_tail)
    ob->wq_tail->next = w;
  else
    ob->wq = w;
  ob->wq_tail = w;
  while (!w->done) {
    if (ob->db_busy) {
      pthread_cond_wait(&ob->db_cv, &ob->mu);
      continue;
    }
    ob->db_busy = 1; /* the leader of the next group */
    gather(ob);
    ob_write *group = ob->wq;
    ob->wq = ob->wq_tail = NULL;
    pthread_mutex_unlock(&ob->mu);
    int rc = run_group(ob, group);
    pthread_mutex_lock(&ob->mu);
    int stored = 0;
    for (ob_write *g = group, *next; g; g = next) {
      next = g->next; /* g belongs to its writer once done is set */
      stored |= g->n > 0;
      g->rc = rc;
      g->done = 1;
    }
    if (rc == SQLITE_OK && stored) {
      ob->enq_commits++;
      pthread_cond_broadcast(&ob->cv); /* the worker: new messages */
    }
    ob->group_commits++;
    ob->db_busy = 0;
    pthread_cond_broadcast(&ob->db_cv);
  }
  pthread_mutex_unlock(&ob->mu);
  return w->rc;
}
