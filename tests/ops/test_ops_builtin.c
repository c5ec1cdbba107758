/* test_ops_builtin.c: the built-in services (src/builtin.c) and the
 * per-method statistics and per-call log line of the server, through the
 * public API and real calls: reflection (ListServices,
 * FileContainingSymbol), health (SERVING, NOT_SERVING while draining),
 * stats (counts by status, bytes, percentiles), disable_builtins,
 * ackrpc_server_add_service_info() errors, the DEBUG log line. */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ackrpc/reflection.pb-c.h"
#include "fixture.h"
#include "google/protobuf/descriptor.pb-c.h"

FX_SUITE(ops_builtin);

static const ackrpc_method m_list = {
    "ackrpc.reflection.Reflection/ListServices",
    &ackrpc__reflection__list_services_request__descriptor,
    &ackrpc__reflection__list_services_reply__descriptor};
static const ackrpc_method m_files = {
    "ackrpc.reflection.Reflection/FileContainingSymbol",
    &ackrpc__reflection__file_request__descriptor,
    &ackrpc__reflection__file_reply__descriptor};
static const ackrpc_method m_health = {"ackrpc.reflection.Health/Check",
                                       &ackrpc__reflection__health_request__descriptor,
                                       &ackrpc__reflection__health_reply__descriptor};
static const ackrpc_method m_stats = {"ackrpc.reflection.Stats/Get",
                                      &ackrpc__reflection__stats_request__descriptor,
                                      &ackrpc__reflection__stats_reply__descriptor};

/* Calls a built-in method with an empty request (or `req`). */
static ackrpc_status builtin(ackrpc_client *c, const ackrpc_method *m,
                             const ProtobufCMessage *req, ackrpc_result *res) {
  /* Room for any of the request types (protobuf_c_message_init() writes
   * the whole struct). */
  union {
    ProtobufCMessage base;
    max_align_t align;
    unsigned char room[256];
  } empty;
  if (!req) {
    cr_assert_leq(m->request->sizeof_message, sizeof empty);
    protobuf_c_message_init(m->request, &empty.base);
    req = &empty.base;
  }
  return ackrpc_client_call(c, m, req, NULL, res);
}

static void echo_status(ackrpc_client *c, uint32_t status) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "hello";
  req.reply_status = status;
  ackrpc_result res = {0};
  cr_assert_eq(fx_echo(c, &req, NULL, &res), (ackrpc_status)status);
  ackrpc_result_clear(&res);
}

FX_TEST(ops_builtin, reflection_lists_and_serves_descriptors) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server *fs = fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result res = {0};
  cr_assert_eq(builtin(c, &m_list, NULL, &res), ACKRPC_OK);
  const Ackrpc__Reflection__ListServicesReply *l =
      (const Ackrpc__Reflection__ListServicesReply *)res.reply;
  /* The fixture registers methods one by one: grouped by service, with
   * descriptors made from protobuf-c's, before the built-in services. */
  cr_assert_geq(l->n_services, 4);
  int test_seen = 0, health_seen = 0;
  for (size_t i = 0; i < l->n_services; i++) {
    const Ackrpc__Reflection__ServiceInfo *s = l->services[i];
    if (strcmp(s->name, "ackrpc.test.Test") == 0) {
      test_seen = 1;
      cr_assert(s->has_descriptors);
      cr_assert_geq(s->n_methods, 2);
      cr_assert_str_eq(s->methods[0]->name, FX_ECHO);
      cr_assert_str_eq(s->methods[0]->request_type, "ackrpc.test.EchoRequest");
      cr_assert_str_eq(s->methods[0]->reply_type, "ackrpc.test.EchoReply");
      cr_assert(!health_seen, "user services come before the built-in ones");
    }
    if (strcmp(s->name, "ackrpc.reflection.Health") == 0) {
      health_seen = 1;
      cr_assert(s->has_descriptors);
    }
  }
  cr_assert(test_seen && health_seen);
  ackrpc_result_clear(&res);

  /* A nested enum of a built-in message: found, with its file. */
  Ackrpc__Reflection__FileRequest fr = ACKRPC__REFLECTION__FILE_REQUEST__INIT;
  fr.symbol = "ackrpc.reflection.HealthReply.ServingStatus";
  cr_assert_eq(builtin(c, &m_files, &fr.base, &res), ACKRPC_OK);
  const Ackrpc__Reflection__FileReply *f =
      (const Ackrpc__Reflection__FileReply *)res.reply;
  cr_assert_eq(f->n_file_descriptor_proto, 1);
  cr_assert_gt(f->file_descriptor_proto[0].len, 100);
  ackrpc_result_clear(&res);
  /* Unknown names: NOT_FOUND. */
  fr.symbol = "no.Such";
  cr_assert_eq(builtin(c, &m_files, &fr.base, &res), ACKRPC_NOT_FOUND);
  ackrpc_result_clear(&res);
  fx_server_stop(fs);
}

