/* emit_fuzz.c: NAME.ackrpc-fuzz.c, a libFuzzer entry for the services of a
 * file: a server (created once per process, on an abstract address) with
 * every service registered and handlers that walk the request and answer
 * a default reply; each input is the bytes of one connection to it, sent
 * from the same thread through the server's loop. Only the handlers and
 * their registration depend on the .proto; the rest is fixed text.
 *
 * A file that declares descriptor fields (ackrpc.Fd) gets a driver that
 * also passes descriptors: the first byte of an input chooses them, the
 * rest is the connection (fds_* below). Files without them keep the plain
 * driver, so that their inputs and corpora keep their meaning. */
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
    "$mman$"
    "#include <sys/socket.h>\n"
    "#include <sys/un.h>\n"
    "#include <unistd.h>\n"
    "\n"
    "#include <event2/event.h>\n"
    "\n"
    "#include \"$stem$.ackrpc.h\"\n"
    "\n"
    "int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);\n";

/* With descriptor fields: the kinds of descriptor an input may send. */
static const char fds_open[] =
    "\n"
    "/* Descriptors (this file declares ackrpc.Fd fields). The first byte of an\n"
    " * input chooses those sent with the connection's first frame: bits 0-1\n"
    " * how many (0 to 3), bits 2-3, 4-5 and 6-7 the kind of each in turn. The\n"
    " * server takes at most AKRGEN_FUZZ_MAX_FDS - 1 per call: a third one is\n"
    " * cut off by the kernel, and the frame refused. */\n"
    "#define AKRGEN_FUZZ_MAX_FDS 3\n"
    "\n"
    "/* What a memfd holds: an unknown field (number 1000, 4 bytes), which a\n"
    " * request type without a field 1000 decodes and drops. */\n"
    "static const char akrgen_fuzz_memfd[] = \"\\302\\076\\004fuzz\";\n"
    "\n"
    "/* A new descriptor of kind `kind`: 0 a sealed memfd (as a body in a memfd\n"
    " * is, docs/PROTOCOL.md 2.6), 1 the same unsealed, 2 the read end of a pipe\n"
    " * (its write end closed), 3 /dev/null. abort() if the system refuses:\n"
    " * descriptors the server leaks end there. */\n"
    "static int akrgen_fuzz_open(unsigned kind) {\n"
    "  int fd, p[2];\n"
    "  switch (kind) {\n"
    "  case 0:\n"
    "  case 1:\n"
    "    fd = memfd_create(\"ackrpc-fuzz\", MFD_CLOEXEC | MFD_ALLOW_SEALING);\n"
    "    if (fd < 0 ||\n"
    "        write(fd, akrgen_fuzz_memfd, sizeof akrgen_fuzz_memfd - 1) !=\n"
    "            (ssize_t)(sizeof akrgen_fuzz_memfd - 1) ||\n"
    "        (kind == 0 &&\n"
    "         fcntl(fd, F_ADD_SEALS,\n"
    "               F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0))\n"
    "      abort();\n"
    "    return fd;\n"
    "  case 2:\n"
    "    if (pipe2(p, O_CLOEXEC) != 0) abort();\n"
    "    close(p[1]);\n"
    "    return p[0];\n"
    "  default:\n"
    "    fd = open(\"/dev/null\", O_RDWR | O_CLOEXEC);\n"
    "    if (fd < 0) abort();\n"
    "    return fd;\n"
    "  }\n"
    "}\n"
    "\n"
    "/* How many bytes the descriptors go with: the first frame, as its prefix\n"
    " * announces it (docs/PROTOCOL.md 2.5), or all of the input if that is\n"
    " * shorter. */\n"
    "static size_t akrgen_fuzz_first(const uint8_t *data, size_t size) {\n"
    "  uint64_t len = 12;\n"
    "  int i;\n"
    "  if (size < 12) return size;\n"
    "  for (i = 0; i < 4; i++)\n"
    "    len += ((uint64_t)data[4 + i] + data[8 + i]) << (8 * i);\n"
    "  return len < size ? (size_t)len : size;\n"
    "}\n";

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
    "$max_fds$"
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

