/* test_gen_e2e.c: the code protoc-gen-ackrpc generates, used as a user would:
 * typed blocking and async stubs, handler tables registered on a real server
 * (a NULL handler answers UNIMPLEMENTED), caller policies from the .proto
 * (PERMISSION_DENIED before the handler runs), the reflection tables and
 * the descriptors they serve (also to the ackrpc tool, when it is built).
 * The fixtures are tests/gen/fixtures; ackrpc_generate() builds them. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "fixture.h"
#include "google/protobuf/descriptor.pb-c.h"

#include "acme/inventory/v1/inventory.ackrpc.h"
#include "demo/store.ackrpc.h"
#include "nopkg.ackrpc.h"
#include "policy/guarded.ackrpc.h"
#include "reexport/user.ackrpc.h"

FX_SUITE(gen);

/* --- A server in a thread with the generated services registered --- */

typedef struct served {
  ackrpc_server *server;
  pthread_t thread;
} served;

static int store_user; /* its address is the user pointer */

static void *serve(void *arg) {
  ackrpc_server_run(arg);
  return NULL;
}

/* Put: version = value length, + 1000 per byte of metadata "tag", + 1000000
 * if the call id is "id-1". Get is left NULL. */
static void store_put(ackrpc_call *call, const Demo__PutRequest *request, void *user) {
  Demo__PutAck ack = DEMO__PUT_ACK__INIT;
  size_t tag_len = 0, id_len = 0;
  const uint8_t *id = ackrpc_call_id(call, &id_len);
  ack.version = request->value.len;
  if (ackrpc_call_metadata(call, "tag", &tag_len)) ack.version += 1000 * tag_len;
  if (id_len == 4 && memcmp(id, "id-1", 4) == 0) ack.version += 1000000;
  if (user != &store_user) ack.version = 0xbad;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &ack.base);
}

static void note_echo(ackrpc_call *call, const Policy__Note *request, void *user) {
  Policy__Note reply = POLICY__NOTE__INIT;
  (void)user;
  reply.text = (char *)request->text;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);
}

static void serve_start(served *s) {
  ackrpc_server_options o = {.address = fx_sock(), .log = ackrpc_log_discard};
  demo__Store_handlers store = {.Put = store_put};
  policy__Guarded_handlers guarded = {
      .Mine = note_echo, .Others = note_echo, .Open = note_echo};
  acme__inventory__v1__Inventory_handlers inventory;
  memset(&inventory, 0, sizeof inventory);
  cr_assert_eq(ackrpc_server_new(&o, &s->server), ACKRPC_OK);
  cr_assert_eq(demo__Store_register(s->server, &store, &store_user), ACKRPC_OK);
  cr_assert_eq(policy__Guarded_register(s->server, &guarded, NULL), ACKRPC_OK);
  cr_assert_eq(acme__inventory__v1__Inventory_register(s->server, &inventory, NULL),
               ACKRPC_OK);
  cr_assert_eq(pthread_create(&s->thread, NULL, serve, s->server), 0);
}

static void serve_stop(served *s) {
  ackrpc_server_stop(s->server);
  pthread_join(s->thread, NULL);
  s->server = ackrpc_server_free(s->server);
}

/* --- Blocking stubs --- */

FX_TEST(gen, blocking_call_with_options) {
  served s;
  serve_start(&s);
  ackrpc_client *client = fx_client(fx_sock(), 5000);
  Demo__PutRequest req = DEMO__PUT_REQUEST__INIT;
  req.key = "k";
  req.value.data = (uint8_t *)"hello";
  req.value.len = 5;
  ackrpc_metadata md[] = {{.key = "tag", .value = "abc", .value_len = 3}};
  ackrpc_call_options opts = {.timeout_ms = 5000,
                              .call_id = (const uint8_t *)"id-1",
                              .call_id_len = 4,
                              .metadata = md,
                              .metadata_count = 1};
  Demo__PutAck *ack = NULL;
  ackrpc_result result = {0};
  cr_assert_eq(demo__Store_Put_call(client, &req, &ack, &opts, &result), ACKRPC_OK);
  cr_assert_eq(result.status, ACKRPC_OK);
  cr_assert_not_null(ack);
  cr_assert_eq(ack->version, 1000000 + 3000 + 5);
  cr_assert_null(result.reply, "the reply moved to *ret_reply");
  cr_assert_eq(result.call_id_len, 4);
  demo__put_ack__free_unpacked(ack, NULL);
  ackrpc_result_clear(&result);

  /* No outputs at all. */
  cr_assert_eq(demo__Store_Put_call(client, &req, NULL, NULL, NULL), ACKRPC_OK);
  serve_stop(&s);
}

