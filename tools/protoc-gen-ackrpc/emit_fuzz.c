/* emit_fuzz.c: NAME.ackrpc-fuzz.c, a libFuzzer entry for the services of a
 * file: a server (created once per process, on an abstract address) with
 * every service registered and handlers that walk the request and answer
 * a default reply; each input is the bytes of one connection to it, sent
 * from the same thread through the server's loop. Only the handlers and
 * their registration depend on the .proto; the rest is fixed text. */
#include "emit_files.h"

#include "emit.h"

static const char fuzz_top[] =
    "#ifndef _GNU_SOURCE\n"
    "#define _GNU_SOURCE 1\n"
    "#endif\n"
    "\n"
    "#include <errno.h>\n"
    "#include <fcntl.h>\n"
    "#include <stdint.h>\n"
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "#include <sys/socket.h>\n"
    "#include <sys/un.h>\n"
    "#include <unistd.h>\n"
    "\n"
    "#include <event2/event.h>\n"
    "\n"
    "#include \"$stem$.ackrpc.h\"\n"
    "\n"
    "int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);\n";

static const char fuzz_handler[] =
    "\n"
    "/* $wire$: walks the decoded request, answers a default reply. */\n"
    "static void akrgen_fuzz_$id$(ackrpc_call *call, const $Req$ *request,\n"
    "    void *user) {\n"
    "  $Rep$ reply;\n"
    "  (void)user;\n"
    "  (void)protobuf_c_message_get_packed_size(\n"
    "      (const ProtobufCMessage *)request);\n"
    "  protobuf_c_message_init(&$rep_lower$__descriptor, &reply);\n"
    "  ackrpc_call_reply(call, ACKRPC_OK, NULL, &reply.base);\n"
    "}\n";

static const char register_open[] =
    "\n"
    "/* $service$ with every handler set. */\n"
    "static void akrgen_fuzz_register_$s$(ackrpc_server *server) {\n"
    "  $P$_handlers h;\n"
    "  memset(&h, 0, sizeof h);\n";

static const char register_member[] = "  h.$member$ = akrgen_fuzz_$id$;\n";

static const char register_close[] =
    "  if ($P$_register(server, &h, NULL) != ACKRPC_OK) abort();\n"
    "}\n";

static const char setup_open[] =
    "\n"
    "/* The server, created once per process on an abstract address. */\n"
    "static ackrpc_server *akrgen_fuzz_server;\n"
    "static struct sockaddr_un akrgen_fuzz_addr;\n"
    "static socklen_t akrgen_fuzz_addr_len;\n"
    "\n"
    "static void akrgen_fuzz_setup(void) {\n"
    "  char address[64];\n"
    "  ackrpc_server_options options;\n"
    "  memset(&options, 0, sizeof options);\n"
    "  snprintf(address, sizeof address, \"@ackrpc-fuzz-%ld\", (long)getpid());\n"
    "  options.address = address;\n"
    "  options.read_timeout_ms = 2000;\n"
    "  options.log = ackrpc_log_discard;\n"
    "  if (ackrpc_server_new(&options, &akrgen_fuzz_server) != ACKRPC_OK) abort();\n";

static const char setup_register[] =
    "  akrgen_fuzz_register_$s$(akrgen_fuzz_server);\n";

static const char setup_close[] =
    "  memset(&akrgen_fuzz_addr, 0, sizeof akrgen_fuzz_addr);\n"
    "  akrgen_fuzz_addr.sun_family = AF_UNIX;\n"
    "  memcpy(akrgen_fuzz_addr.sun_path + 1, address + 1, strlen(address) - 1);\n"
    "  akrgen_fuzz_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +\n"
    "                                     strlen(address));\n"
    "}\n";

static const char conn_send[] =
    "\n"
    "/* One connection: the client end is driven by events on the server's loop,\n"
    " * so one thread runs both ends. */\n"
    "typedef struct akrgen_fuzz_conn {\n"
    "  int fd;\n"
    "  const uint8_t *data;\n"
    "  size_t size, sent;\n"
    "  int closed;\n"
    "  struct event *ev;\n"
    "} akrgen_fuzz_conn;\n"
    "\n"
    "static void akrgen_fuzz_io(evutil_socket_t fd, short what, void *arg);\n"
    "\n"
    "/* Writes the input; once it is all sent (or the server closed first: it\n"
    " * may refuse early), half-closes and waits for the end of the reply. */\n"
    "static void akrgen_fuzz_send(akrgen_fuzz_conn *c) {\n"
    "  while (c->sent < c->size) {\n"
    "    ssize_t n = send(c->fd, c->data + c->sent, c->size - c->sent, MSG_NOSIGNAL);\n"
    "    if (n < 0 && errno == EAGAIN) return;\n"
    "    if (n <= 0) break;\n"
    "    c->sent += (size_t)n;\n"
    "  }\n"
    "  shutdown(c->fd, SHUT_WR);\n"
    "  event_del(c->ev);\n"
    "  event_assign(c->ev, event_get_base(c->ev), c->fd, EV_READ | EV_PERSIST,\n"
    "               akrgen_fuzz_io, c);\n"
    "  event_add(c->ev, NULL);\n"
    "}\n";

