/* auth.c: see auth.h. */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int nats_auth_check(const nats_auth *a, char *err, size_t cap) {
  int logins = !!a->user + !!a->nkey + !!a->creds;
  const char *why = NULL;
  if (!!a->tls_cert != !!a->tls_key)
    why = "--tls-cert and --tls-key go together";
  else if (!!a->user != !!a->password_file)
    why = "--user and --password-file go together";
  else if (!!a->nkey != !!a->nkey_seed_file)
    why = "--nkey and --nkey-seed-file go together";
  else if (logins > 1)
    why = "one of --user, --nkey and --creds";
  else if ((a->tls_cert || a->tls_hostname) && !a->tls_ca)
    why = "--tls-cert and --tls-hostname need --tls-ca";
  if (!why) return 0;
  snprintf(err, cap, "%s", why);
  return -1;
}

/* The first line of a file, without its line end, into a buffer that is
 * wiped and freed by the caller (secret_free()). NULL with errno set. */
static char *read_secret(const char *path) {
  FILE *f = fopen(path, "re");
  if (!f) return NULL;
  enum { CAP = 4096 };
  char *buf = calloc(1, CAP);
  if (!buf) {
    fclose(f);
    errno = ENOMEM;
    return NULL;
  }
  size_t n = fread(buf, 1, CAP - 1, f);
  int bad = ferror(f) || (n == CAP - 1 && !feof(f));
  fclose(f);
  buf[n] = '\0';
  buf[strcspn(buf, "\r\n")] = '\0';
  if (bad || buf[0] == '\0') {
    explicit_bzero(buf, CAP);
    free(buf);
    errno = bad ? EFBIG : ENODATA;
    return NULL;
  }
  return buf;
}

static void secret_free(char *s) {
  if (!s) return;
  explicit_bzero(s, strlen(s));
  free(s);
}

/* nats.c's last error, for a file it could not load (no secret in it:
 * OpenSSL's reason, e.g. "no start line"). */
static const char *last_error(void) {
  const char *e = nats_GetLastError(NULL);
  return e && e[0] ? e : "unknown error";
}

/* Whether a file named by an option can be read: 0, or -1 with a sentence
 * in err (nats.c's own message for a missing file says "(null)"). */
static int readable(const char *option, const char *path, char *err, size_t cap) {
  FILE *f = path ? fopen(path, "re") : NULL;
  if (f) {
    fclose(f);
    return 0;
  }
  snprintf(err, cap, "%s %s: %s", option, path ? path : "", strerror(errno));
  return -1;
}

natsStatus nats_auth_apply(const nats_auth *a, natsOptions *o, char *err, size_t cap) {
  natsStatus s = NATS_OK;
  if ((a->tls_ca && readable("--tls-ca", a->tls_ca, err, cap)) ||
      (a->tls_cert && readable("--tls-cert", a->tls_cert, err, cap)) ||
      (a->tls_key && readable("--tls-key", a->tls_key, err, cap)) ||
      (a->nkey_seed_file &&
       readable("--nkey-seed-file", a->nkey_seed_file, err, cap)) ||
      (a->creds && readable("--creds", a->creds, err, cap)))
    return NATS_ERR;
  if (a->tls_ca) {
    s = natsOptions_SetSecure(o, true);
    if (s == NATS_OK) s = natsOptions_LoadCATrustedCertificates(o, a->tls_ca);
    if (s != NATS_OK) {
      snprintf(err, cap, "--tls-ca %s: %s", a->tls_ca, last_error());
      return s;
    }
  }
  if (a->tls_cert) {
    s = natsOptions_LoadCertificatesChain(o, a->tls_cert, a->tls_key);
    if (s != NATS_OK) {
      snprintf(err, cap, "--tls-cert %s / --tls-key %s: %s", a->tls_cert, a->tls_key,
               last_error());
      return s;
    }
  }
  if (a->tls_hostname && (s = natsOptions_SetExpectedHostname(o, a->tls_hostname))) {
    snprintf(err, cap, "--tls-hostname %s: %s", a->tls_hostname, natsStatus_GetText(s));
    return s;
  }
  if (a->user) {
    char *pw = read_secret(a->password_file);
    if (!pw) {
      snprintf(err, cap, "--password-file %s: %s", a->password_file,
               errno == ENODATA ? "empty" : strerror(errno));
      return NATS_ERR;
    }
    s = natsOptions_SetUserInfo(o, a->user, pw);
    secret_free(pw);
    if (s != NATS_OK) {
      snprintf(err, cap, "--user: %s", natsStatus_GetText(s));
      return s;
    }
  }
  if (a->nkey) {
    /* nats.c reads the seed file itself, when it signs, and wipes it. */
    s = natsOptions_SetNKeyFromSeed(o, a->nkey, a->nkey_seed_file);
    if (s != NATS_OK) {
      snprintf(err, cap, "--nkey-seed-file %s: %s", a->nkey_seed_file,
               natsStatus_GetText(s));
      return s;
    }
  }
  if (a->creds) {
    s = natsOptions_SetUserCredentialsFromFiles(o, a->creds, NULL);
    if (s != NATS_OK) {
      snprintf(err, cap, "--creds %s: %s", a->creds, natsStatus_GetText(s));
      return s;
    }
  }
  return NATS_OK;
}
