/* cli.h: what the ackrpc tool's subcommands share: exit codes, the
 * descriptor options (--descriptor-set, --proto, -I) and where descriptors
 * come from, and small helpers. The subcommands print; the modules they use
 * (descpool.c, jsoncodec.c) never do. */
#ifndef AKRCLI_CLI_H
#define AKRCLI_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <ackrpc/ackrpc.h>

#include "descpool.h"

/* Exit statuses (docs/CLI.md, ackrpc(1)). 1 to 16 are the server's canonical
 * status codes; the others follow sysexits.h. */
enum {
  AKRCLI_EXIT_OK = 0,
  AKRCLI_EXIT_UNKNOWN_STATUS = 2, /* an acked code this tool does not know */
  AKRCLI_EXIT_NO_METHOD = 12,     /* no such method: UNIMPLEMENTED, as the
                                   * server answers one (whatever the
                                   * descriptors' source) */
  AKRCLI_EXIT_USAGE = 64,         /* bad command line */
  AKRCLI_EXIT_DATAERR = 65,       /* bad JSON, or input that does not fit the schema */
  AKRCLI_EXIT_NOINPUT = 66,       /* a file could not be read, protoc failed */
  AKRCLI_EXIT_NOT_DELIVERED = 69, /* connect or send failed: safe to retry */
  AKRCLI_EXIT_SOFTWARE = 70,      /* internal error (out of memory, system call) */
  AKRCLI_EXIT_NO_ACK = 75,        /* sent, no reply: outcome unknown */
  AKRCLI_EXIT_BAD_REPLY = 76,     /* acked, but the reply does not decode */
  AKRCLI_EXIT_NOPERM = 77,      /* the server is not who it should be (--server-uid) */
  AKRCLI_EXIT_UNSUPPORTED = 78, /* the server does not offer the built-in service */
};

/* Limits of the command line and of what is read. */
#define AKRCLI_MAX_DESC_FILES 32
#define AKRCLI_MAX_INCLUDES 64
#define AKRCLI_MAX_STDIN (64u * 1024 * 1024)

/* Where descriptors come from: files named on the command line. */
typedef struct akrcli_descopts {
  const char *sets[AKRCLI_MAX_DESC_FILES];
  size_t n_sets;
  const char *protos[AKRCLI_MAX_DESC_FILES];
  size_t n_protos;
  const char *includes[AKRCLI_MAX_INCLUDES];
  size_t n_includes;
} akrcli_descopts;

/* getopt_long codes of the descriptor options, and their entries for an
 * option table. */
#define AKRCLI_OPT_DESCSET 'D'
#define AKRCLI_OPT_PROTO 'P'
#define AKRCLI_OPT_INCLUDE 'I'
#define AKRCLI_DESC_LONGOPTS                                                           \
  {"descriptor-set", 1, NULL, AKRCLI_OPT_DESCSET},                                     \
      {"proto", 1, NULL, AKRCLI_OPT_PROTO}, {                                          \
    "import-path", 1, NULL, AKRCLI_OPT_INCLUDE                                         \
  }
#define AKRCLI_DESC_SHORTOPTS "D:P:I:"
/* The --help text of these options. */
extern const char akrcli_desc_help[];

/* Takes a descriptor option of subcommand `cmd`; returns 1 if `opt` was
 * one, 0 if not, or -1 (printed, "ackrpc CMD: ...") when a limit is
 * passed. */
int akrcli_descopts_take(akrcli_descopts *d, const char *cmd, int opt, const char *arg);

struct akrcli_server;

/* Fills `pool` for a subcommand: from the files given, or else from the
 * server's reflection (the files that define or use `symbol`; "" for all).
 * srv->socket may be NULL (then files are required). Prints what went wrong
 * and returns an exit status; 0 on success (then the caller clears the
 * pool). */
int akrcli_load_descriptors(const char *cmd, const akrcli_descopts *d,
                            const struct akrcli_server *srv, const char *symbol,
                            akrcli_pool *pool);

/* --- The server (reflect.c) --- */

/* The server a subcommand talks to: its address, and who it must run as
 * (--server-uid; the library checks it before sending anything). */
typedef struct akrcli_server {
  const char *socket; /* NULL: none given */
  ackrpc_server_check check;
  uid_t uid; /* for ACKRPC_SERVER_CHECK_UID */
  /* -t/--timeout-ms: the deadline of each exchange with the server (the
   * reflection lookup, health, stats); 0: AKRCLI_BUILTIN_TIMEOUT_MS. */
  uint32_t timeout_ms;
} akrcli_server;

/* The deadline of a built-in call when -t is not given. */
#define AKRCLI_BUILTIN_TIMEOUT_MS 10000

/* getopt_long code of --server-uid (no short form), its option table
 * entry, and its --help text. */