FX_TEST(gen, null_handler_answers_unimplemented) {
  served s;
  serve_start(&s);
  ackrpc_client *client = fx_client(fx_sock(), 5000);
  Demo__GetRequest req = DEMO__GET_REQUEST__INIT;
  Demo__GetReply *sentinel = (Demo__GetReply *)&req, *reply = sentinel;
  ackrpc_result result = {0};
  cr_assert_eq(demo__Store_Get_call(client, &req, &reply, NULL, &result),
               ACKRPC_UNIMPLEMENTED);
  cr_assert_eq(reply, sentinel, "*ret_reply is untouched when the call fails");
  cr_assert_not_null(result.message);
  cr_assert(strstr(result.message, "demo.Store/Get"), "message: %s", result.message);
  ackrpc_result_clear(&result);
  serve_stop(&s);
}

FX_TEST(gen, methods_differing_in_case_are_distinct) {
  served s;
  serve_start(&s);
  ackrpc_client *client = fx_client(fx_sock(), 5000);
  Acme__Inventory__V1__ItemRequest req = ACME__INVENTORY__V1__ITEM_REQUEST__INIT;
  const char *want[] = {"acme.inventory.v1.Inventory/GetItem",
                        "acme.inventory.v1.Inventory/get_item",
                        "acme.inventory.v1.Inventory/GETItem"};
  ackrpc_result r[3] = {{0}};
  cr_assert_eq(
      acme__inventory__v1__Inventory_GetItem_call(client, &req, NULL, NULL, &r[0]),
      ACKRPC_UNIMPLEMENTED);
  cr_assert_eq(
      acme__inventory__v1__Inventory_get_item_call(client, &req, NULL, NULL, &r[1]),
      ACKRPC_UNIMPLEMENTED);
  cr_assert_eq(
      acme__inventory__v1__Inventory_GETItem_call(client, &req, NULL, NULL, &r[2]),
      ACKRPC_UNIMPLEMENTED);
  for (int i = 0; i < 3; i++) {
    cr_assert(strstr(r[i].message, want[i]), "%s", r[i].message);
    ackrpc_result_clear(&r[i]);
  }
  serve_stop(&s);
}

/* --- Caller policies from ackrpc/options.proto --- */

FX_TEST(gen, policies_from_the_proto) {
  served s;
  serve_start(&s);
  ackrpc_client *client = fx_client(fx_sock(), 5000);
  Policy__Note note = POLICY__NOTE__INIT;
  Policy__Note *reply = NULL;
  note.text = "hi";

  /* Service policy same_uid: we are the server's uid. */
  cr_assert_eq(policy__Guarded_Mine_call(client, &note, &reply, NULL, NULL), ACKRPC_OK);
  cr_assert_str_eq(reply->text, "hi");
  policy__note__free_unpacked(reply, NULL);
  /* Method policy uids [4000000000] replaces the service's: refused before
   * the handler. */
  ackrpc_result result = {0};
  cr_assert_eq(policy__Guarded_Others_call(client, &note, NULL, NULL, &result),
               ACKRPC_PERMISSION_DENIED);
  ackrpc_result_clear(&result);
  /* An empty method policy admits anyone. */
  cr_assert_eq(policy__Guarded_Open_call(client, &note, NULL, NULL, NULL), ACKRPC_OK);
  /* Admitted by the service's policy, then no handler. */
  cr_assert_eq(policy__Guarded_Unset_call(client, &note, NULL, NULL, NULL),
               ACKRPC_UNIMPLEMENTED);
  serve_stop(&s);
}

FX_TEST(gen, register_errors) {
  ackrpc_server *server = NULL;
  ackrpc_server_options o = {.address = fx_sock(), .log = ackrpc_log_discard};
  demo__Store_handlers store = {.Put = store_put};
  policy__Groups_handlers groups;
  memset(&groups, 0, sizeof groups);
  cr_assert_eq(ackrpc_server_new(&o, &server), ACKRPC_OK);
  cr_assert_eq(demo__Store_register(server, NULL, NULL), ACKRPC_E_INVAL);
  cr_assert_eq(demo__Store_register(NULL, &store, NULL), ACKRPC_E_INVAL);
  cr_assert_eq(demo__Store_register(server, &store, NULL), ACKRPC_OK);
  cr_assert_eq(demo__Store_register(server, &store, NULL), ACKRPC_E_EXISTS);
  /* policy.Groups/Admins names the group `odd "name"?`, which no system has. */
  cr_assert_eq(policy__Groups_register(server, &groups, NULL), ACKRPC_E_NOT_FOUND);
  server = ackrpc_server_free(server); /* frees the bindings, even of failures */
}

/* --- Async stubs --- */

typedef struct async_seen {
  int calls;
  ackrpc_status status;
  Demo__PutAck *ack;
  void *user;
} async_seen;

