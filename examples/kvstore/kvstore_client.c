/* kvstore_client: a client of kvstore_server (kvstore.proto) over the
 * generated stubs: blocking calls for single commands, asynchronous calls on
 * its own event_base for `bulk`, and `selftest`, which runs every method end
 * to end with assertions.
 *
 *   kvstore_client [--expect STATUS] [--timeout MS] SOCKET COMMAND [ARG...]
 *
 * Commands:
 *   put KEY VALUE        get KEY [WAIT_MS]      delete KEY
 *   list [PREFIX]        clear                  shutdown
 *   bulk N [PREFIX]      N Puts at once, asynchronously, on one event_base
 *   selftest             the end-to-end checks (needs the server's uid)
 *
 * A single command prints its result ("OK ..." or "STATUS: message") and
 * exits 0 if its status is the expected one (--expect, default OK; e.g.
 * --expect PERMISSION_DENIED), 1 otherwise, 2 for a usage error. --timeout is
 * each call's deadline (default 5000 ms).
 */
/* clock_gettime: POSIX beyond C11. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include <ackrpc/ackrpc.h>

#include "kvstore.ackrpc.h"

static uint64_t now_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* What a command returns for bad arguments (not a status of the table). */
#define USAGE_ERROR ((ackrpc_status)9999)

static void print_failure(const char *what, ackrpc_status st, const ackrpc_result *r) {
  printf("%s: %s: %s\n", what, ackrpc_status_name(st),
         r && r->message ? r->message : ackrpc_strerror(st));
}

/* --- Single commands (blocking stubs) --- */

typedef struct cmd {
  ackrpc_client *client;
  const ackrpc_call_options *opts;
  int argc;
  char **argv; /* the command's arguments, after its name */
} cmd;

static ackrpc_status cmd_put(const cmd *c) {
  if (c->argc != 2) return USAGE_ERROR;
  Ackrpc__Kvstore__PutRequest req = ACKRPC__KVSTORE__PUT_REQUEST__INIT;
  req.key = c->argv[0];
  req.value.data = (uint8_t *)c->argv[1];
  req.value.len = strlen(c->argv[1]);
  Ackrpc__Kvstore__PutReply *reply = NULL;
  ackrpc_result r = {0};
  ackrpc_status st =
      ackrpc__kvstore__KvStore_Put_call(c->client, &req, &reply, c->opts, &r);
  if (st == ACKRPC_OK && reply) {
    printf("OK put %s version=%" PRIu64 "%s\n", req.key, reply->version,
           reply->created ? " (created)" : "");
    ackrpc__kvstore__put_reply__free_unpacked(reply, NULL);
  } else {
    print_failure("put", st, &r);
  }
  ackrpc_result_clear(&r);
  return st;
}

static ackrpc_status cmd_get(const cmd *c) {
  if (c->argc < 1 || c->argc > 2) return USAGE_ERROR;
  Ackrpc__Kvstore__GetRequest req = ACKRPC__KVSTORE__GET_REQUEST__INIT;
  req.key = c->argv[0];
  if (c->argc == 2) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(c->argv[1], &end, 10);
    if (c->argv[1][0] < '0' || c->argv[1][0] > '9' || *end || errno || v > 600000)
      return USAGE_ERROR;
    req.wait_ms = (uint32_t)v;
  }
  Ackrpc__Kvstore__GetReply *reply = NULL;
  ackrpc_result r = {0};
  ackrpc_status st =
      ackrpc__kvstore__KvStore_Get_call(c->client, &req, &reply, c->opts, &r);
  if (st == ACKRPC_OK && reply) {
    printf("OK get %s version=%" PRIu64 "%s: %.*s\n", req.key, reply->version,
           reply->waited ? " (waited)" : "", (int)reply->value.len,
           reply->value.len ? (const char *)reply->value.data : "");
    ackrpc__kvstore__get_reply__free_unpacked(reply, NULL);
  } else {
    print_failure("get", st, &r);
  }
  ackrpc_result_clear(&r);
  return st;
}

