/* outbox.c: the durable outbox's API: opening, storing, counting and
 * reading dead letters (include/ackrpc/outbox.h, docs/DELIVERY.md).
 *
 * Concurrency: one connection, held through the token (outbox_internal.h)
 * for short reads and group commits; the worker (deliver.c) never holds it
 * during a call.
 *
 * Not here: the database itself (store.c), the group commit (commit.c),
 * delivery (deliver.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "client/retry.h"
#include "core/clock.h"
#include "outbox/outbox_internal.h"
#include "wire/names.h"

#define DEFAULT_CALL_TIMEOUT_MS 10000
#define DEFAULT_BACKOFF_MS 50
#define DEFAULT_MAX_BACKOFF_MS 5000
#define MAX_WINDOW 4096
#define MAX_GROUP_COMMIT_US 1000000

ackrpc_status ackrpc_outbox_open(const ackrpc_outbox_options *o, ackrpc_outbox **ret) {
  if (!o || !ret || !o->path || o->window > MAX_WINDOW ||
      o->group_commit_us > MAX_GROUP_COMMIT_US)
    return ACKRPC_E_INVAL;
  uint32_t retry_on = 0;
  if (o->retry_on || o->n_retry_on) {
    if (akr_retry_mask(o->retry_on, o->n_retry_on, &retry_on) != ACKRPC_OK)
      return ACKRPC_E_INVAL;
  } else {
    retry_on = 1u << ACKRPC_DEADLINE_EXCEEDED | 1u << ACKRPC_ABORTED |
               1u << ACKRPC_UNAVAILABLE | 1u << ACKRPC_RESOURCE_EXHAUSTED;
  }
  ackrpc_outbox *ob = calloc(1, sizeof *ob);
  if (!ob) return ACKRPC_E_NOMEM;
  ob->call_timeout_ms =
      o->call_timeout_ms ? o->call_timeout_ms : DEFAULT_CALL_TIMEOUT_MS;
  ob->max_attempts = o->max_attempts;
  ob->max_age_ms = o->max_age_ms;
  ob->initial_backoff_ms =
      o->initial_backoff_ms ? o->initial_backoff_ms : DEFAULT_BACKOFF_MS;
  ob->max_backoff_ms = o->max_backoff_ms ? o->max_backoff_ms : DEFAULT_MAX_BACKOFF_MS;
  if (ob->max_backoff_ms < ob->initial_backoff_ms)
    ob->max_backoff_ms = ob->initial_backoff_ms;
  ob->retry_on = retry_on;
  ob->on_attempt = o->on_attempt;
  ob->on_attempt_user = o->on_attempt_user;
  ob->window = o->window ? o->window : 1;
  ob->group_commit_us = o->group_commit_us;
  akr_rng_init(&ob->rng, ob);
  ackrpc_status st = ACKRPC_OK;
  if (o->address) {
    ackrpc_client_options co = {.address = o->address,
                                .timeout_ms = ob->call_timeout_ms};
    st = ackrpc_client_new(&co, &ob->client);
  }
  if (st == ACKRPC_OK) st = akr_ob_db_open(ob, o->path);
  if (st != ACKRPC_OK) {
    ackrpc_client_free(ob->client);
    for (size_t i = 0; i < ob->n_methods; i++)
      free(ob->methods[i].name);
    free(ob->methods);
    free(ob);
    return st;
  }
  pthread_mutex_init(&ob->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ob->cv, &ca);
  pthread_cond_init(&ob->db_cv, &ca);
  pthread_condattr_destroy(&ca);
  *ret = ob;
  return ACKRPC_OK;
}

ackrpc_outbox *ackrpc_outbox_close(ackrpc_outbox *ob) {
  if (!ob) return NULL;
  ackrpc_outbox_stop(ob);
  akr_ob_deliver_free(ob);
  akr_ob_db_close(ob);
  ackrpc_client_free(ob->client);
  for (size_t i = 0; i < ob->n_methods; i++)
    free(ob->methods[i].name);
  free(ob->methods);
  pthread_cond_destroy(&ob->cv);
  pthread_cond_destroy(&ob->db_cv);
  pthread_mutex_destroy(&ob->mu);
  free(ob);
  return NULL;
}

/* --- storing ----------------------------------------------------------- */

static void new_call_id(ackrpc_outbox *ob, uint8_t id[16]) {
  if (getrandom(id, 16, 0) == 16) return;
  /* No entropy source: time, address and a counter still never repeat
   * within this process, and collide across processes only by bad luck. */
  uint64_t a = (uint64_t)akr_ob_wall_ms() ^ akr_now_us(), b = akr_rng_next(&ob->rng);
  memcpy(id, &a, 8);
  memcpy(id + 8, &b, 8);
}

ackrpc_status ackrpc_outbox_enqueue(ackrpc_outbox *ob, const char *method,
                                    const uint8_t *body, size_t body_len,
                                    uint64_t *ret_id) {
  ackrpc_outbox_entry e = {.method = method, .body = body, .body_len = body_len};
  return ackrpc_outbox_enqueue_batch(ob, &e, 1, ret_id);
}

#define STACK_IDS 64

