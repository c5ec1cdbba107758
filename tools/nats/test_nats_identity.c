/* test_nats_identity.c: who the caller is, across the hop, and how the
 * bridge proves who it is to NATS (docs/SCALE.md, "Identity" and "TLS and
 * credentials"; issue 16, item 2).
 *
 * - A server whose method policy names the NATS user CLI/alice, with the
 *   export trusted as a bridge (ackrpc_server_options.bridges): alice's
 *   call passes, bob's is refused PERMISSION_DENIED by the library (not by
 *   the bridge's --allow) and its handler does not run. The bridges log in
 *   with --user and --password-file; the password never reaches a log, and
 *   a wrong one is refused (exit 69).
 * - TLS: the test makes a CA, a server certificate and client
 *   certificates with the openssl command in its temp dir; nats-server
 *   requires client certificates and maps their subjects to users
 *   (verify_and_map). A call crosses export and import over TLS, with the
 *   caller's certificate subject as its principal; a bridge without a
 *   client certificate, or with one from another CA, exits 69 saying why.
 * - nkey users, and JWT users (--creds): an operator and accounts in JWTs
 *   the server preloads (make_nkey.py --creds); the caller's principal is
 *   its account's and its own public key; a user of an unknown account, or
 *   a broken .creds file, exits 69.
 *
 * Real nats-server, real bridges (nats_harness.h), the fixture's echo
 * handler in a server of this process. Exit 77 (skipped) without
 * nats-server; openssl is in scripts/deps.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "envelope.h"
#include "fixture.h"
#include "nats_harness.h"

#ifndef ACKRPC_NATS_BIN
#error "ACKRPC_NATS_BIN: the path of the ackrpc-nats binary"
#endif

static char nats_url[128];

NH_SUITE(nats_identity);

/* --- a server whose Echo names its callers ----------------------------- */

/* Echo admits the principal `user` names only. */
static void name_caller(ackrpc_server *server, void *user) {
  const char *const names[] = {user};
  cr_assert_eq(
      ackrpc_server_set_method_policy(
          server, FX_ECHO, &(ackrpc_policy){.principals = names, .n_principals = 1}),
      ACKRPC_OK);
}

/* The fixture's server at fx_sock(); this uid's peers are bridges (the
 * bridges run as the test's user); Echo admits `principal` only. */
static fx_server *start_server(const char *principal) {
  ackrpc_policy bridges = {.same_uid = 1};
  return fx_server_start_setup(
      &(ackrpc_server_options){.address = fx_sock(), .bridges = &bridges}, name_caller,
      (void *)principal);
}

/* --- bridges ------------------------------------------------------------ */

/* ackrpc-nats CMD with its socket option, --nats nats_url and up to ten
 * more arguments (NULL-terminated); logs to LOG in the test's dir. */
static int start_bridge(const char *cmd, const char *sock, const char *log,
                        const char *const extra[]) {
  char *argv[20] = {ACKRPC_NATS_BIN,
                    (char *)cmd,
                    strcmp(cmd, "export") == 0 ? "--socket" : "--listen",
                    (char *)sock,
                    "--nats",
                    nats_url};
  int n = 6;
  for (int i = 0; extra && extra[i]; i++) {
    cr_assert_lt(n, 19);
    argv[n++] = (char *)extra[i];
  }
  argv[n] = NULL;
  return nh_start_child(argv, fx_path(log));
}

static int start_ready(const char *cmd, const char *sock, const char *log,
                       const char *const extra[]) {
  int slot = start_bridge(cmd, sock, log, extra);
  nh_wait_for_text(fx_path(log), "ready");
  return slot;
}

/* A bridge that must fail to start: its exit code (it is waited for,
 * bounded), and its log must contain `says`. */
static void expect_refused(const char *cmd, const char *sock, const char *log,
                           const char *const extra[], const char *says) {
  int slot = start_bridge(cmd, sock, log, extra);
  int st = nh_wait_child(slot, 10000);
  if (st == -1) st = nh_stop_child(slot);
  char *s = nh_slurp(fx_path(log));
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 69, "%s: status %d, want exit 69:\n%s",
            log, st, s ? s : "");
  cr_assert(s && strstr(s, says), "%s does not say '%s':\n%s", log, says, s ? s : "");
  free(s);
}

