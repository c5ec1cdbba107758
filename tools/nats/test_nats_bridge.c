/* test_nats_bridge.c: ackrpc-nats export and import on one node, through a
 * real nats-server on loopback (docs/SCALE.md). A client calls the
 * fixture's echo service at the import socket; the call goes over NATS to
 * the export, which calls the real server. The call id, the deadline (time
 * left), the metadata (bytes, repeated keys in order) and the statuses
 * must come out the same as on a local call.
 *
 * Processes: nats-server (random port, read from its ports file), then
 * ackrpc-nats export and import, each started by the test, logging to a
 * file in the test's directory, stopped with SIGTERM and reaped (SIGKILL
 * after 10 s). They die with the test's process too (PR_SET_PDEATHSIG).
 * Exit 77 (skipped) if nats-server is not installed. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "envelope.h"
#include "fixture.h"
#include "nats_harness.h"

#ifndef ACKRPC_NATS_BIN
#error "ACKRPC_NATS_BIN: the path of the ackrpc-nats binary"
#endif

static char nats_url[128];

NH_SUITE(nats);

static int start_nats(const char *conf) {
  return nh_start_nats("nats", conf, NULL, nats_url, sizeof nats_url);
}

/* nats_url with "user:password@" (four buffers, used in turn). */
static const char *url_as(const char *user, const char *password) {
  static char urls[4][256];
  static int next;
  char *out = urls[next++ % 4];
  snprintf(out, sizeof urls[0], "nats://%s:%s@%s", user, password,
           nats_url + strlen("nats://"));
  return out;
}

/* ackrpc-nats export of fx_sock() through `url`, with up to four extra
 * arguments (NULL-terminated); waits for it to be ready. */
static int start_export_as(const char *log, const char *url,
                           const char *const extra[]) {
  char *argv[12] = {ACKRPC_NATS_BIN,   "export", "--socket",
                    (char *)fx_sock(), "--nats", (char *)url};
  int n = 6;
  for (int i = 0; extra && extra[i] && n < 11; i++)
    argv[n++] = (char *)extra[i];
  argv[n] = NULL;
  int slot = nh_start_child(argv, fx_path(log));
  nh_wait_for_text(fx_path(log), "ready");
  return slot;
}

static int start_export(const char *log, const char *extra) {
  const char *const more[] = {extra, NULL};
  return start_export_as(log, nats_url, more);
}

static const char *import_sock(void) {
  return fx_path("import.sock");
}

static int start_import_as(const char *log, const char *sock, const char *url) {
  char *const argv[] = {ACKRPC_NATS_BIN, "import",    "--listen", (char *)sock,
                        "--nats",        (char *)url, NULL};
  int slot = nh_start_child(argv, fx_path(log));
  nh_wait_for_text(fx_path(log), "ready");
  return slot;
}

static int start_import(void) {
  return start_import_as("import.log", import_sock(), nats_url);
}

/* --- tests ------------------------------------------------------------- */

static ackrpc_status echo(ackrpc_client *c, Ackrpc__Test__EchoRequest *req,
                          const ackrpc_call_options *o, ackrpc_result *r) {
  return ackrpc_client_call(c, &fx_echo_method, &req->base, o, r);
}

