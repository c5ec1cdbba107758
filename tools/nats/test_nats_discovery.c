/* test_nats_discovery.c: ackrpc-nats export answers NATS's service API
 * ($SRV.PING/INFO/STATS, docs/SCALE.md "Discovery") through a real
 * nats-server on loopback. The test is a plain NATS client (libnats): it
 * sends the raw requests and reads the JSON replies with jansson.
 *
 * Processes as in test_nats_bridge (nats_harness.h): nats-server, the
 * exports and an import, stopped by SIGTERM and reaped; the fixture's echo
 * server (service ackrpc.test.Test, NATS name "ackrpc-test-Test") in the
 * test process. Exit 77 (skipped) if nats-server is not installed. */
#include <jansson.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "fixture.h"
#include "nats_harness.h"

#ifndef ACKRPC_NATS_BIN
#error "ACKRPC_NATS_BIN: the path of the ackrpc-nats binary"
#endif

#define SVC_NAME "ackrpc-test-Test"

static char nats_url[128];
static natsConnection *nc;

static void suite_setup(void) {
  fx_setup();
}

static void suite_teardown(void) {
  natsConnection_Destroy(nc);
  nc = NULL;
  nh_kill_children();
  nats_Close();
  fx_teardown();
}

TestSuite(nats_discovery, .init = suite_setup, .fini = suite_teardown);

static int start_export(const char *log) {
  char *const argv[] = {
      ACKRPC_NATS_BIN, "export",         "--socket", (char *)fx_sock(),
      "--nats",        (char *)nats_url, NULL};
  int slot = nh_start_child(argv, fx_path(log));
  nh_wait_for_text(fx_path(log), "ready");
  return slot;
}

static int start_import(void) {
  char *const argv[] = {
      ACKRPC_NATS_BIN, "import",         "--listen", (char *)fx_path("import.sock"),
      "--nats",        (char *)nats_url, NULL};
  int slot = nh_start_child(argv, fx_path("import.log"));
  nh_wait_for_text(fx_path("import.log"), "ready");
  return slot;
}

static void connect_nats(void) {
  cr_assert_eq(natsConnection_ConnectTo(&nc, nats_url), NATS_OK);
}

/* Sends a request to `subject` and collects up to `max` replies (JSON,
 * parsed) into out[], waiting until `max` came or 1 s passed since the
 * last one. Returns the count. */
static int collect(const char *subject, json_t **out, int max) {
  char inbox[128];
  natsInbox *ib = NULL;
  cr_assert_eq(natsInbox_Create(&ib), NATS_OK);
  snprintf(inbox, sizeof inbox, "%s", (const char *)ib);
  natsInbox_Destroy(ib);
  natsSubscription *sub = NULL;
  cr_assert_eq(natsConnection_SubscribeSync(&sub, nc, inbox), NATS_OK);
  cr_assert_eq(natsConnection_PublishRequest(nc, subject, inbox, NULL, 0), NATS_OK);
  int n = 0;
  natsMsg *m = NULL;
  while (n < max && natsSubscription_NextMsg(&m, sub, 1000) == NATS_OK) {
    json_error_t err;
    out[n] = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &err);
    cr_assert_not_null(out[n], "%s: not JSON (%s): %.*s", subject, err.text,
                       natsMsg_GetDataLength(m), natsMsg_GetData(m));
    n++;
    natsMsg_Destroy(m);
  }
  natsSubscription_Destroy(sub);
  return n;
}

/* The one reply to `subject`. */
static json_t *request(const char *subject) {
  natsMsg *m = NULL;
  natsStatus s = natsConnection_RequestString(&m, nc, subject, "", 2000);
  cr_assert_eq(s, NATS_OK, "%s: %s", subject, natsStatus_GetText(s));
  json_error_t err;
  json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &err);
  cr_assert_not_null(j, "%s: not JSON: %s", subject, err.text);
  natsMsg_Destroy(m);
  return j;
}

static const char *str(const json_t *j, const char *key) {
  const char *v = json_string_value(json_object_get(j, key));
  cr_assert_not_null(v, "no string '%s' in %s", key, json_dumps(j, JSON_COMPACT));
  return v;
}

static json_int_t num(const json_t *j, const char *key) {
  const json_t *v = json_object_get(j, key);
  cr_assert(json_is_integer(v), "no integer '%s'", key);
  return json_integer_value(v);
}

/* The fields every reply has, checked; returns the id. */
static const char *check_head(const json_t *j, const char *type) {
  cr_assert_str_eq(str(j, "type"), type);
  cr_assert_str_eq(str(j, "name"), SVC_NAME);
  cr_assert_str_eq(str(j, "version"), ACKRPC_VERSION_STRING);
  cr_assert_str_eq(str(json_object_get(j, "metadata"), "ackrpc.service"),
                   "ackrpc.test.Test");
  const char *id = str(j, "id");
  cr_assert_eq(strlen(id), 32, "id %s", id);
  return id;
}