static const char conn_struct_open[] =
    "\n"
    "/* One connection: the client end is driven by events on the server's loop,\n"
    " * so one thread runs both ends. */\n"
    "typedef struct akrgen_fuzz_conn {\n"
    "  int fd;\n"
    "  const uint8_t *data;\n"
    "  size_t size, sent;\n"
    "  int closed;\n"
    "  struct event *ev;\n";

static const char fds_conn_struct[] =
    "  int fds[AKRGEN_FUZZ_MAX_FDS]; /* ours until sent, fds[0..n_fds) */\n"
    "  size_t n_fds;\n"
    "  size_t first; /* the bytes they go with */\n";

static const char conn_struct_close[] =
    "} akrgen_fuzz_conn;\n"
    "\n"
    "static void akrgen_fuzz_io(evutil_socket_t fd, short what, void *arg);\n";

static const char fds_sendmsg[] =
    "\n"
    "static void akrgen_fuzz_close_fds(akrgen_fuzz_conn *c) {\n"
    "  while (c->n_fds > 0)\n"
    "    close(c->fds[--c->n_fds]);\n"
    "}\n"
    "\n"
    "/* Sends the descriptors, in one SCM_RIGHTS message, with (up to) the first\n"
    " * c->first bytes, and closes our copies once sent, or once the send failed\n"
    " * for good. */\n"
    "static ssize_t akrgen_fuzz_sendmsg(akrgen_fuzz_conn *c) {\n"
    "  union {\n"
    "    char buf[CMSG_SPACE(AKRGEN_FUZZ_MAX_FDS * sizeof(int))];\n"
    "    struct cmsghdr align;\n"
    "  } control;\n"
    "  struct msghdr msg;\n"
    "  struct iovec iov;\n"
    "  struct cmsghdr *cm;\n"
    "  ssize_t n;\n"
    "  memset(&control, 0, sizeof control);\n"
    "  memset(&msg, 0, sizeof msg);\n"
    "  iov.iov_base = (void *)c->data;\n"
    "  iov.iov_len = c->first;\n"
    "  msg.msg_iov = &iov;\n"
    "  msg.msg_iovlen = 1;\n"
    "  msg.msg_control = control.buf;\n"
    "  msg.msg_controllen = CMSG_SPACE(c->n_fds * sizeof(int));\n"
    "  cm = CMSG_FIRSTHDR(&msg);\n"
    "  cm->cmsg_level = SOL_SOCKET;\n"
    "  cm->cmsg_type = SCM_RIGHTS;\n"
    "  cm->cmsg_len = CMSG_LEN(c->n_fds * sizeof(int));\n"
    "  memcpy(CMSG_DATA(cm), c->fds, c->n_fds * sizeof(int));\n"
    "  n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);\n"
    "  if (n < 0 && errno == EAGAIN) return n;\n"
    "  akrgen_fuzz_close_fds(c);\n"
    "  return n;\n"
    "}\n";

static const char conn_send[] =
    "\n"
    "/* Writes the input; once it is all sent (or the server closed first: it\n"
    " * may refuse early), half-closes and waits for the end of the reply. */\n"
    "static void akrgen_fuzz_send(akrgen_fuzz_conn *c) {\n"
    "  while (c->sent < c->size) {\n"
    "    ssize_t n = $send$;\n"
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

static const char send_plain[] =
    "send(c->fd, c->data + c->sent, c->size - c->sent, MSG_NOSIGNAL)";
static const char send_fds[] =
    "c->n_fds > 0 ? akrgen_fuzz_sendmsg(c)\n"
    "                             : send(c->fd, c->data + c->sent, c->size - c->sent,\n"
    "                                    MSG_NOSIGNAL)";

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

static const char test_one_input_open[] =
    "\n"
    "int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {\n"
    "  akrgen_fuzz_conn c;\n"
    "  struct event_base *base;\n"
    "$decl$"
    "  if (akrgen_fuzz_server == NULL) akrgen_fuzz_setup();\n"
    "  base = ackrpc_server_base(akrgen_fuzz_server);\n"
    "  memset(&c, 0, sizeof c);\n";

static const char input_plain[] = "  c.data = data;\n"
                                  "  c.size = size;\n";

