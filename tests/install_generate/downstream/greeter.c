/* greeter: a downstream program built against an installed ackrpc with
 * ackrpc_generate(). It serves downstream.hello.Greeter on an abstract
 * socket from a thread, then calls it through the generated stubs
 * (blocking Hello, blocking Ping under a same_uid policy, async Hello on its
 * own event_base) and checks every reply. Exit 0 if all is as expected. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include <ackrpc/ackrpc.h>

#include "hello/greeter.ackrpc.h"

static int failures;

static void check(int ok, const char *what) {
  if (!ok) {
    printf("greeter: FAIL: %s\n", what);
    failures++;
  }
}

static void on_hello(ackrpc_call *call, const Downstream__Hello__HelloRequest *req,
                     void *user) {
  (void)user;
  char text[128];
  snprintf(text, sizeof text, "hello, %s", req->name);
  Downstream__Hello__HelloReply reply = DOWNSTREAM__HELLO__HELLO_REPLY__INIT;
  reply.greeting = text;
  reply.peer_uid = (uint32_t)ackrpc_call_peer(call)->uid;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

static void on_ping(ackrpc_call *call, const Google__Protobuf__Empty *req, void *user) {
  (void)req;
  (void)user;
  Google__Protobuf__Empty reply = GOOGLE__PROTOBUF__EMPTY__INIT;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

static void *serve(void *server) {
  ackrpc_status st = ackrpc_server_run(server);
  check(st == ACKRPC_OK, "ackrpc_server_run");
  return NULL;
}

static int async_done;

static void hello_done(ackrpc_status status, Downstream__Hello__HelloReply *reply,
                       ackrpc_result *result, void *user) {
  (void)result;
  (void)user;
  async_done++;
  check(status == ACKRPC_OK && reply && strcmp(reply->greeting, "hello, async") == 0,
        "async Hello reply");
}

int main(void) {
  char address[64];
  snprintf(address, sizeof address, "@ackrpc-install-generate-%ld", (long)getpid());

  ackrpc_server_options so = {.address = address};
  ackrpc_server *server = NULL;
  if (ackrpc_server_new(&so, &server) != ACKRPC_OK) {
    printf("greeter: FAIL: ackrpc_server_new(%s)\n", address);
    return 1;
  }
  downstream__hello__Greeter_handlers handlers = {.Hello = on_hello, .Ping = on_ping};
  if (downstream__hello__Greeter_register(server, &handlers, NULL) != ACKRPC_OK) {
    printf("greeter: FAIL: register\n");
    ackrpc_server_free(server);
    return 1;
  }
  pthread_t thread;
  if (pthread_create(&thread, NULL, serve, server) != 0) {
    printf("greeter: FAIL: pthread_create\n");
    ackrpc_server_free(server);
    return 1;
  }

  ackrpc_client_options co = {.address = address, .timeout_ms = 10000};
  ackrpc_client *client = NULL;
  check(ackrpc_client_new(&co, &client) == ACKRPC_OK, "ackrpc_client_new");
  if (client) {
    Downstream__Hello__HelloRequest req = DOWNSTREAM__HELLO__HELLO_REQUEST__INIT;
    req.name = "downstream";
    Downstream__Hello__HelloReply *reply = NULL;
    ackrpc_result result = {0};
    ackrpc_status st =
        downstream__hello__Greeter_Hello_call(client, &req, &reply, NULL, &result);
    check(st == ACKRPC_OK, "blocking Hello status");
    if (reply) {
      printf("greeter: Hello -> \"%s\" (peer uid %u)\n", reply->greeting,
             (unsigned)reply->peer_uid);
      check(strcmp(reply->greeting, "hello, downstream") == 0, "Hello greeting");
      check(reply->peer_uid == (uint32_t)geteuid(), "Hello peer uid");
      downstream__hello__hello_reply__free_unpacked(reply, NULL);
    } else {
      check(0, "blocking Hello reply");
    }
    ackrpc_result_clear(&result);

    Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
    st = downstream__hello__Greeter_Ping_call(client, &empty, NULL, NULL, NULL);
    check(st == ACKRPC_OK, "Ping (same_uid policy) status");

    struct event_base *base = event_base_new();
    check(base != NULL, "event_base_new");
    if (base) {
      req.name = "async";
      st = downstream__hello__Greeter_Hello_call_async(client, base, &req, NULL,
                                                       hello_done, NULL);
      check(st == ACKRPC_OK, "async Hello start");
      check(event_base_dispatch(base) >= 0, "event_base_dispatch");
      check(async_done == (st == ACKRPC_OK), "async Hello callback ran once");
      event_base_free(base);
    }
    ackrpc_client_free(client);
  }

  ackrpc_server_stop(server);
  pthread_join(thread, NULL);
  ackrpc_server_free(server);
  if (failures) return 1;
  printf("greeter: ok (service %s over %s)\n", downstream__hello__Greeter_service.name,
         address);
  return 0;
}
