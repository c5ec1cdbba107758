/* registry.h: what a server serves (internal: not installed): the methods
 * with their handlers, policies and statistics, and the services recorded
 * for reflection. Filled before the loop runs; read on the loop's thread. */
#ifndef AKR_REGISTRY_H
#define AKR_REGISTRY_H

#include <stddef.h>

#include "ackrpc/server.h"
#include "server/policy.h"
#include "server/stats.h"

typedef struct akr_method_entry {
  ackrpc_method m; /* m.name is owned (strdup) */
  ackrpc_handler_fn fn;
  ackrpc_fallback_fn raw_fn; /* the fallback only (fn is NULL then) */
  void *user;
  akr_policy *policy;
  unsigned max_fds;        /* descriptors a request may carry */
  int raw;                 /* the handler reads the body undecoded */
  unsigned depth;          /* static nesting of the request type (depth.h) */
  int strings;             /* the request type can hold checked strings (utf8.h) */
  unsigned seq;            /* order of registration */
  akr_method_stats *stats; /* owned; stays put when the table grows */
} akr_method_entry;

/* A method by name, for the statistics in name order. */
typedef struct akr_method_ref {
  const char *name;
  akr_method_stats *stats;
} akr_method_ref;

typedef struct akr_registry {
  akr_method_entry *methods; /* open addressing, `cap` a power of two */
  size_t n_methods, cap;
  akr_method_ref *by_name; /* n_methods, sorted by name */
  const ackrpc_service **services;
  unsigned char *builtin; /* per service: the server's own */
  size_t n_services;
  unsigned seq;
  /* ackrpc_server_set_fallback(): raw_fn NULL when there is none; m.name
   * is "*", m.request and m.reply are NULL (bodies are not decoded). */
  akr_method_entry fallback;
} akr_registry;

/* Frees everything the registry holds (not the services: they are the
 * caller's). A zeroed registry is empty. */
void akr_registry_free(akr_registry *reg);

/* ackrpc_server_add_method(): E_INVAL, E_EXISTS, E_NOMEM. */
ackrpc_status akr_registry_add_method(akr_registry *reg, const ackrpc_method *method,
                                      ackrpc_handler_fn fn, void *user);

/* The method of that name, or NULL. */
const akr_method_entry *akr_registry_find(const akr_registry *reg, const char *name);

/* ackrpc_server_set_fallback(): E_EXISTS (one is set), E_NOMEM. fn NULL
 * removes it. */
ackrpc_status akr_registry_set_fallback(akr_registry *reg, ackrpc_fallback_fn fn,
                                        void *user);

/* ackrpc_server_set_method_policy(): E_NOT_FOUND, and akr_policy_copy()'s
 * errors. */
ackrpc_status akr_registry_set_policy(akr_registry *reg, const char *method,
                                      const ackrpc_policy *policy);

/* ackrpc_server_set_method_fds() once checked: E_NOT_FOUND. */
ackrpc_status akr_registry_set_fds(akr_registry *reg, const char *method,
                                   unsigned max_fds);

/* ackrpc_server_set_method_raw() once checked: E_NOT_FOUND. */
ackrpc_status akr_registry_set_raw(akr_registry *reg, const char *method, int raw);

/* ackrpc_server_add_service_info(), marking the server's own services
 * (`builtin`): E_INVAL, E_EXISTS, E_NOMEM. */
ackrpc_status akr_registry_add_service(akr_registry *reg, const ackrpc_service *svc,
                                       int builtin);

/* The services recorded, in order, and which are built in. */
size_t akr_registry_services(const akr_registry *reg,
                             const ackrpc_service *const **ret_services,
                             const unsigned char **ret_builtin);

/* Calls fn for every registered method, with its order of registration. */
void akr_registry_foreach(const akr_registry *reg,
                          void (*fn)(void *user, const ackrpc_method *m, unsigned seq),
                          void *user);

/* ackrpc_server_stats(): the statistics of up to `cap` methods in name
 * order into out[]; returns how many methods there are. Allocates
 * nothing. */
size_t akr_registry_stats(const akr_registry *reg, ackrpc_method_stats *out,
                          size_t cap);

#endif /* AKR_REGISTRY_H */