static const Google__Protobuf__DescriptorProto *
find_message(Google__Protobuf__DescriptorProto *const *v, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i]->name, name) == 0) return v[i];
  cr_assert_fail("no message %s", name);
  return NULL;
}

static const Google__Protobuf__FieldDescriptorProto *
find_field(const Google__Protobuf__DescriptorProto *m, const char *name) {
  for (size_t i = 0; i < m->n_field; i++)
    if (strcmp(m->field[i]->name, name) == 0) return m->field[i];
  cr_assert_fail("no field %s in %s", name, m->name);
  return NULL;
}

/* Methods registered with ackrpc_server_add_method() alone (the fixture's)
 * are described by a file made from their protobuf-c descriptors. */
FX_TEST(ops_builtin, generic_methods_get_synthesized_descriptors) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server *fs = fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  const char *symbols[] = {FX_ECHO, "ackrpc.test.Test", "ackrpc.test.EchoRequest.Mode",
                           "ackrpc.test.Strict"};
  for (size_t k = 0; k < sizeof symbols / sizeof *symbols; k++) {
    ackrpc_result res = {0};
    Ackrpc__Reflection__FileRequest fr = ACKRPC__REFLECTION__FILE_REQUEST__INIT;
    fr.symbol = (char *)symbols[k];
    cr_assert_eq(builtin(c, &m_files, &fr.base, &res), ACKRPC_OK, "%s", symbols[k]);
    const Ackrpc__Reflection__FileReply *f =
        (const Ackrpc__Reflection__FileReply *)res.reply;
    cr_assert_eq(f->n_file_descriptor_proto, 1);
    Google__Protobuf__FileDescriptorProto *fd =
        google__protobuf__file_descriptor_proto__unpack(
            NULL, f->file_descriptor_proto[0].len, f->file_descriptor_proto[0].data);
    cr_assert_not_null(fd, "protobuf-c decodes the synthesized file");
    cr_assert_str_eq(fd->name, "ackrpc-synth/ackrpc.test.proto");
    cr_assert_str_eq(fd->package, "ackrpc.test");
    cr_assert_str_eq(fd->syntax, "proto3");
    cr_assert_geq(fd->n_service, 1); /* and the fixture's probe */
    cr_assert_str_eq(fd->service[0]->name, "Test");
    cr_assert_geq(fd->service[0]->n_method, 2);
    cr_assert_str_eq(fd->service[0]->method[0]->name, "Echo");
    cr_assert_str_eq(fd->service[0]->method[0]->input_type, ".ackrpc.test.EchoRequest");
    cr_assert_str_eq(fd->service[0]->method[0]->output_type, ".ackrpc.test.EchoReply");
    const Google__Protobuf__DescriptorProto *req =
        find_message(fd->message_type, fd->n_message_type, "EchoRequest");
    const Google__Protobuf__FieldDescriptorProto *fl = find_field(req, "text");
    cr_assert_eq(fl->number, 1);
    cr_assert_eq(fl->type, GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING);
    cr_assert_eq(fl->label,
                 GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL);
    fl = find_field(req, "mode");
    cr_assert_eq(fl->number, 7);
    cr_assert_eq(fl->type, GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_ENUM);
    cr_assert_str_eq(fl->type_name, ".ackrpc.test.EchoRequest.Mode");
    fl = find_field(req, "lookup_keys");
    cr_assert_eq(fl->label,
                 GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED);
    /* The nested enum, inside its message, with its values. */
    cr_assert_eq(req->n_enum_type, 1);
    cr_assert_str_eq(req->enum_type[0]->name, "Mode");
    cr_assert_eq(req->enum_type[0]->n_value, 4);
    cr_assert_str_eq(req->enum_type[0]->value[3]->name, "HOLD");
    cr_assert_eq(req->enum_type[0]->value[3]->number, 3);
    fl = find_field(find_message(fd->message_type, fd->n_message_type, "EchoReply"),
                    "remaining_ms");
    cr_assert_eq(fl->type, GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT64);
    /* proto2's required survives in Strict. */
    fl = find_field(find_message(fd->message_type, fd->n_message_type, "Strict"),
                    "must");
    cr_assert_eq(fl->label,
                 GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED);
    google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
    ackrpc_result_clear(&res);
  }
  fx_server_stop(fs);
}

