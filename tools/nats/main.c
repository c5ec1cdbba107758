/* ackrpc-nats: the NATS bridge (docs/SCALE.md, docs/man/ackrpc-nats.1).
 *
 *   export  serves a local ackrpc socket's services on NATS: one queue
 *           subscription per service, each request forwarded to the socket
 *           as a raw call, its reply published with the status headers;
 *   import  serves a local socket whose calls (the server's fallback) go to
 *           NATS as requests, each reply mapped back to an ackrpc answer.
 *
 * Both directions keep the call id, the deadline (the time left) and the
 * metadata across the hop; the envelope is envelope.h's. Each message in
 * flight has its own thread (at most --max-inflight of them), since both
 * the local call (export) and the NATS request (import) block. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <nats/nats.h>

#include <ackrpc/ackrpc.h>

#include "ackrpc/reflection.pb-c.h"
#include "auth.h"
#include "bridge.h"
#include "discovery.h"
#include "envelope.h"
#include "jetstream.h"

#define PROG "ackrpc-nats"
/* Exit statuses, as the ackrpc tool's (sysexits.h): 0 a clean stop (SIGTERM,
 * SIGINT), 64 usage, 69 NATS, the local server or the socket to serve could
 * not be reached or set up. */
#define EXIT_USAGE 64
#define EXIT_FAIL 69
#define MAX_SERVICES 256
#define MD_KEY_MAX (sizeof ACKRPC_NATS_H_MD_PREFIX + ACKRPC_MAX_METADATA_KEY)

/* --- options and shared state ----------------------------------------- */

typedef struct bridge {
  const char *socket;   /* export: the local server; import: where to listen */
  const char *nats_url; /* comma-separated URLs */
  const char *prefix;
  const char *queue;
  const char *services[MAX_SERVICES];
  size_t n_services;
  unsigned max_inflight;
  uint32_t default_timeout_ms;
  int verbose;
  /* export: the caller's identity from Nats-Request-Info (docs/SCALE.md,
   * "Identity"), and the principals admitted (none listed: all). */
  int trust_request_info;
  const char *allow[MAX_SERVICES];
  size_t n_allow;
  nats_auth auth;    /* TLS and credentials (auth.h) */
  ackrpc_nats_js js; /* --jetstream: durable delivery (jetstream.h) */

  natsConnection *nc;
  ackrpc_client *client; /* export */
  ackrpc_server *server; /* import */
  nd_discovery *disc;    /* export: $SRV discovery (discovery.h) */

  pthread_mutex_t mu;
  pthread_cond_t idle;
  unsigned inflight;
} bridge;

void logf_(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs(PROG ": ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* Takes a slot for a message in flight: 0, or -1 at the limit. */
static int slot_take(bridge *b) {
  pthread_mutex_lock(&b->mu);
  int ok = b->inflight < b->max_inflight;
  if (ok) b->inflight++;
  pthread_mutex_unlock(&b->mu);
  return ok ? 0 : -1;
}

static void slot_give(bridge *b) {
  pthread_mutex_lock(&b->mu);
  if (--b->inflight == 0) pthread_cond_broadcast(&b->idle);
  pthread_mutex_unlock(&b->mu);
}

/* Waits until nothing is in flight, at most `ms`: 0, or -1 on timeout. */
static int slots_wait_idle(bridge *b, uint32_t ms) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += ms / 1000;
  until.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&b->mu);
  int rc = 0;
  while (b->inflight > 0 && rc == 0)
    rc = pthread_cond_timedwait(&b->idle, &b->mu, &until) == ETIMEDOUT ? -1 : 0;
  rc = b->inflight > 0 ? -1 : 0;
  pthread_mutex_unlock(&b->mu);
  return rc;
}

static void stop_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
}

/* Starts fn(arg) on a detached thread that never takes SIGINT or SIGTERM
 * (they are the main thread's): 0, or -1. */
static int spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  pthread_attr_t a;
  sigset_t set, old;
  if (pthread_attr_init(&a) != 0) return -1;
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  stop_signals(&set);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  int rc = pthread_create(&t, &a, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&a);
  return rc == 0 ? 0 : -1;
}

/* The URL(s) for the log: "user:password@" left out of each. */
static const char *url_for_log(const char *urls, char *out, size_t cap) {
  size_t o = 0;
  for (const char *p = urls; *p && o + 1 < cap;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    const char *at = memchr(p, '@', len), *scheme = strstr(p, "://");
    if (at && scheme && scheme < at) {
      size_t head = (size_t)(scheme + 3 - p);
      o += (size_t)snprintf(out + o, cap - o, "%.*s***%.*s", (int)head, p,
                            (int)(len - (size_t)(at - p)), at);
    } else {
      o += (size_t)snprintf(out + o, cap - o, "%.*s", (int)len, p);
    }
    if (o >= cap) o = cap - 1;
    p += len;
    if (*p == ',') {
      if (o + 1 < cap) out[o++] = ',';
      p++;
    }
  }
  out[o < cap ? o : cap - 1] = '\0';
  return out;
}

/* The comma-separated URLs as the server list: natsOptions_SetURL() in
 * nats.c 3.4 takes one URL (a list there fails with "No server available
 * for connection"). */
static natsStatus set_urls(natsOptions *o, const char *urls) {
  char *copy = strdup(urls), *save = NULL;
  const char *list[64];
  int n = 0;
  if (!copy) return NATS_NO_MEMORY;
  for (char *u = strtok_r(copy, ",", &save); u && n < 64;
       u = strtok_r(NULL, ",", &save))
    list[n++] = u;
  natsStatus s = n ? natsOptions_SetServers(o, list, n) : NATS_INVALID_ARG;
  free(copy);
  return s;
}

