/* reflect.c: the ackrpc tool's client of the servers' built-in services
 * (proto/ackrpc/reflection.proto, served by libackrpc's builtin.c):
 * reflection for list, describe and call; health and stats for their
 * commands. The messages and method tables are generated into the tool's
 * own build directory from the same .proto. */
#include <errno.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "ackrpc/reflection.pb-c.h"
#include "cli.h"

const char akrcli_server_help[] =
    "The server (every command that connects):\n"
    "  --server-uid UID|NAME|any  the user the server must run as: checked on\n"
    "                             the connected socket (SO_PEERCRED) before the\n"
    "                             request is sent (exit 77 if it is another).\n"
    "                             Default: root, your own user, or the owner of\n"
    "                             the socket's directory (of the socket file in\n"
    "                             a sticky directory such as /tmp); for @name,\n"
    "                             root or your own user. \"any\": no check\n"
    "  -t, --timeout-ms MS        the deadline of each exchange with the server\n"
    "                             (the reflection lookup, health, stats: default\n"
    "                             10000; a call: default 30000, and the lookup\n"
    "                             before it counts against it)\n";

int akrcli_timeout_take(akrcli_server *s, const char *cmd, const char *arg) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(arg, &end, 10);
  if (arg[0] >= '0' && arg[0] <= '9' && !*end && (errno == ERANGE || v > UINT32_MAX)) {
    fprintf(stderr, "%s %s: --timeout-ms %s is out of range (1 to 4294967295)\n",
            AKRCLI_PROG, cmd, arg);
    return -1;
  }
  if (arg[0] < '0' || arg[0] > '9' || *end || errno || v == 0) {
    fprintf(stderr, "%s %s: --timeout-ms wants milliseconds (1 to 4294967295)\n",
            AKRCLI_PROG, cmd);
    return -1;
  }
  s->timeout_ms = (uint32_t)v;
  return 0;
}

int akrcli_server_opt_take(akrcli_server *s, const char *cmd, int opt,
                           const char *arg) {
  if (opt == 't') return akrcli_timeout_take(s, cmd, arg) < 0 ? -1 : 1;
  if (opt == AKRCLI_OPT_SERVER_UID)
    return akrcli_server_uid_take(s, cmd, arg) < 0 ? -1 : 1;
  return 0;
}

int akrcli_server_uid_take(akrcli_server *s, const char *cmd, const char *arg) {
  if (strcmp(arg, "any") == 0) {
    s->check = ACKRPC_SERVER_CHECK_NONE;
    return 0;
  }
  char *end;
  errno = 0;
  unsigned long long v = strtoull(arg, &end, 10);
  if (arg[0] >= '0' && arg[0] <= '9' && !*end && !errno && v < (uid_t)-1) {
    s->check = ACKRPC_SERVER_CHECK_UID;
    s->uid = (uid_t)v;
    return 0;
  }
  struct passwd pw, *found = NULL;
  char buf[4096];
  if (arg[0] && (arg[0] < '0' || arg[0] > '9') &&
      getpwnam_r(arg, &pw, buf, sizeof buf, &found) == 0 && found) {
    s->check = ACKRPC_SERVER_CHECK_UID;
    s->uid = found->pw_uid;
    return 0;
  }
  fprintf(stderr,
          "%s %s: --server-uid wants a uid, a user name or \"any\" (got \"%s\")\n",
          AKRCLI_PROG, cmd, arg);
  return -1;
}

const char *akrcli_address(const char *socket) {
  return socket && strncmp(socket, "unix:", 5) == 0 ? socket + 5 : socket;
}

void akrcli_client_error(const char *cmd, const char *socket, ackrpc_status st) {
  const char *addr = akrcli_address(socket);
  if (st == ACKRPC_E_NOMEM)
    fprintf(stderr, "%s %s: out of memory\n", AKRCLI_PROG, cmd);
  else if (!addr || !*addr)
    fprintf(stderr, "%s %s: the socket address is empty (a path, @name or unix:...)\n",
            AKRCLI_PROG, cmd);
  else
    fprintf(stderr, "%s %s: \"%s\": %s\n", AKRCLI_PROG, cmd, socket,
            ackrpc_strerror(st));
}

