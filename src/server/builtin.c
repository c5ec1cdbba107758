/* builtin.c: the services every server answers unless
 * options.disable_builtins is set (proto/ackrpc/reflection.proto):
 *
 *   ackrpc.reflection.Reflection  ListServices, FileContainingSymbol
 *   ackrpc.reflection.Health      Check: SERVING or NOT_SERVING
 *   ackrpc.reflection.Stats       Get: per-method counters and latencies
 *   ackrpc.reflection.Capture     Watch: the calls as a pcapng stream (tap.h)
 *
 * They are ordinary methods on the server's table (counted in the stats,
 * subject to the server-wide policy), answered inline on the loop's thread,
 * read-only. What they reveal is written in docs/SECURITY.md.
 *
 * Not here: the records they read (registry.c keeps the services and the
 * counters; stats.c the percentiles). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ackrpc/reflection.ackrpc.h"
#include "server/builtin.h"
#include "server/synth.h"
#include "server/tap.h"

/* A symbol search walks at most this many message types per service (they
 * come from generated code; the bound keeps the stack and the time small). */
#define MAX_TYPES 512

/* The recorded services, with those made for the methods registered
 * without one (made at the first request; without memory, left out). */
static size_t services(ackrpc_server *s, const ackrpc_service *const **ret_services,
                       const unsigned char **ret_builtin) {
  (void)akr_synth_services(&s->registry, &s->synth);
  return akr_registry_services(&s->registry, ret_services, ret_builtin);
}

/* --- ListServices ------------------------------------------------------ */

typedef struct reg_method {
  const ackrpc_method *m;
  unsigned seq;
  int covered; /* by a recorded service */
} reg_method;

typedef struct method_list {
  reg_method *v;
  size_t n, cap;
  int failed;
} method_list;

static void collect(void *user, const ackrpc_method *m, unsigned seq) {
  method_list *l = user;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 32;
    reg_method *v = realloc(l->v, cap * sizeof *v);
    if (!v) {
      l->failed = 1;
      return;
    }
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = (reg_method){m, seq, 0};
}

static int by_seq(const void *a, const void *b) {
  unsigned x = ((const reg_method *)a)->seq, y = ((const reg_method *)b)->seq;
  return x < y ? -1 : x > y;
}

/* The service part of "pkg.S/M" (its length). */
static size_t service_len(const char *method) {
  const char *slash = strrchr(method, '/');
  return slash ? (size_t)(slash - method) : strlen(method);
}

typedef struct list_builder {
  Ackrpc__Reflection__ServiceInfo *svcs;
  Ackrpc__Reflection__ServiceInfo **svc_ptrs;
  size_t n_svcs;
  Ackrpc__Reflection__MethodInfo *methods;
  Ackrpc__Reflection__MethodInfo **method_ptrs;
  size_t n_methods;
  char **names; /* service names made here (owned) */
  size_t n_names;
} list_builder;

static Ackrpc__Reflection__ServiceInfo *add_service(list_builder *b, char *name,
                                                    int has_descriptors) {
  Ackrpc__Reflection__ServiceInfo *si = &b->svcs[b->n_svcs];
  ackrpc__reflection__service_info__init(si);
  si->name = name;
  si->has_descriptors = has_descriptors;
  si->methods = &b->method_ptrs[b->n_methods];
  b->svc_ptrs[b->n_svcs++] = si;
  return si;
}

static void add_method(list_builder *b, Ackrpc__Reflection__ServiceInfo *si,
                       const ackrpc_method *m) {
  Ackrpc__Reflection__MethodInfo *mi = &b->methods[b->n_methods];
  ackrpc__reflection__method_info__init(mi);
  mi->name = (char *)m->name;
  mi->request_type = (char *)m->request->name;
  mi->reply_type = (char *)m->reply->name;
  b->method_ptrs[b->n_methods++] = mi;
  si->n_methods++;
}