static natsStatus nats_connect(bridge *b) {
  natsOptions *o = NULL;
  natsStatus s = natsOptions_Create(&o);
  if (s == NATS_OK) s = set_urls(o, b->nats_url);
  char why[768] = "";
  if (s == NATS_OK && (s = nats_auth_apply(&b->auth, o, why, sizeof why)) != NATS_OK) {
    logf_("cannot set up the NATS connection: %s", why);
    natsOptions_Destroy(o);
    return s;
  }
  if (s == NATS_OK) s = natsOptions_SetName(o, PROG);
  /* Keep trying while the cluster heals; calls meanwhile fail as
   * UNAVAILABLE (import) or are not received (export). */
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 250);
  /* Every message is one call waiting: send it now rather than when the
   * flusher runs (a reply published by export waited ~1 ms otherwise). */
  if (s == NATS_OK) s = natsOptions_SetSendAsap(o, true);
  if (s == NATS_OK) s = natsConnection_Connect(&b->nc, o);
  natsOptions_Destroy(o);
  if (s != NATS_OK) {
    /* nats.c's last error says more (a TLS handshake refused, an
     * authorization violation); it holds no password. */
    char shown[512];
    const char *detail = nats_GetLastError(NULL);
    if (detail && strchr(detail, '@')) detail = NULL; /* a URL with a password */
    /* A server that requires a client certificate closes the connection
     * after the handshake when it gets none or one it does not trust:
     * nats.c then reports only a protocol error. */
    int tls = b->auth.tls_ca || strstr(b->nats_url, "tls://");
    logf_("cannot connect to NATS at %s: %s%s%s%s",
          url_for_log(b->nats_url, shown, sizeof shown), natsStatus_GetText(s),
          detail && detail[0] ? ": " : "", detail ? detail : "",
          tls && (s == NATS_PROTOCOL_ERROR || s == NATS_CONNECTION_CLOSED ||
                  s == NATS_IO_ERROR)
              ? " (the server closed the TLS connection: it may have refused the "
                "client certificate, a missing one, or the user it maps to)"
              : "");
  }
  return s;
}

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* --- export ------------------------------------------------------------ */

typedef struct export_job {
  bridge *b;
  natsMsg *msg;
  uint64_t t0_us; /* when it arrived (discovery's processing time) */
} export_job;

/* Publishes an answer to `reply_to`: the status headers and `body`. */
static void publish_answer(bridge *b, const char *reply_to, const char *call_id_hex,
                           ackrpc_status status, const char *message,
                           const uint8_t *body, size_t body_len) {
  natsMsg *m = NULL;
  char code[16], clean[1024];
  snprintf(code, sizeof code, "%d", (int)status);
  ackrpc_nats_message_clean(message, clean, sizeof clean);
  natsStatus s = natsMsg_Create(&m, reply_to, NULL, (const char *)body, (int)body_len);
  if (s == NATS_OK && call_id_hex[0] != '\0')
    s = natsMsgHeader_Set(m, ACKRPC_NATS_H_CALL_ID, call_id_hex);
  if (s == NATS_OK) s = natsMsgHeader_Set(m, ACKRPC_NATS_H_STATUS, code);
  if (s == NATS_OK && clean[0] != '\0')
    s = natsMsgHeader_Set(m, ACKRPC_NATS_H_MESSAGE, clean);
  if (s == NATS_OK && status != ACKRPC_OK) {
    /* For NATS's own service clients, which know no Ackrpc-Status. */
    char err[1100];
    snprintf(err, sizeof err, "%s%s%s", ackrpc_status_name(status),
             clean[0] ? ": " : "", clean);
    s = natsMsgHeader_Set(m, ACKRPC_NATS_H_SERVICE_ERROR, err);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, ACKRPC_NATS_H_SERVICE_ERROR_CODE, code);
  }
  if (s == NATS_OK) s = natsConnection_PublishMsg(b->nc, m);
  if (s != NATS_OK) logf_("cannot publish a reply: %s", natsStatus_GetText(s));
  natsMsg_Destroy(m);
}

/* The metadata of a request: md_decode() (bridge.h). The reserved
 * principal key is refused (`denied` set): only the bridge names the
 * caller. */