FX_TEST(ops_builtin, stats_count_calls_statuses_bytes_latency) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server *fs = fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  for (int i = 0; i < 3; i++)
    echo_status(c, ACKRPC_OK);
  echo_status(c, ACKRPC_NOT_FOUND);
  echo_status(c, ACKRPC_NOT_FOUND);
  ackrpc_result res = {0};
  cr_assert_eq(builtin(c, &m_stats, NULL, &res), ACKRPC_OK);
  const Ackrpc__Reflection__StatsReply *r =
      (const Ackrpc__Reflection__StatsReply *)res.reply;
  const Ackrpc__Reflection__MethodStats *echo = NULL;
  for (size_t i = 0; i < r->n_methods; i++) {
    if (i) cr_assert_lt(strcmp(r->methods[i - 1]->method, r->methods[i]->method), 0);
    if (strcmp(r->methods[i]->method, FX_ECHO) == 0) echo = r->methods[i];
  }
  cr_assert_not_null(echo);
  cr_assert_eq(echo->calls, 5);
  cr_assert_eq(echo->errors, 2);
  cr_assert_eq(echo->n_statuses, 2);
  cr_assert_eq(echo->statuses[0]->code, 0);
  cr_assert_eq(echo->statuses[0]->count, 3);
  cr_assert_eq(echo->statuses[1]->code, ACKRPC_NOT_FOUND);
  cr_assert_eq(echo->statuses[1]->count, 2);
  cr_assert_gt(echo->bytes_in, 5 * 12);
  cr_assert_gt(echo->bytes_out, 5 * 12);
  cr_assert_leq(echo->p50_us, echo->p90_us);
  cr_assert_leq(echo->p90_us, echo->p99_us);
  cr_assert_leq(echo->p99_us, echo->p999_us);
  cr_assert_gt(echo->p999_us, 0, "p99.9 is sent");
  cr_assert_leq(echo->p999_us, echo->max_us);
  cr_assert_lt(echo->max_us, 10 * fx_slack_us());
  cr_assert_geq(r->connections, 1);
  /* The server's own methods are marked, the application's not. */
  cr_assert_not(echo->builtin);
  size_t n_builtin = 0;
  for (size_t i = 0; i < r->n_methods; i++) {
    int own = strncmp(r->methods[i]->method, "ackrpc.reflection.", 18) == 0;
    cr_assert_eq(r->methods[i]->builtin, own, "%s", r->methods[i]->method);
    n_builtin += own;
  }
  cr_assert_eq(n_builtin, 5); /* Reflection x2, Health, Stats, Capture */
  ackrpc_result_clear(&res);

  /* The C API, once the loop has stopped (it is loop-thread only). */
  fx_server_request_stop(fs);
  cr_assert_eq(fx_server_join(fs, 10000), ACKRPC_OK);
  ackrpc_server *srv = fx_server_get(fs);
  size_t n = ackrpc_server_stats(srv, NULL, 0);
  cr_assert_geq(n, 7); /* 3 fixture methods, 4 built-in */
  ackrpc_method_stats one;
  cr_assert_eq(ackrpc_server_stats(srv, &one, 1), n);
  ackrpc_method_stats *all = calloc(n, sizeof *all);
  cr_assert_eq(ackrpc_server_stats(srv, all, n), n);
  cr_assert_str_eq(one.method, all[0].method, "a short array gets the first by name");
  const ackrpc_method_stats *e = NULL;
  for (size_t i = 0; i < n; i++)
    if (strcmp(all[i].method, FX_ECHO) == 0) e = &all[i];
  cr_assert_not_null(e);
  cr_assert_eq(e->calls, 5);
  cr_assert_eq(e->by_status[0], 3);
  cr_assert_eq(e->by_status[ACKRPC_NOT_FOUND], 2);
  cr_assert_eq(e->errors, 2);
  cr_assert_leq(e->p999_us, e->max_us);
  free(all);
  cr_assert_eq(ackrpc_server_stats(NULL, NULL, 0), 0);
  fx_server_free(fs);
}