static void write_file(const char *name, const char *text) {
  FILE *f = fopen(fx_path(name), "we");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

static ackrpc_status echo(ackrpc_client *c, ackrpc_result *r) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "who";
  *r = (ackrpc_result){0};
  return ackrpc_client_call(c, &fx_echo_method, &req.base, NULL, r);
}

/* Calls Echo through `sock`: OK, and the handler saw `principal`. */
static void expect_admitted(const char *sock, const char *principal) {
  ackrpc_client *c = fx_client(sock, 5000);
  ackrpc_result r;
  ackrpc_status st = echo(c, &r);
  cr_assert_eq(st, ACKRPC_OK, "%s: %s", ackrpc_status_name(st),
               r.message ? r.message : "");
  char who[ACKRPC_MAX_PRINCIPAL + 1];
  nh_metadata_value(fx_echo_reply(&r)->meta, ACKRPC_NATS_PRINCIPAL_KEY, who,
                    sizeof who);
  cr_assert_str_eq(who, principal, "meta: %s", fx_echo_reply(&r)->meta);
  ackrpc_result_clear(&r);
}

/* --- a caller policy naming a NATS user --------------------------------- */

/* Two accounts (docs/SCALE.md, "Identity"): the bridge's own (SVC)
 * exports the subjects; callers (CLI) import them with share: true, so
 * nats-server states who they are in Nats-Request-Info. */
static const char accounts[] =
    "accounts: {\n"
    "  SVC: { users: [{user: bridge, password: \"s3cret-bridge\"}],\n"
    "         exports: [{service: \"ackrpc.>\"}] }\n"
    "  CLI: { users: [{user: alice, password: \"s3cret-alice\"},\n"
    "                 {user: bob, password: \"s3cret-bob\"}],\n"
    "         imports: [{service: {account: SVC, subject: \"ackrpc.>\"}, share: true}] "
    "}\n"
    "}\n";

Test(nats_identity, a_caller_policy_naming_a_nats_user_passes_it_and_refuses_another) {
  int nats = nh_start_nats("nats", accounts, NULL, nats_url, sizeof nats_url);
  fx_server *srv = start_server("nats:CLI/alice");
  write_file("bridge.pw", "s3cret-bridge\n");
  write_file("alice.pw", "s3cret-alice\n");
  write_file("bob.pw", "s3cret-bob");
  write_file("wrong.pw", "not-it\n");
  const char *pw_bridge = fx_path("bridge.pw");
  /* No --allow: the server's policy decides. */
  const char *const exp_args[] = {"--service=ackrpc.test.Test",
                                  "--trust-request-info",
                                  "--user",
                                  "bridge",
                                  "--password-file",
                                  pw_bridge,
                                  "--verbose",
                                  NULL};
  int exp = start_ready("export", fx_sock(), "export.log", exp_args);
  const char *const alice_args[] = {"--user", "alice", "--password-file",
                                    fx_path("alice.pw"), NULL};
  const char *const bob_args[] = {"--user", "bob", "--password-file", fx_path("bob.pw"),
                                  NULL};
  const char *alice_sock = fx_path("alice.sock"), *bob_sock = fx_path("bob.sock");
  int ia = start_ready("import", alice_sock, "alice.log", alice_args);
  int ib = start_ready("import", bob_sock, "bob.log", bob_args);

  expect_admitted(alice_sock, "nats:CLI/alice");
  unsigned before = fx_handler_calls();
  ackrpc_client *bob = fx_client(bob_sock, 5000);
  ackrpc_result r;
  cr_assert_eq(echo(bob, &r), ACKRPC_PERMISSION_DENIED, "%s",
               r.message ? r.message : "");
  cr_assert(r.message && strstr(r.message, "not allowed to call this method"),
            "refused by the server's policy, not the bridge: %s",
            r.message ? r.message : "");
  ackrpc_result_clear(&r);
  cr_assert_eq(fx_handler_calls(), before, "bob's call ran");

  /* A wrong password: the bridge does not start. */
  const char *const wrong[] = {"--user", "alice", "--password-file",
                               fx_path("wrong.pw"), NULL};
  expect_refused("import", fx_path("wrong.sock"), "wrong.log", wrong,
                 "cannot connect to NATS");
  /* Half a login is a usage error. */
  const char *const half[] = {"--user", "alice", NULL};
  int slot = start_bridge("import", fx_path("half.sock"), "half.log", half);
  int st = nh_wait_child(slot, 10000);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 64, "status %d", st);

  nh_stop_clean(ia, "alice.log");
  nh_stop_clean(ib, "bob.log");
  nh_stop_clean(exp, "export.log");
  /* No password in any log. */
  const char *logs[] = {"export.log", "alice.log", "bob.log", "wrong.log"};
  for (size_t i = 0; i < sizeof logs / sizeof *logs; i++) {
    char *s = nh_slurp(fx_path(logs[i]));
    cr_assert(s && !strstr(s, "s3cret") && !strstr(s, "not-it"), "%s:\n%s", logs[i],
              s ? s : "");
    free(s);
  }
  nh_stop_child(nats);
  fx_server_stop(srv);
  fx_finish();
}