void md_free(md_buf *mb) {
  for (size_t i = 0; i < mb->n; i++)
    free(mb->values[i]);
  mb->n = 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int md_decode(natsMsg *msg, md_buf *mb, const char **why) {
  const char **keys = NULL;
  int n_keys = 0;
  mb->n = 0;
  natsStatus s = natsMsgHeader_Keys(msg, &keys, &n_keys);
  if (s == NATS_NOT_FOUND) return 0;
  if (s != NATS_OK) {
    *why = "cannot read the headers";
    return -1;
  }
  /* nats.c keeps headers in a hash table: the order of different keys is
   * lost on NATS. Sorted by key, the handler sees one order every time. */
  qsort(keys, (size_t)n_keys, sizeof *keys, cmp_str);
  const size_t plen = strlen(ACKRPC_NATS_H_MD_PREFIX);
  int rc = 0;
  for (int i = 0; i < n_keys && rc == 0; i++) {
    if (strncmp(keys[i], ACKRPC_NATS_H_MD_PREFIX, plen) != 0) continue;
    const char *key = keys[i] + plen;
    if (strcmp(key, ACKRPC_NATS_PRINCIPAL_KEY) == 0) {
      /* Never trusted, never dropped in silence: refused. */
      *why = "metadata " ACKRPC_NATS_PRINCIPAL_KEY " is set by the bridge only";
      mb->denied = 1;
      rc = -1;
      break;
    }
    if (key[0] == '\0' || strlen(key) > ACKRPC_MAX_METADATA_KEY) {
      *why = "bad metadata key";
      rc = -1;
      break;
    }
    const char **vals = NULL;
    int n_vals = 0;
    if (natsMsgHeader_Values(msg, keys[i], &vals, &n_vals) != NATS_OK) continue;
    for (int j = 0; j < n_vals && rc == 0; j++) {
      size_t k = mb->n;
      uint8_t *v = NULL;
      size_t vlen = 0;
      if (k == ACKRPC_MAX_METADATA) {
        *why = "too many metadata entries";
        rc = -1;
      } else if ((v = malloc(ACKRPC_MAX_METADATA_VALUE + 1)) == NULL) {
        *why = "out of memory";
        rc = -1;
      } else if (strcmp(vals[j], ACKRPC_NATS_EMPTY_VALUE) != 0 &&
                 ackrpc_nats_b64_decode(vals[j], v, ACKRPC_MAX_METADATA_VALUE, &vlen) !=
                     0) {
        free(v);
        snprintf(mb->why, sizeof mb->why,
                 "the value of metadata key '%.64s' is not canonical base64 of at most "
                 "4096 bytes",
                 key);
        *why = mb->why;
        rc = -1;
      } else {
        snprintf(mb->keys[k], sizeof mb->keys[k], "%s", key);
        mb->values[k] = v;
        mb->md[k] = (ackrpc_metadata){mb->keys[k], v, vlen};
        mb->n++;
      }
    }
    free((void *)vals);
  }
  free((void *)keys);
  if (rc != 0) md_free(mb);
  return rc == 0 ? (int)mb->n : -1;
}

/* Whether a byte may be in a principal (ackrpc/common.h: printable
 * ASCII, '"' and '\\' excepted). */
static int principal_byte(unsigned char c) {
  return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\';
}

/* The caller's principal, "nats:ACCOUNT/USER", from the Nats-Request-Info
 * header that nats-server writes on a request that crossed a service
 * import with `share: true` (it replaces whatever the requester sent).
 * 0 with "" (anonymous) without the header, or with one that names no
 * account and user (JSON that does not parse, other types). -1 with "" if
 * it names one that cannot be a principal (other bytes, too long): the
 * caller is known but cannot be named, so the call is refused rather than
 * made anonymous. */
static int principal_of(natsMsg *msg, char *out, size_t cap) {
  const char *v = NULL;
  out[0] = '\0';
  if (natsMsgHeader_Get(msg, "Nats-Request-Info", &v) != NATS_OK) return 0;
  json_t *root = json_loads(v, JSON_REJECT_DUPLICATES, NULL);
  const char *acc = json_string_value(json_object_get(root, "acc"));
  const char *user = json_string_value(json_object_get(root, "user"));
  if (!user) user = json_string_value(json_object_get(root, "nkey"));
  int named = acc && user && acc[0] && user[0], ok = named;
  for (const char *p = acc; ok && *p; p++)
    ok = principal_byte((unsigned char)*p) && *p != '/';
  for (const char *p = user; ok && *p; p++)
    ok = principal_byte((unsigned char)*p);
  if (ok && (size_t)snprintf(out, cap, ACKRPC_NATS_PRINCIPAL_PREFIX "%s/%s", acc,
                             user) >= cap)
    ok = 0;
  if (!ok) out[0] = '\0';
  json_decref(root);
  return named && !ok ? -1 : 0;
}

/* `principal` without its "nats:" (ACCOUNT/USER, as --allow names it). */
static const char *nats_user(const char *principal) {
  return principal[0] ? principal + strlen(ACKRPC_NATS_PRINCIPAL_PREFIX) : principal;
}

static int principal_allowed(const bridge *b, const char *principal) {
  if (b->n_allow == 0) return 1;
  for (size_t i = 0; i < b->n_allow; i++)
    if (principal[0] && strcmp(b->allow[i], nats_user(principal)) == 0) return 1;
  return 0;
}

static void *export_one(void *arg) {
  export_job *job = arg;
  bridge *b = job->b;
  natsMsg *msg = job->msg;
  uint64_t t0 = job->t0_us;
  free(job);
  const char *reply_to = natsMsg_GetReply(msg);
  char method[ACKRPC_MAX_METHOD_NAME + 1] = "", id_hex[2 * ACKRPC_MAX_CALL_ID + 1] = "";
  uint8_t call_id[ACKRPC_MAX_CALL_ID];
  size_t call_id_len = 0;
  uint64_t timeout_ms = b->default_timeout_ms;
  const char *v = NULL, *why = NULL;
  md_buf *mb = calloc(1, sizeof *mb);
  ackrpc_status bad = ACKRPC_INVALID_ARGUMENT;

  if (!mb) {
    bad = ACKRPC_RESOURCE_EXHAUSTED;
    why = "out of memory";
  } else if (ackrpc_nats_method(b->prefix, natsMsg_GetSubject(msg), method,
                                sizeof method) != 0) {
    bad = ACKRPC_UNIMPLEMENTED;
    why = "the subject names no method";
  } else if (natsMsgHeader_Get(msg, ACKRPC_NATS_H_CALL_ID, &v) == NATS_OK && v[0] &&
             (ackrpc_nats_hex_decode(v, call_id, sizeof call_id, &call_id_len) != 0 ||
              call_id_len == 0)) {
    why = "Ackrpc-Call-Id is not 1 to 64 bytes in lowercase hex";
  } else if (natsMsgHeader_Get(msg, ACKRPC_NATS_H_TIMEOUT, &v) == NATS_OK &&
             ackrpc_nats_dec_decode(v, UINT32_MAX, &timeout_ms) != 0) {
    why = "Ackrpc-Timeout-Ms is not a decimal number of milliseconds";
  } else if (md_decode(msg, mb, &why) < 0) {
    if (mb->denied) bad = ACKRPC_PERMISSION_DENIED;
  } else if (b->trust_request_info) {
    if (principal_of(msg, mb->principal, sizeof mb->principal) != 0) {
      bad = ACKRPC_PERMISSION_DENIED;
      why = "the caller's NATS account or user cannot be a principal (printable "
            "ASCII without '\"' or '\\', at most 256 bytes with \"nats:\")";
    } else if (!principal_allowed(b, mb->principal)) {
      bad = ACKRPC_PERMISSION_DENIED;
      snprintf(mb->why, sizeof mb->why, "the bridge does not admit %s%.128s",
               mb->principal[0] ? "NATS user " : "anonymous callers",
               nats_user(mb->principal));
      why = mb->why;
    } else if (mb->principal[0] && mb->n == ACKRPC_MAX_METADATA) {
      why = "too many metadata entries (the bridge adds the principal)";
    } else if (mb->principal[0]) {
      mb->values[mb->n] = NULL; /* not malloc'd: md_free() skips it */
      mb->md[mb->n++] = (ackrpc_metadata){ACKRPC_NATS_PRINCIPAL_KEY, mb->principal,
                                          strlen(mb->principal)};
    }
  }
  if (call_id_len) ackrpc_nats_hex_encode(call_id, call_id_len, id_hex);

  if (why) {
    if (b->verbose) logf_("refused %s: %s", natsMsg_GetSubject(msg), why);
    if (bad != ACKRPC_UNIMPLEMENTED)
      nd_count(b->disc, method, bad, why, (now_us() - t0) * 1000u);
    publish_answer(b, reply_to, id_hex, bad, why, NULL, 0);
  } else if (timeout_ms == 0) {
    nd_count(b->disc, method, ACKRPC_DEADLINE_EXCEEDED, "no time left",
             (now_us() - t0) * 1000u);
    publish_answer(b, reply_to, id_hex, ACKRPC_DEADLINE_EXCEEDED,
                   "the deadline passed before the bridge could call", NULL, 0);
  } else {
    ackrpc_call_options o = {.timeout_ms = (uint32_t)timeout_ms,
                             .call_id = call_id_len ? call_id : NULL,
                             .call_id_len = call_id_len,
                             .metadata = mb->md,
                             .metadata_count = mb->n};
    ackrpc_result r = {0};
    const uint8_t *body = (const uint8_t *)natsMsg_GetData(msg);
    ackrpc_status st = ackrpc_client_call_raw(
        b->client, method, body, (size_t)natsMsg_GetDataLength(msg), &o, &r);
    ackrpc_nats_hex_encode(r.call_id, r.call_id_len, id_hex);
    ackrpc_outcome out = ackrpc_status_outcome(st);
    if (b->verbose) logf_("%s -> %s", method, ackrpc_status_name(st));
    /* Counted before the answer goes: a caller that asks $SRV.STATS once
     * it has its answer sees its call. */
    nd_count(b->disc, method, st, r.message, (now_us() - t0) * 1000u);
    if (out == ACKRPC_OUTCOME_ACKED) {
      publish_answer(b, reply_to, id_hex, st, r.message, r.reply_bytes,
                     r.reply_bytes_len);
    } else if (st == ACKRPC_E_INVAL) {
      publish_answer(b, reply_to, id_hex, ACKRPC_INVALID_ARGUMENT,
                     r.message ? r.message : "refused by the bridge", NULL, 0);
    } else if (out == ACKRPC_OUTCOME_NOT_DELIVERED) {
      char text[512];
      snprintf(text, sizeof text, "not delivered: %s%s%s", ackrpc_status_name(st),
               r.message ? ": " : "", r.message ? r.message : "");
      publish_answer(b, reply_to, id_hex, ACKRPC_UNAVAILABLE, text, NULL, 0);
    }
    /* Delivered, no ack: no answer, so the caller's own deadline ends the
     * call as "delivered, no ack" too (docs/SCALE.md). */
    ackrpc_result_clear(&r);
  }
  if (mb) md_free(mb);
  free(mb);
  natsMsg_Destroy(msg);
  slot_give(b);
  return NULL;
}

static void on_export_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                          void *closure) {
  (void)nc, (void)sub;
  bridge *b = closure;
  const char *reply_to = natsMsg_GetReply(msg);
  if (reply_to == NULL || reply_to[0] == '\0') {
    natsMsg_Destroy(msg); /* a publish, not a request: nobody to answer */
    return;
  }
  if (slot_take(b) != 0) {
    publish_answer(b, reply_to, "", ACKRPC_RESOURCE_EXHAUSTED,
                   "the bridge has too many calls in flight", NULL, 0);
    natsMsg_Destroy(msg);
    return;
  }
  export_job *job = malloc(sizeof *job);
  if (job) *job = (export_job){b, msg, now_us()};
  if (!job || spawn(export_one, job) != 0) {
    free(job);
    publish_answer(b, reply_to, "", ACKRPC_RESOURCE_EXHAUSTED,
                   "the bridge cannot start a thread", NULL, 0);
    natsMsg_Destroy(msg);
    slot_give(b);
  }
}

