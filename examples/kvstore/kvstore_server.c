/* kvstore_server: the KvStore service (kvstore.proto), an in-memory
 * key-value store over the generated handler table.
 *
 *   kvstore_server [--mode OCTAL] SOCKET
 *
 * What it shows:
 *   - a typed handler table registered with the generated
 *     ackrpc__kvstore__KvStore_register(), which also installs the caller
 *     policies of kvstore.proto: Clear for the server's own uid, Shutdown for
 *     root; the server refuses other callers (PERMISSION_DENIED) before their
 *     request body is read, so these handlers never see them;
 *   - a deferred reply: Get with wait_ms on a missing key keeps the call and
 *     answers it later, either from the Put of that key (another call's
 *     handler) or from a libevent timer on the server's loop (NOT_FOUND);
 *   - SIGTERM/SIGINT as libevent signal events on the server's loop, so that
 *     the waiting calls can be answered (UNAVAILABLE) before
 *     ackrpc_server_stop(); the Shutdown method does the same.
 *
 * --mode sets the socket file's permission bits (default 0600; 0666 lets
 * other users connect, and the policies then decide per method). It prints
 * one line per call ("put key=... uid=..."), and exits 0 after a clean stop,
 * its socket and lock files removed.
 *
 * Everything runs on the loop's thread: the store needs no lock.
 */
/* clock_gettime: POSIX beyond C11. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include <ackrpc/ackrpc.h>

#include "kvstore.ackrpc.h"

#define MAX_KEY 256
/* Longest a Get may wait for its key. */
#define MAX_WAIT_MS 60000u

typedef struct entry {
  char *key;
  uint8_t *value;
  size_t len;
  uint64_t version;
} entry;

/* A Get waiting for its key: the call is answered by the Put of the key, by
 * its timer, or at shutdown. */
typedef struct waiter {
  struct waiter *prev, *next;
  struct store *store;
  ackrpc_call *call;
  char *key;
  struct event *timer;
} waiter;

typedef struct store {
  ackrpc_server *server;
  entry *entries; /* sorted by key */
  size_t n, cap;
  waiter *waiters;
  size_t n_waiters;
  int stopping;
} store;

/* --- The store --- */

/* The index of `key`, or -(insertion point) - 1. */
static long find(const store *s, const char *key) {
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(s->entries[mid].key, key);
    if (c == 0) return (long)mid;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -(long)lo - 1;
}

static void entry_clear(entry *e) {
  free(e->key);
  free(e->value);
}

static void store_clear(store *s) {
  for (size_t i = 0; i < s->n; i++)
    entry_clear(&s->entries[i]);
  s->n = 0;
}

/* Sets key to value. Returns the entry, or NULL if out of memory. */
static entry *store_put(store *s, const char *key, const uint8_t *value, size_t len,
                        int *ret_created) {
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) return NULL;
  if (len) memcpy(copy, value, len);
  long i = find(s, key);
  if (i >= 0) {
    entry *e = &s->entries[i];
    free(e->value);
    e->value = copy;
    e->len = len;
    e->version++;
    *ret_created = 0;
    return e;
  }
  size_t at = (size_t)(-i - 1);
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 16;
    entry *grown = realloc(s->entries, cap * sizeof *grown);
    if (!grown) {
      free(copy);
      return NULL;
    }
    s->entries = grown;
    s->cap = cap;
  }
  char *k = malloc(strlen(key) + 1);
  if (!k) {
    free(copy);
    return NULL;
  }
  strcpy(k, key);
  memmove(&s->entries[at + 1], &s->entries[at], (s->n - at) * sizeof *s->entries);
  s->entries[at] = (entry){.key = k, .value = copy, .len = len, .version = 1};
  s->n++;
  *ret_created = 1;
  return &s->entries[at];
}

/* --- Waiting Gets --- */

static void waiter_free(waiter *w) {
  store *s = w->store;
  if (w->prev)
    w->prev->next = w->next;
  else
    s->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  s->n_waiters--;
  if (w->timer) event_free(w->timer);
  free(w->key);
  free(w);
}