/* The endpoint called `name` in a reply's endpoints. */
static const json_t *endpoint(const json_t *j, const char *name) {
  const json_t *eps = json_object_get(j, "endpoints");
  cr_assert(json_is_array(eps));
  for (size_t i = 0; i < json_array_size(eps); i++) {
    const json_t *e = json_array_get(eps, i);
    if (strcmp(str(e, "name"), name) == 0) return e;
  }
  cr_assert_fail("no endpoint %s", name);
  return NULL;
}

static void echo(ackrpc_client *c, uint32_t status, const char *message) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "hop";
  req.reply_status = status;
  req.reply_message = (char *)message;
  ackrpc_result r = {0};
  ackrpc_call_options o = {.timeout_ms = 3000};
  ackrpc_status st = ackrpc_client_call(c, &fx_echo_method, &req.base, &o, &r);
  cr_assert_eq(st, (ackrpc_status)status, "%s: %s", ackrpc_status_name(st),
               r.message ? r.message : "");
  ackrpc_result_clear(&r);
}

Test(nats_discovery, ping_info_and_stats_of_an_export) {
  nh_start_nats("nats", NULL, NULL, nats_url, sizeof nats_url);
  fx_server *srv = fx_server_start(&(ackrpc_server_options){.address = fx_sock()});
  int exp = start_export("export.log");
  start_import();
  connect_nats();

  /* PING to all: this export answers once per service it exports (the
   * fixture's two), with one id. */
  json_t *replies[8] = {0};
  cr_assert_eq(collect("$SRV.PING", replies, 8), 2);
  const char *a = str(replies[0], "name"), *b = str(replies[1], "name");
  cr_assert(strcmp(a, "ackrpc-test-Fixture") == 0 ||
                strcmp(b, "ackrpc-test-Fixture") == 0,
            "%s %s", a, b);
  json_t *ping = strcmp(a, SVC_NAME) == 0 ? replies[0] : replies[1];
  char id[64];
  snprintf(id, sizeof id, "%s", check_head(ping, "io.nats.micro.v1.ping_response"));
  cr_assert_str_eq(str(replies[0], "id"), str(replies[1], "id"));
  json_decref(replies[0]);
  json_decref(replies[1]);

  /* INFO by name: the methods are the endpoints, subject and queue group
   * as the export subscribed them. */
  json_t *info = request("$SRV.INFO." SVC_NAME);
  cr_assert_str_eq(check_head(info, "io.nats.micro.v1.info_response"), id);
  cr_assert(strstr(str(info, "description"), "ackrpc.test.Test"));
  const json_t *e = endpoint(info, "Echo");
  cr_assert_str_eq(str(e, "subject"), "ackrpc.ackrpc.test.Test.Echo");
  cr_assert_str_eq(str(e, "queue_group"), "ackrpc");
  cr_assert_str_eq(str(endpoint(info, "Strict"), "subject"),
                   "ackrpc.ackrpc.test.Test.Strict");
  json_decref(info);

  /* Three calls through the hop, one of them answered with an error. */
  ackrpc_client *c = fx_client(fx_path("import.sock"), 5000);
  echo(c, ACKRPC_OK, NULL);
  echo(c, ACKRPC_FAILED_PRECONDITION, "not now");
  echo(c, ACKRPC_OK, NULL);

  char subject[256];
  snprintf(subject, sizeof subject, "$SRV.STATS." SVC_NAME ".%s", id);
  json_t *stats = request(subject);
  cr_assert_str_eq(check_head(stats, "io.nats.micro.v1.stats_response"), id);
  e = endpoint(stats, "Echo");
  cr_assert_eq(num(e, "num_requests"), 3);
  cr_assert_eq(num(e, "num_errors"), 1);
  cr_assert(strstr(str(e, "last_error"), "FAILED_PRECONDITION"), "%s",
            str(e, "last_error"));
  cr_assert(strstr(str(e, "last_error"), "not now"));
  json_int_t pt = num(e, "processing_time");
  cr_assert_gt(pt, 0);
  cr_assert_eq(num(e, "average_processing_time"), pt / 3);
  cr_assert_str_eq(str(e, "queue_group"), "ackrpc");
  cr_assert_str_eq(str(json_object_get(e, "data"), "health"), "SERVING");
  cr_assert_eq(num(endpoint(stats, "Strict"), "num_requests"), 0);
  /* started: RFC 3339 in UTC. */
  const char *started = str(stats, "started");
  cr_assert_eq(strlen(started), strlen("2026-01-01T00:00:00.000000Z"), "%s", started);
  cr_assert_eq(started[10], 'T');
  cr_assert_eq(started[strlen(started) - 1], 'Z');
  json_decref(stats);

  /* Another id, or another service's name, gets no answer (the
   * subscription is $SRV.INFO.>, so no "no responders" either). */
  natsMsg *m = NULL;
  cr_assert_eq(
      natsConnection_RequestString(&m, nc, "$SRV.INFO." SVC_NAME ".nope", "", 300),
      NATS_TIMEOUT);
  cr_assert_eq(natsConnection_RequestString(&m, nc, "$SRV.PING.other-Service", "", 300),
               NATS_TIMEOUT);

  /* The local server gone: the bridge still answers, health says so, and
   * a call through the hop counts as an error. */
  fx_server_stop(srv);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_result r = {0};
  ackrpc_call_options o = {.timeout_ms = 3000};
  cr_assert_eq(ackrpc_client_call(c, &fx_echo_method, &req.base, &o, &r),
               ACKRPC_UNAVAILABLE);
  ackrpc_result_clear(&r);
  stats = request("$SRV.STATS." SVC_NAME);
  e = endpoint(stats, "Echo");
  cr_assert_str_eq(str(json_object_get(e, "data"), "health"), "UNREACHABLE");
  cr_assert_eq(num(e, "num_requests"), 4);
  cr_assert_eq(num(e, "num_errors"), 2);
  cr_assert(strstr(str(e, "last_error"), "not delivered"), "%s", str(e, "last_error"));
  json_decref(stats);

  int st = nh_stop_child(exp);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "export: status %d", st);
}

