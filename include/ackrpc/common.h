/* ackrpc/common.h: types shared by the server and the client: method
 * descriptions, metadata, peer credentials and the log callback. */
#ifndef ACKRPC_COMMON_H
#define ACKRPC_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <ackrpc/export.h>
#include <ackrpc/status.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ProtobufCMessageDescriptor;

/* One RPC method: its full name and the protobuf-c descriptors of its request
 * and reply messages. Generated code emits these as static const tables; the
 * library copies what it keeps, so a method description may be a temporary. */
typedef struct ackrpc_method {
  const char *name; /* "package.Service/Method", as on the wire */
  const struct ProtobufCMessageDescriptor *request;
  const struct ProtobufCMessageDescriptor *reply;
} ackrpc_method;

/* One .proto file's google.protobuf.FileDescriptorProto, serialized
 * (without source code info), for reflection. */
typedef struct ackrpc_file_descriptor {
  const char *name; /* "dir/name.proto", as protoc names it */
  const uint8_t *data;
  size_t len;
} ackrpc_file_descriptor;

/* A service: its full name and its methods, in .proto order. Generated
 * code emits one per service as a static const table (for registration and
 * reflection). `files` is what reflection serves for it: the descriptor of
 * the .proto file that declares the service and of every file needed to
 * decode its messages, transitively, each once, dependencies first (so the
 * set is self-contained; imports used only for options are left out);
 * NULL with n_files 0 when there are none (the methods are still listed,
 * with their message type names). Generated tables point `files` at static
 * data shared by the services of one .proto file. */
typedef struct ackrpc_service {
  const char *name; /* "package.Service" */
  const ackrpc_method *methods;
  size_t n_methods;
  const ackrpc_file_descriptor *files;
  size_t n_files;
} ackrpc_service;

/* Who may call: a rule on the peer's kernel-reported credentials, and on
 * the principal a trusted bridge vouches for. A call is allowed if the
 * policy is empty (no field set), or if any set field admits it. Root is
 * not special: list uid 0 to admit it.
 *
 * Local calls and bridged calls are told apart (docs/SECURITY.md,
 * "Principals"): a call on a connection from a peer the server's `bridges`
 * policy names (ackrpc_server_options) is *bridged*; its caller is the
 * principal the bridge sent (metadata ACKRPC_PRINCIPAL_KEY), not the
 * bridge's process. For a bridged call only `principals` can admit it: the
 * uid and gid fields never do (they would name the bridge), and one
 * without a principal (anonymous) is admitted by an empty policy only. For
 * a local call `principals` admits nothing. */
typedef struct ackrpc_policy {
  /* Admit peers whose uid is the server process's effective uid. */
  int same_uid;
  /* Admit these uids. */
  const uid_t *uids;
  size_t n_uids;
  /* Admit peers whose primary or supplementary groups include one of these
   * gids (supplementary groups via SO_PEERGROUPS). */
  const gid_t *gids;
  size_t n_gids;
  /* Admit members of these groups, by name; resolved when the policy is
   * installed (an unknown name is an error then, not a silent no-match). */
  const char *const *group_names;
  size_t n_group_names;
  /* Admit bridged calls whose principal is one of these, compared byte for
   * byte (e.g. "nats:CLI/alice", docs/SCALE.md). Each 1 to
   * ACKRPC_MAX_PRINCIPAL bytes of printable ASCII, '"' and '\\' excepted;
   * copied when the policy is installed. Not for the server-wide policy nor
   * the bridges policy (which check a connection, not a call): E_INVAL
   * there. */
  const char *const *principals;
  size_t n_principals;
} ackrpc_policy;

/* The metadata key a trusted bridge puts the caller's principal under
 * (ackrpc_server_options.bridges). The server takes it only on a
 * connection from a bridge: from any other peer a call carrying it is
 * refused PERMISSION_DENIED, its handler not run. */
#define ACKRPC_PRINCIPAL_KEY "ackrpc-principal"
/* A principal's length in bytes, at most. */
#define ACKRPC_MAX_PRINCIPAL 256

/* One metadata entry as the client sends it. Keys are 1 to 64 characters of
 * [a-z0-9._-]; values are opaque bytes, up to 4096. */
typedef struct ackrpc_metadata {
  const char *key;
  const void *value;
  size_t value_len;
} ackrpc_metadata;

/* The credentials of the process at the other end of the socket, as the
 * kernel recorded them when it connected (SO_PEERCRED). */
typedef struct ackrpc_peer {
  pid_t pid;
  uid_t uid;
  gid_t gid;
} ackrpc_peer;

/* Limits of the protocol itself (docs/PROTOCOL.md). */
#define ACKRPC_MAX_CALL_ID 64      /* bytes */
#define ACKRPC_MAX_METADATA 64     /* entries */
#define ACKRPC_MAX_METADATA_KEY 64 /* bytes */
#define ACKRPC_MAX_METADATA_VALUE 4096
#define ACKRPC_MAX_HEAD 65536      /* bytes of a frame's head */
#define ACKRPC_MAX_METHOD_NAME 256 /* bytes */

/* Log levels, most severe first. As a threshold, a message is logged if its
 * level is at or above the threshold's severity; ACKRPC_LOG_DEFAULT (0)
 * means WARNING. */
typedef enum ackrpc_log_level {
  ACKRPC_LOG_DEFAULT = 0,
  ACKRPC_LOG_ERROR = 1,
  ACKRPC_LOG_WARNING = 2,
  ACKRPC_LOG_INFO = 3,
  ACKRPC_LOG_DEBUG = 4,
} ackrpc_log_level;