static void list_services(ackrpc_call *call, const ProtobufCMessage *request,
                          void *user) {
  (void)request;
  ackrpc_server *s = user;
  const ackrpc_service *const *svcs;
  const unsigned char *builtin;
  size_t n_svcs = services(s, &svcs, &builtin);
  method_list reg = {0};
  akr_registry_foreach(&s->registry, collect, &reg);
  list_builder b = {0};
  size_t max_methods = reg.n;
  for (size_t i = 0; i < n_svcs; i++)
    max_methods += svcs[i]->n_methods;
  size_t max_svcs = n_svcs + reg.n;
  b.svcs = calloc(max_svcs ? max_svcs : 1, sizeof *b.svcs);
  b.svc_ptrs = calloc(max_svcs ? max_svcs : 1, sizeof *b.svc_ptrs);
  b.methods = calloc(max_methods ? max_methods : 1, sizeof *b.methods);
  b.method_ptrs = calloc(max_methods ? max_methods : 1, sizeof *b.method_ptrs);
  b.names = calloc(reg.n ? reg.n : 1, sizeof *b.names);
  if (reg.failed || !b.svcs || !b.svc_ptrs || !b.methods || !b.method_ptrs ||
      !b.names) {
    ackrpc_call_reply(call, ACKRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
    goto out;
  }
  qsort(reg.v, reg.n, sizeof *reg.v, by_seq);
  for (size_t i = 0; i < reg.n; i++)
    for (size_t j = 0; j < n_svcs && !reg.v[i].covered; j++)
      for (size_t k = 0; k < svcs[j]->n_methods; k++)
        if (strcmp(svcs[j]->methods[k].name, reg.v[i].m->name) == 0) {
          reg.v[i].covered = 1;
          break;
        }
  /* Recorded services first, then methods registered on their own grouped
   * by service, then the built-in services. */
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) {
      for (size_t i = 0; i < reg.n; i++) {
        if (reg.v[i].covered) continue;
        size_t len = service_len(reg.v[i].m->name);
        char *name = malloc(len + 1);
        if (!name) {
          ackrpc_call_reply(call, ACKRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
          goto out;
        }
        memcpy(name, reg.v[i].m->name, len);
        name[len] = 0;
        b.names[b.n_names++] = name;
        Ackrpc__Reflection__ServiceInfo *si = add_service(&b, name, 0);
        for (size_t j = i; j < reg.n; j++) {
          if (reg.v[j].covered || service_len(reg.v[j].m->name) != len ||
              strncmp(reg.v[j].m->name, name, len) != 0)
            continue;
          add_method(&b, si, reg.v[j].m);
          reg.v[j].covered = 1;
        }
      }
    }
    for (size_t i = 0; i < n_svcs; i++) {
      if (builtin[i] != pass) continue;
      Ackrpc__Reflection__ServiceInfo *si =
          add_service(&b, (char *)svcs[i]->name, svcs[i]->n_files > 0);
      for (size_t k = 0; k < svcs[i]->n_methods; k++)
        add_method(&b, si, &svcs[i]->methods[k]);
    }
  }
  Ackrpc__Reflection__ListServicesReply reply =
      ACKRPC__REFLECTION__LIST_SERVICES_REPLY__INIT;
  reply.n_services = b.n_svcs;
  reply.services = b.svc_ptrs;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
out:
  for (size_t i = 0; i < b.n_names; i++)
    free(b.names[i]);
  free(b.names);
  free(b.svcs);
  free(b.svc_ptrs);
  free(b.methods);
  free(b.method_ptrs);
  free(reg.v);
}

/* --- FileContainingSymbol --------------------------------------------- */

/* The message types seen by one search, so that each is walked once
 * (recursive and mutually recursive types, such as google.protobuf.Value,
 * would otherwise be walked an exponential number of times). */
typedef struct type_walk {
  const ProtobufCMessageDescriptor *seen[MAX_TYPES];
  size_t n;
} type_walk;

