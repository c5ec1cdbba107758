/* policy.c: caller policies (policy.h). */
#include "server/policy.h"

#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void akr_policy_free(akr_policy *p) {
  if (!p) return;
  free(p->uids);
  free(p->gids);
  for (size_t i = 0; i < p->n_principals; i++)
    free(p->principals[i]);
  free(p->principals);
  free(p);
}

ackrpc_status akr_group_resolve(const char *name, gid_t *ret_gid) {
  char buf[4096];
  struct group gr, *found = NULL;
  if (getgrnam_r(name, &gr, buf, sizeof buf, &found) != 0 || !found)
    return ACKRPC_E_NOT_FOUND;
  *ret_gid = found->gr_gid;
  return ACKRPC_OK;
}

/* The policy's gids and the gids of its group names, resolved. */
static ackrpc_status copy_gids(const ackrpc_policy *in, akr_policy *p) {
  size_t ng = in->n_gids + in->n_group_names;
  if (!ng) return ACKRPC_OK;
  p->gids = malloc(ng * sizeof *p->gids);
  if (!p->gids) return ACKRPC_E_NOMEM;
  if (in->n_gids) memcpy(p->gids, in->gids, in->n_gids * sizeof *p->gids);
  p->n_gids = in->n_gids;
  for (size_t i = 0; i < in->n_group_names; i++) {
    if (!in->group_names[i] ||
        akr_group_resolve(in->group_names[i], &p->gids[p->n_gids]) != ACKRPC_OK)
      return ACKRPC_E_NOT_FOUND;
    p->n_gids++;
  }
  return ACKRPC_OK;
}

int akr_principal_valid(const void *bytes, size_t len) {
  const unsigned char *p = bytes;
  if (!p || len == 0 || len > ACKRPC_MAX_PRINCIPAL) return 0;
  for (size_t i = 0; i < len; i++)
    if (p[i] < 0x20 || p[i] > 0x7e || p[i] == '"' || p[i] == '\\') return 0;
  return 1;
}

int akr_policy_has_principals(const ackrpc_policy *in) {
  return in && in->n_principals > 0;
}

static ackrpc_status copy_principals(const ackrpc_policy *in, akr_policy *p) {
  if (!in->n_principals) return ACKRPC_OK;
  p->principals = calloc(in->n_principals, sizeof *p->principals);
  if (!p->principals) return ACKRPC_E_NOMEM;
  for (size_t i = 0; i < in->n_principals; i++) {
    const char *name = in->principals[i];
    if (!name || !akr_principal_valid(name, strlen(name))) return ACKRPC_E_INVAL;
    if (!(p->principals[i] = strdup(name))) return ACKRPC_E_NOMEM;
    p->n_principals++;
  }
  return ACKRPC_OK;
}

ackrpc_status akr_policy_copy(const ackrpc_policy *in, akr_policy **ret) {
  *ret = NULL;
  if (!in || (!in->same_uid && !in->n_uids && !in->n_gids && !in->n_group_names &&
              !in->n_principals))
    return ACKRPC_OK;
  if ((in->n_uids && !in->uids) || (in->n_gids && !in->gids) ||
      (in->n_group_names && !in->group_names) || (in->n_principals && !in->principals))
    return ACKRPC_E_INVAL;
  akr_policy *p = calloc(1, sizeof *p);
  if (!p) return ACKRPC_E_NOMEM;
  p->same_uid = in->same_uid;
  ackrpc_status st = ACKRPC_OK;
  if (in->n_uids) {
    p->uids = malloc(in->n_uids * sizeof *p->uids);
    if (!p->uids)
      st = ACKRPC_E_NOMEM;
    else {
      memcpy(p->uids, in->uids, in->n_uids * sizeof *p->uids);
      p->n_uids = in->n_uids;
    }
  }
  if (st == ACKRPC_OK) st = copy_gids(in, p);
  if (st == ACKRPC_OK) st = copy_principals(in, p);
  if (st != ACKRPC_OK) {
    akr_policy_free(p);
    return st;
  }
  *ret = p;
  return ACKRPC_OK;
}

static int gid_listed(const akr_policy *p, gid_t g) {
  for (size_t i = 0; i < p->n_gids; i++)
    if (p->gids[i] == g) return 1;
  return 0;
}

int akr_policy_allows(const akr_policy *p, uid_t euid, const ackrpc_peer *peer,
                      int fd) {
  if (!p) return 1;
  if (p->same_uid && peer->uid == euid) return 1;
  for (size_t i = 0; i < p->n_uids; i++)
    if (p->uids[i] == peer->uid) return 1;
  if (!p->n_gids) return 0;
  if (gid_listed(p, peer->gid)) return 1;
  gid_t groups[256];
  socklen_t len = sizeof groups;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0) return 0;
  for (size_t i = 0; i < len / sizeof *groups; i++)
    if (gid_listed(p, groups[i])) return 1;
  return 0;
}

int akr_policy_allows_principal(const akr_policy *p, const char *principal) {
  if (!p) return 1;
  if (!principal) return 0;
  for (size_t i = 0; i < p->n_principals; i++)
    if (strcmp(p->principals[i], principal) == 0) return 1;
  return 0;
}