static void put_done(ackrpc_status status, Demo__PutAck *reply, ackrpc_result *result,
                     void *user) {
  async_seen *seen = user;
  seen->calls++;
  seen->status = status;
  seen->user = user;
  if (reply) {
    cr_assert_eq((void *)reply, (void *)result->reply);
    seen->ack = reply;
    result->reply = NULL; /* take it */
  }
}

FX_TEST(gen, async_call) {
  served s;
  serve_start(&s);
  ackrpc_client *client = fx_client(fx_sock(), 5000);
  struct event_base *base = event_base_new();
  Demo__PutRequest req = DEMO__PUT_REQUEST__INIT;
  req.value.data = (uint8_t *)"abcdefg";
  req.value.len = 7;
  async_seen seen = {0};
  cr_assert_eq(demo__Store_Put_call_async(client, base, &req, NULL, put_done, &seen),
               ACKRPC_OK);
  cr_assert_eq(seen.calls, 0, "never from inside the call");
  cr_assert_neq(event_base_dispatch(base), -1); /* runs until nothing is left */
  cr_assert_eq(seen.calls, 1);
  cr_assert_eq(seen.status, ACKRPC_OK);
  cr_assert_eq(seen.user, &seen);
  cr_assert_not_null(seen.ack);
  cr_assert_eq(seen.ack->version, 7);
  demo__put_ack__free_unpacked(seen.ack, NULL);

  /* A refused call: status and no reply. */
  async_seen denied = {0};
  cr_assert_eq(demo__Store_Put_call_async(client, base, &req, NULL, NULL, NULL),
               ACKRPC_E_INVAL, "a NULL callback is refused");
  cr_assert_eq(demo__Store_Put_call_async(NULL, base, &req, NULL, put_done, &denied),
               ACKRPC_E_INVAL, "the runtime's errors come through; done never runs");
  cr_assert_eq(event_base_dispatch(base), 1, "nothing was left pending");
  cr_assert_eq(denied.calls, 0);
  event_base_free(base);
  serve_stop(&s);
}

/* --- Tables for reflection --- */

/* P__S_M_method names an entry of P__S_methods (a macro): it still works
 * wherever the object it used to be did, constant initializers included. */
static const ackrpc_method *const put_method = &demo__Store_Put_method;

FX_TEST(gen, reflection_tables) {
  cr_assert_str_eq(demo__Store_service.name, "demo.Store");
  cr_assert_eq(demo__Store_service.n_methods, 2);
  cr_assert_eq(demo__Store_service.methods, demo__Store_methods);
  cr_assert_str_eq(demo__Store_methods[0].name, "demo.Store/Put");
  cr_assert_str_eq(demo__Store_methods[1].name, "demo.Store/Get");
  cr_assert_eq(demo__Store_Put_method.request, &demo__put_request__descriptor);
  cr_assert_eq(demo__Store_Put_method.reply, &demo__put_ack__descriptor);
  /* One table per service: each method by name is its entry. */
  cr_assert_eq(put_method, &demo__Store_methods[0]);
  cr_assert_eq(&demo__Store_Get_method, &demo__Store_methods[1]);
  cr_assert_eq(&acme__inventory__v1__Inventory_Stock_method,
               &acme__inventory__v1__Inventory_service.methods[5]);

  /* No package: names start with the service; wire names have no dot. */
  cr_assert_str_eq(Echo_service.name, "Echo");
  cr_assert_str_eq(Echo_Echo_method.name, "Echo/Echo");
  cr_assert_eq(Echo_Trace_method.request, &echo_request__trace__descriptor);

  /* Well-known types and other packages as request and reply. */
  cr_assert_eq(acme__inventory__v1__Audit_Ping_method.request,
               &google__protobuf__empty__descriptor);
  cr_assert_eq(acme__inventory__v1__Audit_Ping_method.reply,
               &google__protobuf__timestamp__descriptor);
  cr_assert_eq(acme__inventory__v1__Inventory_List_method.request,
               &acme__common__page__descriptor);
  cr_assert_eq(acme__inventory__v1__Inventory_Stock_method.request,
               &acme__inventory__v1__item__location__descriptor);
  cr_assert_str_eq(acme__inventory__v1__Inventory_delete_method.name,
                   "acme.inventory.v1.Inventory/delete");
  /* A method named after a C++ keyword is the member delete_. */
  acme__inventory__v1__Inventory_handlers h;
  memset(&h, 0, sizeof h);
  cr_assert_null(h.delete_);
  cr_assert_eq(acme__inventory__v1__Inventory_service.n_methods, 6);
}

/* --- What reflection serves --- */

static int serves(const ackrpc_service *svc, const char *file) {
  for (size_t i = 0; i < svc->n_files; i++)
    if (strcmp(svc->files[i].name, file) == 0) return 1;
  return 0;
}

