/* discovery.c: NATS's service API for ackrpc-nats export; see discovery.h
 * and docs/SCALE.md ("Discovery").
 *
 * Subscriptions (plain, not queue: every instance answers), for VERB in
 * PING, INFO, STATS: $SRV.<VERB>, answered once per service, and
 * $SRV.<VERB>.>, whose subject names the service, or the service and
 * the id (requests for other services' names are dropped). Six in all,
 * whatever the number of services: nats.c gives each subscription a
 * delivery thread, and a STATS blocked on a slow health check does not
 * hold up PING. */
#include "discovery.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>

#include "ackrpc/reflection.pb-c.h"

#define ND_SRV "$SRV"
#define ND_HEALTH_MS 1000 /* the local Health/Check's deadline */
#define ND_LAST_ERROR 256
#define ND_DRAIN_MS 2000 /* nd_stop()'s wait, in all */
#define ND_TOKEN 256

enum { ND_PING, ND_INFO, ND_STATS, ND_VERBS };
static const char *const verbs[ND_VERBS] = {"PING", "INFO", "STATS"};
static const char *const types[ND_VERBS] = {"io.nats.micro.v1.ping_response",
                                            "io.nats.micro.v1.info_response",
                                            "io.nats.micro.v1.stats_response"};

typedef struct nd_endpoint {
  char *name;    /* the method ("Echo"), or "all" */
  char *subject; /* PREFIX.pkg.Service.Method, or PREFIX.pkg.Service.* */
  uint64_t requests, errors, ns;
  char last_error[ND_LAST_ERROR];
} nd_endpoint;

typedef struct nd_service {
  struct nd_discovery *d;
  char *full; /* "pkg.Service" */
  char name[ND_TOKEN];
  nd_endpoint *eps;
  size_t n_eps;
  int wildcard; /* one endpoint "all": the methods are unknown */
} nd_service;

/* One subscription and the verb it answers. */
typedef struct nd_sub {
  struct nd_discovery *d;
  int verb;
  natsSubscription *sub;
} nd_sub;

struct nd_discovery {
  natsConnection *nc;
  ackrpc_client *client;
  char *prefix, *queue;
  char id[33];
  char started[40]; /* RFC 3339, UTC */
  nd_service *svcs;
  size_t n_svcs;
  nd_sub *subs;
  size_t n_subs;
  pthread_mutex_t mu; /* the counters */
};

