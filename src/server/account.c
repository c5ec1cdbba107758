/* account.c: the memory account and the calls in progress (account.h). */
#include "server/account.h"

#include <stdlib.h>

#include "server/server_internal.h"

/* --- uid records ------------------------------------------------------- */

akr_uid_rec *akr_uid_get(ackrpc_server *s, uid_t uid) {
  for (size_t i = 0; i < s->n_uids; i++)
    if (s->uids[i]->uid == uid) return s->uids[i];
  if (s->n_uids == s->uids_cap) {
    size_t cap = s->uids_cap ? 2 * s->uids_cap : 8;
    akr_uid_rec **t = realloc(s->uids, cap * sizeof *t);
    if (!t) return NULL;
    s->uids = t;
    s->uids_cap = cap;
  }
  /* The last record let go is kept: a uid that connects and leaves again
   * and again does not cost an allocation each time. */
  akr_uid_rec *u = s->uid_spare;
  s->uid_spare = NULL;
  if (!u && !(u = malloc(sizeof *u))) return NULL;
  *u = (akr_uid_rec){.uid = uid};
  s->uids[s->n_uids++] = u;
  return u;
}

void akr_uid_put(ackrpc_server *s, akr_uid_rec *u) {
  if (!u || u->conns || u->pending || u->a.calls || u->a.bytes || s->closed) return;
  for (size_t i = 0; i < s->n_uids; i++) {
    if (s->uids[i] != u) continue;
    s->uids[i] = s->uids[--s->n_uids];
    if (s->uid_spare)
      free(u);
    else
      s->uid_spare = u;
    return;
  }
}

void akr_uid_free_all(ackrpc_server *s) {
  for (size_t i = 0; i < s->n_uids; i++)
    free(s->uids[i]);
  free(s->uids);
  free(s->uid_spare);
  s->uids = NULL;
  s->uid_spare = NULL;
  s->n_uids = s->uids_cap = 0;
}

/* --- charges ----------------------------------------------------------- */

/* Moves each account of (conn, uid, server) from `old` to `now` bytes. */
static void charge(ackrpc_server *s, akr_conn *c, akr_uid_rec *u, size_t old,
                   size_t now) {
  if (c) c->acct.bytes = c->acct.bytes - old + now;
  if (u) u->a.bytes = u->a.bytes - old + now;
  s->acct.bytes = s->acct.bytes - old + now;
}

void akr_acct_conn_input(akr_conn *c) {
  charge(c->server, c, c->uacct, c->in_charged, c->in_cap);
  c->in_charged = c->in_cap;
}

void akr_acct_conn_closed(akr_conn *c) {
  charge(c->server, c, c->uacct, c->in_charged, 0);
  c->in_charged = 0;
  for (ackrpc_call *call = c->acct_calls, *next; call; call = next) {
    next = call->acct_next;
    call->acct_conn = NULL;
    call->acct_prev = call->acct_next = NULL;
  }
  c->acct_calls = NULL;
  c->acct = (akr_acct){0};
}

static size_t left(size_t used, size_t budget) {
  return used < budget ? budget - used : 0;
}

size_t akr_acct_room(const akr_conn *c) {
  const ackrpc_server *s = c->server;
  size_t room = left(c->acct.bytes, s->opt.max_memory_per_connection);
  size_t r = left(s->acct.bytes, s->opt.max_memory);
  if (r < room) room = r;
  if (c->uacct) {
    r = left(c->uacct->a.bytes, s->opt.max_memory_per_uid);
    if (r < room) room = r;
  }
  return room;
}

void akr_acct_call_start(ackrpc_call *call, akr_conn *c) {
  ackrpc_server *s = c->server;
  call->accounted = 1;
  call->charged = 0;
  call->uacct = c->uacct;
  call->acct_conn = c;
  call->acct_prev = NULL;
  call->acct_next = c->acct_calls;
  if (c->acct_calls) c->acct_calls->acct_prev = call;
  c->acct_calls = call;
  c->acct.calls++;
  if (c->uacct) c->uacct->a.calls++;
  s->acct.calls++;
}

void akr_acct_call_bytes(ackrpc_call *call, size_t bytes) {
  if (!call->accounted) return;
  charge(call->server, call->acct_conn, call->uacct, call->charged, bytes);
  call->charged = bytes;
}

void akr_acct_call_end(ackrpc_call *call) {
  if (!call->accounted) return;
  ackrpc_server *s = call->server;
  akr_acct_call_bytes(call, 0);
  call->accounted = 0;
  akr_conn *c = call->acct_conn;
  if (c) {
    c->acct.calls--;
    if (call->acct_prev)
      call->acct_prev->acct_next = call->acct_next;
    else
      c->acct_calls = call->acct_next;
    if (call->acct_next) call->acct_next->acct_prev = call->acct_prev;
  }
  call->acct_conn = NULL;
  call->acct_prev = call->acct_next = NULL;
  s->acct.calls--;
  akr_uid_rec *u = call->uacct;
  call->uacct = NULL;
  if (u) {
    u->a.calls--;
    akr_uid_put(s, u);
  }
}