/* The services the local server lists, but its built-in ones. Returns the
 * count added to b->services (strings malloc'd, kept until exit), or -1. */
static int list_services(bridge *b, char **owned) {
  ackrpc_result r = {0};
  ackrpc_status st = ackrpc_client_call_raw(
      b->client, "ackrpc.reflection.Reflection/ListServices", NULL, 0, NULL, &r);
  if (st != ACKRPC_OK) {
    char text[512];
    ackrpc_status_format(text, sizeof text, st, r.message);
    logf_("cannot list the services of %s (pass --service): %s", b->socket, text);
    ackrpc_result_clear(&r);
    return -1;
  }
  Ackrpc__Reflection__ListServicesReply *rep =
      ackrpc__reflection__list_services_reply__unpack(NULL, r.reply_bytes_len,
                                                      r.reply_bytes);
  ackrpc_result_clear(&r);
  if (!rep) {
    logf_("the services of %s: a reply that does not decode", b->socket);
    return -1;
  }
  int n = 0;
  for (size_t i = 0; i < rep->n_services && b->n_services < MAX_SERVICES; i++) {
    const char *name = rep->services[i]->name;
    if (strncmp(name, "ackrpc.reflection.", 18) == 0) continue; /* built in */
    char *copy = strdup(name);
    if (!copy) break;
    owned[n++] = copy;
    b->services[b->n_services++] = copy;
  }
  ackrpc__reflection__list_services_reply__free_unpacked(rep, NULL);
  return n;
}