int nd_service_name(const char *service, char *out, size_t cap) {
  size_t n = strlen(service);
  if (n == 0 || n >= cap) return -1;
  for (size_t i = 0; i <= n; i++) {
    char c = service[i];
    if (c == '.')
      c = '-';
    else if (c && !(c == '_' || c == '-' || (c >= '0' && c <= '9') ||
                    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
      return -1;
    out[i] = c;
  }
  return 0;
}

const char *nd_id(const nd_discovery *d) {
  return d->id;
}

/* --- the replies --------------------------------------------------------- */

/* The fields every reply has. */
static json_t *reply_head(const nd_service *s, int verb) {
  const nd_discovery *d = s->d;
  return json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "type", types[verb], "name",
                   s->name, "id", d->id, "version", ACKRPC_VERSION_STRING, "metadata",
                   "ackrpc.service", s->full, "ackrpc.bridge", "ackrpc-nats export");
}

/* The local server's health: a HealthReply status name, or "UNREACHABLE"
 * when the check itself failed (the server is down, full or hung). */
static const char *local_health(nd_discovery *d) {
  ackrpc_call_options o = {.timeout_ms = ND_HEALTH_MS};
  ackrpc_result r = {0};
  const char *out = "UNREACHABLE";
  if (ackrpc_client_call_raw(d->client, "ackrpc.reflection.Health/Check", NULL, 0, &o,
                             &r) == ACKRPC_OK) {
    Ackrpc__Reflection__HealthReply *h = ackrpc__reflection__health_reply__unpack(
        NULL, r.reply_bytes_len, r.reply_bytes);
    out = "UNKNOWN";
    if (h && h->status == ACKRPC__REFLECTION__HEALTH_REPLY__SERVING_STATUS__SERVING)
      out = "SERVING";
    else if (h &&
             h->status == ACKRPC__REFLECTION__HEALTH_REPLY__SERVING_STATUS__NOT_SERVING)
      out = "NOT_SERVING";
    if (h) ackrpc__reflection__health_reply__free_unpacked(h, NULL);
  }
  ackrpc_result_clear(&r);
  return out;
}

static json_t *make_reply(nd_service *s, int verb, const char *health) {
  nd_discovery *d = s->d;
  json_t *j = reply_head(s, verb);
  if (!j || verb == ND_PING) return j;
  json_t *eps = json_array();
  if (verb == ND_INFO) {
    char desc[ND_TOKEN + 64];
    snprintf(desc, sizeof desc, "ackrpc service %s, exported by ackrpc-nats", s->full);
    json_object_set_new(j, "description", json_string(desc));
  } else {
    json_object_set_new(j, "started", json_string(d->started));
  }
  pthread_mutex_lock(&d->mu);
  for (size_t i = 0; i < s->n_eps && eps; i++) {
    const nd_endpoint *e = &s->eps[i];
    json_t *o = json_pack("{s:s, s:s, s:s}", "name", e->name, "subject", e->subject,
                          "queue_group", d->queue);
    if (o && verb == ND_STATS) {
      json_object_set_new(o, "num_requests", json_integer((json_int_t)e->requests));
      json_object_set_new(o, "num_errors", json_integer((json_int_t)e->errors));
      json_object_set_new(o, "last_error", json_string(e->last_error));
      json_object_set_new(o, "processing_time", json_integer((json_int_t)e->ns));
      json_object_set_new(
          o, "average_processing_time",
          json_integer(e->requests ? (json_int_t)(e->ns / e->requests) : 0));
      json_object_set_new(o, "data", json_pack("{s:s}", "health", health));
    }
    json_array_append_new(eps, o);
  }
  pthread_mutex_unlock(&d->mu);
  json_object_set_new(j, "endpoints", eps);
  return j;
}

static void answer(nd_service *s, int verb, const char *reply_to, const char *health) {
  json_t *j = make_reply(s, verb, health);
  char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
  if (text) natsConnection_PublishString(s->d->nc, reply_to, text);
  free(text);
  json_decref(j);
}

static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                       void *closure) {
  (void)nc, (void)sub;
  nd_sub *ns = closure;
  nd_discovery *d = ns->d;
  const char *reply_to = natsMsg_GetReply(msg);
  /* What follows "$SRV.<VERB>": "" (all), ".name" or ".name.id". */
  const char *rest =
      natsMsg_GetSubject(msg) + strlen(ND_SRV) + 1 + strlen(verbs[ns->verb]);
  nd_service *one = NULL;
  int wanted = rest[0] == '\0';
  if (!wanted && rest[0] == '.') {
    const char *name = rest + 1, *dot = strchr(name, '.');
    size_t len = dot ? (size_t)(dot - name) : strlen(name);
    for (size_t i = 0; i < d->n_svcs && !one; i++)
      if (strlen(d->svcs[i].name) == len && strncmp(d->svcs[i].name, name, len) == 0)
        one = &d->svcs[i];
    wanted = one && (!dot || strcmp(dot + 1, d->id) == 0);
  }
  if (wanted && reply_to && reply_to[0]) {
    /* One health check for all the services of this answer: they share
     * the local server. */
    const char *health = ns->verb == ND_STATS ? local_health(d) : NULL;
    for (size_t i = 0; i < d->n_svcs; i++)
      if (!one || one == &d->svcs[i]) answer(&d->svcs[i], ns->verb, reply_to, health);
  }
  natsMsg_Destroy(msg);
}

/* --- counting ------------------------------------------------------------ */

