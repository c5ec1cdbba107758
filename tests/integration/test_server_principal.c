/* test_server_principal.c: principals across a bridge (docs/SECURITY.md,
 * "Principals"). A server trusts bridges by their credentials
 * (ackrpc_server_options.bridges); a call on a bridge's connection is
 * bridged, its caller the principal the bridge sent as metadata
 * ACKRPC_PRINCIPAL_KEY. Method policies admit a bridged call by a listed
 * principal only, never by the bridge's uid; the key from any other peer is
 * refused before the handler runs.
 *
 * One process plays both parts: with `bridges` naming this process's uid
 * its connections are a bridge's; with `bridges` naming another uid they are
 * a local peer's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

FX_SUITE(principal);

#define OPEN "ackrpc.test.Test/Open" /* a method with no policy */
#define ALICE "nats:CLI/alice"

static const ackrpc_method open_method = {OPEN, &ackrpc__test__echo_request__descriptor,
                                          &ackrpc__test__echo_reply__descriptor};

static unsigned handled;

/* Replies text = the principal ("-" without one), method = "bridged" or
 * "local", peer_uid = ackrpc_call_peer()'s uid. */
static void who(ackrpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)request, (void)user;
  __atomic_fetch_add(&handled, 1, __ATOMIC_SEQ_CST);
  const char *p = ackrpc_call_principal(call);
  Ackrpc__Test__EchoReply r = ACKRPC__TEST__ECHO_REPLY__INIT;
  r.text = (char *)(p ? p : "-");
  r.method = ackrpc_call_bridged(call) ? "bridged" : "local";
  r.peer_uid = ackrpc_call_peer(call)->uid;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &r.base);
}

/* The DEBUG lines the server logged (the loop's thread writes, the test
 * reads after the server stopped). */
static char debug_log[8192];
static size_t debug_len;

static void keep_log(void *user, ackrpc_log_level level, const char *message) {
  (void)user;
  if (level != ACKRPC_LOG_DEBUG) return;
  int n =
      snprintf(debug_log + debug_len, sizeof debug_log - debug_len, "%s\n", message);
  if (n > 0 && debug_len + (size_t)n < sizeof debug_log) debug_len += (size_t)n;
}

/* Registers Echo and Open, both answered by who(); Echo gets the policy
 * `user` points to (NULL: none). */
static void who_methods(ackrpc_server *s, void *user) {
  const ackrpc_policy *echo_policy = user;
  cr_assert_eq(ackrpc_server_add_method(s, &fx_echo_method, who, NULL), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(s, &open_method, who, NULL), ACKRPC_OK);
  if (echo_policy)
    cr_assert_eq(ackrpc_server_set_method_policy(s, FX_ECHO, echo_policy), ACKRPC_OK);
}

/* A server whose bridges are the peers of uid `bridge_uid`; Echo has
 * `echo_policy` (NULL: none), Open none. */
static fx_server *start(uid_t bridge_uid, ackrpc_policy *echo_policy, int reply_cache) {
  static uid_t bridge;
  bridge = bridge_uid;
  ackrpc_policy bridges = {.uids = &bridge, .n_uids = 1};
  ackrpc_server_options o = {.address = fx_sock(),
                             .bridges = &bridges,
                             .reply_cache = reply_cache,
                             .log = keep_log,
                             .log_level = ACKRPC_LOG_DEBUG};
  debug_len = 0;
  debug_log[0] = '\0';
  return fx_server_start_bare(&o, who_methods, echo_policy);
}

/* Calls `method` as `principal` (NULL: no principal key); returns the
 * status, and the reply in *r (cleared by the caller). */
static ackrpc_status call_as(ackrpc_client *c, const char *method,
                             const char *principal, const char *call_id,
                             ackrpc_result *r) {
  ackrpc_metadata md = {ACKRPC_PRINCIPAL_KEY, principal,
                        principal ? strlen(principal) : 0};
  ackrpc_call_options o = {.metadata = &md,
                           .metadata_count = principal ? 1 : 0,
                           .call_id = (const uint8_t *)call_id,
                           .call_id_len = call_id ? strlen(call_id) : 0};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "hi";
  const ackrpc_method *m = strcmp(method, OPEN) == 0 ? &open_method : &fx_echo_method;
  *r = (ackrpc_result){0};
  return ackrpc_client_call(c, m, &req.base, &o, r);
}

static const Ackrpc__Test__EchoReply *reply_of(const ackrpc_result *r) {
  return (const Ackrpc__Test__EchoReply *)r->reply;
}