/* A call straight from NATS (no import), the request's bytes as the body;
 * returns the answer. */
static natsMsg *call_over_nats(uint32_t status, const char *message) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "micro";
  req.reply_status = status;
  req.reply_message = (char *)message;
  uint8_t buf[256];
  size_t len = protobuf_c_message_pack(&req.base, buf);
  natsMsg *reply = NULL;
  natsStatus s = natsConnection_Request(&reply, nc, "ackrpc.ackrpc.test.Test.Echo", buf,
                                        (int)len, 3000);
  cr_assert_eq(s, NATS_OK, "%s", natsStatus_GetText(s));
  return reply;
}

static const char *header(natsMsg *m, const char *key) {
  const char *v = NULL;
  return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : NULL;
}

/* NATS's own service clients know no Ackrpc-Status: an error answer also
 * carries the micro protocol's error headers, an OK one does not. */
Test(nats_discovery, an_error_answer_carries_the_service_error_headers) {
  nh_start_nats("nats", NULL, NULL, nats_url, sizeof nats_url);
  fx_server_start(&(ackrpc_server_options){.address = fx_sock()});
  start_export("export.log");
  connect_nats();

  natsMsg *m = call_over_nats(ACKRPC_FAILED_PRECONDITION, "not now");
  cr_assert_str_eq(header(m, "Ackrpc-Status"), "9");
  const char *code = header(m, "Nats-Service-Error-Code");
  const char *err = header(m, "Nats-Service-Error");
  cr_assert_not_null(code);
  cr_assert_not_null(err);
  cr_assert_str_eq(code, "9");
  cr_assert_str_eq(err, "FAILED_PRECONDITION: not now");
  natsMsg_Destroy(m);

  m = call_over_nats(ACKRPC_OK, NULL);
  cr_assert_str_eq(header(m, "Ackrpc-Status"), "0");
  cr_assert_null(header(m, "Nats-Service-Error"));
  cr_assert_null(header(m, "Nats-Service-Error-Code"));
  natsMsg_Destroy(m);
}

Test(nats_discovery, two_exports_answer_with_two_ids) {
  nh_start_nats("nats", NULL, NULL, nats_url, sizeof nats_url);
  fx_server *srv = fx_server_start(&(ackrpc_server_options){.address = fx_sock()});
  start_export("a.log");
  start_export("b.log");
  connect_nats();

  json_t *replies[8] = {0};
  cr_assert_eq(collect("$SRV.PING." SVC_NAME, replies, 8), 2);
  char ids[2][64];
  for (int i = 0; i < 2; i++) {
    snprintf(ids[i], sizeof ids[i], "%s",
             check_head(replies[i], "io.nats.micro.v1.ping_response"));
    json_decref(replies[i]);
  }
  cr_assert_str_neq(ids[0], ids[1]);

  /* INFO to all: two instances of two services; and each instance by its
   * id. */
  cr_assert_eq(collect("$SRV.INFO", replies, 8), 4);
  for (int i = 0; i < 4; i++)
    json_decref(replies[i]);
  for (int i = 0; i < 2; i++) {
    char subject[256];
    snprintf(subject, sizeof subject, "$SRV.PING." SVC_NAME ".%s", ids[i]);
    cr_assert_eq(collect(subject, replies, 4), 1);
    cr_assert_str_eq(str(replies[0], "id"), ids[i]);
    json_decref(replies[0]);
  }
  fx_server_stop(srv);
}

int main(int argc, char *argv[]) {
  return nh_main(argc, argv);
}