FX_TEST(ops_builtin, health_serving_then_not_serving_while_draining) {
  ackrpc_server_options o = {.address = fx_sock(), .drain_timeout_ms = 3000};
  fx_server *fs = fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result res = {0};
  cr_assert_eq(builtin(c, &m_health, NULL, &res), ACKRPC_OK);
  cr_assert_eq(((Ackrpc__Reflection__HealthReply *)res.reply)->status,
               ACKRPC__REFLECTION__HEALTH_REPLY__SERVING_STATUS__SERVING);
  ackrpc_result_clear(&res);
  /* A connection accepted before the stop is still served: its health
   * call says NOT_SERVING. */
  int fd = fx_raw_connect(fx_sock());
  cr_assert_geq(fd, 0);
  fx_sleep_ms(100); /* accepted */
  fx_server_request_stop(fs);
  fx_sleep_ms(100); /* stopping */
  Ackrpc__Reflection__HealthRequest hr = ACKRPC__REFLECTION__HEALTH_REQUEST__INIT;
  uint8_t *frame;
  size_t len = fx_frame_request(&frame, m_health.name, 0, NULL, 0, &hr.base);
  cr_assert_eq(fx_raw_send(fd, frame, len), 0); /* the fixture frees the frame */
  shutdown(fd, SHUT_WR);
  size_t got;
  int eof;
  uint8_t *buf = fx_raw_read_all(fd, 5000, &got, &eof);
  close(fd);
  uint32_t status = 99;
  const uint8_t *body;
  size_t body_len;
  cr_assert_gt(fx_parse_reply(buf, got, &status, NULL, &body, &body_len), 0);
  cr_assert_eq(status, ACKRPC_OK);
  Ackrpc__Reflection__HealthReply *h =
      ackrpc__reflection__health_reply__unpack(NULL, body_len, body);
  cr_assert_not_null(h);
  cr_assert_eq(h->status,
               ACKRPC__REFLECTION__HEALTH_REPLY__SERVING_STATUS__NOT_SERVING);
  ackrpc__reflection__health_reply__free_unpacked(h, NULL);
  cr_assert_eq(fx_server_join(fs, 10000), ACKRPC_OK);
  fx_server_free(fs);
}

FX_TEST(ops_builtin, disable_builtins) {
  ackrpc_server_options o = {.address = fx_sock(), .disable_builtins = 1};
  fx_server *fs = fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result res = {0};
  const ackrpc_method *all[] = {&m_list, &m_files, &m_health, &m_stats};
  for (size_t i = 0; i < 4; i++) {
    cr_assert_eq(builtin(c, all[i], NULL, &res), ACKRPC_UNIMPLEMENTED, "%s",
                 all[i]->name);
    ackrpc_result_clear(&res);
  }
  fx_server_request_stop(fs);
  cr_assert_eq(fx_server_join(fs, 10000), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_stats(fx_server_get(fs), NULL, 0), 3);
  fx_server_free(fs);
}