/* --- TLS ------------------------------------------------------------------ */

/* Makes, in the test's dir, with the openssl command: ca.pem (a CA),
 * server.pem for 127.0.0.1, client certificates alice.pem
 * (O=ackrpc/CN=alice) and bridge.pem (O=ackrpc/CN=bridge) signed by it, and
 * mallory.pem with alice's subject signed by another CA (other.pem). Keys
 * beside them (NAME.key). */
static void make_certs(void) {
  char script[4096];
  snprintf(script, sizeof script,
           "set -e; cd '%s'\n"
           "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
           "-out \"$1.key\"; }\n"
           "ca() { key \"$1\"; openssl req -x509 -new -key \"$1.key\" -out \"$1.pem\" "
           "-subj \"$2\" -days 2; }\n"
           "cert() { key \"$1\"; openssl req -new -key \"$1.key\" -out \"$1.csr\" "
           "-subj \"$2\"; printf '%%s\\n' \"$3\" > \"$1.ext\";"
           " openssl x509 -req -in \"$1.csr\" -CA \"$4.pem\" -CAkey \"$4.key\" "
           "-CAcreateserial -days 2 -out \"$1.pem\" -extfile \"$1.ext\"; }\n"
           "ca ca '/CN=ackrpc test CA'\n"
           "ca other '/CN=another CA'\n"
           "cert server /CN=localhost 'subjectAltName=IP:127.0.0.1,DNS:localhost' ca\n"
           "cert alice /O=ackrpc/CN=alice extendedKeyUsage=clientAuth ca\n"
           "cert bridge /O=ackrpc/CN=bridge extendedKeyUsage=clientAuth ca\n"
           "cert mallory /O=ackrpc/CN=alice extendedKeyUsage=clientAuth other\n",
           fx_dir());
  write_file("certs.sh", script);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "/bin/sh '%s' > '%s' 2>&1", fx_path("certs.sh"),
           fx_path("certs.log"));
  int st = system(cmd);
  char *log = nh_slurp(fx_path("certs.log"));
  cr_assert(st == 0, "making the certificates failed (%d):\n%s", st, log ? log : "");
  free(log);
}

/* TLS with client certificates required, each mapped to the user its
 * subject names (RFC 2253: "CN=alice,O=ackrpc"). */