FX_TEST(principal, a_listed_principal_passes_another_and_anonymous_do_not) {
  const char *const names[] = {ALICE};
  ackrpc_policy only_alice = {.principals = names, .n_principals = 1};
  fx_server *s = start(getuid(), &only_alice, 0);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result r;

  cr_assert_eq(call_as(c, FX_ECHO, ALICE, NULL, &r), ACKRPC_OK, "%s",
               r.message ? r.message : "");
  cr_assert_str_eq(reply_of(&r)->text, ALICE, "the handler sees the principal");
  cr_assert_str_eq(reply_of(&r)->method, "bridged");
  cr_assert_eq(reply_of(&r)->peer_uid, getuid(), "the peer is still the bridge");
  ackrpc_result_clear(&r);

  unsigned before = __atomic_load_n(&handled, __ATOMIC_SEQ_CST);
  cr_assert_eq(call_as(c, FX_ECHO, "nats:CLI/bob", NULL, &r), ACKRPC_PERMISSION_DENIED);
  ackrpc_result_clear(&r);
  cr_assert_eq(call_as(c, FX_ECHO, NULL, NULL, &r), ACKRPC_PERMISSION_DENIED,
               "anonymous is refused by a principal policy");
  ackrpc_result_clear(&r);
  /* Byte for byte: no prefix match, no case folding. */
  cr_assert_eq(call_as(c, FX_ECHO, "nats:CLI/alicE", NULL, &r),
               ACKRPC_PERMISSION_DENIED);
  ackrpc_result_clear(&r);
  cr_assert_eq(__atomic_load_n(&handled, __ATOMIC_SEQ_CST), before, "no handler ran");

  /* A method with no policy takes anyone, anonymous too (no principal). */
  cr_assert_eq(call_as(c, OPEN, NULL, NULL, &r), ACKRPC_OK);
  cr_assert_str_eq(reply_of(&r)->text, "-");
  cr_assert_str_eq(reply_of(&r)->method, "bridged");
  ackrpc_result_clear(&r);
  cr_assert_eq(call_as(c, OPEN, "nats:CLI/bob", NULL, &r), ACKRPC_OK);
  cr_assert_str_eq(reply_of(&r)->text, "nats:CLI/bob");
  ackrpc_result_clear(&r);

  /* Malformed principals, and the key twice: refused, not guessed at. */
  cr_assert_eq(call_as(c, OPEN, "", NULL, &r), ACKRPC_INVALID_ARGUMENT);
  ackrpc_result_clear(&r);
  cr_assert_eq(call_as(c, OPEN, "nats:\"quoted\"", NULL, &r), ACKRPC_INVALID_ARGUMENT);
  ackrpc_result_clear(&r);
  ackrpc_metadata twice[] = {{ACKRPC_PRINCIPAL_KEY, ALICE, strlen(ALICE)},
                             {ACKRPC_PRINCIPAL_KEY, "nats:CLI/bob", 12}};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  r = (ackrpc_result){0};
  cr_assert_eq(ackrpc_client_call(
                   c, &fx_echo_method, &req.base,
                   &(ackrpc_call_options){.metadata = twice, .metadata_count = 2}, &r),
               ACKRPC_INVALID_ARGUMENT);
  ackrpc_result_clear(&r);

  fx_server_stop(s);
  cr_assert(strstr(debug_log, "method=" FX_ECHO " status=OK") &&
                strstr(debug_log, "bridged=1 principal=\"" ALICE "\""),
            "the DEBUG line names the principal:\n%s", debug_log);
}

FX_TEST(principal, a_uid_policy_does_not_admit_a_bridged_call) {
  /* The bridge runs as this uid, which same_uid and uids name: still no. */
  uid_t me = getuid();
  ackrpc_policy by_uid = {.same_uid = 1, .uids = &me, .n_uids = 1};
  fx_server *s = start(me, &by_uid, 0);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result r;
  cr_assert_eq(call_as(c, FX_ECHO, NULL, NULL, &r), ACKRPC_PERMISSION_DENIED,
               "the bridge's own uid admitted an anonymous bridged call");
  ackrpc_result_clear(&r);
  cr_assert_eq(call_as(c, FX_ECHO, ALICE, NULL, &r), ACKRPC_PERMISSION_DENIED,
               "the bridge's own uid admitted alice");
  ackrpc_result_clear(&r);
  cr_assert_eq(__atomic_load_n(&handled, __ATOMIC_SEQ_CST), 0);
  fx_server_stop(s);

  /* The same policy, the same process, not a bridge: a local call passes
   * by its uid, and a principal policy admits no local call. */
  s = start(me + 1, &by_uid, 0);
  c = fx_client(fx_sock(), 5000);
  cr_assert_eq(call_as(c, FX_ECHO, NULL, NULL, &r), ACKRPC_OK);
  cr_assert_str_eq(reply_of(&r)->method, "local");
  cr_assert_str_eq(reply_of(&r)->text, "-");
  ackrpc_result_clear(&r);
  fx_server_stop(s);
  const char *const names[] = {ALICE};
  s = start(me + 1, &(ackrpc_policy){.principals = names, .n_principals = 1}, 0);
  c = fx_client(fx_sock(), 5000);
  cr_assert_eq(call_as(c, FX_ECHO, NULL, NULL, &r), ACKRPC_PERMISSION_DENIED);
  ackrpc_result_clear(&r);
  fx_server_stop(s);
}

