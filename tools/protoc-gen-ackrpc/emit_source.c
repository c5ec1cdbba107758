/* emit_source.c: NAME.ackrpc.c: the const tables (policies, reflection
 * descriptors, one method table and one service record per service),
 * the register functions (a table of handlers and policies per service,
 * walked by one loop per file) and the async stubs (each a call of
 * ackrpc_stub_call_async() with a small adapter that gives `done` back its
 * type). */
#include "emit_files.h"

#include "emit.h"

static const char source_top[] = "#include <stdio.h>\n"
                                 "#include <stdlib.h>\n"
                                 "\n"
                                 "#include \"$stem$.ackrpc.h\"\n";

/* The helpers of the register functions, once per file; $slot_fds$ is
 * empty unless a method of the file takes descriptors. */
static const char slot_and_unimplemented[] =
    "\n"
    "/* One method as a register function installs it. */\n"
    "typedef struct akrgen_slot {\n"
    "  ackrpc_handler_fn handler;\n"
    "  const ackrpc_policy *policy; /* NULL: anyone */\n"
    "$slot_fds$"
    "} akrgen_slot;\n"
    "\n"
    "/* The answer of a method whose handler is NULL. */\n"
    "static void akrgen_unimplemented(ackrpc_call *call) {\n"
    "  char message[ACKRPC_MAX_METHOD_NAME + 64];\n"
    "  snprintf(message, sizeof message,\n"
    "      \"method %s is not implemented by this server\",\n"
    "      ackrpc_call_method(call));\n"
    "  ackrpc_call_reply(call, ACKRPC_UNIMPLEMENTED, message, NULL);\n"
    "}\n";

static const char slot_fds[] =
    "  unsigned max_fds; /* descriptors its request may carry (ackrpc.Fd\n"
    "                     * fields); ACKRPC_FDS_SERVER_MAX: the server's */\n";

static const char bind_helper[] =
    "\n"
    "/* Allocates `size` bytes freed with `server`: the cleanup is registered\n"
    " * first, so that they go with the server whatever happens next. */\n"
    "static ackrpc_status akrgen_bind(ackrpc_server *server, size_t size,\n"
    "    void **ret_binding) {\n"
    "  void *binding = malloc(size);\n"
    "  ackrpc_status status;\n"
    "  if (binding == NULL) return ACKRPC_E_NOMEM;\n"
    "  status = ackrpc_server_add_cleanup(server, free, binding);\n"
    "  if (status != ACKRPC_OK) {\n"
    "    free(binding);\n"
    "    return status;\n"
    "  }\n"
    "  *ret_binding = binding;\n"
    "  return ACKRPC_OK;\n"
    "}\n";

static const char register_helper[] =
    "\n"
    "/* Records `service` for reflection, then registers each of its methods\n"
    " * with the handler$what$ of its slot. */\n"
    "static ackrpc_status akrgen_register(ackrpc_server *server,\n"
    "    const ackrpc_service *service, const akrgen_slot *slots, void *binding) {\n"
    "  ackrpc_status status = ackrpc_server_add_service_info(server, service);\n"
    "  size_t i;\n"
    "  for (i = 0; status == ACKRPC_OK && i < service->n_methods; i++) {\n"
    "    const ackrpc_method *method = &service->methods[i];\n"
    "    status = ackrpc_server_add_method(server, method, slots[i].handler, "
    "binding);\n"
    "    if (status == ACKRPC_OK && slots[i].policy != NULL)\n"
    "      status = ackrpc_server_set_method_policy(server, method->name,\n"
    "                                               slots[i].policy);\n"
    "$register_fds$"
    "  }\n"
    "  return status;\n"
    "}\n";

static const char register_fds[] =
    "    if (status == ACKRPC_OK && slots[i].max_fds != 0)\n"
    "      status = ackrpc_server_set_method_fds(server, method->name,\n"
    "                                            slots[i].max_fds);\n";

static const char service_open[] = "\n"
                                   "/* --- service $service$ --- */\n"
                                   "\n";

static const char table_open[] = "const ackrpc_method $P$_methods[$n$] = {\n";

static const char method_entry[] =
    "    {\"$wire$\", &$req_lower$__descriptor, &$rep_lower$__descriptor},\n";