static const char tls_conf_fmt[] =
    "tls {\n"
    "  cert_file: \"%s/server.pem\"\n"
    "  key_file: \"%s/server.key\"\n"
    "  ca_file: \"%s/ca.pem\"\n"
    "  verify_and_map: true\n"
    "}\n"
    "accounts: {\n"
    "  SVC: { users: [{user: \"CN=bridge,O=ackrpc\"}], exports: [{service: "
    "\"ackrpc.>\"}] }\n"
    "  CLI: { users: [{user: \"CN=alice,O=ackrpc\"}],\n"
    "         imports: [{service: {account: SVC, subject: \"ackrpc.>\"}, share: true}] "
    "}\n"
    "}\n";

Test(nats_identity, tls_with_client_certificates) {
  make_certs();
  char conf[2048];
  snprintf(conf, sizeof conf, tls_conf_fmt, fx_dir(), fx_dir(), fx_dir());
  int nats = nh_start_nats("nats", conf, NULL, nats_url, sizeof nats_url);
  cr_assert(strncmp(nats_url, "tls://", 6) == 0, "%s", nats_url);
  fx_server *srv = start_server("nats:CLI/CN=alice,O=ackrpc");

  const char *ca = fx_path("ca.pem"), *bcert = fx_path("bridge.pem"),
             *bkey = fx_path("bridge.key"), *acert = fx_path("alice.pem"),
             *akey = fx_path("alice.key"), *mcert = fx_path("mallory.pem"),
             *mkey = fx_path("mallory.key");
  const char *const exp_args[] = {"--service=ackrpc.test.Test",
                                  "--trust-request-info",
                                  "--tls-ca",
                                  ca,
                                  "--tls-cert",
                                  bcert,
                                  "--tls-key",
                                  bkey,
                                  NULL};
  int exp = start_ready("export", fx_sock(), "export.log", exp_args);
  const char *const imp_args[] = {"--tls-ca",  ca,   "--tls-cert", acert,
                                  "--tls-key", akey, NULL};
  const char *alice_sock = fx_path("alice.sock");
  int imp = start_ready("import", alice_sock, "alice.log", imp_args);

  /* Over TLS, both ways; the certificate's subject is the principal the
   * server's policy names. */
  expect_admitted(alice_sock, "nats:CLI/CN=alice,O=ackrpc");

  /* No client certificate; one from another CA with alice's subject; no
   * CA to check the server with: refused, exit 69, saying so. */
  const char *const no_cert[] = {"--tls-ca", ca, NULL};
  expect_refused("import", fx_path("x1.sock"), "nocert.log", no_cert,
                 "the server closed the TLS connection");
  const char *const other_ca[] = {"--tls-ca",  ca,   "--tls-cert", mcert,
                                  "--tls-key", mkey, NULL};
  expect_refused("import", fx_path("x2.sock"), "mallory.log", other_ca,
                 "the server closed the TLS connection");
  /* The bridge checks the server too: a CA that did not sign it. */
  const char *const wrong_ca[] = {
      "--tls-ca", fx_path("other.pem"), "--tls-cert", acert, "--tls-key", akey, NULL};
  expect_refused("import", fx_path("x5.sock"), "wrongca.log", wrong_ca,
                 "unable to get local issuer certificate");
  const char *const no_ca[] = {"--tls-cert", acert, "--tls-key", akey, NULL};
  int slot = start_bridge("import", fx_path("x3.sock"), "noca.log", no_ca);
  int st = nh_wait_child(slot, 10000);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 64, "--tls-cert without --tls-ca: %d",
            st);
  const char *const missing[] = {"--tls-ca", fx_path("nope.pem"), NULL};
  expect_refused("import", fx_path("x4.sock"), "missing.log", missing,
                 "nope.pem: No such file or directory");
  /* The server saw the refused handshakes as such. */
  char *log = nh_slurp(fx_path("nats.log"));
  cr_assert(log && strstr(log, "client didn't provide a certificate") &&
                strstr(log, "certificate signed by unknown authority"),
            "%s", log ? log : "");
  free(log);

  nh_stop_clean(imp, "alice.log");
  nh_stop_clean(exp, "export.log");
  nh_stop_child(nats);
  fx_server_stop(srv);
  fx_finish();
}

/* --- nkeys ---------------------------------------------------------------- */