/* Every file of the service's set decodes and every import it lists comes
 * before it in the set: a descriptor pool can be built from the set alone. */
static void check_self_contained(const ackrpc_service *svc) {
  cr_assert_gt(svc->n_files, 0, "%s serves descriptors", svc->name);
  for (size_t i = 0; i < svc->n_files; i++) {
    const ackrpc_file_descriptor *fd = &svc->files[i];
    Google__Protobuf__FileDescriptorProto *f =
        google__protobuf__file_descriptor_proto__unpack(NULL, fd->len, fd->data);
    cr_assert_not_null(f, "%s: %s decodes", svc->name, fd->name);
    cr_assert_str_eq(f->name, fd->name);
    for (size_t d = 0; d < f->n_dependency; d++) {
      int before = 0;
      for (size_t j = 0; j < i && !before; j++)
        before = strcmp(svc->files[j].name, f->dependency[d]) == 0;
      cr_assert(before, "%s: %s imports %s, which the set lacks before it", svc->name,
                fd->name, f->dependency[d]);
    }
    google__protobuf__file_descriptor_proto__free_unpacked(f, NULL);
  }
}

FX_TEST(gen, served_descriptors_are_self_contained) {
  const ackrpc_service *all[] = {&demo__Store_service,
                                 &Echo_service,
                                 &acme__inventory__v1__Inventory_service,
                                 &acme__inventory__v1__Audit_service,
                                 &policy__Guarded_service,
                                 &policy__Groups_service,
                                 &reexport__Uses_service};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    check_self_contained(all[i]);

  /* ackrpc/options.proto is imported for the policy options only: neither
   * it nor the descriptor.proto it imports is served. */
  cr_assert(!serves(&policy__Guarded_service, "ackrpc/options.proto"));
  cr_assert(!serves(&policy__Guarded_service, "google/protobuf/descriptor.proto"));
  cr_assert_eq(policy__Guarded_service.n_files, 1);
  cr_assert_str_eq(policy__Guarded_service.files[0].name, "policy/guarded.proto");
  cr_assert(!serves(&reexport__Uses_service, "ackrpc/options.proto"));
  cr_assert(!serves(&reexport__Uses_service, "google/protobuf/descriptor.proto"));

  /* What the messages use is served: well-known types, other packages, and
   * a file's public imports (facade.proto re-exports base.proto). */
  cr_assert(serves(&acme__inventory__v1__Audit_service, "google/protobuf/empty.proto"));
  cr_assert(
      serves(&acme__inventory__v1__Audit_service, "google/protobuf/timestamp.proto"));
  cr_assert(serves(&acme__inventory__v1__Inventory_service, "acme/common/types.proto"));
  cr_assert(serves(&reexport__Uses_service, "google/protobuf/duration.proto"));
  cr_assert(serves(&reexport__Uses_service, "reexport/facade.proto"));
  cr_assert(serves(&reexport__Uses_service, "reexport/base.proto"));

  /* The options stay in the served descriptor, as fields unknown to a
   * reader without ackrpc/options.proto. */
  Google__Protobuf__FileDescriptorProto *f =
      google__protobuf__file_descriptor_proto__unpack(
          NULL, policy__Guarded_service.files[0].len,
          policy__Guarded_service.files[0].data);
  cr_assert_not_null(f);
  cr_assert_eq(f->n_dependency, 0);
  cr_assert_not_null(f->service[0]->options);
  cr_assert_gt(f->service[0]->options->base.n_unknown_fields, 0);
  google__protobuf__file_descriptor_proto__free_unpacked(f, NULL);
}

#ifdef GEN_ACKRPC_CLI
/* Runs the ackrpc tool with `args` (shell words); returns its exit status,
 * with its output (stdout and stderr) in `out`. */
static int run_cli(const char *args, char *out, size_t size) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", GEN_ACKRPC_CLI, args);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  size_t n = fread(out, 1, size - 1, p);
  out[n] = '\0';
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The tool builds its descriptor pool from what the server serves: a
 * service whose .proto uses policy options works by reflection alone. */
FX_TEST(gen, cli_by_reflection) {
  served s;
  char args[512], out[8192];
  serve_start(&s);
  snprintf(args, sizeof args, "describe '%s' policy.Guarded", fx_sock());
  cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, "Open"), "%s", out);
  snprintf(args, sizeof args, "call '%s' policy.Guarded/Open '{\"text\": \"hi\"}'",
           fx_sock());
  cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, "\"hi\""), "%s", out);
  snprintf(args, sizeof args, "describe '%s' acme.inventory.v1.Item", fx_sock());
  cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, "google.protobuf.Timestamp"), "%s", out);
  serve_stop(&s);
}
#endif