ackrpc_status ackrpc_outbox_enqueue_batch(ackrpc_outbox *ob,
                                          const ackrpc_outbox_entry *entries, size_t n,
                                          uint64_t *ret_first_id) {
  if (!ob || !entries || n == 0 || n > INT32_MAX) return ACKRPC_E_INVAL;
  for (size_t i = 0; i < n; i++) {
    const ackrpc_outbox_entry *e = &entries[i];
    if (!e->method || !akr_method_name_valid(e->method) || (e->body_len && !e->body) ||
        e->body_len > INT32_MAX)
      return ACKRPC_E_INVAL;
  }
  uint8_t stack[STACK_IDS][16];
  uint8_t(*ids)[16] = n <= STACK_IDS ? stack : malloc(n * sizeof *ids);
  if (!ids) return ACKRPC_E_NOMEM;
  for (size_t i = 0; i < n; i++)
    new_call_id(ob, ids[i]);
  /* The worker learns of the methods before the messages exist. */
  int rc = SQLITE_OK;
  pthread_mutex_lock(&ob->mu);
  for (size_t i = 0; i < n && rc == SQLITE_OK; i++)
    if (akr_ob_method_index(ob, entries[i].method) < 0) rc = SQLITE_NOMEM;
  pthread_mutex_unlock(&ob->mu);
  ob_write w = {.entries = entries, .n = n, .call_ids = (const uint8_t(*)[16])ids};
  if (rc == SQLITE_OK) rc = akr_ob_commit(ob, &w);
  if (ids != stack) free(ids);
  if (rc == SQLITE_OK) {
    /* Again after the commit: the worker may have dropped a method it found
     * empty meanwhile (an allocation that fails here is retried at the
     * next enqueue of the method or the next open). */
    pthread_mutex_lock(&ob->mu);
    for (size_t i = 0; i < n; i++)
      if (i == 0 || strcmp(entries[i].method, entries[i - 1].method) != 0)
        akr_ob_method_index(ob, entries[i].method);
    ob->enq_commits++;
    pthread_cond_broadcast(&ob->cv);
    pthread_mutex_unlock(&ob->mu);
  }
  if (rc != SQLITE_OK)
    return akr_ob_status(rc) == ACKRPC_OK ? ACKRPC_E_STORE_IO : akr_ob_status(rc);
  if (ret_first_id) *ret_first_id = w.first_id;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_outbox_last_id(ackrpc_outbox *ob, uint64_t *ret_id) {
  if (!ob || !ret_id) return ACKRPC_E_INVAL;
  akr_ob_db_enter(ob);
  uint64_t v = 0;
  int rc = akr_ob_query_u64(ob->st[S_LAST_ID], &v);
  akr_ob_db_leave(ob);
  if (rc != SQLITE_OK) return akr_ob_status(rc);
  *ret_id = v;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_outbox_count(ackrpc_outbox *ob, ackrpc_outbox_counts *ret) {
  if (!ob || !ret) return ACKRPC_E_INVAL;
  ackrpc_outbox_counts c = {0};
  akr_ob_db_enter(ob);
  int rc = akr_ob_query_u64(ob->st[S_PENDING], &c.pending);
  if (rc == SQLITE_OK) rc = akr_ob_query_u64(ob->st[S_IN_FLIGHT], &c.in_flight);
  if (rc == SQLITE_OK) rc = akr_ob_query_u64(ob->st[S_DEAD], &c.dead);
  akr_ob_db_leave(ob);
  if (rc != SQLITE_OK) return akr_ob_status(rc);
  *ret = c;
  return ACKRPC_OK;
}

void ackrpc_outbox_message_clear(ackrpc_outbox_message *m) {
  if (!m) return;
  free(m->method);
  free(m->body);
  free(m->last_message);
  memset(m, 0, sizeof *m);
}

ackrpc_status ackrpc_outbox_dead_letter(ackrpc_outbox *ob, uint64_t after_id,
                                        ackrpc_outbox_message *ret) {
  if (!ob || !ret) return ACKRPC_E_INVAL;
  ackrpc_outbox_message m = {0};
  ackrpc_status status = ACKRPC_OK;
  akr_ob_db_enter(ob);
  sqlite3_stmt *st = ob->st[S_DEAD_AFTER];
  sqlite3_bind_int64(st, 1, (sqlite3_int64)after_id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    m.id = (uint64_t)sqlite3_column_int64(st, 0);
    const char *method = (const char *)sqlite3_column_text(st, 1);
    m.method = strdup(method ? method : "");
    m.body_len = (size_t)sqlite3_column_bytes(st, 2);
    if (m.body_len) {
      m.body = malloc(m.body_len);
      if (m.body) memcpy(m.body, sqlite3_column_blob(st, 2), m.body_len);
    }
    size_t idl = (size_t)sqlite3_column_bytes(st, 3);
    m.call_id_len = idl > sizeof m.call_id ? sizeof m.call_id : idl;
    memcpy(m.call_id, sqlite3_column_blob(st, 3), m.call_id_len);
    m.attempts = (unsigned)sqlite3_column_int64(st, 4);
    m.last_status = (ackrpc_status)sqlite3_column_int(st, 5);
    const char *lm = (const char *)sqlite3_column_text(st, 6);
    if (lm) m.last_message = strdup(lm);
    m.enqueued_at_ms = sqlite3_column_int64(st, 7);
    if (!m.method || (m.body_len && !m.body) || (lm && !m.last_message))
      status = ACKRPC_E_NOMEM;
  } else if (rc == SQLITE_DONE) {
    status = ACKRPC_E_NOT_FOUND;
  } else {
    status = akr_ob_status(rc);
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  akr_ob_db_leave(ob);
  if (status != ACKRPC_OK) {
    ackrpc_outbox_message_clear(&m);
    return status;
  }
  *ret = m;
  return ACKRPC_OK;
}