FX_TEST(principal, the_key_from_a_peer_that_is_no_bridge_is_refused) {
  /* Bridges are another uid's peers: this process is a local peer. */
  fx_server *s = start(getuid() + 1, NULL, 0);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result r;
  cr_assert_eq(call_as(c, OPEN, ALICE, NULL, &r), ACKRPC_PERMISSION_DENIED,
               "a local peer claimed a principal");
  cr_assert(r.message && strstr(r.message, "trusted bridge"), "%s",
            r.message ? r.message : "");
  ackrpc_result_clear(&r);
  cr_assert_eq(__atomic_load_n(&handled, __ATOMIC_SEQ_CST), 0, "the handler ran");
  /* The same call without the key is a local one. */
  cr_assert_eq(call_as(c, OPEN, NULL, NULL, &r), ACKRPC_OK);
  cr_assert_str_eq(reply_of(&r)->method, "local");
  ackrpc_result_clear(&r);
  fx_server_stop(s);
  /* No bridges option at all: the same. */
  s = fx_server_start_bare(&(ackrpc_server_options){.address = fx_sock()}, who_methods,
                           NULL);
  c = fx_client(fx_sock(), 5000);
  cr_assert_eq(call_as(c, OPEN, ALICE, NULL, &r), ACKRPC_PERMISSION_DENIED);
  ackrpc_result_clear(&r);
  fx_server_stop(s);
}

FX_TEST(principal, the_principal_is_in_the_digest) {
  /* Reply cache on: the same call id and body from another principal
   * behind the same bridge is another request, never answered with the
   * first one's reply. */
  fx_server *s = start(getuid(), NULL, 1);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result r;
  cr_assert_eq(call_as(c, OPEN, ALICE, "id-1", &r), ACKRPC_OK);
  ackrpc_result_clear(&r);
  cr_assert_eq(call_as(c, OPEN, ALICE, "id-1", &r), ACKRPC_OK, "alice's retry");
  cr_assert_str_eq(reply_of(&r)->text, ALICE);
  ackrpc_result_clear(&r);
  cr_assert_eq(__atomic_load_n(&handled, __ATOMIC_SEQ_CST), 1, "the retry was cached");
  cr_assert_eq(call_as(c, OPEN, "nats:CLI/bob", "id-1", &r), ACKRPC_INVALID_ARGUMENT,
               "bob got alice's answer");
  ackrpc_result_clear(&r);
  cr_assert_eq(call_as(c, OPEN, NULL, "id-1", &r), ACKRPC_INVALID_ARGUMENT,
               "an anonymous caller got alice's answer");
  ackrpc_result_clear(&r);
  fx_server_stop(s);
}

FX_TEST(principal, policies_with_principals_are_checked) {
  const char *const names[] = {ALICE};
  ackrpc_policy with = {.principals = names, .n_principals = 1};
  ackrpc_server *srv = NULL;
  /* Connection policies cannot name principals. */
  cr_assert_eq(
      ackrpc_server_new(&(ackrpc_server_options){.address = fx_sock(), .policy = &with},
                        &srv),
      ACKRPC_E_INVAL);
  cr_assert_null(srv);
  cr_assert_eq(
      ackrpc_server_new(
          &(ackrpc_server_options){.address = fx_sock(), .bridges = &with}, &srv),
      ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_server_new(&(ackrpc_server_options){.address = fx_sock()}, &srv),
               ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(srv, &fx_echo_method, who, NULL), ACKRPC_OK);
  const char *const bad[] = {"nats:CLI/\x01"};
  cr_assert_eq(
      ackrpc_server_set_method_policy(
          srv, FX_ECHO, &(ackrpc_policy){.principals = bad, .n_principals = 1}),
      ACKRPC_E_INVAL);
  cr_assert_eq(
      ackrpc_server_set_method_policy(
          srv, FX_ECHO, &(ackrpc_policy){.principals = NULL, .n_principals = 1}),
      ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_server_set_method_policy(srv, FX_ECHO, &with), ACKRPC_OK);
  ackrpc_server_free(srv);
}