static ackrpc_status cmd_delete(const cmd *c) {
  if (c->argc != 1) return USAGE_ERROR;
  Ackrpc__Kvstore__DeleteRequest req = ACKRPC__KVSTORE__DELETE_REQUEST__INIT;
  req.key = c->argv[0];
  Ackrpc__Kvstore__DeleteReply *reply = NULL;
  ackrpc_result r = {0};
  ackrpc_status st =
      ackrpc__kvstore__KvStore_Delete_call(c->client, &req, &reply, c->opts, &r);
  if (st == ACKRPC_OK && reply) {
    printf("OK delete %s version=%" PRIu64 "\n", req.key, reply->version);
    ackrpc__kvstore__delete_reply__free_unpacked(reply, NULL);
  } else {
    print_failure("delete", st, &r);
  }
  ackrpc_result_clear(&r);
  return st;
}

static ackrpc_status cmd_list(const cmd *c) {
  if (c->argc > 1) return USAGE_ERROR;
  Ackrpc__Kvstore__ListRequest req = ACKRPC__KVSTORE__LIST_REQUEST__INIT;
  if (c->argc == 1) req.prefix = c->argv[0];
  Ackrpc__Kvstore__ListReply *reply = NULL;
  ackrpc_result r = {0};
  ackrpc_status st =
      ackrpc__kvstore__KvStore_List_call(c->client, &req, &reply, c->opts, &r);
  if (st == ACKRPC_OK && reply) {
    printf("OK list: %zu keys\n", reply->n_keys);
    for (size_t i = 0; i < reply->n_keys; i++)
      printf("%s\n", reply->keys[i]);
    ackrpc__kvstore__list_reply__free_unpacked(reply, NULL);
  } else {
    print_failure("list", st, &r);
  }
  ackrpc_result_clear(&r);
  return st;
}

static ackrpc_status cmd_clear(const cmd *c) {
  if (c->argc != 0) return USAGE_ERROR;
  Ackrpc__Kvstore__ClearRequest req = ACKRPC__KVSTORE__CLEAR_REQUEST__INIT;
  Ackrpc__Kvstore__ClearReply *reply = NULL;
  ackrpc_result r = {0};
  ackrpc_status st =
      ackrpc__kvstore__KvStore_Clear_call(c->client, &req, &reply, c->opts, &r);
  if (st == ACKRPC_OK && reply) {
    printf("OK clear: %" PRIu64 " keys removed\n", reply->removed);
    ackrpc__kvstore__clear_reply__free_unpacked(reply, NULL);
  } else {
    print_failure("clear", st, &r);
  }
  ackrpc_result_clear(&r);
  return st;
}

static ackrpc_status cmd_shutdown(const cmd *c) {
  if (c->argc != 0) return USAGE_ERROR;
  Ackrpc__Kvstore__ShutdownRequest req = ACKRPC__KVSTORE__SHUTDOWN_REQUEST__INIT;
  Ackrpc__Kvstore__ShutdownReply *reply = NULL;
  ackrpc_result r = {0};
  ackrpc_status st =
      ackrpc__kvstore__KvStore_Shutdown_call(c->client, &req, &reply, c->opts, &r);
  if (st == ACKRPC_OK && reply) {
    printf("OK shutdown: the server held %" PRIu64 " keys\n", reply->keys);
    ackrpc__kvstore__shutdown_reply__free_unpacked(reply, NULL);
  } else {
    print_failure("shutdown", st, &r);
  }
  ackrpc_result_clear(&r);
  return st;
}

/* --- Asynchronous Puts on our own event_base --- */

typedef struct bulk {
  size_t started, done, ok;
  size_t bad_version; /* acks whose version is not 1 (keys are new) */
  ackrpc_status first_error;
  char *first_message;
} bulk;