/* Whether `name` is the full name of `desc` or of a type reachable from it
 * through its fields. */
static int type_reaches(type_walk *w, const ProtobufCMessageDescriptor *desc,
                        const char *name) {
  if (!desc) return 0;
  for (size_t i = 0; i < w->n; i++)
    if (w->seen[i] == desc) return 0;
  if (w->n == MAX_TYPES) return 0;
  w->seen[w->n++] = desc;
  if (strcmp(desc->name, name) == 0) return 1;
  for (unsigned i = 0; i < desc->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &desc->fields[i];
    if (f->type == PROTOBUF_C_TYPE_ENUM && f->descriptor &&
        strcmp(((const ProtobufCEnumDescriptor *)f->descriptor)->name, name) == 0)
      return 1;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE && type_reaches(w, f->descriptor, name))
      return 1;
  }
  return 0;
}

/* Whether the service defines or uses `symbol` (docs in reflection.proto). */
static int service_has(const ackrpc_service *svc, const char *symbol) {
  if (!*symbol || strcmp(svc->name, symbol) == 0) return 1;
  size_t n = strlen(svc->name);
  if (strncmp(symbol, svc->name, n) == 0 && (symbol[n] == '/' || symbol[n] == '.'))
    for (size_t i = 0; i < svc->n_methods; i++)
      if (strcmp(svc->methods[i].name + n + 1, symbol + n + 1) == 0) return 1;
  type_walk w;
  w.n = 0;
  for (size_t i = 0; i < svc->n_methods; i++)
    if (type_reaches(&w, svc->methods[i].request, symbol) ||
        type_reaches(&w, svc->methods[i].reply, symbol))
      return 1;
  return 0;
}

