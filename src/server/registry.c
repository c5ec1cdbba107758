/* registry.c: methods, services and their statistics (registry.h). */
#include "server/registry.h"

#include <stdlib.h>
#include <string.h>

#include "wire/depth.h"
#include "wire/names.h"
#include "wire/utf8.h"

_Static_assert(sizeof(((ackrpc_method_stats *)0)->by_status) / sizeof(uint64_t) ==
                   AKR_STATUS_CODES,
               "ackrpc_method_stats.by_status has one counter per canonical code");

void akr_registry_free(akr_registry *reg) {
  for (size_t i = 0; i < reg->cap; i++) {
    free((char *)reg->methods[i].m.name);
    free(reg->methods[i].stats);
    akr_policy_free(reg->methods[i].policy);
  }
  free((char *)reg->fallback.m.name);
  free(reg->fallback.stats);
  free(reg->methods);
  free(reg->by_name);
  free(reg->services);
  free(reg->builtin);
  memset(reg, 0, sizeof *reg);
}

static uint64_t name_hash(const char *name) {
  uint64_t h = 1469598103934665603u; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
    h ^= *p;
    h *= 1099511628211u;
  }
  return h;
}

static akr_method_entry *slot(akr_method_entry *table, size_t cap, const char *name) {
  size_t i = (size_t)name_hash(name) & (cap - 1);
  while (table[i].m.name && strcmp(table[i].m.name, name) != 0)
    i = (i + 1) & (cap - 1);
  return &table[i];
}

const akr_method_entry *akr_registry_find(const akr_registry *reg, const char *name) {
  if (!reg->cap) return NULL;
  const akr_method_entry *e = slot(reg->methods, reg->cap, name);
  return e->m.name ? e : NULL;
}

ackrpc_status akr_registry_set_fallback(akr_registry *reg, ackrpc_fallback_fn fn,
                                        void *user) {
  akr_method_entry *e = &reg->fallback;
  if (!fn) {
    free((char *)e->m.name);
    free(e->stats);
    *e = (akr_method_entry){0};
    return ACKRPC_OK;
  }
  if (e->raw_fn) return ACKRPC_E_EXISTS;
  char *name = strdup("*");
  akr_method_stats *stats = calloc(1, sizeof *stats);
  if (!name || !stats) {
    free(name);
    free(stats);
    return ACKRPC_E_NOMEM;
  }
  *e = (akr_method_entry){.raw_fn = fn, .user = user, .stats = stats};
  e->m.name = name;
  return ACKRPC_OK;
}

/* Room for one more method: the table at most half full, the sorted list
 * one longer. */
static ackrpc_status make_room(akr_registry *reg) {
  akr_method_ref *refs = realloc(reg->by_name, (reg->n_methods + 1) * sizeof *refs);
  if (!refs) return ACKRPC_E_NOMEM;
  reg->by_name = refs;
  if (2 * (reg->n_methods + 1) <= reg->cap) return ACKRPC_OK;
  size_t cap = reg->cap ? 2 * reg->cap : 16;
  akr_method_entry *t = calloc(cap, sizeof *t);
  if (!t) return ACKRPC_E_NOMEM;
  for (size_t i = 0; i < reg->cap; i++)
    if (reg->methods[i].m.name) *slot(t, cap, reg->methods[i].m.name) = reg->methods[i];
  free(reg->methods);
  reg->methods = t;
  reg->cap = cap;
  return ACKRPC_OK;
}

/* Inserts the method into the list in name order. */
static void add_by_name(akr_registry *reg, const char *name, akr_method_stats *stats) {
  size_t lo = 0, hi = reg->n_methods;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(reg->by_name[mid].name, name) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  memmove(&reg->by_name[lo + 1], &reg->by_name[lo],
          (reg->n_methods - lo) * sizeof *reg->by_name);
  reg->by_name[lo] = (akr_method_ref){name, stats};
}

ackrpc_status akr_registry_add_method(akr_registry *reg, const ackrpc_method *method,
                                      ackrpc_handler_fn fn, void *user) {
  if (!method || !fn || !method->name || !method->request || !method->reply ||
      !akr_method_name_valid(method->name))
    return ACKRPC_E_INVAL;
  if (akr_registry_find(reg, method->name)) return ACKRPC_E_EXISTS;
  if (make_room(reg) != ACKRPC_OK) return ACKRPC_E_NOMEM;
  char *name = strdup(method->name);
  akr_method_stats *stats = calloc(1, sizeof *stats);
  if (!name || !stats) {
    free(name);
    free(stats);
    return ACKRPC_E_NOMEM;
  }
  akr_method_entry *e = slot(reg->methods, reg->cap, name);
  *e = (akr_method_entry){.m = *method,
                          .fn = fn,
                          .user = user,
                          .depth = akr_message_depth(method->request),
                          .strings = akr_message_has_strings(method->request),
                          .seq = reg->seq++,
                          .stats = stats};
  e->m.name = name;
  add_by_name(reg, name, stats);
  reg->n_methods++;
  return ACKRPC_OK;
}