static void bulk_done(ackrpc_status status, Ackrpc__Kvstore__PutReply *reply,
                      ackrpc_result *result, void *user) {
  bulk *b = user;
  b->done++;
  if (status == ACKRPC_OK && reply) {
    b->ok++;
    if (reply->version != 1 || !reply->created) b->bad_version++;
  } else if (b->first_error == ACKRPC_OK) {
    b->first_error = status == ACKRPC_OK ? ACKRPC_E_BAD_REPLY : status;
    /* Taken from the result, which the library clears after we return. */
    b->first_message = result->message;
    result->message = NULL;
  }
}

/* Starts n Puts of PREFIX%06zu at once and runs the base until every one has
 * completed (each ends by its deadline at the latest). Returns OK if all
 * were acked OK as new keys. */
static ackrpc_status run_bulk(ackrpc_client *client, size_t n, const char *prefix,
                              int verbose) {
  struct event_base *base = event_base_new();
  if (!base) {
    printf("bulk: event_base_new failed\n");
    return ACKRPC_E_NOMEM;
  }
  bulk b = {0};
  uint64_t t0 = now_ms();
  ackrpc_status st = ACKRPC_OK;
  for (size_t i = 0; i < n; i++) {
    char key[128];
    snprintf(key, sizeof key, "%s%06zu", prefix, i);
    Ackrpc__Kvstore__PutRequest req = ACKRPC__KVSTORE__PUT_REQUEST__INIT;
    req.key = key;
    req.value.data = (uint8_t *)key;
    req.value.len = strlen(key);
    /* The request is serialized before this returns: key may go. */
    st = ackrpc__kvstore__KvStore_Put_call_async(client, base, &req, NULL, bulk_done,
                                                 &b);
    if (st != ACKRPC_OK) {
      printf("bulk: could not start put %zu: %s\n", i, ackrpc_status_name(st));
      break;
    }
    b.started++;
  }
  /* Returns when no call has events left: all have completed. */
  int drc = event_base_dispatch(base);
  event_base_free(base);
  if (drc < 0) {
    printf("bulk: event_base_dispatch failed\n");
    st = ACKRPC_E_SYSTEM;
  }
  if (b.done != b.started) {
    printf("bulk: %zu callbacks for %zu calls\n", b.done, b.started);
    if (st == ACKRPC_OK) st = ACKRPC_E_STATE;
  }
  if (b.first_error != ACKRPC_OK) {
    printf("bulk: a put failed: %s: %s\n", ackrpc_status_name(b.first_error),
           b.first_message ? b.first_message : ackrpc_strerror(b.first_error));
    if (st == ACKRPC_OK) st = b.first_error;
  }
  free(b.first_message);
  if (b.bad_version) {
    printf("bulk: %zu acks were not of new keys (version 1)\n", b.bad_version);
    if (st == ACKRPC_OK) st = ACKRPC_E_BAD_REPLY;
  }
  if (st == ACKRPC_OK && b.ok != n) st = ACKRPC_E_STATE;
  if (verbose || st != ACKRPC_OK)
    printf("%s bulk: %zu of %zu async puts acked in %" PRIu64 " ms\n",
           st == ACKRPC_OK ? "OK" : "FAILED", b.ok, n, now_ms() - t0);
  return st;
}

static ackrpc_status cmd_bulk(const cmd *c) {
  if (c->argc < 1 || c->argc > 2) return USAGE_ERROR;
  char *end;
  errno = 0;
  unsigned long n = strtoul(c->argv[0], &end, 10);
  if (c->argv[0][0] < '1' || c->argv[0][0] > '9' || *end || errno || n > 100000)
    return USAGE_ERROR;
  return run_bulk(c->client, n, c->argc == 2 ? c->argv[1] : "bulk/", 1);
}

/* --- selftest --- */

static int checks, failures;