static const char service_record[] =
    "};\n"
    "\n"
    "const ackrpc_service $P$_service = {\"$service$\", $P$_methods, $n$,\n"
    "    akrgen_files, $n_files$};\n"
    "\n"
    "/* What $P$_register() gives the server: the handlers and the\n"
    " * user pointer, freed with the server. */\n"
    "typedef struct akrgen_binding_$s$ {\n"
    "  $P$_handlers handlers;\n"
    "  void *user;\n"
    "} akrgen_binding_$s$;\n";

static const char method_handler[] =
    "\n"
    "static void akrgen_handle_$id$(ackrpc_call *call,\n"
    "    const ProtobufCMessage *request, void *user) {\n"
    "  const akrgen_binding_$s$ *binding = (const akrgen_binding_$s$ *)user;\n"
    "  if (binding->handlers.$member$ == NULL)\n"
    "    akrgen_unimplemented(call);\n"
    "  else\n"
    "    binding->handlers.$member$(call, (const $Req$ *)request, binding->user);\n"
    "}\n";

/* For a method whose request has Fd fields: the descriptors are checked
 * and written into them before the handler runs. */
static const char method_handler_fds[] =
    "\n"
    "/* The request's descriptors go into its Fd fields first; if they do not\n"
    " * match, ackrpc_call_bind_fds() answers INVALID_ARGUMENT, closes them,\n"
    " * and the handler is not called. */\n"
    "static void akrgen_handle_$id$(ackrpc_call *call,\n"
    "    const ProtobufCMessage *request, void *user) {\n"
    "  const akrgen_binding_$s$ *binding = (const akrgen_binding_$s$ *)user;\n"
    "  if (binding->handlers.$member$ == NULL)\n"
    "    akrgen_unimplemented(call);\n"
    "  else if (ackrpc_call_bind_fds(call, request) == ACKRPC_OK)\n"
    "    binding->handlers.$member$(call, (const $Req$ *)request, binding->user);\n"
    "}\n";

static const char slots_open[] =
    "\n"
    "/* Handler and policy of each method, for $P$_register(). */\n"
    "static const akrgen_slot akrgen_slots_$s$[$n$] = {\n";

static const char register_function[] =
    "};\n"
    "\n"
    "ackrpc_status $P$_register(ackrpc_server *server,\n"
    "    const $P$_handlers *handlers, void *user) {\n"
    "  akrgen_binding_$s$ *binding;\n"
    "  void *memory = NULL;\n"
    "  ackrpc_status status;\n"
    "  if (server == NULL || handlers == NULL) return ACKRPC_E_INVAL;\n"
    "  status = akrgen_bind(server, sizeof *binding, &memory);\n"
    "  if (status != ACKRPC_OK) return status;\n"
    "  binding = (akrgen_binding_$s$ *)memory;\n"
    "  binding->handlers = *handlers;\n"
    "  binding->user = user;\n";

static const char register_tail[] =
    "  return akrgen_register(server, &$P$_service, akrgen_slots_$s$, binding);\n"
    "}\n";

/* With sensitive fields: the server learns them first. */
static const char register_tail_sensitive[] =
    "  status = ackrpc_server_add_sensitive_fields(server, akrgen_sensitive,\n"
    "      sizeof akrgen_sensitive / sizeof akrgen_sensitive[0]);\n"
    "  if (status != ACKRPC_OK) return status;\n"
    "  return akrgen_register(server, &$P$_service, akrgen_slots_$s$, binding);\n"
    "}\n";

static const char async_stub[] =
    "\n"
    "/* Ends $PM$_call_async(): `done` back to its own type. */\n"
    "static void akrgen_done_$id$(ackrpc_result *result, ackrpc_stub_fn done,\n"
    "    void *user) {\n"
    "  $PM$_done_fn typed = ($PM$_done_fn)done;\n"
    "  typed(result->status, ($Rep$ *)result->reply, result, user);\n"
    "}\n"
    "\n"
    "ackrpc_status $PM$_call_async(ackrpc_client *client,\n"
    "    struct event_base *base, const $Req$ *request,\n"
    "    const ackrpc_call_options *options, $PM$_done_fn done, void *user) {\n"
    "  return ackrpc_stub_call_async(client, base, &$PM$_method,\n"
    "      (const ProtobufCMessage *)request, options, akrgen_done_$id$,\n"
    "      (ackrpc_stub_fn)done, user);\n"
    "}\n";