/* A new nkey user (make_nkey.py, with the openssl command): its seed in the
 * test's dir as NAME.nk, its public key ("U...") in `pub`. */
static void make_nkey(const char *name, char *pub, size_t cap) {
  char seed[256], out[256], cmd[1024];
  snprintf(seed, sizeof seed, "%s.nk", name);
  snprintf(out, sizeof out, "%s.pub", name);
  snprintf(cmd, sizeof cmd, "python3 '%s' '%s' > '%s' 2>&1", ACKRPC_NATS_MAKE_NKEY,
           fx_path(seed), fx_path(out));
  int st = system(cmd);
  char *text = nh_slurp(fx_path(out));
  cr_assert(st == 0 && text && text[0] == 'U', "make_nkey.py failed (%d): %s", st,
            text ? text : "");
  text[strcspn(text, "\n")] = '\0';
  cr_assert_lt(strlen(text), cap);
  snprintf(pub, cap, "%s", text);
  free(text);
}

/* No seed of the files `seeds` (an .nk file, or a .creds file: its line
 * that starts with "SU") in any of the logs. Both lists NULL-terminated. */
static void expect_no_seed(const char *const logs[], const char *const seeds[]) {
  for (size_t k = 0; seeds[k]; k++) {
    char *text = nh_slurp(fx_path(seeds[k]));
    cr_assert_not_null(text, "%s", seeds[k]);
    char *seed = strncmp(text, "SU", 2) == 0 ? text : strstr(text, "\nSU");
    cr_assert_not_null(seed, "no seed in %s", seeds[k]);
    if (seed != text) seed++;
    seed[strcspn(seed, "\n")] = '\0';
    cr_assert_gt(strlen(seed), 40, "%s: %s", seeds[k], seed);
    for (size_t i = 0; logs[i]; i++) {
      char *s = nh_slurp(fx_path(logs[i]));
      cr_assert(s && !strstr(s, seed), "%s holds the seed of %s:\n%s", logs[i],
                seeds[k], s ? s : "");
      free(s);
    }
    free(text);
  }
}

Test(nats_identity, nkey_users_log_in_and_the_callers_key_is_its_principal) {
  char bridge[128], alice[128], mallory[128];
  make_nkey("bridge", bridge, sizeof bridge);
  make_nkey("alice", alice, sizeof alice);
  make_nkey("mallory", mallory, sizeof mallory); /* not a user of the server */
  char conf[2048];
  snprintf(conf, sizeof conf,
           "accounts: {\n"
           "  SVC: { users: [{nkey: %s}], exports: [{service: \"ackrpc.>\"}] }\n"
           "  CLI: { users: [{nkey: %s}],\n"
           "         imports: [{service: {account: SVC, subject: \"ackrpc.>\"}, "
           "share: true}] }\n"
           "}\n",
           bridge, alice);
  int nats = nh_start_nats("nats", conf, NULL, nats_url, sizeof nats_url);
  char principal[256];
  snprintf(principal, sizeof principal, "nats:CLI/%s", alice);
  fx_server *srv = start_server(principal);
  const char *const exp_args[] = {
      "--service=ackrpc.test.Test", "--trust-request-info", "--nkey", bridge,
      "--nkey-seed-file",           fx_path("bridge.nk"),   NULL};
  int exp = start_ready("export", fx_sock(), "export.log", exp_args);
  const char *alice_sock = fx_path("alice.sock");
  const char *const alice_args[] = {"--nkey", alice, "--nkey-seed-file",
                                    fx_path("alice.nk"), NULL};
  int imp = start_ready("import", alice_sock, "alice.log", alice_args);
  expect_admitted(alice_sock, principal);

  /* A key the server does not know, and alice's key signed with another
   * seed: refused. */
  const char *const unknown[] = {"--nkey", mallory, "--nkey-seed-file",
                                 fx_path("mallory.nk"), NULL};
  expect_refused("import", fx_path("x1.sock"), "unknown.log", unknown,
                 "cannot connect to NATS");
  const char *const forged[] = {"--nkey", alice, "--nkey-seed-file",
                                fx_path("mallory.nk"), NULL};
  expect_refused("import", fx_path("x2.sock"), "forged.log", forged,
                 "cannot connect to NATS");
  const char *logs[] = {"export.log", "alice.log", "unknown.log", "forged.log", NULL};
  const char *seeds[] = {"bridge.nk", "alice.nk", "mallory.nk", NULL};
  expect_no_seed(logs, seeds);
  nh_stop_clean(imp, "alice.log");
  nh_stop_clean(exp, "export.log");
  nh_stop_child(nats);
  fx_server_stop(srv);
  fx_finish();
}