static void file_containing_symbol(ackrpc_call *call, const ProtobufCMessage *request,
                                   void *user) {
  const Ackrpc__Reflection__FileRequest *req =
      (const Ackrpc__Reflection__FileRequest *)request;
  ackrpc_server *s = user;
  const ackrpc_service *const *svcs;
  const unsigned char *builtin;
  size_t n_svcs = services(s, &svcs, &builtin);
  const char *symbol = req->symbol ? req->symbol : "";
  size_t max = 0;
  for (size_t i = 0; i < n_svcs; i++)
    max += svcs[i]->n_files;
  const ackrpc_file_descriptor **files = calloc(max ? max : 1, sizeof *files);
  ProtobufCBinaryData *data = calloc(max ? max : 1, sizeof *data);
  if (!files || !data) {
    ackrpc_call_reply(call, ACKRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
    goto out;
  }
  size_t n = 0;
  for (size_t i = 0; i < n_svcs; i++) {
    if (!svcs[i]->n_files || !service_has(svcs[i], symbol)) continue;
    /* Each service's files come dependencies first; a file seen before
     * (an import shared with an earlier service) was sent with its own
     * dependencies already. */
    for (size_t k = 0; k < svcs[i]->n_files; k++) {
      const ackrpc_file_descriptor *f = &svcs[i]->files[k];
      int seen = 0;
      for (size_t j = 0; j < n && !seen; j++)
        seen = strcmp(files[j]->name, f->name) == 0;
      if (!seen) files[n++] = f;
    }
  }
  if (n == 0) {
    ackrpc_call_reply(call, ACKRPC_NOT_FOUND,
                      *symbol
                          ? "no service with descriptors defines or uses this symbol"
                          : "no service with descriptors",
                      NULL);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    data[i].data = (uint8_t *)files[i]->data;
    data[i].len = files[i]->len;
  }
  Ackrpc__Reflection__FileReply reply = ACKRPC__REFLECTION__FILE_REPLY__INIT;
  reply.n_file_descriptor_proto = n;
  reply.file_descriptor_proto = data;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
out:
  free(files);
  free(data);
}

/* --- Capture ---------------------------------------------------------- */

/* Root, the server's effective uid, or the socket file's owner. */
static int may_capture(const ackrpc_server *s, const ackrpc_peer *peer) {
  if (peer->uid == 0 || peer->uid == s->euid) return 1;
  struct stat st;
  return !s->addr.abstract && s->addr.path[0] && stat(s->addr.path, &st) == 0 &&
         st.st_uid == peer->uid;
}

/* Capture/Watch: the connection becomes a listener of the tap (tap.h). */
static void capture_watch(ackrpc_call *call, const ProtobufCMessage *request,
                          void *user) {
  (void)request;
  ackrpc_server *s = user;
  akr_conn *c = call->conn;
  Ackrpc__Reflection__CaptureReply reply = ACKRPC__REFLECTION__CAPTURE_REPLY__INIT;
  if (!may_capture(s, &call->peer)) {
    ackrpc_call_reply(call, ACKRPC_PERMISSION_DENIED,
                      "only root or the socket's owner may capture calls", NULL);
    return;
  }
  if (akr_tap_full(s)) {
    ackrpc_call_reply(call, ACKRPC_RESOURCE_EXHAUSTED, "too many captures running",
                      NULL);
    return;
  }
  /* The stream follows the reply on the socket: nothing else may be
   * queued or pipelined on this connection. */
  if (!c || c->corked || c->out_len > c->out_off || c->wcall) {
    ackrpc_call_reply(call, ACKRPC_FAILED_PRECONDITION,
                      "Capture/Watch must be the only call on its connection", NULL);
    return;
  }
  int fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0 || akr_tap_add(s, fd) != 0) {
    if (fd >= 0) close(fd);
    ackrpc_call_reply(call, ACKRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
    return;
  }
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
  /* The reply went out inline, whole, unless the socket was full: then
   * the stream cannot follow it in order, and the listener goes. */
  if (c->state == AKR_CONN_WRITING || c->wcall) {
    akr_tap_cancel(s, fd);
    return;
  }
  /* The connection lets go of the socket; the listener's descriptor keeps
   * it open. */
  c->state = AKR_CONN_DONE;
  akr_tap_arm(s, fd);
}

/* --- Health and Stats -------------------------------------------------- */

static void health_check(ackrpc_call *call, const ProtobufCMessage *request,
                         void *user) {
  (void)request;
  Ackrpc__Reflection__HealthReply reply = ACKRPC__REFLECTION__HEALTH_REPLY__INIT;
  reply.status = akr_server_serving(user)
                     ? ACKRPC__REFLECTION__HEALTH_REPLY__SERVING_STATUS__SERVING
                     : ACKRPC__REFLECTION__HEALTH_REPLY__SERVING_STATUS__NOT_SERVING;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

/* Whether `name` is a method of one of the server's own services. */
static int is_builtin_method(const ackrpc_server *s, const char *name) {
  const ackrpc_service *const *svcs;
  const unsigned char *builtin;
  size_t n_svcs = akr_registry_services(&s->registry, &svcs, &builtin);
  for (size_t i = 0; i < n_svcs; i++) {
    if (!builtin[i]) continue;
    for (size_t j = 0; j < svcs[i]->n_methods; j++)
      if (strcmp(svcs[i]->methods[j].name, name) == 0) return 1;
  }
  return 0;
}

static void stats_get(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)request;
  ackrpc_server *s = user;
  size_t n = akr_registry_stats(&s->registry, NULL, 0);
  ackrpc_method_stats *st = calloc(n ? n : 1, sizeof *st);
  Ackrpc__Reflection__MethodStats *ms = calloc(n ? n : 1, sizeof *ms);
  Ackrpc__Reflection__MethodStats **msp = calloc(n ? n : 1, sizeof *msp);
  Ackrpc__Reflection__StatusCount *sc = calloc((n ? n : 1) * 17, sizeof *sc);
  Ackrpc__Reflection__StatusCount **scp = calloc((n ? n : 1) * 17, sizeof *scp);
  if (!st || !ms || !msp || !sc || !scp) {
    ackrpc_call_reply(call, ACKRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
    goto out;
  }
  n = akr_registry_stats(&s->registry, st, n);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    Ackrpc__Reflection__MethodStats *m = &ms[i];
    ackrpc__reflection__method_stats__init(m);
    m->method = (char *)st[i].method;
    m->calls = st[i].calls;
    m->errors = st[i].errors;
    m->bytes_in = st[i].bytes_in;
    m->bytes_out = st[i].bytes_out;
    m->p50_us = st[i].p50_us;
    m->p90_us = st[i].p90_us;
    m->p99_us = st[i].p99_us;
    m->p999_us = st[i].p999_us;
    m->max_us = st[i].max_us;
    m->builtin = is_builtin_method(s, st[i].method);
    m->statuses = &scp[k];
    for (uint32_t code = 0; code < 17; code++) {
      if (!st[i].by_status[code]) continue;
      ackrpc__reflection__status_count__init(&sc[k]);
      sc[k].code = code;
      sc[k].count = st[i].by_status[code];
      scp[k] = &sc[k];
      k++;
      m->n_statuses++;
    }
    msp[i] = m;
  }
  Ackrpc__Reflection__StatsReply reply = ACKRPC__REFLECTION__STATS_REPLY__INIT;
  reply.uptime_ms = akr_server_uptime_us(s) / 1000u;
  reply.connections = s->n_conns;
  reply.n_methods = n;
  reply.methods = msp;
  /* ackrpc_counters and the Counters message list the same uint64 fields
   * in the same order (tests/ops check the values through Stats). */
  ackrpc_counters k0;
  Ackrpc__Reflection__Counters kc = ACKRPC__REFLECTION__COUNTERS__INIT;
  ackrpc_server_counters(s, &k0);
  const ProtobufCMessageDescriptor *kd = kc.base.descriptor;
  _Static_assert(sizeof k0 % sizeof(uint64_t) == 0, "ackrpc_counters: uint64s only");
  const uint64_t *kv = (const uint64_t *)&k0;
  for (unsigned i = 0; i < kd->n_fields && i < sizeof k0 / sizeof *kv; i++)
    *(uint64_t *)((char *)&kc + kd->fields[i].offset) = kv[i];
  reply.counters = &kc;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
out:
  free(st);
  free(ms);
  free(msp);
  free(sc);
  free(scp);
}

ackrpc_status akr_builtins_register(ackrpc_server *s) {
  /* The tables come from proto/ackrpc/reflection.proto, generated by this
   * tree's protoc-gen-ackrpc (the parameter "tables"), as the ackrpc
   * tool's do; the methods are registered here, as the server's own. */
  static const struct {
    const ackrpc_method *method;
    ackrpc_handler_fn handler;
  } methods[] = {
      {&ackrpc__reflection__Reflection_ListServices_method, list_services},
      {&ackrpc__reflection__Reflection_FileContainingSymbol_method,
       file_containing_symbol},
      {&ackrpc__reflection__Health_Check_method, health_check},
      {&ackrpc__reflection__Stats_Get_method, stats_get},
      {&ackrpc__reflection__Capture_Watch_method, capture_watch},
  };
  static const ackrpc_service *const services[] = {
      &ackrpc__reflection__Reflection_service, &ackrpc__reflection__Health_service,
      &ackrpc__reflection__Stats_service, &ackrpc__reflection__Capture_service};
  for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
    ackrpc_status st =
        akr_registry_add_method(&s->registry, methods[i].method, methods[i].handler, s);
    if (st != ACKRPC_OK) return st;
  }
  for (size_t i = 0; i < sizeof services / sizeof *services; i++) {
    ackrpc_status st = akr_registry_add_service(&s->registry, services[i], 1);
    if (st != ACKRPC_OK) return st;
  }
  return ACKRPC_OK;
}