#define AKRCLI_OPT_SERVER_UID 0x100
#define AKRCLI_SERVER_LONGOPT                                                          \
  {"server-uid", 1, NULL, AKRCLI_OPT_SERVER_UID}, {"timeout-ms", 1, NULL, 't'}, {      \
    "timeout", 1, NULL, 't'                                                            \
  }
extern const char akrcli_server_help[];

/* Takes --server-uid's argument for `cmd`: a uid, a user name, or "any"
 * (no check). Returns 0, or -1 (printed: unknown user, bad number). */
int akrcli_server_uid_take(akrcli_server *s, const char *cmd, const char *arg);

/* Takes -t/--timeout-ms's argument for `cmd` (1 to 4294967295). Returns 0,
 * or -1 (printed). */
int akrcli_timeout_take(akrcli_server *s, const char *cmd, const char *arg);

/* Takes `opt` (getopt_long's value) if it is one of AKRCLI_SERVER_LONGOPT's
 * options (-t/--timeout-ms, --server-uid), with its argument `arg`, for
 * `cmd`. Returns 1 (taken), 0 (not one of them), or -1 (bad argument,
 * printed). */
int akrcli_server_opt_take(akrcli_server *s, const char *cmd, int opt, const char *arg);

/* The address a SOCKET argument names: "unix:" dropped ("unix:/path",
 * "unix:@name"); otherwise `socket` itself. */
const char *akrcli_address(const char *socket);

/* Prints why akrcli_client_new() failed for `socket` (status `st`). */
void akrcli_client_error(const char *cmd, const char *socket, ackrpc_status st);

/* A client of `s` (its address, "unix:" allowed, and server check) with this timeout
 * (0: the library's default). Returns ackrpc_client_new()'s status. */
ackrpc_status akrcli_client_new(const akrcli_server *s, uint32_t timeout_ms,
                                ackrpc_client **ret_client);

/* --- The server's built-in services (reflect.c) --- */

struct ProtobufCMessage;
struct ProtobufCMessageDescriptor;

/* The built-in methods: their tables are generated from
 * proto/ackrpc/reflection.proto by this tree's protoc-gen-ackrpc, as the
 * library's own are (the tool links only the public library). */
#include "ackrpc/reflection.ackrpc.h"
#define akrcli_m_list_services ackrpc__reflection__Reflection_ListServices_method
#define akrcli_m_file_containing_symbol                                                \
  ackrpc__reflection__Reflection_FileContainingSymbol_method
#define akrcli_m_health ackrpc__reflection__Health_Check_method
#define akrcli_m_stats ackrpc__reflection__Stats_Get_method

/* Calls a built-in method of the server `srv` (a request of the
 * method's type, NULL for an empty one). On OK returns 0 and *ret_reply
 * (free with protobuf_c_message_free_unpacked()). Otherwise prints why and
 * returns an exit status: 78 if the server does not offer the method
 * (UNIMPLEMENTED: built-ins turned off, or an older server); with
 * `ret_status` set, a server status other than those is returned there
 * (and the exit status for it) without printing, for the caller to
 * explain. */
int akrcli_builtin_call(const char *cmd, const akrcli_server *srv,
                        const ackrpc_method *m, const struct ProtobufCMessage *request,
                        struct ProtobufCMessage **ret_reply, ackrpc_status *ret_status);

/* Asks the server (reflection) for the files that define or use `symbol`
 * ("" for every service's) and adds them to the pool (not yet built).
 * Prints what went wrong and returns an exit status; 0 on success. */
int akrcli_reflect_files(const char *cmd, const akrcli_server *srv, const char *symbol,
                         akrcli_pool *pool);

/* Exit status and standard-error lines for a call's outcome (call.c). */
int akrcli_report_status(const char *cmd, const char *socket, const ackrpc_result *r,
                         ackrpc_status st, const char *method);

/* Reads all of a file ("-": stdin) up to `max` bytes. Returns 0 with a
 * malloc'd buffer (NUL-terminated, the NUL not counted), or -1 with errno
 * set (EFBIG: over the limit). */
int akrcli_read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len);

/* The program name for messages ("ackrpc"). */
#define AKRCLI_PROG "ackrpc"

/* Subcommands: argv[0] is the subcommand's name. */
int akrcli_cmd_call(int argc, char **argv);
int akrcli_cmd_list(int argc, char **argv);
int akrcli_cmd_describe(int argc, char **argv);
int akrcli_cmd_health(int argc, char **argv);
int akrcli_cmd_stats(int argc, char **argv);
int akrcli_cmd_capture(int argc, char **argv);
int akrcli_cmd_replay(int argc, char **argv);

/* The common tail of every --help: the exit statuses. */
extern const char akrcli_exit_help[];

#endif /* AKRCLI_CLI_H */
