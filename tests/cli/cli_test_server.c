/* cli_test_server.c: the server the ackrpc tool's tests call (run_cli_tests.py):
 * ackrpc.clitest.Test (Echo, Fail, Inspect, Crash) and
 * ackrpc.clitest2.Legacy2 (Echo), registered with their generated register
 * functions (so reflection has their descriptors), and
 * ackrpc.clitest.Plain/Echo registered by hand with ackrpc_server_add_method()
 * (listed by reflection, without descriptors), on the address given, until
 * SIGTERM. --no-builtins turns the built-in services off.
 *
 *   cli_test_server SOCKET [--no-builtins] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ackrpc/ackrpc.h>

#include "clitest.ackrpc.h"
#include "clitest2.ackrpc.h"
#include "clitest_vault.ackrpc.h"

static ackrpc_server *server;
static int changed; /* --changed: Echo adds 1 to f_int32 (replay's tests) */
static int vault;   /* --vault: serve ackrpc.clitest.vault.Vault too */

static void on_signal(int sig) {
  (void)sig;
  ackrpc_server_stop(server);
}

static void echo(ackrpc_call *call, const Ackrpc__Clitest__AllTypes *req, void *user) {
  (void)user;
  if (changed) {
    Ackrpc__Clitest__AllTypes copy = *req;
    copy.f_int32++;
    ackrpc_call_reply(call, ACKRPC_OK, NULL, &copy.base);
    return;
  }
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &req->base);
}

/* Vault/Open: the door back, and a token made from the password. */
static void vault_open(ackrpc_call *call,
                       const Ackrpc__Clitest__Vault__OpenRequest *req, void *user) {
  (void)user;
  char token[256];
  snprintf(token, sizeof token, "token-of-%s",
           req->creds && req->creds->password ? req->creds->password : "");
  Ackrpc__Clitest__Vault__OpenReply reply = ACKRPC__CLITEST__VAULT__OPEN_REPLY__INIT;
  reply.door = req->door;
  reply.token.data = (uint8_t *)token;
  reply.token.len = strlen(token);
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

static void echo2(ackrpc_call *call, const Ackrpc__Clitest2__Legacy *req, void *user) {
  (void)user;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &req->base);
}

static void fail(ackrpc_call *call, const Ackrpc__Clitest__FailRequest *req,
                 void *user) {
  (void)user;
  ackrpc_call_reply(call, (ackrpc_status)req->code,
                    req->message[0] ? req->message : NULL, NULL);
}

static void inspect(ackrpc_call *call, const Google__Protobuf__Empty *req, void *user) {
  (void)req;
  (void)user;
  Ackrpc__Clitest__CallInfo info = ACKRPC__CLITEST__CALL_INFO__INIT;
  size_t id_len, n = ackrpc_call_metadata_count(call);
  const uint8_t *id = ackrpc_call_id(call, &id_len);
  char hex[2 * ACKRPC_MAX_CALL_ID + 1] = "";
  for (size_t i = 0; i < id_len && i < ACKRPC_MAX_CALL_ID; i++)
    snprintf(hex + 2 * i, 3, "%02x", id[i]);
  info.method = (char *)ackrpc_call_method(call);
  info.call_id_hex = hex;
  Ackrpc__Clitest__CallInfo__MetadataEntry entries[ACKRPC_MAX_METADATA];
  Ackrpc__Clitest__CallInfo__MetadataEntry *ptrs[ACKRPC_MAX_METADATA];
  char *values[ACKRPC_MAX_METADATA] = {0};
  for (size_t i = 0; i < n && i < ACKRPC_MAX_METADATA; i++) {
    const char *key;
    const uint8_t *value;
    size_t value_len;
    ackrpc_call_metadata_at(call, i, &key, &value, &value_len);
    ackrpc__clitest__call_info__metadata_entry__init(&entries[i]);
    values[i] = calloc(1, value_len + 1);
    if (values[i] && value_len) memcpy(values[i], value, value_len);
    entries[i].key = (char *)key;
    entries[i].value = values[i] ? values[i] : "";
    ptrs[i] = &entries[i];
  }
  info.n_metadata = n;
  info.metadata = ptrs;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &info.base);
  for (size_t i = 0; i < n && i < ACKRPC_MAX_METADATA; i++)
    free(values[i]);
}

static void crash(ackrpc_call *call, const Google__Protobuf__Empty *req, void *user) {
  (void)call;
  (void)req;
  (void)user;
  _exit(3);
}

static void plain_echo(ackrpc_call *call, const ProtobufCMessage *req, void *user) {
  (void)user;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, req);
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3 ||
      (argc == 3 && strcmp(argv[2], "--no-builtins") != 0 &&
       strcmp(argv[2], "--changed") != 0 && strcmp(argv[2], "--vault") != 0)) {
    fprintf(stderr,
            "usage: cli_test_server SOCKET [--no-builtins | --changed | --vault]\n");
    return 2;
  }
  changed = argc == 3 && strcmp(argv[2], "--changed") == 0;
  vault = argc == 3 && strcmp(argv[2], "--vault") == 0;
  /* Plain/Echo answers with the request as it came, fields the server does
   * not know included (the CLI's tests send such fields and read them
   * back): keep them. */
  ackrpc_server_options o = {.address = argv[1],
                             .disable_builtins = argc == 3 && !changed && !vault,
                             .keep_unknown_fields = 1};
  if (ackrpc_server_new(&o, &server) != ACKRPC_OK) {
    fprintf(stderr, "cli_test_server: cannot serve %s\n", argv[1]);
    return 1;
  }
  ackrpc__clitest__Test_handlers h = {
      .Echo = echo, .Fail = fail, .Inspect = inspect, .Crash = crash};
  ackrpc__clitest2__Legacy2_handlers h2 = {.Echo = echo2};
  const ackrpc_method plain = {"ackrpc.clitest.Plain/Echo",
                               &ackrpc__clitest__all_types__descriptor,
                               &ackrpc__clitest__all_types__descriptor};
  if (ackrpc__clitest__Test_register(server, &h, NULL) != ACKRPC_OK ||
      ackrpc__clitest2__Legacy2_register(server, &h2, NULL) != ACKRPC_OK ||
      ackrpc_server_add_method(server, &plain, plain_echo, NULL) != ACKRPC_OK ||
      (vault &&
       ackrpc__clitest__vault__Vault_register(
           server, &(ackrpc__clitest__vault__Vault_handlers){.Open = vault_open},
           NULL) != ACKRPC_OK)) {
    fprintf(stderr, "cli_test_server: cannot register the services\n");
    ackrpc_server_free(server);
    return 1;
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  ackrpc_status st = ackrpc_server_run(server);
  ackrpc_server_free(server);
  return st == ACKRPC_OK ? 0 : 1;
}
