/* auth.h: how ackrpc-nats proves who it is to NATS and checks the server
 * (docs/SCALE.md, "TLS and credentials"): TLS with a CA, a client
 * certificate and key, and a user's password or an nkey seed read from
 * files, so that no secret is on the command line. */
#ifndef ACKRPC_NATS_AUTH_H
#define ACKRPC_NATS_AUTH_H

#include <stddef.h>

#include <nats/nats.h>

typedef struct nats_auth {
  const char *tls_ca;       /* PEM file of the CAs to trust; turns TLS on */
  const char *tls_cert;     /* PEM client certificate (chain) ... */
  const char *tls_key;      /* ... and its key: both or neither */
  const char *tls_hostname; /* the name the server's certificate must have */
  const char *user;         /* with password_file */
  const char *password_file;
  const char *nkey; /* an nkey user's public key, with nkey_seed_file */
  const char *nkey_seed_file;
  const char *creds; /* a .creds file (user JWT and nkey seed) */
} nats_auth;

/* Whether the options go together (cert with key, user with password
 * file, nkey with seed file, at most one way to log in): 0, or -1 with a
 * sentence in err (cap bytes) for a usage error. */
int nats_auth_check(const nats_auth *auth, char *err, size_t cap);

/* Applies `auth` to `o` (TLS on with tls_ca, or with a URL tls://...): the
 * files are read now. NATS_OK, or a status with a sentence in err naming
 * the option and the file (never its contents). */
natsStatus nats_auth_apply(const nats_auth *auth, natsOptions *o, char *err,
                           size_t cap);

#endif