ackrpc_status akrcli_client_new(const akrcli_server *s, uint32_t timeout_ms,
                                ackrpc_client **ret_client) {
  ackrpc_client_options co = {.address = akrcli_address(s->socket),
                              .timeout_ms = timeout_ms,
                              .server_check = s->check,
                              .server_uid = s->uid};
  return ackrpc_client_new(&co, ret_client);
}

int akrcli_builtin_call(const char *cmd, const akrcli_server *srv,
                        const ackrpc_method *m, const ProtobufCMessage *request,
                        ProtobufCMessage **ret_reply, ackrpc_status *ret_status) {
  ackrpc_client *client = NULL;
  const char *socket = srv->socket;
  ackrpc_status st = akrcli_client_new(
      srv, srv->timeout_ms ? srv->timeout_ms : AKRCLI_BUILTIN_TIMEOUT_MS, &client);
  if (st != ACKRPC_OK) {
    akrcli_client_error(cmd, socket, st);
    return st == ACKRPC_E_NOMEM ? AKRCLI_EXIT_SOFTWARE : AKRCLI_EXIT_USAGE;
  }
  /* An empty request of any of these types encodes as no bytes. */
  /* Room for any of the request types (protobuf_c_message_init() writes
   * the whole struct). */
  union {
    ProtobufCMessage base;
    max_align_t align;
    unsigned char room[256];
  } empty;
  if (!request) {
    if (m->request->sizeof_message > sizeof empty) {
      ackrpc_client_free(client);
      fprintf(stderr, "%s %s: internal error: request type too large\n", AKRCLI_PROG,
              cmd);
      return AKRCLI_EXIT_SOFTWARE;
    }
    protobuf_c_message_init(m->request, &empty.base);
    request = &empty.base;
  }
  ackrpc_result res = {0};
  st = ackrpc_client_call(client, m, request, NULL, &res);
  int rc = 0;
  if (st == ACKRPC_OK && res.reply) {
    *ret_reply = res.reply;
    res.reply = NULL;
  } else if (st == ACKRPC_OK) {
    fprintf(stderr, "%s %s: %s: the reply does not decode as %s\n", AKRCLI_PROG, cmd,
            m->name, m->reply->name);
    rc = AKRCLI_EXIT_BAD_REPLY;
  } else if (st == ACKRPC_UNIMPLEMENTED) {
    fprintf(stderr,
            "%s %s: %s: the server does not offer %s (its built-in services are "
            "turned off, or it is an older ackrpc)%s\n",
            AKRCLI_PROG, cmd, socket, m->name,
            m == &akrcli_m_list_services || m == &akrcli_m_file_containing_symbol
                ? ": pass the descriptors with --descriptor-set FILE or --proto FILE"
                : "");
    rc = AKRCLI_EXIT_UNSUPPORTED;
  } else if (ret_status && ackrpc_status_outcome(st) == ACKRPC_OUTCOME_ACKED) {
    *ret_status = st;
    rc = (int)st;
  } else if (ackrpc_status_outcome(st) == ACKRPC_OUTCOME_NO_ACK) {
    /* Sent but not answered: a built-in call only reads, and the user's
     * own request (if any) was never sent, so this is "not delivered",
     * with no --call-id to retry with. */
    fprintf(stderr, "%s %s: %s: no answer to %s: %s\n", AKRCLI_PROG, cmd, socket,
            m->name, res.message && res.message[0] ? res.message : ackrpc_strerror(st));
    rc = AKRCLI_EXIT_NOT_DELIVERED;
  } else {
    rc = akrcli_report_status(cmd, socket, &res, st, m->name);
  }
  ackrpc_result_clear(&res);
  ackrpc_client_free(client);
  return rc;
}