static void emit_id_array(akrgen_buf *b, const char *type, size_t p, const char *what,
                          const uint32_t *ids, size_t n) {
  if (!n) return;
  buf_printf(b, "static const %s akrgen_policy_%zu_%s[%zu] = {", type, p, what, n);
  for (size_t i = 0; i < n; i++)
    buf_printf(b, "%s%uu", i ? ", " : "", (unsigned)ids[i]);
  buf_puts(b, "};\n");
}

/* Policy `i` as a static const ackrpc_policy akrgen_policy_<i>. */
static void emit_policy(akrgen_buf *b, const akrgen_policy *p, size_t i) {
  emit_id_array(b, "uid_t", i, "uids", p->uids, p->n_uids);
  emit_id_array(b, "gid_t", i, "gids", p->gids, p->n_gids);
  if (p->n_groups) {
    buf_printf(b, "static const char *const akrgen_policy_%zu_groups[%zu] = {", i,
               p->n_groups);
    for (size_t g = 0; g < p->n_groups; g++) {
      buf_puts(b, g ? ", \"" : "\"");
      buf_c_string(b, p->groups[g]);
      buf_puts(b, "\"");
    }
    buf_puts(b, "};\n");
  }
  buf_puts(b, "/* ");
  emit_policy_comment(b, p);
  buf_printf(b, " */\nstatic const ackrpc_policy akrgen_policy_%zu = {\n", i);
  buf_printf(b, "    .same_uid = %d,\n", p->same_uid);
  if (p->n_uids)
    buf_printf(b, "    .uids = akrgen_policy_%zu_uids,\n    .n_uids = %zu,\n", i,
               p->n_uids);
  if (p->n_gids)
    buf_printf(b, "    .gids = akrgen_policy_%zu_gids,\n    .n_gids = %zu,\n", i,
               p->n_gids);
  if (p->n_groups)
    buf_printf(b,
               "    .group_names = akrgen_policy_%zu_groups,\n"
               "    .n_group_names = %zu,\n",
               i, p->n_groups);
  buf_puts(b, "};\n");
}

/* The reflection set of the model (descset.c), as C arrays. */
static void emit_descriptors(akrgen_buf *b, const akrgen_model *m) {
  buf_puts(b,
           "\n/* What reflection serves for the services of this file: the\n"
           " * serialized google.protobuf.FileDescriptorProto of this file and of\n"
           " * the files needed to decode its messages, dependencies first, without\n"
           " * source code info (ackrpc_service.files). */\n");
  for (size_t i = 0; i < m->n_files; i++) {
    const akrgen_blob *f = &m->files[i];
    buf_printf(b, "static const uint8_t akrgen_file_%zu[%zu] = {", i,
               f->len ? f->len : 1);
    for (size_t j = 0; j < f->len; j++)
      buf_printf(b, "%s0x%02x,", j % 16 ? "" : "\n    ", f->data[j]);
    if (!f->len) buf_puts(b, "0");
    buf_puts(b, "\n};\n");
  }
  buf_printf(b, "static const ackrpc_file_descriptor akrgen_files[%zu] = {\n",
             m->n_files);
  for (size_t i = 0; i < m->n_files; i++) {
    buf_puts(b, "    {\"");
    buf_c_string(b, m->files[i].name);
    buf_printf(b, "\", akrgen_file_%zu, %zu},\n", i, m->files[i].len);
  }
  buf_puts(b, "};\n");
}

static const char service_record_only[] =
    "};\n"
    "\n"
    "const ackrpc_service $P$_service = {\"$service$\", $P$_methods, $n$,\n"
    "    akrgen_files, $n_files$};\n";

/* Service `s`: its method table and its record, nothing else. */
static void emit_service_tables(akrgen_buf *b, const akrgen_model *m, size_t s) {
  akrgen_vars v = {0};
  vars_service(&v, m, s);
  emit(b, service_open, &v);
  emit(b, table_open, &v);
  for (size_t i = 0; i < m->services[s].n_methods; i++) {
    vars_method(&v, m, s, i);
    emit(b, method_entry, &v);
  }
  emit(b, service_record_only, &v);
  vars_free(&v);
}