void nd_count(nd_discovery *d, const char *method, ackrpc_status status,
              const char *message, uint64_t ns) {
  if (!d || !method) return;
  const char *slash = strrchr(method, '/');
  if (!slash) return;
  size_t svc_len = (size_t)(slash - method);
  for (size_t i = 0; i < d->n_svcs; i++) {
    nd_service *s = &d->svcs[i];
    if (strlen(s->full) != svc_len || strncmp(s->full, method, svc_len) != 0) continue;
    for (size_t k = 0; k < s->n_eps; k++) {
      nd_endpoint *e = &s->eps[k];
      if (!s->wildcard && strcmp(e->name, slash + 1) != 0) continue;
      pthread_mutex_lock(&d->mu);
      e->requests++;
      e->ns += ns;
      if (status != ACKRPC_OK) {
        e->errors++;
        ackrpc_status_format(e->last_error, sizeof e->last_error, status, message);
      }
      pthread_mutex_unlock(&d->mu);
      return;
    }
    return;
  }
}

/* --- set-up and tear-down ------------------------------------------------ */

static int set_why(char *why, size_t cap, const char *fmt, const char *arg) {
  snprintf(why, cap, fmt, arg);
  return -1;
}

static int add_endpoint(nd_service *s, const char *prefix, const char *method) {
  nd_endpoint *eps = realloc(s->eps, (s->n_eps + 1) * sizeof *eps);
  if (!eps) return -1;
  s->eps = eps;
  nd_endpoint *e = &eps[s->n_eps];
  *e = (nd_endpoint){0};
  size_t len = strlen(prefix) + strlen(s->full) + strlen(method) + 3;
  e->name = strdup(method);
  e->subject = malloc(len);
  if (!e->name || !e->subject) {
    free(e->name);
    free(e->subject);
    return -1;
  }
  snprintf(e->subject, len, "%s.%s.%s", prefix, s->full, s->wildcard ? "*" : method);
  s->n_eps++;
  return 0;
}

/* The endpoints of every service: its methods from reflection, else one
 * wildcard endpoint. */
static int add_endpoints(nd_discovery *d) {
  ackrpc_result r = {0};
  Ackrpc__Reflection__ListServicesReply *rep = NULL;
  if (ackrpc_client_call_raw(d->client, "ackrpc.reflection.Reflection/ListServices",
                             NULL, 0, NULL, &r) == ACKRPC_OK)
    rep = ackrpc__reflection__list_services_reply__unpack(NULL, r.reply_bytes_len,
                                                          r.reply_bytes);
  ackrpc_result_clear(&r);
  int rc = 0;
  for (size_t i = 0; i < d->n_svcs && rc == 0; i++) {
    nd_service *s = &d->svcs[i];
    for (size_t k = 0; rep && k < rep->n_services && rc == 0; k++) {
      const Ackrpc__Reflection__ServiceInfo *si = rep->services[k];
      if (strcmp(si->name, s->full) != 0) continue;
      for (size_t m = 0; m < si->n_methods && rc == 0; m++) {
        const char *slash = strrchr(si->methods[m]->name, '/');
        if (slash && slash[1]) rc = add_endpoint(s, d->prefix, slash + 1);
      }
    }
    if (rc == 0 && s->n_eps == 0) {
      s->wildcard = 1;
      rc = add_endpoint(s, d->prefix, "all");
    }
  }
  if (rep) ackrpc__reflection__list_services_reply__free_unpacked(rep, NULL);
  return rc;
}

static int subscribe(nd_discovery *d, int verb, const char *subject, char *why,
                     size_t cap) {
  nd_sub *ns = &d->subs[d->n_subs];
  *ns = (nd_sub){d, verb, NULL};
  natsStatus st = natsConnection_Subscribe(&ns->sub, d->nc, subject, on_request, ns);
  if (st != NATS_OK) {
    snprintf(why, cap, "cannot subscribe to %s: %s", subject, natsStatus_GetText(st));
    return -1;
  }
  d->n_subs++;
  return 0;
}