/* Records one check; prints it if it failed. */
static void check(int ok, const char *fmt, ...) {
  checks++;
  if (ok) return;
  failures++;
  va_list ap;
  va_start(ap, fmt);
  printf("selftest: FAIL: ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

static ackrpc_status put(ackrpc_client *cl, const char *key, const char *value,
                         Ackrpc__Kvstore__PutReply **ret) {
  Ackrpc__Kvstore__PutRequest req = ACKRPC__KVSTORE__PUT_REQUEST__INIT;
  req.key = (char *)key;
  req.value.data = (uint8_t *)value;
  req.value.len = strlen(value);
  return ackrpc__kvstore__KvStore_Put_call(cl, &req, ret, NULL, NULL);
}

static ackrpc_status get(ackrpc_client *cl, const char *key, uint32_t wait_ms,
                         const ackrpc_call_options *opts,
                         Ackrpc__Kvstore__GetReply **ret) {
  Ackrpc__Kvstore__GetRequest req = ACKRPC__KVSTORE__GET_REQUEST__INIT;
  req.key = (char *)key;
  req.wait_ms = wait_ms;
  return ackrpc__kvstore__KvStore_Get_call(cl, &req, ret, opts, NULL);
}

static int value_is(const ProtobufCBinaryData *v, const char *s) {
  return v->len == strlen(s) && (v->len == 0 || memcmp(v->data, s, v->len) == 0);
}

/* Async Gets and a delayed async Put, on one base. */
typedef struct deferred {
  ackrpc_client *client;
  struct event_base *base;
  uint64_t t0;
  /* Get "late" (waits 5 s), answered by the Put at 200 ms. */
  int late_done;
  ackrpc_status late_status;
  int late_ok_value, late_waited;
  uint64_t late_ms;
  /* Put "late" itself. */
  int put_done;
  ackrpc_status put_status;
  uint64_t put_started_ms;
  /* Get "never" (waits 300 ms): the server's timer answers NOT_FOUND. */
  int never_done;
  ackrpc_status never_status;
  uint64_t never_ms;
} deferred;

static void late_done(ackrpc_status status, Ackrpc__Kvstore__GetReply *reply,
                      ackrpc_result *result, void *user) {
  deferred *d = user;
  (void)result;
  d->late_done++;
  d->late_status = status;
  d->late_ms = now_ms() - d->t0;
  if (reply) {
    d->late_ok_value = value_is(&reply->value, "here");
    d->late_waited = reply->waited;
  }
}

static void never_done(ackrpc_status status, Ackrpc__Kvstore__GetReply *reply,
                       ackrpc_result *result, void *user) {
  deferred *d = user;
  (void)reply;
  (void)result;
  d->never_done++;
  d->never_status = status;
  d->never_ms = now_ms() - d->t0;
}

static void late_put_done(ackrpc_status status, Ackrpc__Kvstore__PutReply *reply,
                          ackrpc_result *result, void *user) {
  deferred *d = user;
  (void)reply;
  (void)result;
  d->put_done++;
  d->put_status = status;
}

static void on_put_timer(evutil_socket_t fd, short what, void *arg) {
  deferred *d = arg;
  (void)fd;
  (void)what;
  Ackrpc__Kvstore__PutRequest req = ACKRPC__KVSTORE__PUT_REQUEST__INIT;
  req.key = "late";
  req.value.data = (uint8_t *)"here";
  req.value.len = 4;
  d->put_started_ms = now_ms() - d->t0;
  ackrpc_status st = ackrpc__kvstore__KvStore_Put_call_async(d->client, d->base, &req,
                                                             NULL, late_put_done, d);
  check(st == ACKRPC_OK, "async put of \"late\" not started: %s",
        ackrpc_status_name(st));
}

static void selftest_deferred(ackrpc_client *cl) {
  deferred d = {.client = cl};
  d.base = event_base_new();
  check(d.base != NULL, "event_base_new failed");
  if (!d.base) return;
  struct event *timer = evtimer_new(d.base, on_put_timer, &d);
  check(timer != NULL, "evtimer_new failed");
  if (!timer) {
    event_base_free(d.base);
    return;
  }
  d.t0 = now_ms();
  Ackrpc__Kvstore__GetRequest late = ACKRPC__KVSTORE__GET_REQUEST__INIT;
  late.key = "late";
  late.wait_ms = 5000;
  Ackrpc__Kvstore__GetRequest never = ACKRPC__KVSTORE__GET_REQUEST__INIT;
  never.key = "never";
  never.wait_ms = 300;
  ackrpc_status st =
      ackrpc__kvstore__KvStore_Get_call_async(cl, d.base, &late, NULL, late_done, &d);
  check(st == ACKRPC_OK, "async get of \"late\" not started: %s",
        ackrpc_status_name(st));
  st =
      ackrpc__kvstore__KvStore_Get_call_async(cl, d.base, &never, NULL, never_done, &d);
  check(st == ACKRPC_OK, "async get of \"never\" not started: %s",
        ackrpc_status_name(st));
  struct timeval in_200ms = {.tv_sec = 0, .tv_usec = 200000};
  check(evtimer_add(timer, &in_200ms) == 0, "evtimer_add failed");
  check(event_base_dispatch(d.base) >= 0, "event_base_dispatch failed");
  event_free(timer);
  event_base_free(d.base);

  check(d.put_done == 1 && d.put_status == ACKRPC_OK, "put \"late\": %d callbacks, %s",
        d.put_done, ackrpc_status_name(d.put_status));
  check(d.late_done == 1, "get \"late\": %d callbacks", d.late_done);
  check(d.late_status == ACKRPC_OK, "get \"late\" (waiting): %s",
        ackrpc_status_name(d.late_status));
  check(d.late_ok_value && d.late_waited, "get \"late\": wrong value or not waited");
  check(d.late_ms >= d.put_started_ms && d.put_started_ms >= 150,
        "get \"late\" answered at %" PRIu64 " ms, before the put at %" PRIu64 " ms",
        d.late_ms, d.put_started_ms);
  check(d.never_done == 1, "get \"never\": %d callbacks", d.never_done);
  check(d.never_status == ACKRPC_NOT_FOUND, "get \"never\" (waiting 300 ms): %s",
        ackrpc_status_name(d.never_status));
  check(d.never_ms >= 250 && d.never_ms < 4000,
        "get \"never\" answered after %" PRIu64 " ms, expected about 300", d.never_ms);
  printf("selftest: deferred: get \"late\" answered by the put at %" PRIu64
         " ms (after %" PRIu64
         " ms); get \"never\" by the server's timer after %" PRIu64 " ms\n",
         d.put_started_ms, d.late_ms, d.never_ms);
}

static size_t list_count(ackrpc_client *cl, const char *prefix, ackrpc_status *ret_st) {
  Ackrpc__Kvstore__ListRequest req = ACKRPC__KVSTORE__LIST_REQUEST__INIT;
  req.prefix = (char *)prefix;
  Ackrpc__Kvstore__ListReply *reply = NULL;
  *ret_st = ackrpc__kvstore__KvStore_List_call(cl, &req, &reply, NULL, NULL);
  if (*ret_st != ACKRPC_OK || !reply) return 0;
  size_t n = reply->n_keys;
  for (size_t i = 1; i < reply->n_keys; i++)
    if (strcmp(reply->keys[i - 1], reply->keys[i]) >= 0) n = (size_t)-1; /* unsorted */
  ackrpc__kvstore__list_reply__free_unpacked(reply, NULL);
  return n;
}

static int selftest(ackrpc_client *cl) {
  ackrpc_status st;
  Ackrpc__Kvstore__ClearRequest creq = ACKRPC__KVSTORE__CLEAR_REQUEST__INIT;
  Ackrpc__Kvstore__ClearReply *cleared = NULL;

  /* Clear (same uid: allowed), so the store starts empty. */
  st = ackrpc__kvstore__KvStore_Clear_call(cl, &creq, &cleared, NULL, NULL);
  check(st == ACKRPC_OK && cleared, "clear: %s", ackrpc_status_name(st));
  if (cleared) ackrpc__kvstore__clear_reply__free_unpacked(cleared, NULL);
  cleared = NULL;

  /* Put: a new key, then a new version. */
  Ackrpc__Kvstore__PutReply *pr = NULL;
  st = put(cl, "a", "1", &pr);
  check(st == ACKRPC_OK && pr && pr->version == 1 && pr->created, "put a=1: %s",
        ackrpc_status_name(st));
  if (pr) ackrpc__kvstore__put_reply__free_unpacked(pr, NULL);
  pr = NULL;
  st = put(cl, "a", "22", &pr);
  check(st == ACKRPC_OK && pr && pr->version == 2 && !pr->created, "put a=22: %s",
        ackrpc_status_name(st));
  if (pr) ackrpc__kvstore__put_reply__free_unpacked(pr, NULL);

  /* Get: present, missing, invalid. */
  Ackrpc__Kvstore__GetReply *gr = NULL;
  st = get(cl, "a", 0, NULL, &gr);
  check(st == ACKRPC_OK && gr && value_is(&gr->value, "22") && gr->version == 2 &&
            !gr->waited,
        "get a: %s", ackrpc_status_name(st));
  if (gr) ackrpc__kvstore__get_reply__free_unpacked(gr, NULL);
  gr = NULL;
  st = get(cl, "missing", 0, NULL, &gr);
  check(st == ACKRPC_NOT_FOUND && gr == NULL, "get missing: %s",
        ackrpc_status_name(st));
  st = get(cl, "", 0, NULL, &gr);
  check(st == ACKRPC_INVALID_ARGUMENT && gr == NULL, "get \"\": %s",
        ackrpc_status_name(st));

  /* List and Delete. */
  size_t n = list_count(cl, "", &st);
  check(st == ACKRPC_OK && n == 1, "list: %s, %zu keys", ackrpc_status_name(st), n);
  Ackrpc__Kvstore__DeleteRequest dreq = ACKRPC__KVSTORE__DELETE_REQUEST__INIT;
  dreq.key = "a";
  Ackrpc__Kvstore__DeleteReply *dr = NULL;
  st = ackrpc__kvstore__KvStore_Delete_call(cl, &dreq, &dr, NULL, NULL);
  check(st == ACKRPC_OK && dr && dr->version == 2, "delete a: %s",
        ackrpc_status_name(st));
  if (dr) ackrpc__kvstore__delete_reply__free_unpacked(dr, NULL);
  dr = NULL;
  st = ackrpc__kvstore__KvStore_Delete_call(cl, &dreq, &dr, NULL, NULL);
  check(st == ACKRPC_NOT_FOUND && dr == NULL, "delete a again: %s",
        ackrpc_status_name(st));

  /* Deferred replies: answered by another call's handler, or by a timer. */
  selftest_deferred(cl);

  /* A wait longer than the call's deadline: the deadline wins, within
   * bounds, and the server forgets the call (the next call works). */
  ackrpc_call_options short_deadline = {.timeout_ms = 300};
  uint64_t t0 = now_ms();
  st = get(cl, "never", 10000, &short_deadline, &gr);
  uint64_t took = now_ms() - t0;
  check((st == ACKRPC_E_ACK_TIMEOUT || st == ACKRPC_DEADLINE_EXCEEDED ||
         st == ACKRPC_NOT_FOUND) &&
            took < 3000,
        "get with a 300 ms deadline: %s after %" PRIu64 " ms", ackrpc_status_name(st),
        took);

  /* Asynchronous stubs: many Puts at once on our own event_base. */
  st = run_bulk(cl, 200, "bulk/", 0);
  check(st == ACKRPC_OK, "bulk: %s", ackrpc_status_name(st));
  n = list_count(cl, "bulk/", &st);
  check(st == ACKRPC_OK && n == 200, "list bulk/: %s, %zu keys (sorted: 200)",
        ackrpc_status_name(st), n);

  /* Clear: "late" and the 200 bulk keys. */
  st = ackrpc__kvstore__KvStore_Clear_call(cl, &creq, &cleared, NULL, NULL);
  check(st == ACKRPC_OK && cleared && cleared->removed == 201,
        "clear: %s, %" PRIu64 " removed (expected 201)", ackrpc_status_name(st),
        cleared ? cleared->removed : 0);
  if (cleared) ackrpc__kvstore__clear_reply__free_unpacked(cleared, NULL);
  n = list_count(cl, "", &st);
  check(st == ACKRPC_OK && n == 0, "list after clear: %s, %zu keys",
        ackrpc_status_name(st), n);

  if (failures) {
    printf("selftest: %d of %d checks failed\n", failures, checks);
    return 1;
  }
  printf("selftest: ok (%d checks)\n", checks);
  return 0;
}

/* --- main --- */

static int usage(FILE *out, int rc) {
  fprintf(out,
          "usage: kvstore_client [--expect STATUS] [--timeout MS] SOCKET COMMAND "
          "[ARG...]\n"
          "Commands: put KEY VALUE | get KEY [WAIT_MS] | delete KEY | list [PREFIX]\n"
          "          | clear | shutdown | bulk N [PREFIX] | selftest\n"
          "A command exits 0 if its status is STATUS (default OK), else 1.\n");
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
    return usage(stdout, 0);
  if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) return 1;
  const char *expect = "OK";
  unsigned long timeout_ms = 5000;
  int i = 1;
  for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
    if (strcmp(argv[i], "--expect") == 0) {
      expect = argv[i + 1];
    } else if (strcmp(argv[i], "--timeout") == 0) {
      char *end;
      errno = 0;
      timeout_ms = strtoul(argv[i + 1], &end, 10);
      if (argv[i + 1][0] < '1' || argv[i + 1][0] > '9' || *end || errno ||
          timeout_ms > 3600000)
        return usage(stderr, 2);
    } else {
      return usage(stderr, 2);
    }
  }
  if (argc - i < 2) return usage(stderr, 2);
  const char *address = argv[i], *name = argv[i + 1];

  static const struct {
    const char *name;
    ackrpc_status (*run)(const cmd *);
  } commands[] = {{"put", cmd_put},   {"get", cmd_get},     {"delete", cmd_delete},
                  {"list", cmd_list}, {"clear", cmd_clear}, {"shutdown", cmd_shutdown},
                  {"bulk", cmd_bulk}};
  ackrpc_status (*run)(const cmd *) = NULL;
  for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
    if (strcmp(name, commands[k].name) == 0) run = commands[k].run;
  int is_selftest = strcmp(name, "selftest") == 0;
  if (!run && !is_selftest) return usage(stderr, 2);
  if (is_selftest && argc - i != 2) return usage(stderr, 2);

  ackrpc_client_options options = {.address = address,
                                   .timeout_ms = (uint32_t)timeout_ms};
  ackrpc_client *client = NULL;
  ackrpc_status st = ackrpc_client_new(&options, &client);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "kvstore_client: cannot use address %s: %s: %s\n", address,
            ackrpc_status_name(st), ackrpc_strerror(st));
    return 2;
  }
  int rc;
  if (is_selftest) {
    rc = selftest(client);
  } else {
    cmd c = {
        .client = client, .opts = NULL, .argc = argc - i - 2, .argv = argv + i + 2};
    st = run(&c);
    if (st == USAGE_ERROR) {
      ackrpc_client_free(client);
      return usage(stderr, 2);
    }
    rc = strcmp(ackrpc_status_name(st), expect) == 0 ? 0 : 1;
    if (rc)
      printf("kvstore_client: expected %s, got %s\n", expect, ackrpc_status_name(st));
  }
  ackrpc_client_free(client);
  return rc;
}