static int wait_for_signal(void) {
  sigset_t set;
  stop_signals(&set);
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

/* export --jetstream: a durable consumer instead of subscriptions. */
static int run_js_export(bridge *b) {
  int rc = EXIT_FAIL;
  if (nats_connect(b) == NATS_OK &&
      ackrpc_nats_js_setup(b->nc, &b->js, b->prefix) == 0 &&
      (!b->js.dead_letter || ackrpc_nats_js_dead_letter_setup(&b->js) == 0) &&
      ackrpc_nats_js_export(&b->js, b->client, b->prefix,
                            b->n_services ? b->services[0] : NULL,
                            b->default_timeout_ms, b->verbose, wait_for_signal) == 0)
    rc = 0;
  ackrpc_nats_js_close(&b->js);
  if (b->nc) natsConnection_Destroy(b->nc);
  b->client = ackrpc_client_free(b->client);
  return rc;
}

static int run_export(bridge *b) {
  ackrpc_client_options co = {.address = b->socket};
  ackrpc_status st = ackrpc_client_new(&co, &b->client);
  if (st != ACKRPC_OK) {
    logf_("%s: %s", b->socket, ackrpc_strerror(st));
    return EXIT_FAIL;
  }
  if (b->js.stream) return run_js_export(b);
  char *owned[MAX_SERVICES] = {0};
  int n_owned = 0;
  if (b->n_services == 0 && (n_owned = list_services(b, owned)) < 0) {
    ackrpc_client_free(b->client);
    return EXIT_FAIL;
  }
  if (b->n_services == 0) {
    logf_("%s serves no service to export", b->socket);
    ackrpc_client_free(b->client);
    return EXIT_FAIL;
  }
  int rc = EXIT_FAIL;
  natsSubscription *subs[MAX_SERVICES] = {0};
  size_t n_subs = 0;
  if (nats_connect(b) != NATS_OK) goto out;
  for (size_t i = 0; i < b->n_services; i++) {
    /* P.<service>.*: the method is one token (docs/SCALE.md). */
    char subject[512];
    if ((size_t)snprintf(subject, sizeof subject, "%s.%s.*", b->prefix,
                         b->services[i]) >= sizeof subject) {
      logf_("service name too long: %s", b->services[i]);
      goto out;
    }
    natsStatus s = natsConnection_QueueSubscribe(&subs[n_subs], b->nc, subject,
                                                 b->queue, on_export_msg, b);
    if (s != NATS_OK) {
      logf_("cannot subscribe to %s: %s", subject, natsStatus_GetText(s));
      goto out;
    }
    n_subs++;
    logf_("exporting %s on %s (queue %s)", b->services[i], subject, b->queue);
  }
  char why[512];
  if (nd_start(b->nc, b->client, b->prefix, b->queue, b->services, b->n_services,
               &b->disc, why, sizeof why) != 0) {
    logf_("discovery ($SRV): %s", why);
    goto out;
  }
  logf_("discovery: $SRV.PING|INFO|STATS, id %s", nd_id(b->disc));
  if (natsConnection_Flush(b->nc) != NATS_OK) {
    logf_("NATS did not confirm the subscriptions");
    goto out;
  }
  logf_("ready");
  int sig = wait_for_signal();
  logf_("%s: stopping", strsignal(sig));
  rc = 0;
out:
  /* No new messages, then the ones in flight finish (each bounded by its
   * deadline, the client's default at most). */
  for (size_t i = 0; i < n_subs; i++)
    natsSubscription_Unsubscribe(subs[i]);
  if (slots_wait_idle(b, b->default_timeout_ms + 1000) != 0)
    logf_("calls still in flight at exit");
  else
    nd_stop(b->disc); /* (kept if a call might still count into it) */
  for (size_t i = 0; i < n_subs; i++)
    natsSubscription_Destroy(subs[i]);
  if (b->nc) {
    natsConnection_FlushTimeout(b->nc, 1000);
    natsConnection_Destroy(b->nc);
  }
  b->client = ackrpc_client_free(b->client);
  for (int i = 0; i < n_owned; i++)
    free(owned[i]);
  return rc;
}

/* --- import ------------------------------------------------------------ */

typedef struct import_job {
  bridge *b;
  ackrpc_call *call;
  natsMsg *msg;
  int64_t timeout_ms;
} import_job;

/* Maps the NATS reply to the ackrpc answer. */
static void import_answer(ackrpc_call *call, natsMsg *reply) {
  const char *v = NULL, *message = NULL;
  uint64_t code = 0;
  if (natsMsgHeader_Get(reply, ACKRPC_NATS_H_STATUS, &v) != NATS_OK ||
      ackrpc_nats_dec_decode(v, 16, &code) != 0) {
    /* Delivered, and an answer we cannot read: the exporter may have
     * acted. Not UNAVAILABLE, which retry policies repeat blindly. */
    ackrpc_call_reply_encoded(call, ACKRPC_INTERNAL,
                              "the bridge got a reply over NATS without a valid "
                              "Ackrpc-Status (the call may have run)",
                              NULL, 0);
    return;
  }
  if (natsMsgHeader_Get(reply, ACKRPC_NATS_H_MESSAGE, &message) != NATS_OK)
    message = NULL;
  int len = natsMsg_GetDataLength(reply);
  ackrpc_call_reply_encoded(call, (ackrpc_status)code, message,
                            len > 0 ? (const uint8_t *)natsMsg_GetData(reply) : NULL,
                            len > 0 ? (size_t)len : 0);
}

static void *import_one(void *arg) {
  import_job *job = arg;
  bridge *b = job->b;
  if (b->js.stream) {
    ackrpc_nats_js_import_one(&b->js, job->call, job->msg, job->timeout_ms, b->verbose);
    natsMsg_Destroy(job->msg);
    free(job);
    slot_give(b);
    return NULL;
  }
  natsMsg *reply = NULL;
  natsStatus s = natsConnection_RequestMsg(&reply, b->nc, job->msg, job->timeout_ms);
  char text[512];
  if (s == NATS_OK) {
    import_answer(job->call, reply);
  } else if (s == NATS_NO_RESPONDERS) {
    snprintf(text, sizeof text, "not delivered: no responders for %s",
             natsMsg_GetSubject(job->msg));
    ackrpc_call_reply_encoded(job->call, ACKRPC_UNAVAILABLE, text, NULL, 0);
  } else if (s == NATS_TIMEOUT) {
    /* The server has answered DEADLINE_EXCEEDED itself by now, or is about
     * to: this only releases the call. */
    ackrpc_call_reply_encoded(job->call, ACKRPC_DEADLINE_EXCEEDED,
                              "no reply over NATS before the deadline", NULL, 0);
  } else {
    snprintf(text, sizeof text, "NATS: %s", natsStatus_GetText(s));
    ackrpc_call_reply_encoded(job->call, ACKRPC_UNAVAILABLE, text, NULL, 0);
  }
  if (b->verbose) logf_("%s: %s", natsMsg_GetSubject(job->msg), natsStatus_GetText(s));
  natsMsg_Destroy(reply);
  natsMsg_Destroy(job->msg);
  free(job);
  slot_give(b);
  return NULL;
}

/* Builds the NATS request of a call: subject, body and headers. */
static natsStatus import_request(const bridge *b, ackrpc_call *call,
                                 const uint8_t *body, size_t len, int64_t timeout_ms,
                                 natsMsg **ret) {
  char subject[ACKRPC_MAX_METHOD_NAME + 256], text[32];
  if (ackrpc_nats_subject(b->prefix, ackrpc_call_method(call), subject, sizeof subject))
    return NATS_INVALID_ARG;
  natsMsg *m = NULL;
  natsStatus s = natsMsg_Create(&m, subject, NULL, (const char *)body, (int)len);
  size_t id_len = 0;
  const uint8_t *id = ackrpc_call_id(call, &id_len);
  if (s == NATS_OK && id && id_len) {
    char hex[2 * ACKRPC_MAX_CALL_ID + 1];
    ackrpc_nats_hex_encode(id, id_len, hex);
    s = natsMsgHeader_Set(m, ACKRPC_NATS_H_CALL_ID, hex);
  }
  snprintf(text, sizeof text, "%lld", (long long)timeout_ms);
  if (s == NATS_OK) s = natsMsgHeader_Set(m, ACKRPC_NATS_H_TIMEOUT, text);
  size_t n = ackrpc_call_metadata_count(call);
  char *val = malloc(ackrpc_nats_b64_len(ACKRPC_MAX_METADATA_VALUE) + 2);
  if (!val && n) s = NATS_NO_MEMORY;
  for (size_t i = 0; i < n && s == NATS_OK; i++) {
    const char *key;
    const uint8_t *value;
    size_t vlen;
    char hkey[MD_KEY_MAX];
    if (ackrpc_call_metadata_at(call, i, &key, &value, &vlen) != 0) break;
    /* ACKRPC_NATS_PRINCIPAL_KEY never gets here: the import's server
     * trusts no bridge, so the library refused a call carrying it. */
    snprintf(hkey, sizeof hkey, "%s%s", ACKRPC_NATS_H_MD_PREFIX, key);
    if (vlen)
      ackrpc_nats_b64_encode(value, vlen, val);
    else
      strcpy(val, ACKRPC_NATS_EMPTY_VALUE);
    s = natsMsgHeader_Add(m, hkey, val);
  }
  free(val);
  if (s != NATS_OK) {
    natsMsg_Destroy(m);
    return s;
  }
  *ret = m;
  return NATS_OK;
}

static void on_import_call(ackrpc_call *call, const uint8_t *body, size_t len,
                           void *user) {
  bridge *b = user;
  uint64_t deadline = ackrpc_call_deadline_us(call), now = now_us();
  if (deadline <= now + 1000) {
    ackrpc_call_reply_encoded(call, ACKRPC_DEADLINE_EXCEEDED,
                              "the deadline passed before the bridge could call", NULL,
                              0);
    return;
  }
  int64_t timeout_ms = (int64_t)((deadline - now) / 1000);
  natsMsg *msg = NULL;
  natsStatus s = import_request(b, call, body, len, timeout_ms, &msg);
  /* The NATS request waits a moment past the deadline, as the server does
   * (5 ms): the caller has given up by then and reports its own timeout. */
  timeout_ms += 5;
  if (s != NATS_OK) {
    char text[256];
    snprintf(text, sizeof text,
             "the bridge cannot make a NATS request of this call: %s",
             natsStatus_GetText(s));
    ackrpc_call_reply_encoded(call,
                              s == NATS_INVALID_ARG ? ACKRPC_INVALID_ARGUMENT
                                                    : ACKRPC_RESOURCE_EXHAUSTED,
                              text, NULL, 0);
    return;
  }
  if (slot_take(b) != 0) {
    natsMsg_Destroy(msg);
    ackrpc_call_reply_encoded(call, ACKRPC_RESOURCE_EXHAUSTED,
                              "the bridge has too many calls in flight", NULL, 0);
    return;
  }
  import_job *job = malloc(sizeof *job);
  if (job) *job = (import_job){b, call, msg, timeout_ms};
  if (!job || spawn(import_one, job) != 0) {
    free(job);
    natsMsg_Destroy(msg);
    slot_give(b);
    ackrpc_call_reply_encoded(call, ACKRPC_RESOURCE_EXHAUSTED,
                              "the bridge cannot start a thread", NULL, 0);
  }
}

static int run_import(bridge *b) {
  if (nats_connect(b) != NATS_OK) return EXIT_FAIL;
  if (b->js.stream && ackrpc_nats_js_setup(b->nc, &b->js, b->prefix) != 0) {
    ackrpc_nats_js_close(&b->js);
    natsConnection_Destroy(b->nc);
    return EXIT_FAIL;
  }
  ackrpc_server_options so = {.address = b->socket};
  ackrpc_status st = ackrpc_server_new(&so, &b->server);
  if (st == ACKRPC_OK) st = ackrpc_server_set_fallback(b->server, on_import_call, b);
  if (st != ACKRPC_OK) {
    logf_("cannot serve %s: %s", b->socket, ackrpc_strerror(st));
    b->server = ackrpc_server_free(b->server);
    ackrpc_nats_js_close(&b->js);
    natsConnection_Destroy(b->nc);
    return EXIT_FAIL;
  }
  char shown[512];
  logf_("importing %s.> from %s on %s%s%s", b->prefix,
        url_for_log(b->nats_url, shown, sizeof shown), b->socket,
        b->js.stream ? " into JetStream stream " : "",
        b->js.stream ? b->js.stream : "");
  logf_("ready");
  /* NATS's threads were made with the stop signals blocked; the loop's
   * thread takes them (ackrpc_server_run_until_signal()). */
  sigset_t set;
  stop_signals(&set);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  int sig = 0;
  st = ackrpc_server_run_until_signal(b->server, &sig);
  if (sig) logf_("%s: stopping", strsignal(sig));
  /* The server drained: calls its handler still holds end by their
   * deadlines (the NATS request's timeout). */
  if (slots_wait_idle(b, b->default_timeout_ms + 1000) != 0)
    logf_("calls still in flight at exit");
  b->server = ackrpc_server_free(b->server);
  ackrpc_nats_js_close(&b->js);
  natsConnection_Destroy(b->nc);
  return st == ACKRPC_OK ? 0 : EXIT_FAIL;
}

/* --- command line ------------------------------------------------------ */

/* Long options without a short one. */
enum {
  OPT_TLS_CA = 1000,
  OPT_TLS_CERT,
  OPT_TLS_KEY,
  OPT_TLS_HOSTNAME,
  OPT_USER,
  OPT_PASSWORD_FILE,
  OPT_NKEY,
  OPT_NKEY_SEED_FILE,
  OPT_CREDS,
  OPT_DEAD_LETTER,
};

static const char usage[] =
    "usage: " PROG " export --socket PATH --nats URL [--service NAME]... [OPTIONS]\n"
    "       " PROG " import --listen PATH --nats URL [OPTIONS]\n"
    "\n"
    "export  serves the services of the ackrpc server at PATH on NATS, a subject\n"
    "        PREFIX.<service>.<method> per method, in a queue group\n"
    "import  serves PATH; every call to it goes to NATS as a request\n"
    "\n"
    "Options:\n"
    "  -s, --socket PATH        export: the local server (ackrpc address)\n"
    "  -l, --listen PATH        import: the address to serve\n"
    "  -n, --nats URL           NATS server URL(s), comma-separated\n"
    "  -S, --service NAME       export: a service to export (repeatable;\n"
    "                           default: all the server lists, built-ins left out)\n"
    "  -p, --prefix P           subject prefix (default ackrpc)\n"
    "  -q, --queue G            export: queue group (default: the prefix)\n"
    "  -m, --max-inflight N     calls in flight at once (default 256)\n"
    "  -t, --timeout-ms MS      export: a request's deadline when it carries none\n"
    "                           (default 30000)\n"
    "  -T, --trust-request-info export: the caller is the NATS account/user that\n"
    "                           nats-server's Nats-Request-Info header names\n"
    "                           (service imports with share: true; see SCALE.md)\n"
    "  -a, --allow ACCOUNT/USER export, with -T: admit only these callers\n"
    "                           (repeatable; others get PERMISSION_DENIED)\n"
    "  --tls-ca FILE            trust these CAs (PEM) and use TLS\n"
    "  --tls-cert FILE          with --tls-key: the bridge's client certificate\n"
    "  --tls-key FILE           (PEM) and its key\n"
    "  --tls-hostname NAME      the name the server's certificate must carry\n"
    "                           (default: the URL's host)\n"
    "  --user NAME              with --password-file: log in as NAME\n"
    "  --password-file FILE     the password, the file's first line\n"
    "  --nkey PUBLIC-KEY        with --nkey-seed-file: log in as this nkey user\n"
    "  --nkey-seed-file FILE    its seed (read by nats.c when it signs)\n"
    "  --creds FILE             a .creds file (user JWT and seed)\n"
    "  -J, --jetstream STREAM   durable delivery through JetStream stream STREAM:\n"
    "                           import publishes each call into it (call id as\n"
    "                           Nats-Msg-Id) and answers OK once stored; export\n"
    "                           delivers from a durable consumer (--durable)\n"
    "  -D, --durable NAME       export, with -J: the durable consumer's name\n"
    "      --create-stream      with -J: create STREAM (subjects PREFIX.>) if missing\n"
    "      --replicas N         with --create-stream: its replicas (1-5, default 1)\n"
    "      --dead-letter SUBJ   export, with -J: store each message terminated\n"
    "                           (refused for good, or not an envelope) on SUBJ\n"
    "                           before terminating it (with --create-stream: in\n"
    "                           stream STREAM_DEAD if no stream stores SUBJ)\n"
    "  -v, --verbose            log each call\n"
    "  -h, --help               this help\n";

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? EXIT_USAGE : 0;
  }
  const char *cmd = argv[1];
  int is_export = strcmp(cmd, "export") == 0, is_import = strcmp(cmd, "import") == 0;
  if (!is_export && !is_import) {
    fprintf(stderr, PROG ": unknown command '%s'\n%s", cmd, usage);
    return EXIT_USAGE;
  }
  bridge b = {.prefix = "ackrpc", .max_inflight = 256, .default_timeout_ms = 30000};
  static const struct option longs[] = {
      {"socket", required_argument, NULL, 's'},
      {"listen", required_argument, NULL, 'l'},
      {"nats", required_argument, NULL, 'n'},
      {"service", required_argument, NULL, 'S'},
      {"prefix", required_argument, NULL, 'p'},
      {"queue", required_argument, NULL, 'q'},
      {"max-inflight", required_argument, NULL, 'm'},
      {"timeout-ms", required_argument, NULL, 't'},
      {"trust-request-info", no_argument, NULL, 'T'},
      {"allow", required_argument, NULL, 'a'},
      {"jetstream", required_argument, NULL, 'J'},
      {"durable", required_argument, NULL, 'D'},
      {"create-stream", no_argument, NULL, 'C'},
      {"replicas", required_argument, NULL, 'R'},
      {"dead-letter", required_argument, NULL, OPT_DEAD_LETTER},
      {"verbose", no_argument, NULL, 'v'},
      {"tls-ca", required_argument, NULL, OPT_TLS_CA},
      {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
      {"tls-key", required_argument, NULL, OPT_TLS_KEY},
      {"tls-hostname", required_argument, NULL, OPT_TLS_HOSTNAME},
      {"user", required_argument, NULL, OPT_USER},
      {"password-file", required_argument, NULL, OPT_PASSWORD_FILE},
      {"nkey", required_argument, NULL, OPT_NKEY},
      {"nkey-seed-file", required_argument, NULL, OPT_NKEY_SEED_FILE},
      {"creds", required_argument, NULL, OPT_CREDS},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int c;
  uint64_t num;
  optind = 2;
  while ((c = getopt_long(argc, argv, "s:l:n:S:p:q:m:t:Ta:J:D:vh", longs, NULL)) !=
         -1) {
    switch (c) {
    case 's':
    case 'l':
      if ((c == 's') != is_export) {
        fprintf(stderr, PROG " %s: --%s is for %s\n", cmd,
                c == 's' ? "socket" : "listen", c == 's' ? "export" : "import");
        return EXIT_USAGE;
      }
      b.socket = optarg;
      break;
    case 'n': b.nats_url = optarg; break;
    case 'S':
      if (b.n_services == MAX_SERVICES) {
        fprintf(stderr, PROG ": too many --service options\n");
        return EXIT_USAGE;
      }
      b.services[b.n_services++] = optarg;
      break;
    case 'p': b.prefix = optarg; break;
    case 'q': b.queue = optarg; break;
    case 'm':
    case 't':
      if (ackrpc_nats_dec_decode(optarg, c == 'm' ? 65536 : UINT32_MAX, &num) != 0 ||
          num == 0) {
        fprintf(stderr, PROG ": bad --%s: %s\n",
                c == 'm' ? "max-inflight" : "timeout-ms", optarg);
        return EXIT_USAGE;
      }
      if (c == 'm')
        b.max_inflight = (unsigned)num;
      else
        b.default_timeout_ms = (uint32_t)num;
      break;
    case 'T': b.trust_request_info = 1; break;
    case 'a':
      if (b.n_allow == MAX_SERVICES || !strchr(optarg, '/')) {
        fprintf(stderr, PROG ": bad --allow '%s' (ACCOUNT/USER, at most %d)\n", optarg,
                MAX_SERVICES);
        return EXIT_USAGE;
      }
      b.allow[b.n_allow++] = optarg;
      break;
    case 'J': b.js.stream = optarg; break;
    case 'D': b.js.durable = optarg; break;
    case 'C': b.js.create_stream = 1; break;
    case 'R':
      if (ackrpc_nats_dec_decode(optarg, 5, &num) != 0 || num == 0) {
        fprintf(stderr, PROG ": bad --replicas: %s (1 to 5)\n", optarg);
        return EXIT_USAGE;
      }
      b.js.replicas = (int)num;
      break;
    case 'v': b.verbose = 1; break;
    case OPT_TLS_CA: b.auth.tls_ca = optarg; break;
    case OPT_TLS_CERT: b.auth.tls_cert = optarg; break;
    case OPT_TLS_KEY: b.auth.tls_key = optarg; break;
    case OPT_TLS_HOSTNAME: b.auth.tls_hostname = optarg; break;
    case OPT_USER: b.auth.user = optarg; break;
    case OPT_PASSWORD_FILE: b.auth.password_file = optarg; break;
    case OPT_NKEY: b.auth.nkey = optarg; break;
    case OPT_NKEY_SEED_FILE: b.auth.nkey_seed_file = optarg; break;
    case OPT_CREDS: b.auth.creds = optarg; break;
    case OPT_DEAD_LETTER: b.js.dead_letter = optarg; break;
    case 'h': fputs(usage, stdout); return 0;
    default: fputs(usage, stderr); return EXIT_USAGE;
    }
  }
  if (optind != argc || !b.socket || !b.nats_url) {
    fprintf(stderr, PROG " %s: %s and --nats are required\n", cmd,
            is_export ? "--socket" : "--listen");
    return EXIT_USAGE;
  }
  /* The prefix must make subjects: check it with a method name. */
  char probe[512];
  if (ackrpc_nats_subject(b.prefix, "a.B/C", probe, sizeof probe) != 0) {
    fprintf(stderr, PROG ": bad --prefix '%s' (dot-separated identifiers)\n", b.prefix);
    return EXIT_USAGE;
  }
  for (size_t i = 0; i < b.n_services; i++) {
    char m[ACKRPC_MAX_METHOD_NAME + 8];
    snprintf(m, sizeof m, "%s/M", b.services[i]);
    if (ackrpc_nats_subject(b.prefix, m, probe, sizeof probe) != 0) {
      fprintf(stderr, PROG ": bad --service '%s'\n", b.services[i]);
      return EXIT_USAGE;
    }
  }
  if (!b.queue) b.queue = b.prefix;
  if (!is_export && (b.n_services || b.trust_request_info || b.n_allow)) {
    fprintf(stderr, PROG " import: --service, --trust-request-info and --allow are "
                         "for export\n");
    return EXIT_USAGE;
  }
  if (!b.js.stream && (b.js.durable || b.js.create_stream || b.js.replicas)) {
    fprintf(stderr,
            PROG ": --durable, --create-stream and --replicas need --jetstream\n");
    return EXIT_USAGE;
  }
  if (b.js.dead_letter) {
    char why[400];
    if (!is_export || !b.js.stream) {
      fprintf(stderr, PROG ": --dead-letter is for export --jetstream\n");
      return EXIT_USAGE;
    }
    if (ackrpc_nats_js_dead_letter_ok(b.js.dead_letter, b.prefix, why, sizeof why) !=
        0) {
      fprintf(stderr, PROG " export: %s\n", why);
      return EXIT_USAGE;
    }
  }
  if (b.js.replicas && !b.js.create_stream) {
    fprintf(stderr, PROG ": --replicas is for --create-stream\n");
    return EXIT_USAGE;
  }
  if (b.js.stream && is_export == !b.js.durable) {
    fprintf(stderr, PROG " %s: --durable is %s with --jetstream\n", cmd,
            is_export ? "required" : "for export");
    return EXIT_USAGE;
  }
  if (b.js.stream && (b.n_services > 1 || b.trust_request_info)) {
    fprintf(stderr,
            PROG " export: with --jetstream, one --service at most and no "
                 "--trust-request-info (a stored message names no requester)\n");
    return EXIT_USAGE;
  }
  char auth_err[256];
  if (nats_auth_check(&b.auth, auth_err, sizeof auth_err) != 0) {
    fprintf(stderr, PROG " %s: %s\n", cmd, auth_err);
    return EXIT_USAGE;
  }
  if (b.n_allow && !b.trust_request_info) {
    fprintf(stderr, PROG " export: --allow needs --trust-request-info\n");
    return EXIT_USAGE;
  }

  /* SIGINT and SIGTERM go to the thread that waits for them (export's
   * sigwait, import's server loop); SIGPIPE never kills the bridge. */
  signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  stop_signals(&set);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  pthread_mutex_init(&b.mu, NULL);
  pthread_cond_init(&b.idle, NULL);

  if (nats_Open(-1) != NATS_OK) {
    logf_("cannot start the NATS library");
    return EXIT_FAIL;
  }
  int rc = is_export ? run_export(&b) : run_import(&b);
  nats_Close();
  pthread_cond_destroy(&b.idle);
  pthread_mutex_destroy(&b.mu);
  return rc;
}