/* Answers a waiting Get and forgets it. */
static void waiter_answer(waiter *w, ackrpc_status status, const char *message,
                          const entry *e) {
  Ackrpc__Kvstore__GetReply reply = ACKRPC__KVSTORE__GET_REPLY__INIT;
  if (e) {
    reply.value.data = e->value;
    reply.value.len = e->len;
    reply.version = e->version;
    reply.waited = 1;
  }
  ackrpc_status st =
      ackrpc_call_reply(w->call, status, message, e ? &reply.base : NULL);
  /* E_ALREADY_ANSWERED: the client's deadline passed first, and the server
   * answered DEADLINE_EXCEEDED itself. The call is released either way. */
  printf("get key=%s answered later: %s%s%s\n", w->key, ackrpc_status_name(status),
         st == ACKRPC_OK ? "" : ", not sent: ",
         st == ACKRPC_OK ? "" : ackrpc_status_name(st));
  waiter_free(w);
}

static void on_wait_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  waiter_answer(arg, ACKRPC_NOT_FOUND, "no such key (waited for it)", NULL);
}

static uint64_t monotonic_us(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Keeps `call` until `key` is put, or for wait_ms at most (and never past
 * the call's deadline). Returns 0, or -1 if it could not (then the caller
 * answers). */
static int wait_for(store *s, ackrpc_call *call, const char *key, uint32_t wait_ms) {
  waiter *w = calloc(1, sizeof *w);
  if (!w) return -1;
  w->store = s;
  w->call = call;
  w->key = malloc(strlen(key) + 1);
  w->timer = evtimer_new(ackrpc_server_base(s->server), on_wait_timeout, w);
  if (!w->key || !w->timer) {
    if (w->timer) event_free(w->timer);
    free(w->key);
    free(w);
    return -1;
  }
  strcpy(w->key, key);
  uint64_t wait_us = (uint64_t)(wait_ms < MAX_WAIT_MS ? wait_ms : MAX_WAIT_MS) * 1000u;
  /* Past its deadline the server answers the call itself: no point in
   * keeping it longer. */
  uint64_t now = monotonic_us(), deadline = ackrpc_call_deadline_us(call);
  if (deadline <= now)
    wait_us = 0; /* already past: answer on the next turn of the loop */
  else if (deadline - now < wait_us)
    wait_us = deadline - now;
  struct timeval tv = {.tv_sec = (time_t)(wait_us / 1000000u),
                       .tv_usec = (suseconds_t)(wait_us % 1000000u)};
  if (evtimer_add(w->timer, &tv) != 0) {
    event_free(w->timer);
    free(w->key);
    free(w);
    return -1;
  }
  w->next = s->waiters;
  if (s->waiters) s->waiters->prev = w;
  s->waiters = w;
  s->n_waiters++;
  return 0;
}

/* Answers every waiting Get (at shutdown). */
static void answer_all_waiters(store *s, ackrpc_status status, const char *message) {
  while (s->waiters)
    waiter_answer(s->waiters, status, message, NULL);
}

/* Stops the server, first answering the calls it keeps. */
static void stop(store *s, const char *why) {
  if (s->stopping) return;
  s->stopping = 1;
  printf("stopping (%s)\n", why);
  answer_all_waiters(s, ACKRPC_UNAVAILABLE, "the server is shutting down");
  ackrpc_server_stop(s->server);
}

/* --- Handlers: on the loop's thread --- */

static int check_key(ackrpc_call *call, const char *key) {
  size_t len = strlen(key);
  if (len >= 1 && len <= MAX_KEY) return 0;
  ackrpc_call_reply(call, ACKRPC_INVALID_ARGUMENT, "a key has 1 to 256 bytes", NULL);
  return -1;
}

static unsigned peer_uid(ackrpc_call *call) {
  return (unsigned)ackrpc_call_peer(call)->uid;
}

static void on_put(ackrpc_call *call, const Ackrpc__Kvstore__PutRequest *req,
                   void *user) {
  store *s = user;
  if (check_key(call, req->key) != 0) return;
  int created = 0;
  entry *e = store_put(s, req->key, req->value.data, req->value.len, &created);
  if (!e) {
    ackrpc_call_reply(call, ACKRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
    return;
  }
  printf("put key=%s version=%" PRIu64 " uid=%u\n", e->key, e->version, peer_uid(call));
  /* The Gets waiting for this key get it now: the deferred replies. */
  for (waiter *w = s->waiters, *next; w; w = next) {
    next = w->next;
    if (strcmp(w->key, e->key) == 0) waiter_answer(w, ACKRPC_OK, NULL, e);
  }
  Ackrpc__Kvstore__PutReply reply = ACKRPC__KVSTORE__PUT_REPLY__INIT;
  reply.version = e->version;
  reply.created = created;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

static void on_get(ackrpc_call *call, const Ackrpc__Kvstore__GetRequest *req,
                   void *user) {
  store *s = user;
  if (check_key(call, req->key) != 0) return;
  long i = find(s, req->key);
  printf("get key=%s%s uid=%u\n", req->key, i >= 0 ? "" : " (missing)", peer_uid(call));
  if (i >= 0) {
    const entry *e = &s->entries[i];
    Ackrpc__Kvstore__GetReply reply = ACKRPC__KVSTORE__GET_REPLY__INIT;
    reply.value.data = e->value;
    reply.value.len = e->len;
    reply.version = e->version;
    ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
    return;
  }
  if (req->wait_ms == 0 || s->stopping) {
    ackrpc_call_reply(call, ACKRPC_NOT_FOUND, "no such key", NULL);
    return;
  }
  if (wait_for(s, call, req->key, req->wait_ms) != 0)
    ackrpc_call_reply(call, ACKRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
  /* Otherwise the call is kept: answered later (waiter_answer()). */
}

static void on_delete(ackrpc_call *call, const Ackrpc__Kvstore__DeleteRequest *req,
                      void *user) {
  store *s = user;
  if (check_key(call, req->key) != 0) return;
  long i = find(s, req->key);
  printf("delete key=%s%s uid=%u\n", req->key, i >= 0 ? "" : " (missing)",
         peer_uid(call));
  if (i < 0) {
    ackrpc_call_reply(call, ACKRPC_NOT_FOUND, "no such key", NULL);
    return;
  }
  Ackrpc__Kvstore__DeleteReply reply = ACKRPC__KVSTORE__DELETE_REPLY__INIT;
  reply.version = s->entries[i].version;
  entry_clear(&s->entries[i]);
  memmove(&s->entries[i], &s->entries[i + 1],
          (s->n - (size_t)i - 1) * sizeof *s->entries);
  s->n--;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

static void on_list(ackrpc_call *call, const Ackrpc__Kvstore__ListRequest *req,
                    void *user) {
  store *s = user;
  size_t plen = strlen(req->prefix);
  char **keys = malloc((s->n ? s->n : 1) * sizeof *keys);
  if (!keys) {
    ackrpc_call_reply(call, ACKRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
    return;
  }
  Ackrpc__Kvstore__ListReply reply = ACKRPC__KVSTORE__LIST_REPLY__INIT;
  for (size_t i = 0; i < s->n; i++)
    if (strncmp(s->entries[i].key, req->prefix, plen) == 0)
      keys[reply.n_keys++] = s->entries[i].key;
  reply.keys = keys;
  printf("list prefix=\"%s\": %zu keys uid=%u\n", req->prefix, reply.n_keys,
         peer_uid(call));
  /* Serialized before ackrpc_call_reply() returns: the array may go. */
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
  free(keys);
}

static void on_clear(ackrpc_call *call, const Ackrpc__Kvstore__ClearRequest *req,
                     void *user) {
  store *s = user;
  (void)req;
  Ackrpc__Kvstore__ClearReply reply = ACKRPC__KVSTORE__CLEAR_REPLY__INIT;
  reply.removed = s->n;
  store_clear(s);
  printf("clear: %" PRIu64 " keys removed uid=%u\n", reply.removed, peer_uid(call));
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

static void on_shutdown(ackrpc_call *call, const Ackrpc__Kvstore__ShutdownRequest *req,
                        void *user) {
  store *s = user;
  (void)req;
  Ackrpc__Kvstore__ShutdownReply reply = ACKRPC__KVSTORE__SHUTDOWN_REPLY__INIT;
  reply.keys = s->n;
  printf("shutdown requested uid=%u\n", peer_uid(call));
  /* Answer first: a stopping server still writes the replies of the calls in
   * flight. */
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
  stop(s, "Shutdown");
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)what;
  stop(arg, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

/* --- main --- */

static int usage(FILE *out, int rc) {
  fprintf(out, "usage: kvstore_server [--mode OCTAL] SOCKET\n"
               "Serves ackrpc.kvstore.KvStore on SOCKET (a path or @name) until\n"
               "SIGTERM, SIGINT or a Shutdown call. --mode: the socket file's\n"
               "permissions (default 0600).\n");
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
    return usage(stdout, 0);
  mode_t mode = 0600;
  int i = 1;
  if (argc == 4 && strcmp(argv[1], "--mode") == 0) {
    char *end;
    errno = 0;
    unsigned long m = strtoul(argv[2], &end, 8);
    if (argv[2][0] < '0' || argv[2][0] > '7' || *end != '\0' || errno != 0 ||
        m > 0777 || (m & 0600) != 0600) {
      fprintf(stderr, "kvstore_server: --mode must be octal, 0600 to 0777\n");
      return 2;
    }
    mode = (mode_t)m;
    i = 3;
  }
  if (argc - i != 1 || argv[i][0] == '-') return usage(stderr, 2);
  const char *address = argv[i];
  if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) return 1;
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    perror("kvstore_server: signal");
    return 1;
  }

  store s;
  memset(&s, 0, sizeof s);
  ackrpc_server_options options = {.address = address, .socket_mode = mode};
  char why[160]; /* ACKRPC_LOG_LEVEL=debug: one line per call */
  if (ackrpc_log_level_from_env(&options.log_level, why, sizeof why) != ACKRPC_OK)
    fprintf(stderr, "kvstore_server: %s; using the default\n", why);
  ackrpc_status st = ackrpc_server_new(&options, &s.server);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "kvstore_server: cannot serve on %s: %s: %s\n", address,
            ackrpc_status_name(st), ackrpc_strerror(st));
    return 1;
  }
  ackrpc__kvstore__KvStore_handlers handlers = {.Put = on_put,
                                                .Get = on_get,
                                                .Delete = on_delete,
                                                .List = on_list,
                                                .Clear = on_clear,
                                                .Shutdown = on_shutdown};
  st = ackrpc__kvstore__KvStore_register(s.server, &handlers, &s);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "kvstore_server: cannot register %s: %s: %s\n",
            ackrpc__kvstore__KvStore_service.name, ackrpc_status_name(st),
            ackrpc_strerror(st));
    ackrpc_server_free(s.server);
    return 1;
  }
  struct event_base *base = ackrpc_server_base(s.server);
  struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, &s);
  struct event *sigint = evsignal_new(base, SIGINT, on_signal, &s);
  int rc = 0;
  if (!sigterm || !sigint || evsignal_add(sigterm, NULL) != 0 ||
      evsignal_add(sigint, NULL) != 0) {
    fprintf(stderr, "kvstore_server: cannot watch SIGTERM and SIGINT\n");
    rc = 1;
  } else {
    /* The socket is bound and listening from here on. */
    printf("serving %s on %s (mode %04o)\n", ackrpc__kvstore__KvStore_service.name,
           address, (unsigned)mode);
    st = ackrpc_server_run(s.server);
    if (st != ACKRPC_OK) {
      fprintf(stderr, "kvstore_server: the server loop failed: %s: %s\n",
              ackrpc_status_name(st), ackrpc_strerror(st));
      rc = 1;
    }
  }
  /* Calls still kept (if the loop failed) are released before the server
   * goes; then the signal events, which live on the server's base. */
  answer_all_waiters(&s, ACKRPC_UNAVAILABLE, "the server is shutting down");
  if (sigterm) event_free(sigterm);
  if (sigint) event_free(sigint);
  ackrpc_server_free(s.server);
  size_t left = s.n;
  store_clear(&s);
  free(s.entries);
  if (rc == 0) printf("stopped with %zu keys\n", left);
  return rc;
}