static const char input_fds[] =
    "  if (size > 0) {\n"
    "    spec = data[0];\n"
    "    data++;\n"
    "    size--;\n"
    "  }\n"
    "  c.data = data;\n"
    "  c.size = size;\n"
    "  /* Descriptors need a byte to go with. */\n"
    "  while (size > 0 && c.n_fds < (spec & 3)) {\n"
    "    c.fds[c.n_fds] = akrgen_fuzz_open((spec >> (2 + 2 * c.n_fds)) & 3);\n"
    "    c.n_fds++;\n"
    "  }\n"
    "  c.first = akrgen_fuzz_first(data, size);\n";

static const char test_one_input_close[] =
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
    "$close_fds$"
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

/* The banner's description, and that of the input with descriptors. */
#define FUZZ_WHAT                                                                      \
  "A libFuzzer entry for the services of this file: each input is written\n"           \
  " * as the bytes of one connection to a server that has every service\n"             \
  " * registered, with handlers that answer a default reply, through the real\n"       \
  " * socket and framing code. ackrpc_generate() builds it when\n"                     \
  " * ACKRPC_GENERATE_FUZZ is ON; libFuzzer (or a replay main) supplies main()."
#define FUZZ_WHAT_FDS                                                                  \
  "\n *\n"                                                                             \
  " * This file declares descriptor fields, so the first byte of an input says\n"      \
  " * which descriptors go with the connection's first frame, and the rest is\n"       \
  " * the connection's bytes. Bits 0-1: how many (0 to 3); bits 2-3, 4-5, 6-7:\n"      \
  " * the kind of the first, second, third: 0 a sealed memfd, 1 an unsealed\n"         \
  " * memfd, 2 the read end of a pipe, 3 /dev/null. They travel in one\n"              \
  " * SCM_RIGHTS message with the first 12 + H + B bytes (the first frame as its\n"    \
  " * prefix announces it, or all of them if fewer), and only if there is at\n"        \
  " * least one; the entry closes its copies once they are sent. The server\n"         \
  " * takes at most 2 descriptors per call (max_fds_per_call), so three are\n"         \
  " * over its limit. A memfd holds a fixed body (one unknown field), which a\n"       \
  " * frame with body_memfd (docs/PROTOCOL.md 2.6) may take as its own. An\n"          \
  " * input of one byte is an empty connection."

void akrgen_emit_fuzz(akrgen_buf *b, const akrgen_model *m) {
  akrgen_vars v = {0};
  int fds = akrgen_model_has_fds(m, 0);
  emit_banner(b, m, fds ? FUZZ_WHAT FUZZ_WHAT_FDS : FUZZ_WHAT);
  vars_file(&v, m);
  vars_set(&v, "mman", "%s", fds ? "#include <sys/mman.h>\n" : "");
  emit(b, fuzz_top, &v);
  if (fds) buf_puts(b, fds_open);
  for (size_t s = 0; s < m->n_services; s++)
    emit_service(b, m, s);
  vars_set(&v, "max_fds", "%s",
           fds ? "  options.max_fds_per_call = AKRGEN_FUZZ_MAX_FDS - 1;\n" : "");
  emit(b, setup_open, &v);
  for (size_t s = 0; s < m->n_services; s++) {
    vars_set(&v, "s", "%zu", s);
    emit(b, setup_register, &v);
  }
  buf_puts(b, setup_close);
  buf_puts(b, conn_struct_open);
  if (fds) buf_puts(b, fds_conn_struct);
  buf_puts(b, conn_struct_close);
  if (fds) buf_puts(b, fds_sendmsg);
  vars_set(&v, "send", "%s", fds ? send_fds : send_plain);
  emit(b, conn_send, &v);
  buf_puts(b, conn_drain);
  vars_set(&v, "decl", "%s", fds ? "  unsigned spec = 0;\n" : "");
  emit(b, test_one_input_open, &v);
  buf_puts(b, fds ? input_fds : input_plain);
  vars_set(
      &v, "close_fds", "%s",
      fds ? "  akrgen_fuzz_close_fds(&c); /* not sent: the connection failed first */\n"
          : "");
  emit(b, test_one_input_close, &v);
  vars_free(&v);
}