static void free_discovery(nd_discovery *d) {
  for (size_t i = 0; i < d->n_svcs; i++) {
    for (size_t k = 0; k < d->svcs[i].n_eps; k++) {
      free(d->svcs[i].eps[k].name);
      free(d->svcs[i].eps[k].subject);
    }
    free(d->svcs[i].eps);
    free(d->svcs[i].full);
  }
  free(d->svcs);
  free(d->subs);
  free(d->prefix);
  free(d->queue);
  pthread_mutex_destroy(&d->mu);
  free(d);
}

int nd_start(natsConnection *nc, ackrpc_client *client, const char *prefix,
             const char *queue, const char *const *services, size_t n,
             nd_discovery **ret, char *why, size_t cap) {
  nd_discovery *d = calloc(1, sizeof *d);
  if (!d) return set_why(why, cap, "%s", "out of memory");
  pthread_mutex_init(&d->mu, NULL);
  d->nc = nc;
  d->client = client;
  d->prefix = strdup(prefix);
  d->queue = strdup(queue);
  d->svcs = calloc(n ? n : 1, sizeof *d->svcs);
  d->subs = calloc(2 * ND_VERBS, sizeof *d->subs);
  int rc = d->prefix && d->queue && d->svcs && d->subs ? 0 : -1;
  if (rc) set_why(why, cap, "%s", "out of memory");

  /* The id: 16 random bytes in hex, a subject token. */
  uint8_t raw[16];
  if (rc == 0 && getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
    rc = set_why(why, cap, "%s", "getrandom failed");
  for (size_t i = 0; rc == 0 && i < sizeof raw; i++)
    snprintf(d->id + 2 * i, 3, "%02x", raw[i]);
  struct timespec now;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  size_t len = strftime(d->started, sizeof d->started, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(d->started + len, sizeof d->started - len, ".%06uZ",
           (unsigned)(now.tv_nsec / 1000) % 1000000u);

  for (size_t i = 0; i < n && rc == 0; i++) {
    nd_service *s = &d->svcs[d->n_svcs];
    s->d = d;
    if (nd_service_name(services[i], s->name, sizeof s->name) != 0)
      rc = set_why(why, cap, "service '%s' has no NATS service name", services[i]);
    else if ((s->full = strdup(services[i])) == NULL)
      rc = set_why(why, cap, "%s", "out of memory");
    else
      d->n_svcs++;
  }
  if (rc == 0 && add_endpoints(d) != 0) rc = set_why(why, cap, "%s", "out of memory");

  char subject[64];
  for (int v = 0; v < ND_VERBS && rc == 0; v++) {
    snprintf(subject, sizeof subject, ND_SRV ".%s", verbs[v]);
    rc = subscribe(d, v, subject, why, cap);
    snprintf(subject, sizeof subject, ND_SRV ".%s.>", verbs[v]);
    if (rc == 0) rc = subscribe(d, v, subject, why, cap);
  }
  if (rc != 0) {
    nd_stop(d);
    return -1;
  }
  *ret = d;
  return 0;
}

void nd_stop(nd_discovery *d) {
  if (!d) return;
  /* Drain: the callbacks running or queued finish before the wait
   * returns, so nothing uses d after it is freed. If the connection is
   * gone and a drain cannot be confirmed, d is kept (the process is
   * exiting anyway) rather than freed under a callback. */
  int safe = 1;
  for (size_t i = 0; i < d->n_subs; i++)
    if (natsSubscription_Drain(d->subs[i].sub) != NATS_OK) safe = 0;
  /* At most ND_DRAIN_MS in all (NATS may be gone: then no drain ends). */
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (size_t i = 0; safe && i < d->n_subs; i++) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    int64_t left = ND_DRAIN_MS - ((int64_t)(t.tv_sec - t0.tv_sec) * 1000 +
                                  (t.tv_nsec - t0.tv_nsec) / 1000000);
    if (left <= 0 ||
        natsSubscription_WaitForDrainCompletion(d->subs[i].sub, left) != NATS_OK)
      safe = 0;
  }
  for (size_t i = 0; i < d->n_subs; i++)
    natsSubscription_Destroy(d->subs[i].sub);
  if (safe) free_discovery(d);
}