ackrpc_status akr_registry_set_policy(akr_registry *reg, const char *method,
                                      const ackrpc_policy *p) {
  akr_method_entry *e = (akr_method_entry *)akr_registry_find(reg, method);
  if (!e) return ACKRPC_E_NOT_FOUND;
  akr_policy *copy;
  ackrpc_status st = akr_policy_copy(p, &copy);
  if (st != ACKRPC_OK) return st;
  akr_policy_free(e->policy);
  e->policy = copy;
  return ACKRPC_OK;
}

ackrpc_status akr_registry_set_fds(akr_registry *reg, const char *method,
                                   unsigned max_fds) {
  akr_method_entry *e = (akr_method_entry *)akr_registry_find(reg, method);
  if (!e) return ACKRPC_E_NOT_FOUND;
  e->max_fds = max_fds;
  return ACKRPC_OK;
}

ackrpc_status akr_registry_set_raw(akr_registry *reg, const char *method, int raw) {
  akr_method_entry *e = (akr_method_entry *)akr_registry_find(reg, method);
  if (!e) return ACKRPC_E_NOT_FOUND;
  e->raw = raw != 0;
  return ACKRPC_OK;
}

static int service_valid(const ackrpc_service *svc) {
  if (!svc || !svc->name || !*svc->name || (svc->n_methods && !svc->methods) ||
      (svc->n_files && !svc->files))
    return 0;
  for (size_t i = 0; i < svc->n_methods; i++)
    if (!svc->methods[i].name || !svc->methods[i].request || !svc->methods[i].reply)
      return 0;
  for (size_t i = 0; i < svc->n_files; i++)
    if (!svc->files[i].name || (svc->files[i].len && !svc->files[i].data)) return 0;
  return 1;
}

ackrpc_status akr_registry_add_service(akr_registry *reg, const ackrpc_service *svc,
                                       int builtin) {
  if (!service_valid(svc)) return ACKRPC_E_INVAL;
  for (size_t i = 0; i < reg->n_services; i++)
    if (strcmp(reg->services[i]->name, svc->name) == 0) return ACKRPC_E_EXISTS;
  const ackrpc_service **t = realloc(reg->services, (reg->n_services + 1) * sizeof *t);
  if (!t) return ACKRPC_E_NOMEM;
  reg->services = t;
  unsigned char *b = realloc(reg->builtin, reg->n_services + 1);
  if (!b) return ACKRPC_E_NOMEM;
  reg->builtin = b;
  t[reg->n_services] = svc;
  b[reg->n_services] = (unsigned char)(builtin != 0);
  reg->n_services++;
  return ACKRPC_OK;
}

size_t akr_registry_services(const akr_registry *reg, const ackrpc_service *const **ret,
                             const unsigned char **ret_builtin) {
  *ret = reg->services;
  *ret_builtin = reg->builtin;
  return reg->n_services;
}

void akr_registry_foreach(const akr_registry *reg,
                          void (*fn)(void *user, const ackrpc_method *m, unsigned seq),
                          void *user) {
  for (size_t i = 0; i < reg->cap; i++)
    if (reg->methods[i].m.name) fn(user, &reg->methods[i].m, reg->methods[i].seq);
}

size_t akr_registry_stats(const akr_registry *reg, ackrpc_method_stats *out,
                          size_t cap) {
  if (!out) cap = 0;
  for (size_t i = 0; i < cap && i < reg->n_methods; i++) {
    const akr_method_stats *st = reg->by_name[i].stats;
    ackrpc_method_stats *o = &out[i];
    memset(o, 0, sizeof *o);
    o->method = reg->by_name[i].name;
    o->calls = st->calls;
    o->errors = st->calls - st->by_status[0];
    memcpy(o->by_status, st->by_status, sizeof o->by_status);
    o->bytes_in = st->bytes_in;
    o->bytes_out = st->bytes_out;
    o->p50_us = akr_stats_percentile(st, 0.50);
    o->p90_us = akr_stats_percentile(st, 0.90);
    o->p99_us = akr_stats_percentile(st, 0.99);
    o->p999_us = akr_stats_percentile(st, 0.999);
    o->max_us = st->max_us;
  }
  return reg->n_methods;
}