/* --- JWT users (.creds files) ---------------------------------------------- */

/* The first line of file NAME in the test's dir, into out[0..cap). */
static void read_line(const char *name, char *out, size_t cap) {
  char *text = nh_slurp(fx_path(name));
  cr_assert_not_null(text, "%s", name);
  text[strcspn(text, "\n")] = '\0';
  cr_assert_lt(strlen(text), cap);
  snprintf(out, cap, "%s", text);
  free(text);
}

Test(nats_identity, creds_users_log_in_and_the_callers_jwt_names_its_principal) {
  /* An operator, accounts SVC (exports ackrpc.>) and CLI (imports it with
   * share: true) in JWTs the server preloads, and a .creds file per user
   * (make_nkey.py --creds, with the openssl command). */
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "python3 '%s' --creds '%s' > '%s' 2> '%s'",
           ACKRPC_NATS_MAKE_NKEY, fx_dir(), fx_path("jwt.conf"), fx_path("creds.err"));
  int st = system(cmd);
  char *conf = nh_slurp(fx_path("jwt.conf"));
  cr_assert(st == 0 && conf && strstr(conf, "resolver_preload"),
            "make_nkey.py --creds failed (%d)", st);
  int nats = nh_start_nats("nats", conf, NULL, nats_url, sizeof nats_url);
  free(conf);
  /* The caller as nats-server's request info names a JWT user: its
   * account's and its own public key. */
  char cli[128], alice[128], principal[300];
  read_line("CLI.pub", cli, sizeof cli);
  read_line("alice.pub", alice, sizeof alice);
  snprintf(principal, sizeof principal, "nats:%s/%s", cli, alice);
  fx_server *srv = start_server(principal);
  const char *const exp_args[] = {"--service=ackrpc.test.Test", "--trust-request-info",
                                  "--creds", fx_path("bridge.creds"), NULL};
  int exp = start_ready("export", fx_sock(), "export.log", exp_args);
  const char *alice_sock = fx_path("alice.sock");
  const char *const alice_args[] = {"--creds", fx_path("alice.creds"), NULL};
  int imp = start_ready("import", alice_sock, "alice.log", alice_args);
  expect_admitted(alice_sock, principal);

  /* A user of an account the server does not know (signed by the same
   * operator), and a file that is no .creds file: refused. */
  const char *const stranger[] = {"--creds", fx_path("stranger.creds"), NULL};
  expect_refused("import", fx_path("x1.sock"), "stranger.log", stranger,
                 "cannot connect to NATS");
  write_file("bad.creds", "-----BEGIN NATS USER JWT-----\nnot.a.jwt\n"
                          "------END NATS USER JWT------\n");
  const char *const bad[] = {"--creds", fx_path("bad.creds"), NULL};
  expect_refused("import", fx_path("x2.sock"), "bad.log", bad,
                 "no nkey user seed found");
  const char *logs[] = {"export.log", "alice.log", "stranger.log", "bad.log", NULL};
  const char *seeds[] = {"bridge.creds", "alice.creds", "stranger.creds", NULL};
  expect_no_seed(logs, seeds);
  nh_stop_clean(imp, "alice.log");
  nh_stop_clean(exp, "export.log");
  nh_stop_child(nats);
  fx_server_stop(srv);
  fx_finish();
}

int main(int argc, char *argv[]) {
  return nh_main(argc, argv);
}