static const char conn_drain[] =
    "\n"
    "/* Reads the reply away; at EOF (or an error) the call is over. */\n"
    "static void akrgen_fuzz_drain(akrgen_fuzz_conn *c) {\n"
    "  char sink[4096];\n"
    "  ssize_t n;\n"
    "  do {\n"
    "    n = recv(c->fd, sink, sizeof sink, 0);\n"
    "  } while (n > 0);\n"
    "  if (n < 0 && errno == EAGAIN) return;\n"
    "  c->closed = 1;\n"
    "  event_del(c->ev);\n"
    "  event_base_loopbreak(event_get_base(c->ev));\n"
    "}\n"
    "\n"
    "static void akrgen_fuzz_io(evutil_socket_t fd, short what, void *arg) {\n"
    "  (void)fd;\n"
    "  if (what & EV_WRITE)\n"
    "    akrgen_fuzz_send((akrgen_fuzz_conn *)arg);\n"
    "  else\n"
    "    akrgen_fuzz_drain((akrgen_fuzz_conn *)arg);\n"
    "}\n";

static const char test_one_input[] =
    "\n"
    "int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {\n"
    "  akrgen_fuzz_conn c;\n"
    "  struct event_base *base;\n"
    "  if (akrgen_fuzz_server == NULL) akrgen_fuzz_setup();\n"
    "  base = ackrpc_server_base(akrgen_fuzz_server);\n"
    "  memset(&c, 0, sizeof c);\n"
    "  c.data = data;\n"
    "  c.size = size;\n"
    "  c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);\n"
    "  if (c.fd < 0) abort();\n"
    "  /* The listening socket has a backlog: connect() completes at once. */\n"
    "  if (connect(c.fd, (const struct sockaddr *)&akrgen_fuzz_addr,\n"
    "              akrgen_fuzz_addr_len) != 0)\n"
    "    abort();\n"
    "  c.ev = event_new(base, c.fd, EV_WRITE | EV_PERSIST, akrgen_fuzz_io, &c);\n"
    "  if (c.ev == NULL || event_add(c.ev, NULL) != 0) abort();\n"
    "  while (!c.closed)\n"
    "    if (event_base_loop(base, EVLOOP_ONCE) < 0) abort();\n"
    "  event_free(c.ev);\n"
    "  close(c.fd);\n"
    "  return 0;\n"
    "}\n";

/* The handlers of service `s` and the function that registers them. */
static void emit_service(akrgen_buf *b, const akrgen_model *m, size_t s) {
  size_t n = m->services[s].n_methods;
  akrgen_vars v = {0};
  for (size_t i = 0; i < n; i++) {
    vars_method(&v, m, s, i);
    emit(b, fuzz_handler, &v);
  }
  vars_service(&v, m, s);
  emit(b, register_open, &v);
  for (size_t i = 0; i < n; i++) {
    vars_method(&v, m, s, i);
    emit(b, register_member, &v);
  }
  emit(b, register_close, &v);
  vars_free(&v);
}

void akrgen_emit_fuzz(akrgen_buf *b, const akrgen_model *m) {
  akrgen_vars v = {0};
  emit_banner(
      b, m,
      "A libFuzzer entry for the services of this file: each input is written\n"
      " * as the bytes of one connection to a server that has every service\n"
      " * registered, with handlers that answer a default reply, through the real\n"
      " * socket and framing code. ackrpc_generate() builds it when\n"
      " * ACKRPC_GENERATE_FUZZ is ON; libFuzzer (or a replay main) supplies main().");
  vars_file(&v, m);
  emit(b, fuzz_top, &v);
  for (size_t s = 0; s < m->n_services; s++)
    emit_service(b, m, s);
  buf_puts(b, setup_open);
  for (size_t s = 0; s < m->n_services; s++) {
    vars_set(&v, "s", "%zu", s);
    emit(b, setup_register, &v);
  }
  buf_puts(b, setup_close);
  buf_puts(b, conn_send);
  buf_puts(b, conn_drain);
  buf_puts(b, test_one_input);
  vars_free(&v);
}