Test(nats, call_id_metadata_status_and_deadline_cross_the_hop) {
  int nats = start_nats(NULL);
  fx_server *srv = fx_server_start(
      &(ackrpc_server_options){.address = fx_sock(), .handler_timeout_ms = 400});
  /* The export finds the services by reflection (no --service). */
  int exp = start_export("export.log", NULL);
  int imp = start_import();
  ackrpc_client *c = fx_client(import_sock(), 5000);

  /* 1. OK, with a call id, binary metadata and a repeated key. */
  static const uint8_t bin[] = {0x00, 0xff, 0x0a, 0x0d, 0x3d};
  const ackrpc_metadata md[] = {
      {"k", bin, sizeof bin}, {"trace", "t1", 2}, {"k", "second", 6}, {"empty", "", 0}};
  static const uint8_t id[] = {0xde, 0xad, 0x00, 0xbe, 0xef};
  ackrpc_call_options o = {.call_id = id,
                           .call_id_len = sizeof id,
                           .metadata = md,
                           .metadata_count = 4,
                           .timeout_ms = 3000};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "across NATS";
  ackrpc_result r = {0};
  ackrpc_status st = echo(c, &req, &o, &r);
  cr_assert_eq(st, ACKRPC_OK, "%s: %s", ackrpc_status_name(st),
               r.message ? r.message : "");
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&r);
  cr_assert_str_eq(rep->text, "across NATS");
  cr_assert_str_eq(rep->method, FX_ECHO);
  cr_assert_eq(rep->call_id.len, sizeof id, "the server saw the caller's call id");
  cr_assert_arr_eq(rep->call_id.data, id, sizeof id);
  /* Values of one key keep their order; keys come sorted (NATS headers
   * keep no order between keys). */
  static const char want_md[] = "empty=;k=00ff0a0d3d;k=7365636f6e64;trace=7431;";
  cr_assert(strncmp(rep->meta, want_md, strlen(want_md)) == 0, "metadata: %s",
            rep->meta);
  cr_assert_eq(rep->metadata_count, 4);
  /* 2. The deadline is the caller's time left, not the export's default
   * (30 s) nor the server's cap (400 ms here). */
  cr_assert_leq(rep->remaining_ms, 400);
  ackrpc_result_clear(&r);
  o.timeout_ms = 250;
  cr_assert_eq(echo(c, &req, &o, &r), ACKRPC_OK);
  cr_assert_leq(fx_echo_reply(&r)->remaining_ms, 250, "got %lld",
                (long long)fx_echo_reply(&r)->remaining_ms);
  cr_assert_gt(fx_echo_reply(&r)->remaining_ms, 0);
  ackrpc_result_clear(&r);

  /* 3. A handler's status and message, and its body. */
  req.reply_status = ACKRPC_FAILED_PRECONDITION;
  req.reply_message = "not now";
  o.timeout_ms = 3000;
  cr_assert_eq(echo(c, &req, &o, &r), ACKRPC_FAILED_PRECONDITION);
  cr_assert_str_eq(r.message, "not now");
  ackrpc_result_clear(&r);
  req.reply_status = 0;
  req.reply_message = NULL;

  /* 4. A handler slower than the server's deadline (400 ms): the server's
   * DEADLINE_EXCEEDED comes back through the hop, in time. */
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__DEFER_THREAD;
  req.delay_ms = 1500;
  uint64_t t0 = fx_now_us();
  st = echo(c, &req, &o, &r);
  uint64_t took = fx_now_us() - t0;
  cr_assert_eq(st, ACKRPC_DEADLINE_EXCEEDED, "%s: %s", ackrpc_status_name(st),
               r.message ? r.message : "");
  cr_assert_lt(took, 1400000, "answered at the server's deadline, not the handler's");
  ackrpc_result_clear(&r);

  /* 5. A caller whose own deadline is shorter than the handler: it ends at
   * its deadline, not the handler's, as "delivered, no ack" as on a local
   * socket (or, when a bridge's answer wins the race with the caller's own
   * timer by a few ms, DEADLINE_EXCEEDED). */
  o.timeout_ms = 200;
  req.delay_ms = 1000;
  t0 = fx_now_us();
  st = echo(c, &req, &o, &r);
  took = fx_now_us() - t0;
  cr_assert(ackrpc_status_outcome(st) == ACKRPC_OUTCOME_NO_ACK ||
                st == ACKRPC_DEADLINE_EXCEEDED,
            "%s", ackrpc_status_name(st));
  cr_assert_lt(took, 200000 + fx_slack_us());
  ackrpc_result_clear(&r);
  req.mode = 0;
  req.delay_ms = 0;
  o.timeout_ms = 3000;

  /* 6. The server gone: the export answers UNAVAILABLE, not delivered. */
  fx_server_stop(srv);
  cr_assert_eq(echo(c, &req, &o, &r), ACKRPC_UNAVAILABLE);
  cr_assert(strstr(r.message, "not delivered") != NULL, "%s", r.message);
  ackrpc_result_clear(&r);

  /* 7. The export gone: no responders, UNAVAILABLE (nothing ran). */
  nh_stop_clean(exp, "export.log");
  cr_assert_eq(echo(c, &req, &o, &r), ACKRPC_UNAVAILABLE);
  cr_assert(strstr(r.message, "no responders for ackrpc.ackrpc.test.Test.Echo") != NULL,
            "%s", r.message);
  ackrpc_result_clear(&r);

  fx_deferred_join();
  nh_stop_clean(imp, "import.log");
  nh_stop_child(nats);
  fx_finish();
}