FX_TEST(ops_builtin, add_service_info_checks) {
  ackrpc_server_options o = {.address = fx_abstract(), .log = ackrpc_log_discard};
  ackrpc_server *s = NULL;
  cr_assert_eq(ackrpc_server_new(&o, &s), ACKRPC_OK);
  static const ackrpc_method ms[] = {{FX_ECHO, &ackrpc__test__echo_request__descriptor,
                                      &ackrpc__test__echo_reply__descriptor}};
  static const ackrpc_service svc = {"ackrpc.test.Test", ms, 1, NULL, 0};
  static const ackrpc_service builtin_name = {"ackrpc.reflection.Health", ms, 1, NULL,
                                              0};
  static const ackrpc_service no_name = {NULL, ms, 1, NULL, 0};
  static const ackrpc_service bad_files = {"x.Y", ms, 1, NULL, 2};
  static const ackrpc_method bad_m[] = {{"x.Z/M", NULL, NULL}};
  static const ackrpc_service bad_method = {"x.Z", bad_m, 1, NULL, 0};
  cr_assert_eq(ackrpc_server_add_service_info(NULL, &svc), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_server_add_service_info(s, NULL), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_server_add_service_info(s, &no_name), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_server_add_service_info(s, &bad_files), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_server_add_service_info(s, &bad_method), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_server_add_service_info(s, &svc), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_service_info(s, &svc), ACKRPC_E_EXISTS);
  cr_assert_eq(ackrpc_server_add_service_info(s, &builtin_name), ACKRPC_E_EXISTS);
  s = ackrpc_server_free(s);
}

/* --- the per-call log line --- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[8192];
static unsigned log_debug_lines;

static void capture(void *user, ackrpc_log_level level, const char *message) {
  (void)user;
  pthread_mutex_lock(&log_mu);
  if (level == ACKRPC_LOG_DEBUG) log_debug_lines++;
  size_t used = strlen(log_text);
  snprintf(log_text + used, sizeof log_text - used, "%s\n", message);
  pthread_mutex_unlock(&log_mu);
}

FX_TEST(ops_builtin, debug_log_line_per_call) {
  ackrpc_server_options o = {
      .address = fx_sock(), .log = capture, .log_level = ACKRPC_LOG_DEBUG};
  fx_server *fs = fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  echo_status(c, ACKRPC_OK);
  echo_status(c, ACKRPC_NOT_FOUND);
  fx_server_stop(fs);
  char want[128];
  snprintf(want, sizeof want, "peer_uid=%u peer_pid=%d bytes_in=", (unsigned)getuid(),
           (int)getpid());
  pthread_mutex_lock(&log_mu);
  cr_assert(strstr(log_text, "call method=" FX_ECHO " status=OK us="), "%s", log_text);
  cr_assert(strstr(log_text, "call method=" FX_ECHO " status=NOT_FOUND us="), "%s",
            log_text);
  cr_assert(strstr(log_text, want), "%s", log_text);
  cr_assert(strstr(log_text, " bytes_out="), "%s", log_text);
  cr_assert_geq(log_debug_lines, 2);
  pthread_mutex_unlock(&log_mu);
}

FX_TEST(ops_builtin, no_call_lines_above_debug) {
  ackrpc_server_options o = {
      .address = fx_sock(), .log = capture, .log_level = ACKRPC_LOG_INFO};
  fx_server *fs = fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  echo_status(c, ACKRPC_OK);
  fx_server_stop(fs);
  pthread_mutex_lock(&log_mu);
  cr_assert_eq(log_debug_lines, 0);
  cr_assert_null(strstr(log_text, "call method="), "%s", log_text);
  pthread_mutex_unlock(&log_mu);
}