/* A log sink. `message` is one line without a trailing newline, valid only
 * during the call. Called from the thread that runs the event loop. */
typedef void (*ackrpc_log_fn)(void *user, ackrpc_log_level level, const char *message);

/* The default sink: writes "ackrpc: LEVEL: message\n" to stderr (lines
 * longer than 1 KiB are cut). Used when an options struct leaves `log`
 * NULL; pass ackrpc_log_discard to silence. It never waits: when stderr
 * cannot take the line at once (a pipe nobody reads, a stalled terminal or
 * journal), the line is dropped and counted (ackrpc_log_stderr_dropped()),
 * so a full pipe cannot stop a server's loop. Safe from any thread. */
ACKRPC_EXPORT void ackrpc_log_stderr(void *user, ackrpc_log_level level,
                                     const char *message);

/* Lines ackrpc_log_stderr() dropped in this process because stderr could
 * not take them at once. */
ACKRPC_EXPORT uint64_t ackrpc_log_stderr_dropped(void);

/* Parses a log level's name, in any case: "error", "warning" (or "warn"),
 * "info", "debug". For programs that take a level from their command line or
 * environment (the shipped servers read ACKRPC_LOG_LEVEL). Returns OK and
 * sets *ret_level, or E_INVAL (NULL or unknown name; *ret_level untouched). */
ACKRPC_EXPORT ackrpc_status ackrpc_log_level_parse(const char *name,
                                                   ackrpc_log_level *ret_level);

/* The environment variable ackrpc_log_level_from_env() reads. */
#define ACKRPC_LOG_LEVEL_ENV "ACKRPC_LOG_LEVEL"

/* The log level the environment asks for: ACKRPC_LOG_LEVEL parsed by
 * ackrpc_log_level_parse(), so that every server takes the same setting
 * the same way. Unset or empty: OK with ACKRPC_LOG_DEFAULT. Returns OK and
 * sets *ret_level, or E_INVAL (NULL ret_level, or a value that names no
 * level; *ret_level untouched): then, if `errbuf` is not NULL and `errbuf_len`
 * > 0, errbuf holds a NUL-terminated sentence for the user naming the
 * variable, its value and the accepted names (cut to fit). Prints nothing.
 * getenv() underneath: call it while no thread changes the environment
 * (at start-up). */
ACKRPC_EXPORT ackrpc_status ackrpc_log_level_from_env(ackrpc_log_level *ret_level,
                                                      char *errbuf, size_t errbuf_len);

/* A sink that drops everything. */
ACKRPC_EXPORT void ackrpc_log_discard(void *user, ackrpc_log_level level,
                                      const char *message);

/* google.protobuf.Timestamp and .Duration, converted without the generated
 * types: pass and get their `seconds` and `nanos` fields. The ranges are
 * the ones those types define: a Timestamp from 0001-01-01T00:00:00Z to
 * 9999-12-31T23:59:59.999999999Z with nanos in 0..999999999 (also before
 * 1970: -1.5 s is seconds -2, nanos 500000000); a Duration within
 * ±315576000000 s (10,000 years) with nanos in -999999999..999999999 of the
 * same sign as seconds. Each function checks its input and its result
 * against them (and against time_t's range), returns OK and sets its
 * outputs, or E_INVAL (a NULL pointer, a value outside its range, or a
 * result that would be; outputs untouched). Milliseconds are rounded down
 * for a Timestamp (the millisecond it falls in) and toward zero for a
 * Duration (as its sign says). A struct timespec is normalized (tv_nsec in
 * 0..999999999), for a negative Duration too. Pure functions: no
 * allocation, safe from any thread. */
#define ACKRPC_TIMESTAMP_MIN_SECONDS (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define ACKRPC_TIMESTAMP_MAX_SECONDS 253402300799LL   /* 9999-12-31T23:59:59Z */
#define ACKRPC_DURATION_MAX_SECONDS 315576000000LL    /* and its negative */

ACKRPC_EXPORT ackrpc_status ackrpc_timestamp_to_timespec(int64_t seconds, int32_t nanos,
                                                         struct timespec *ret_ts);
ACKRPC_EXPORT ackrpc_status ackrpc_timestamp_from_timespec(const struct timespec *ts,
                                                           int64_t *ret_seconds,
                                                           int32_t *ret_nanos);
/* Milliseconds since 1970-01-01T00:00:00Z. */
ACKRPC_EXPORT ackrpc_status ackrpc_timestamp_to_ms(int64_t seconds, int32_t nanos,
                                                   int64_t *ret_ms);
ACKRPC_EXPORT ackrpc_status ackrpc_timestamp_from_ms(int64_t ms, int64_t *ret_seconds,
                                                     int32_t *ret_nanos);
ACKRPC_EXPORT ackrpc_status ackrpc_duration_to_timespec(int64_t seconds, int32_t nanos,
                                                        struct timespec *ret_ts);
ACKRPC_EXPORT ackrpc_status ackrpc_duration_from_timespec(const struct timespec *ts,
                                                          int64_t *ret_seconds,
                                                          int32_t *ret_nanos);
ACKRPC_EXPORT ackrpc_status ackrpc_duration_to_ms(int64_t seconds, int32_t nanos,
                                                  int64_t *ret_ms);
ACKRPC_EXPORT ackrpc_status ackrpc_duration_from_ms(int64_t ms, int64_t *ret_seconds,
                                                    int32_t *ret_nanos);

#ifdef __cplusplus
}
#endif

#endif /* ACKRPC_COMMON_H */