Test(nats, queue_group_and_unknown_methods) {
  int nats = start_nats(NULL);
  fx_server *srv = fx_server_start(&(ackrpc_server_options){.address = fx_sock()});
  /* Two exports of the same service, one queue group: each call is served
   * once (one reply, one handler run). */
  int e1 = start_export("export1.log", "--service=ackrpc.test.Test");
  int e2 = start_export("export2.log", "--service=ackrpc.test.Test");
  int imp = start_import();
  ackrpc_client *c = fx_client(import_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "once";
  unsigned before = fx_handler_calls();
  for (int i = 0; i < 20; i++) {
    ackrpc_result r = {0};
    cr_assert_eq(echo(c, &req, NULL, &r), ACKRPC_OK);
    ackrpc_result_clear(&r);
  }
  cr_assert_eq(fx_handler_calls() - before, 20, "each call ran once");

  /* A method of an exported service that the server lacks: its
   * UNIMPLEMENTED, through the hop. A service nobody exports: no
   * responders. */
  ackrpc_result r = {0};
  cr_assert_eq(ackrpc_client_call_raw(c, "ackrpc.test.Test/Nope", NULL, 0, NULL, &r),
               ACKRPC_UNIMPLEMENTED);
  ackrpc_result_clear(&r);
  cr_assert_eq(
      ackrpc_client_call_raw(c, "ackrpc.test.Fixture/Connections", NULL, 0, NULL, &r),
      ACKRPC_UNAVAILABLE, "--service limits what is exported");
  ackrpc_result_clear(&r);

  nh_stop_clean(imp, "import.log");
  nh_stop_clean(e1, "export1.log");
  nh_stop_clean(e2, "export2.log");
  nh_stop_child(nats);
  fx_server_stop(srv);
  fx_finish();
}

/* Two accounts: the bridge's own (SVC) exports the subjects; callers
 * (CLI) import them with share: true, so nats-server writes who they are
 * in Nats-Request-Info, replacing anything they send. */
static const char accounts[] =
    "accounts: {\n"
    "  SVC: { users: [{user: bridge, password: pb}], exports: [{service: "
    "\"ackrpc.>\"}] }\n"
    "  CLI: { users: [{user: alice, password: pa}, {user: bob, password: pbob}],\n"
    "         imports: [{service: {account: SVC, subject: \"ackrpc.>\"}, share: true}] "
    "}\n"
    "}\n";

Test(nats, the_callers_nats_user_is_the_principal) {
  int nats = start_nats(accounts);
  /* The export runs as this uid: the server trusts it as a bridge. */
  fx_server *srv = fx_server_start(&(ackrpc_server_options){
      .address = fx_sock(), .bridges = &(ackrpc_policy){.same_uid = 1}});
  const char *const trust[] = {"--service=ackrpc.test.Test", "--trust-request-info",
                               NULL};
  int exp = start_export_as("export.log", url_as("bridge", "pb"), trust);
  const char *alice_sock = fx_path("alice.sock"), *bob_sock = fx_path("bob.sock");
  int ia = start_import_as("alice.log", alice_sock, url_as("alice", "pa"));
  int ib = start_import_as("bob.log", bob_sock, url_as("bob", "pbob"));
  ackrpc_client *alice = fx_client(alice_sock, 5000), *bob = fx_client(bob_sock, 5000);

  /* The handler sees who called, as the reserved metadata key; a caller
   * that puts that key itself is refused (by the import's server, which
   * trusts no bridge) and never arrives. */
  const ackrpc_metadata forged[] = {{ACKRPC_NATS_PRINCIPAL_KEY, "nats:CLI/alice", 14}};
  ackrpc_call_options o = {.metadata = forged, .metadata_count = 1};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "who";
  ackrpc_result r = {0};
  char who[128];
  cr_assert_eq(echo(alice, &req, NULL, &r), ACKRPC_OK, "%s",
               r.message ? r.message : "");
  nh_metadata_value(fx_echo_reply(&r)->meta, ACKRPC_NATS_PRINCIPAL_KEY, who,
                    sizeof who);
  cr_assert_str_eq(who, "nats:CLI/alice", "meta: %s", fx_echo_reply(&r)->meta);
  ackrpc_result_clear(&r);
  unsigned calls = fx_handler_calls();
  cr_assert_eq(echo(bob, &req, &o, &r), ACKRPC_PERMISSION_DENIED, "bob's own claim");
  ackrpc_result_clear(&r);
  cr_assert_eq(fx_handler_calls(), calls, "bob's claim did not run");
  cr_assert_eq(echo(bob, &req, NULL, &r), ACKRPC_OK, "%s", r.message ? r.message : "");
  nh_metadata_value(fx_echo_reply(&r)->meta, ACKRPC_NATS_PRINCIPAL_KEY, who,
                    sizeof who);
  cr_assert_str_eq(who, "nats:CLI/bob", "%s", fx_echo_reply(&r)->meta);
  cr_assert_eq(fx_echo_reply(&r)->metadata_count, 1, "only the bridge's entry");
  ackrpc_result_clear(&r);
  nh_stop_clean(exp, "export.log");

  /* A policy naming alice: she passes, bob is refused at the bridge (his
   * call never reaches the server). A requester inside the bridge's own
   * account crosses no import: anonymous, refused. */
  const char *const only_alice[] = {"--service=ackrpc.test.Test",
                                    "--trust-request-info", "--allow=CLI/alice", NULL};
  exp = start_export_as("export2.log", url_as("bridge", "pb"), only_alice);
  cr_assert_eq(echo(alice, &req, NULL, &r), ACKRPC_OK, "%s",
               r.message ? r.message : "");
  ackrpc_result_clear(&r);
  unsigned before = fx_handler_calls();
  cr_assert_eq(echo(bob, &req, NULL, &r), ACKRPC_PERMISSION_DENIED);
  cr_assert(strstr(r.message, "CLI/bob") != NULL, "%s", r.message);
  ackrpc_result_clear(&r);
  cr_assert_eq(fx_handler_calls(), before, "bob's call did not run");
  int iself = start_import_as("self.log", fx_path("self.sock"), url_as("bridge", "pb"));
  ackrpc_client *self = fx_client(fx_path("self.sock"), 5000);
  cr_assert_eq(echo(self, &req, NULL, &r), ACKRPC_PERMISSION_DENIED);
  cr_assert(strstr(r.message, "anonymous") != NULL, "%s", r.message);
  ackrpc_result_clear(&r);

  nh_stop_clean(iself, "self.log");
  nh_stop_clean(ia, "alice.log");
  nh_stop_clean(ib, "bob.log");
  nh_stop_clean(exp, "export2.log");
  /* The password never reaches a log. */
  char *log = nh_slurp(fx_path("alice.log"));
  cr_assert(log && strstr(log, "pa@") == NULL && strstr(log, "***@"), "%s",
            log ? log : "");
  free(log);
  nh_stop_child(nats);
  fx_server_stop(srv);
  fx_finish();
}

/* Runs ackrpc-nats with argv, waits (bounded), returns its exit code. */
static int run_tool(char *const argv[]) {
  int slot = nh_start_child(argv, fx_path("usage.log"));
  int status = nh_wait_child(slot, 10000);
  if (status == -1) status = nh_stop_child(slot);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(nats, usage_and_unreachable_nats) {
  char *const none[] = {ACKRPC_NATS_BIN, NULL};
  char *const bogus[] = {ACKRPC_NATS_BIN, "bogus", NULL};
  char *const no_url[] = {ACKRPC_NATS_BIN, "export", "--socket", "/x.sock", NULL};
  char *const wrong[] = {
      ACKRPC_NATS_BIN,      "import", "--socket", "/x.sock", "--nats",
      "nats://127.0.0.1:1", NULL};
  char *const prefix[] = {ACKRPC_NATS_BIN, "import", "--listen",
                          "/x.sock",       "--nats", "nats://127.0.0.1:1",
                          "--prefix",      "a.>",    NULL};
  cr_assert_eq(run_tool(none), 64);
  cr_assert_eq(run_tool(bogus), 64);
  cr_assert_eq(run_tool(no_url), 64);
  cr_assert_eq(run_tool(wrong), 64, "--socket is export's");
  cr_assert_eq(run_tool(prefix), 64);
  /* Port 1 on loopback: nothing listens there. */
  char *const down[] = {
      ACKRPC_NATS_BIN,      "import", "--listen", (char *)import_sock(), "--nats",
      "nats://127.0.0.1:1", NULL};
  cr_assert_eq(run_tool(down), 69);
  char *s = nh_slurp(fx_path("usage.log"));
  cr_assert(s && strstr(s, "cannot connect to NATS"), "%s", s ? s : "");
  free(s);
  fx_finish();
}

int main(int argc, char *argv[]) {
  return nh_main(argc, argv);
}