/* Appends a varint to out (at most 10 bytes). */
static size_t put_varint(uint8_t *out, uint64_t v) {
  size_t n = 0;
  do {
    out[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  return n;
}

/* Whether the server lists `method` (package.Service/Method, or with a dot
 * for the slash): 1 yes, 0 no, -1 the list failed (printed). */
static int served_method(const char *cmd, const akrcli_server *srv,
                         const char *method) {
  ProtobufCMessage *msg = NULL;
  if (akrcli_builtin_call(cmd, srv, &akrcli_m_list_services, NULL, &msg, NULL) != 0)
    return -1;
  const Ackrpc__Reflection__ListServicesReply *r =
      (const Ackrpc__Reflection__ListServicesReply *)msg;
  const char *dot = strrchr(method, '.');
  size_t len = strlen(method);
  int found = 0;
  for (size_t i = 0; i < r->n_services && !found; i++)
    for (size_t j = 0; j < r->services[i]->n_methods && !found; j++) {
      const char *name = r->services[i]->methods[j]->name;
      if (!name || strlen(name) != len) continue;
      if (strcmp(name, method) == 0) found = 1;
      /* package.Service.Method: the slash written as a dot. */
      else if (!strchr(method, '/') && dot && name[dot - method] == '/' &&
               strncmp(name, method, (size_t)(dot - method)) == 0 &&
               strcmp(name + (dot - method) + 1, dot + 1) == 0)
        found = 1;
    }
  protobuf_c_message_free_unpacked(msg, NULL);
  return found;
}

int akrcli_reflect_files(const char *cmd, const akrcli_server *srv, const char *symbol,
                         akrcli_pool *pool) {
  Ackrpc__Reflection__FileRequest req = ACKRPC__REFLECTION__FILE_REQUEST__INIT;
  req.symbol = (char *)(symbol ? symbol : "");
  ProtobufCMessage *reply = NULL;
  ackrpc_status status = ACKRPC_OK;
  int rc = akrcli_builtin_call(cmd, srv, &akrcli_m_file_containing_symbol, &req.base,
                               &reply, &status);
  if (rc != 0 && status == ACKRPC_NOT_FOUND && *req.symbol) {
    /* No descriptors for the method: is it served at all? */
    int served = served_method(cmd, srv, req.symbol);
    if (served < 0) return AKRCLI_EXIT_NOT_DELIVERED;
    if (!served) {
      fprintf(stderr, "%s %s: no such method %s\n", AKRCLI_PROG, cmd, req.symbol);
      return AKRCLI_EXIT_NO_METHOD;
    }
    fprintf(stderr,
            "%s %s: the server has no descriptors for %s (registered without them): "
            "pass --descriptor-set FILE or --proto FILE, or use --binary\n",
            AKRCLI_PROG, cmd, req.symbol);
    return AKRCLI_EXIT_DATAERR;
  }
  if (rc != 0 && status == ACKRPC_NOT_FOUND) {
    fprintf(stderr,
            "%s %s: the server has no descriptors for %s (not served, or registered "
            "without descriptors: pass --descriptor-set FILE or --proto FILE)\n",
            AKRCLI_PROG, cmd, *req.symbol ? req.symbol : "any service");
    return AKRCLI_EXIT_DATAERR;
  }
  if (rc != 0 && status != ACKRPC_OK) {
    fprintf(stderr, "%s %s: reflection failed: %s (%d)\n", AKRCLI_PROG, cmd,
            ackrpc_status_name(status), (int)status);
    return rc;
  }
  if (rc != 0) return rc;
  const Ackrpc__Reflection__FileReply *files =
      (const Ackrpc__Reflection__FileReply *)reply;
  size_t total = 0;
  for (size_t i = 0; i < files->n_file_descriptor_proto; i++)
    total += 11 + files->file_descriptor_proto[i].len;
  uint8_t *set = malloc(total ? total : 1);
  if (!set) {
    protobuf_c_message_free_unpacked(reply, NULL);
    fprintf(stderr, "%s %s: out of memory\n", AKRCLI_PROG, cmd);
    return AKRCLI_EXIT_SOFTWARE;
  }
  size_t n = 0;
  for (size_t i = 0; i < files->n_file_descriptor_proto; i++) {
    const ProtobufCBinaryData *f = &files->file_descriptor_proto[i];
    set[n++] = 0x0a;
    n += put_varint(set + n, f->len);
    if (f->len) memcpy(set + n, f->data, f->len);
    n += f->len;
  }
  protobuf_c_message_free_unpacked(reply, NULL);
  char err[512];
  rc = 0;
  if (akrcli_pool_add_set(pool, set, n, err, sizeof err) < 0) {
    fprintf(stderr, "%s %s: the server's descriptors do not decode: %s\n", AKRCLI_PROG,
            cmd, err);
    rc = AKRCLI_EXIT_BAD_REPLY;
  }
  free(set);
  return rc;
}