/* Service `s`: its tables, the handlers that cast the request to its type,
 * the register function and the async stubs. */
static void emit_service(akrgen_buf *b, const akrgen_model *m, size_t s) {
  const akrgen_service *sv = &m->services[s];
  akrgen_vars v = {0};
  vars_service(&v, m, s);
  emit(b, service_open, &v);

  emit(b, table_open, &v);
  for (size_t i = 0; i < sv->n_methods; i++) {
    vars_method(&v, m, s, i);
    emit(b, method_entry, &v);
  }
  emit(b, service_record, &v);
  for (size_t i = 0; i < sv->n_methods; i++) {
    vars_method(&v, m, s, i);
    emit(b, AKRGEN_FDS_IN(&sv->methods[i]) ? method_handler_fds : method_handler, &v);
  }
  emit(b, slots_open, &v);
  for (size_t i = 0; i < sv->n_methods; i++) {
    const akrgen_method *me = &sv->methods[i];
    buf_printf(b, "    {akrgen_handle_%zu_%zu, ", s, i);
    if (me->policy >= 0)
      buf_printf(b, "&akrgen_policy_%d", me->policy);
    else
      buf_puts(b, "NULL");
    if (me->fds_in_repeated)
      buf_puts(b, ", ACKRPC_FDS_SERVER_MAX");
    else if (akrgen_model_has_fds(m, 1))
      buf_printf(b, ", %u", me->fds_in);
    buf_puts(b, "},\n");
  }
  emit(b, register_function, &v);
  emit(b, m->n_sensitive ? register_tail_sensitive : register_tail, &v);
  for (size_t i = 0; i < sv->n_methods; i++) {
    vars_method(&v, m, s, i);
    emit(b, async_stub, &v);
  }
  vars_free(&v);
}

void akrgen_emit_source(akrgen_buf *b, const akrgen_model *m) {
  akrgen_vars v = {0};
  vars_file(&v, m);
  emit_banner(b, m,
              m->tables_only
                  ? "Method tables and reflection descriptors only."
                  : "Method tables, handler registration and asynchronous stubs.");
  emit(b, source_top, &v);
  vars_free(&v);
  if (m->n_services == 0) {
    buf_puts(b, "\n/* This file declares no services. */\n");
    return;
  }
  if (m->tables_only) {
    emit_descriptors(b, m);
    for (size_t s = 0; s < m->n_services; s++)
      emit_service_tables(b, m, s);
    return;
  }
  if (m->n_policies)
    buf_puts(b, "\n/* Caller policies declared with ackrpc/options.proto. */\n");
  for (size_t i = 0; i < m->n_policies; i++)
    emit_policy(b, &m->policies[i], i);
  if (m->n_sensitive) {
    buf_puts(b, "\n/* Fields marked [(ackrpc.sensitive) = true]: captures leave them "
                "out. */\n");
    buf_printf(b, "static const ackrpc_sensitive_field akrgen_sensitive[%zu] = {\n",
               m->n_sensitive);
    for (size_t i = 0; i < m->n_sensitive; i++)
      buf_printf(b, "    {&%s__descriptor, %u}, /* %s.%s */\n",
                 m->sensitive[i].message.lower, (unsigned)m->sensitive[i].number,
                 m->sensitive[i].message.proto, m->sensitive[i].field);
    buf_puts(b, "};\n");
  }
  emit_descriptors(b, m);
  int fds = akrgen_model_has_fds(m, 1);
  akrgen_vars h = {0};
  vars_set(&h, "slot_fds", "%s", fds ? slot_fds : "");
  vars_set(&h, "what", "%s",
           fds ? ", the policy and the descriptors" : " and the policy");
  vars_set(&h, "register_fds", "%s", fds ? register_fds : "");
  emit(b, slot_and_unimplemented, &h);
  buf_puts(b, bind_helper);
  emit(b, register_helper, &h);
  vars_free(&h);
  for (size_t s = 0; s < m->n_services; s++)
    emit_service(b, m, s);
}
