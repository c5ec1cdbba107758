/* policy.h: who may call, checked on the peer's credentials (internal: not
 * installed). A copy of an ackrpc_policy with group names resolved to gids
 * when it is installed, so a check never looks a name up. */
#ifndef AKR_POLICY_H
#define AKR_POLICY_H

#include <stddef.h>
#include <sys/types.h>

#include "ackrpc/common.h"

typedef struct akr_policy {
  int same_uid;
  uid_t *uids;
  size_t n_uids;
  gid_t *gids;
  size_t n_gids;
  char **principals; /* NUL-terminated copies */
  size_t n_principals;
} akr_policy;

/* Copies a policy into *ret; NULL or an empty one gives NULL (admit
 * everyone). Errors: E_INVAL (a count without its array, a principal that
 * akr_principal_valid() refuses), E_NOT_FOUND (an unknown group name),
 * E_NOMEM. */
ackrpc_status akr_policy_copy(const ackrpc_policy *policy, akr_policy **ret);

/* Whether a policy lists principals (the server-wide and bridges policies
 * must not: they check connections). */
int akr_policy_has_principals(const ackrpc_policy *policy);

/* Whether `len` bytes make a principal: 1 to ACKRPC_MAX_PRINCIPAL bytes of
 * printable ASCII without '"' or '\\' (so that it goes into a log line
 * as it is). */
int akr_principal_valid(const void *bytes, size_t len);

/* Frees a copy. NULL is ignored. */
void akr_policy_free(akr_policy *policy);

/* Whether the peer passes `policy` (NULL admits everyone). `euid` is the
 * server's; supplementary groups are asked of the kernel through the
 * connection `fd` only when a group rule needs them. For a local call or
 * a connection: principals admit nothing. */
int akr_policy_allows(const akr_policy *policy, uid_t euid, const ackrpc_peer *peer,
                      int fd);

/* Whether a bridged call with `principal` (NULL: anonymous) passes
 * `policy`: NULL admits everyone, else only a listed principal does. */
int akr_policy_allows_principal(const akr_policy *policy, const char *principal);

/* The gid of a group name: OK, or E_NOT_FOUND. */
ackrpc_status akr_group_resolve(const char *name, gid_t *ret_gid);

#endif /* AKR_POLICY_H */
