/* ackrpc/server.h: the server, on a libevent 2.1 loop.
 *
 * A server listens on one Unix socket address, reads each connection's request
 * frame, decodes it, hands it to the handler registered for its method and
 * writes the handler's reply. One call per connection by default; a client
 * may send further request frames on the same connection before it
 * half-closes (session mode, docs/PROTOCOL.md): they are answered in order.
 *
 * Threads: everything but ackrpc_call_reply() and ackrpc_server_stop() runs on
 * the loop's thread. Handlers run on the loop's thread and must not block: a
 * handler that has slow work keeps the call and replies later, from any
 * thread.
 */
#ifndef ACKRPC_SERVER_H
#define ACKRPC_SERVER_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ackrpc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;
struct ProtobufCMessage;

typedef struct ackrpc_server ackrpc_server;
typedef struct ackrpc_call ackrpc_call;

/* The length of a request digest (ackrpc_call_request_digest()). */
#define ACKRPC_DIGEST_LEN 16

/* An answer kept in a durable reply store, as a lookup returns it. */
typedef struct ackrpc_stored_reply {
  ackrpc_status status; /* the status the call was answered with */
  const char *message;  /* NULL or NUL-terminated */
  const uint8_t *body;  /* the encoded reply message (may be NULL if empty) */
  size_t body_len;
} ackrpc_stored_reply;

/* What a reply lookup found for a call id. */
typedef enum ackrpc_lookup_result {
  ACKRPC_LOOKUP_NONE = 0, /* no answer kept: the handler runs */
  ACKRPC_LOOKUP_FOUND,    /* *ret filled: the call is answered with it */
  ACKRPC_LOOKUP_MISMATCH, /* the id was used for another request: refused */
  ACKRPC_LOOKUP_ERROR,    /* the store cannot tell: the call is refused
                           * UNAVAILABLE (never run twice by mistake) */
} ackrpc_lookup_result;

/* Looks a call id up in a durable reply store, on the server's loop thread,
 * before the handler runs. `digest` is the request's digest
 * (ACKRPC_DIGEST_LEN bytes); an id stored with another digest is MISMATCH.
 * What *ret points to must stay valid until the next lookup. Must not block
 * for long: it runs on the loop. ackrpc_reply_store_lookup()
 * (ackrpc/reply_store.h) is one. */
typedef ackrpc_lookup_result (*ackrpc_reply_lookup_fn)(void *user,
                                                       const uint8_t *call_id,
                                                       size_t call_id_len,
                                                       const uint8_t *digest,
                                                       ackrpc_stored_reply *ret);

/* Server options. Zero means "the default" for every field, so
 *   ackrpc_server_options o = {.address = "/run/app.sock"};
 * is a complete, safe configuration. */
typedef struct ackrpc_server_options {
  /* "/path/to.sock" (a socket file the server owns), "@name" (Linux
   * abstract namespace), or "systemd:" / "systemd:NAME" (a listening socket
   * inherited from systemd's socket activation, docs/OPERATIONS.md: the one
   * socket passed, or the one whose FileDescriptorName= is NAME). An
   * inherited socket belongs to systemd: the server neither creates, locks
   * nor removes its file, and it ignores socket_mode, socket_group, backlog
   * and handover. Required. Copied. */
  const char *address;
  /* The loop to attach to. NULL: the server creates and owns one, and
   * ackrpc_server_run() runs it. */
  struct event_base *base;
  /* Largest request frame accepted (head + body), refused from its announced
   * length before it is buffered. Default 4 MiB. */
  size_t max_request_size;
  /* Time allowed for a request frame to arrive whole, counted from accept
   * (or, in a session, from when the server starts waiting for the next
   * frame). A client that stalls or trickles is answered DEADLINE_EXCEEDED
   * and cut off; an idle session (between frames) is closed without a reply.
   * The same limit bounds writing a reply to a client that does not read.
   * Default 10000 ms. */
  uint32_t read_timeout_ms;
  /* Longest a call may wait for its handler's reply when the client sent no
   * deadline. Default 60000 ms. A client's own deadline, if shorter, wins. */
  uint32_t handler_timeout_ms;
  /* Connections served at once. At the limit, the connection that has
   * waited longest for its request is dropped to admit a new one, once it
   * has waited at least 100 ms (a younger one is most likely between its
   * connect and its write); until then, and while every connection is busy
   * with a call, new ones wait in the kernel's queue. Default 1024. */
  uint32_t max_connections;
  /* Connections from one peer uid at once. At the limit, the uid's own
   * connection that has waited longest for its request (idle or
   * trickling) is dropped to admit the new one; only if all are busy with
   * calls is the new one answered RESOURCE_EXHAUSTED. Default 256. */
  uint32_t max_connections_per_uid;
  /* Connections whose request is not complete yet (idle, slow or
   * trickling). Beyond this, the one that has waited longest is dropped
   * (answered RESOURCE_EXHAUSTED, never dispatched) once it has waited at
   * least 100 ms; meanwhile new connections wait in the kernel's queue.
   * Default 256. */
  uint32_t max_pending;
  /* Deepest nesting of messages accepted in a request, counting the request
   * itself as 1; deeper gives INVALID_ARGUMENT before decoding (protobuf-c
   * itself has no limit and overflows its stack). Checked only for request
   * types that can nest that deep. Default 100. */
  unsigned max_depth;
  /* The memory account (docs/SECURITY.md §2). What a connection holds (its
   * input buffer) and what each call holds from its admission until its
   * handler lets it go (the decoded request, unknown fields if kept) is
   * counted against its connection, its peer uid and the server; a call
   * the server answered DEADLINE_EXCEEDED while its handler still holds
   * it stays counted. A request that would not fit is refused
   * RESOURCE_EXHAUSTED (never dispatched); the calls already admitted keep
   * what they hold.
   *   max_memory_per_connection: default 20 * max_request_size (80 MiB):
   *     the largest request, its decoding (up to 16x its size) and a few
   *     calls left behind.
   *   max_memory_per_uid: default 256 MiB (at least the per-connection
   *     budget).
   *   max_memory: the server's, default 1 GiB (at least the per-uid
   *     budget). */
  size_t max_memory_per_connection;
  size_t max_memory_per_uid;
  size_t max_memory;
  /* Calls in progress (admitted, not yet let go by their handler, those
   * the server already answered included) per connection and per peer
   * uid; more are refused RESOURCE_EXHAUSTED. A connection serves one call
   * at a time, so the rest are calls it left behind: a session that
   * leaves calls with a slow handler (a deadline of 1 us) cannot pile them
   * up. Defaults 16 and 1024. */
  uint32_t max_calls_per_connection;
  uint32_t max_calls_per_uid;
  /* Nonzero keeps the unknown fields of requests in the decoded message
   * (protobuf-c keeps them, at several times their wire size, for as long
   * as the call lives). By default they are dropped before the handler
   * runs: a request padded with megabytes of fields the server does not
   * know then holds no more than the fields it knows. */
  int keep_unknown_fields;
  /* On ackrpc_server_stop(), how long calls in flight may take to finish
   * before they are answered UNAVAILABLE. Default 5000 ms. */
  uint32_t drain_timeout_ms;
  /* Permission bits of the socket file (path addresses only). Default 0600.
   * The file never exists with wider permissions, whatever the umask. */
  mode_t socket_mode;
  /* Group of the socket file, by name (path addresses only); NULL keeps the
   * process's group. With socket_mode 0660 this admits a group of users.
   * An unknown name fails ackrpc_server_new() with E_NOT_FOUND. */
  const char *socket_group;
  /* Listen backlog. Default 1024. */
  int backlog;
  /* Who may connect at all (copied). Checked when a connection is accepted,
   * before any byte is read; others get PERMISSION_DENIED. NULL: anyone who
   * can open the socket (its file mode decides). */
  const ackrpc_policy *policy;
  /* The peers trusted to vouch for a caller (copied; docs/SECURITY.md,
   * "Principals"): bridges such as ackrpc-nats export, which call on
   * behalf of callers elsewhere. Checked once per connection, on its
   * kernel credentials (run a bridge under a uid of its own). A call on a
   * bridge's connection is *bridged*: its caller is the principal the
   * bridge sent as metadata ACKRPC_PRINCIPAL_KEY (ackrpc_call_principal()),
   * or anonymous without one; method policies admit it by `principals`
   * only, never by the bridge's uid or gids. A call carrying that key from
   * any other peer is refused PERMISSION_DENIED and its handler does not
   * run; so is a bridge's call carrying it twice (INVALID_ARGUMENT) or with
   * a value that is no principal (INVALID_ARGUMENT). The bridge must still
   * pass `policy` by its own credentials. NULL: no bridges (every call is
   * local). A policy listing `principals` here, or in `policy`, fails
   * ackrpc_server_new() with E_INVAL. */
  const ackrpc_policy *bridges;
  /* Log sink and its threshold. Default: ackrpc_log_stderr at WARNING.
   * Lines are key=value pairs (docs/SECURITY.md lists them). At
   * ACKRPC_LOG_DEBUG the server also logs one line per call answered:
   * "call method=pkg.S/M status=OK us=35 peer_uid=1000 peer_pid=42
   * bytes_in=88 bytes_out=40" (latency from the request complete to the
   * reply written; a bridged call's line adds bridged=1 and
   * principal="nats:CLI/alice", empty when anonymous); below DEBUG that
   * costs one comparison. */
  ackrpc_log_fn log;
  void *log_user;
  ackrpc_log_level log_level;
  /* The reply cache, for idempotent retries (docs/DELIVERY.md). Off unless
   * reply_cache is nonzero: with it off, every call runs its handler, as
   * before (clients that reuse one call id for different requests, against
   * docs/PROTOCOL.md, keep working).
   * With it on, a call whose call id the server already answered OK for the
   * same request (the same method, body and peer uid, and principal for a
   * bridged call: compared by a digest,
   * ackrpc_call_request_digest()) gets that answer again, byte for byte, and
   * its handler does not run. A call id that comes back with another
   * method, body or uid is refused INVALID_ARGUMENT and never run: it is
   * never answered with another request's reply. A call whose id is still
   * being handled (a handler holds the first call, even past that call's
   * deadline) waits for the first call's answer, whatever it is, until its
   * own deadline; then it gets DEADLINE_EXCEEDED ("still being handled":
   * retry with the same id). Only OK answers are kept: errors stay
   * retryable. The cache is in memory and does not survive a restart: a
   * handler whose effect must happen once stores the call id with it
   * (ackrpc_call_id()), in the same transaction.
   * Bounds, over the answers kept, oldest dropped first:
   *   reply_cache_entries: answers kept. Default 4096 (about 1 MiB for
   *     small acks).
   *   reply_cache_bytes: their size (frames plus ~100 bytes each). Default
   *     16 MiB; an answer larger than this is not kept.
   *   reply_cache_age_ms: how long one is kept after it was answered.
   *     Default 300000 (5 min): several times a retrying client's whole
   *     deadline at the defaults (30 s), so its retries find the answer.
   * Calls still being handled are not counted: each is a call a handler
   * holds, bounded by what the server admits. */
  int reply_cache;
  uint32_t reply_cache_entries;
  size_t reply_cache_bytes;
  uint32_t reply_cache_age_ms;
  /* A durable reply store, consulted (on the loop thread) for a call with
   * a call id that the reply cache does not hold, before its handler runs:
   * an answer found is sent without running the handler, a MISMATCH is
   * refused INVALID_ARGUMENT, an ERROR UNAVAILABLE. Setting it turns the
   * reply cache on (it is what lets a repeat join a first call still
   * running). ackrpc/reply_store.h has one on SQLite, whose handlers store
   * the answer in the same transaction as their own writes
   * (docs/DELIVERY.md). NULL: none. */
  ackrpc_reply_lookup_fn reply_lookup;
  void *reply_lookup_user;
  /* Nonzero turns off the built-in services (ackrpc/reflection.proto):
   * ackrpc.reflection.Reflection (the services, methods and message schemas
   * this server has), ackrpc.reflection.Health (SERVING, or NOT_SERVING once
   * stopping) and ackrpc.reflection.Stats (per-method counts and
   * latencies). They are on by default; they are read-only and answer only
   * peers the server-wide policy admits (docs/SECURITY.md says what they
   * reveal). */
  int disable_builtins;
  /* Zero-downtime restarts (path and abstract addresses; docs/OPERATIONS.md).
   * Nonzero: ackrpc_server_new() first asks a server already running on the
   * address (one started with this option) for its listening socket, over
   * the control socket "ADDRESS.ctl", and serves that very socket: no
   * connection is refused during the restart. The predecessor stops
   * accepting, finishes the calls it has (as ackrpc_server_stop()) and its
   * ackrpc_server_run() returns. With no predecessor, the server binds as
   * usual. Either way it then offers its own socket to the next one. Only a
   * peer with the server's effective uid may use the control socket. */
  int handover;
  /* Descriptors a request may carry (docs/PROTOCOL.md §2.5), 1 to 253; the
   * receive buffer is sized to it, so more are cut off by the kernel and
   * the call is refused RESOURCE_EXHAUSTED. A method takes none unless
   * ackrpc_server_set_method_fds() says so. Default 16; above 253: E_INVAL. */
  unsigned max_fds_per_call;
  /* Large bodies by memfd (docs/PROTOCOL.md §2.6). A reply body of at
   * least this many bytes goes to a client that accepts it in a sealed
   * memfd instead of through the socket (not while the reply cache or a
   * reply store is on: their replies go inline, so that repeats get
   * them). 0, the default, and
   * SIZE_MAX: never (a fresh memfd per reply was slower than the socket at
   * every size measured, docs/PERFORMANCE.md). Requests whose body
   * came in a memfd are accepted whatever this is (the sender chooses),
   * within max_request_size and the memory budgets, which count the
   * mapped bytes. */
  size_t memfd_threshold;
  /* Nonzero: refuse requests whose body is in a memfd, UNIMPLEMENTED,
   * without dispatching them (a client may then send the body inline). */
  int refuse_body_memfd;
} ackrpc_server_options;

/* A handler. `request` is the decoded request message, of the type given at
 * registration (NULL for a method served raw,
 * ackrpc_server_set_method_raw()); it belongs to the call and stays valid
 * until the call is answered (ackrpc_call_reply()). The handler must answer the call
 * exactly once: before it returns, or later from any thread. */
typedef void (*ackrpc_handler_fn)(ackrpc_call *call,
                                  const struct ProtobufCMessage *request, void *user);

/* Creates a server: parses the address, creates the socket, binds and
 * listens, and registers its events on the loop. For a path address the
 * server takes "PATH.lock" (flock, held until ackrpc_server_free(); the
 * kernel releases it if the process dies), so of two servers started on one
 * path the second is refused, and a stale socket left by a crash is replaced
 * only by the lock's holder. The socket file is created owner-only, then
 * given socket_group and socket_mode: it is never wider than configured,
 * whatever the umask. A symlink or other non-socket file at the path is never
 * removed or followed. On success *ret_server owns the socket, its file and
 * the lock until ackrpc_server_free() removes them. On failure *ret_server is
 * untouched and nothing is left behind.
 * Errors: E_INVAL (NULL argument, no address, principals in `policy` or
 * `bridges`, a count without its array in either), E_ADDRESS (bad or too long
 * address: never truncated), E_ADDR_IN_USE ("another server is serving this
 * address"), E_EXISTS (a non-socket file or a symlink is in the way, or
 * PATH.lock is not a regular file of the server's user: a symlink, FIFO,
 * directory, device or another user's file), E_UNSAFE_DIR (a directory on the
 * way to the socket, from "/" down, and through any symlink, belongs to
 * neither root nor the server's effective user, or is writable by its group
 * or others without the sticky bit: the server's log says which directory
 * and why, docs/SECURITY.md §3), E_NOT_FOUND (unknown socket_group or policy
 * group), E_NOMEM, E_SYSTEM (errno is set).
 * At stop, the socket file and the lock are removed only if they are still
 * the files this server created (or received with a handover).
 * A "systemd:" address serves the inherited socket instead (no file, no
 * lock): E_NOT_FOUND if systemd passed none to this process (or none of that
 * name), E_ADDRESS if LISTEN_* are malformed or the descriptor is not a
 * listening Unix stream socket. With `handover`, a predecessor that offers
 * the socket is asked first; a handover that starts but fails gives
 * E_ADDRESS (a peer of another uid, descriptors that do not check out, or a
 * socket file that was removed or replaced, so that nobody could reach the
 * listener: restart without handover) or E_SYSTEM, and the predecessor
 * keeps serving. Unless disable_builtins, the built-in services are
 * registered here. */
ACKRPC_EXPORT ackrpc_status ackrpc_server_new(const ackrpc_server_options *options,
                                              ackrpc_server **ret_server);

/* Registers `handler` for `method->name`. The server copies `*method`; the
 * descriptors must stay valid while the server lives (generated ones are
 * static). `user` is passed to the handler. Register before the loop runs.
 * Errors: E_INVAL (NULL or malformed name, missing descriptor),
 * E_EXISTS (name already registered), E_NOMEM. */
ACKRPC_EXPORT ackrpc_status ackrpc_server_add_method(ackrpc_server *server,
                                                     const ackrpc_method *method,
                                                     ackrpc_handler_fn handler,
                                                     void *user);

/* The fallback: a handler for calls to methods that are not registered
 * (the import side of a bridge, a proxy). It gets the body of the request
 * undecoded: `body_len` bytes at `body` (NULL when empty), owned by the call
 * and valid until it is answered (a copy in the call's memory, or the
 * mapping of a body that came in a memfd; ackrpc_call_request_body() gives
 * the same bytes); ackrpc_call_method() names the method.
 * It answers like any handler, exactly once, from any thread, with
 * ackrpc_call_reply_encoded() (or ackrpc_call_reply() with a NULL reply
 * message: a reply message would be refused as of the wrong type, and the
 * client would get INTERNAL). The other accessors (id, deadline, metadata,
 * peer) work as for any call. */
typedef void (*ackrpc_fallback_fn)(ackrpc_call *call, const uint8_t *body,
                                   size_t body_len, void *user);

/* Installs `fn` (with `user`) as the server's fallback, or removes it with
 * fn NULL. A call to a method that is not registered goes to it instead of
 * being answered UNIMPLEMENTED; registered methods (built-in ones too) keep
 * their handlers. Such calls pass the server-wide policy only, carry no
 * descriptors (a call with any is refused INVALID_ARGUMENT), and are not
 * listed by reflection or per method in ackrpc_server_stats(). The body's
 * copy is counted in the memory account (RESOURCE_EXHAUSTED beyond it).
 * The reply cache and reply store apply as for any method. Register before
 * the loop runs. Errors: E_INVAL (NULL server), E_EXISTS (a fallback is
 * installed already: remove it first), E_NOMEM. */
ACKRPC_EXPORT ackrpc_status ackrpc_server_set_fallback(ackrpc_server *server,
                                                       ackrpc_fallback_fn fn,
                                                       void *user);

/* Records a service for reflection: its name, its methods' names and types,
 * and the .proto descriptors reflection serves for it (service->files).
 * Generated P__S_register() functions call it; call it yourself for a table
 * you build by hand. It registers no handler: methods are served only once
 * added with ackrpc_server_add_method(). Methods registered without a
 * service record are listed all the same, grouped by the service part of
 * their name, with descriptors the server makes from their protobuf-c
 * descriptors at the first reflection request (one file per package,
 * "ackrpc-synth/<package>.proto"; no proto2 defaults, oneofs named
 * oneof_<n>); types a recorded service's files define are imported from
 * those. Register the record first. The server keeps the pointer: `service`
 * and everything it points to must stay valid while the server lives
 * (generated tables are static). Register before the loop runs.
 * Errors: E_INVAL (NULL, no name, a method or file entry with NULL fields),
 * E_EXISTS (a service of that name is already recorded), E_NOMEM. */
ACKRPC_EXPORT ackrpc_status
ackrpc_server_add_service_info(ackrpc_server *server, const ackrpc_service *service);

/* Installs (or, with NULL, removes) the policy of one registered method,
 * on top of the server-wide one. It is checked as soon as a request's head
 * has arrived, before its body is read; a refused peer gets
 * PERMISSION_DENIED. The policy is copied and group names are resolved now.
 * A bridged call passes it only by a listed principal (ackrpc_policy).
 * Errors: E_INVAL (NULL server or name, a principal that is not 1 to
 * ACKRPC_MAX_PRINCIPAL bytes of printable ASCII without '"' or '\\'),
 * E_NOT_FOUND (no such method, or an unknown group name), E_NOMEM. */
ACKRPC_EXPORT ackrpc_status ackrpc_server_set_method_policy(
    ackrpc_server *server, const char *method, const ackrpc_policy *policy);

/* For ackrpc_server_set_method_fds(): as many as the server's
 * max_fds_per_call (what generated code passes for a request type with a
 * repeated ackrpc.Fd field). */
#define ACKRPC_FDS_SERVER_MAX UINT_MAX

/* Lets requests of a registered method carry up to `max_fds` descriptors
 * (docs/PROTOCOL.md §2.5); 0, the default, refuses any: such a call is
 * answered INVALID_ARGUMENT and its descriptors are closed at once, as
 * for more than max_fds or a count that does not match what arrived; none
 * of these is dispatched. The handler gets them with ackrpc_call_take_fd()
 * (or, for a request type with ackrpc.Fd fields, ackrpc_call_bind_fds()).
 * ACKRPC_FDS_SERVER_MAX: the server's max_fds_per_call.
 * Register before the loop runs. Errors: E_INVAL (NULL server or name,
 * max_fds over the server's max_fds_per_call), E_NOT_FOUND (no such
 * method). */
ACKRPC_EXPORT ackrpc_status ackrpc_server_set_method_fds(ackrpc_server *server,
                                                         const char *method,
                                                         unsigned max_fds);

/* Serves the method's requests undecoded: its handler gets `request`
 * NULL and reads the body's bytes, as sent, in place with
 * ackrpc_call_request_body() (no depth, UTF-8 or decoding checks: the
 * handler is the decoder). For bytes-heavy methods: protobuf-c copies a
 * `bytes` field out of the body when it decodes, and a body that came in a
 * memfd is then read straight from its mapping. `raw` 0 restores the
 * default. Register before the loop runs. Errors: E_INVAL (NULL server or
 * name), E_NOT_FOUND (no such method). */
ACKRPC_EXPORT ackrpc_status ackrpc_server_set_method_raw(ackrpc_server *server,
                                                         const char *method, int raw);

/* A field whose values never leave the server in a capture: field `number`
 * of the message type `message`. Generated register functions declare the
 * fields marked `[(ackrpc.sensitive) = true]` (ackrpc/options.proto). */
typedef struct ackrpc_sensitive_field {
  const struct ProtobufCMessageDescriptor *message;
  uint32_t number;
} ackrpc_sensitive_field;

/* Marks fields sensitive: a capture (ackrpc.reflection.Capture/Watch,
 * docs/CAPTURE.md) leaves them out of every request and reply body it
 * records, at any depth, and says so in the record. The entries are copied
 * (the descriptors must outlive the server, as generated ones do); marking
 * a field twice is harmless. Register before the loop runs.
 * Errors: E_INVAL (NULL server, or n > 0 with NULL fields or a NULL
 * message), E_NOMEM (nothing marked). */
ACKRPC_EXPORT ackrpc_status ackrpc_server_add_sensitive_fields(
    ackrpc_server *server, const ackrpc_sensitive_field *fields, size_t n);

/* Registers `fn(data)` to run when the server is freed, after every
 * connection is closed; for data that handlers share, such as the binding a
 * generated register function allocates. Cleanups run in reverse order of
 * registration. Errors: E_INVAL, E_NOMEM (then fn is not called: the caller
 * still owns data). */
ACKRPC_EXPORT ackrpc_status ackrpc_server_add_cleanup(ackrpc_server *server,
                                                      void (*fn)(void *data),
                                                      void *data);

/* Runs the server's own loop until the server has stopped and drained.
 * Errors: E_INVAL (NULL), E_STATE (the server is attached to a caller's
 * base: run that base instead), E_SYSTEM (the loop failed). */
ACKRPC_EXPORT ackrpc_status ackrpc_server_run(ackrpc_server *server);

/* Runs the server's own loop as ackrpc_server_run() does, and stops the
 * server (as ackrpc_server_stop(): drain, then return) when the process
 * gets SIGTERM or SIGINT: the shutdown every server otherwise writes by
 * hand. The signals are caught through libevent signal events on the
 * server's loop, so the stop runs on the loop's thread, not in a signal
 * handler; a second signal during the drain changes nothing. Before it
 * returns, the previous dispositions of both signals are restored (a
 * signal that comes later does what it did before the call). Other
 * threads should block both signals (e.g. with pthread_sigmask() before
 * they are created) so that the loop's thread is the one to take them.
 * Returns OK once the server has stopped and drained, with *ret_signal
 * (if not NULL) the signal that stopped it, or 0 if something else did
 * (ackrpc_server_stop(), a handover to a successor). Errors: E_INVAL
 * (NULL server), E_STATE (the server is attached to a caller's base: watch
 * the signals there), E_SYSTEM (the signal events could not be set up, or
 * the loop failed); *ret_signal is untouched then. Only one loop of a
 * process may watch signals at a time (a libevent rule). */
ACKRPC_EXPORT ackrpc_status ackrpc_server_run_until_signal(ackrpc_server *server,
                                                           int *ret_signal);

/* Asks the server to stop: it stops accepting (connections already queued
 * are still served), removes its socket file, lets the calls in flight
 * finish within drain_timeout_ms, answers the rest UNAVAILABLE, then leaves
 * the loop: ackrpc_server_run() returns (at once if stop came first). On a
 * caller's base the server removes all its events instead, so the caller's
 * event_base_dispatch() returns if nothing else is pending. Safe from any
 * thread and from a signal handler; repeated calls are harmless. NULL is
 * ignored. */
ACKRPC_EXPORT void ackrpc_server_stop(ackrpc_server *server);

/* Frees the server: closes the socket and every connection (calls still
 * pending are dropped unanswered: stop and drain first for a clean end),
 * removes the socket file and frees the loop if the server owns it. Calls
 * that a handler still holds stay valid until answered; answering them then
 * returns E_ALREADY_ANSWERED. Call on the loop's thread, not from inside a
 * handler. NULL is ignored. Returns NULL, so `s = ackrpc_server_free(s);`. */
ACKRPC_EXPORT ackrpc_server *ackrpc_server_free(ackrpc_server *server);

/* The loop the server runs on (its own or the caller's). */
ACKRPC_EXPORT struct event_base *ackrpc_server_base(const ackrpc_server *server);

/* Connections open right now (accepted, not yet closed). Loop thread
 * only. */
ACKRPC_EXPORT size_t ackrpc_server_connections(const ackrpc_server *server);

/* Statistics of one method since the server was created: every call
 * answered (the reply written, or the client gone while it was written), by
 * status, with the bytes of its request and reply frames and its latency
 * from the request complete to the reply written. Percentiles come from a
 * fixed log-linear histogram: at most 1/8 above the true value. */
typedef struct ackrpc_method_stats {
  const char *method; /* "package.Service/Method"; valid until the server is freed */
  uint64_t calls;
  uint64_t errors;        /* calls answered with a status other than OK */
  uint64_t by_status[17]; /* indexed by canonical code, 0 (OK) to 16 */
  uint64_t bytes_in, bytes_out;
  uint64_t p50_us, p90_us, p99_us, p999_us, max_us;
} ackrpc_method_stats;

/* Copies the statistics of up to `cap` registered methods (built-in ones
 * included), sorted by name, into out[] (owned by the caller; `out` may be
 * NULL when cap is 0) and returns how many methods there are: call with
 * cap 0 to size the array. Loop thread only (the counters are updated there
 * without locks). NULL server: 0. */
ACKRPC_EXPORT size_t ackrpc_server_stats(const ackrpc_server *server,
                                         ackrpc_method_stats *out, size_t cap);

/* What peers made the server do, since it was created, and what calls
 * hold now. Each refusal, drop and timeout is counted here rather than
 * logged each time: the log has at most 10 lines a second of each kind
 * (docs/SECURITY.md §5). Fields are only ever added at the end. */
typedef struct ackrpc_counters {
  uint64_t uid_limit;         /* connections refused: their uid was at
                               * max_connections_per_uid, none of its own idle */
  uint64_t refused;           /* peers refused by a policy (server or method) */
  uint64_t evicted;           /* idle or incomplete connections dropped to admit
                               * others (max_pending, the uid limit, EMFILE) */
  uint64_t accept_failed;     /* accept() out of descriptors or memory */
  uint64_t read_timeouts;     /* requests not whole within read_timeout_ms */
  uint64_t handler_deadlines; /* calls answered DEADLINE_EXCEEDED by the
                               * server while their handler held them */
  uint64_t bad_requests;      /* malformed frames and heads */
  uint64_t over_budget;       /* requests refused by a memory budget */
  uint64_t call_limit;        /* requests refused: too many calls in progress */
  uint64_t log_suppressed;    /* log lines left out by the rate limit */
  uint64_t log_dropped;       /* lines ackrpc_log_stderr() could not write at
                               * once (process-wide) */
  uint64_t memory_bytes;      /* now: bytes connections and calls hold */
  uint64_t calls_in_progress; /* now: calls with their handlers, including
                               * those the server already answered */
  /* The reply cache and the reply store (zero when they are off). */
  uint64_t replay_hits;    /* repeats answered from the reply cache */
  uint64_t replay_joins;   /* repeats that waited for their first call */
  uint64_t replay_refused; /* call ids reused for another request */
  uint64_t replay_evicted; /* answers dropped from the reply cache */
  uint64_t replay_stored;  /* repeats answered from the reply store */
} ackrpc_counters;

/* Fills *out (owned by the caller). Loop thread only. Errors: E_INVAL
 * (NULL argument). */
ACKRPC_EXPORT ackrpc_status ackrpc_server_counters(const ackrpc_server *server,
                                                   ackrpc_counters *out);

/* --- Inside a call. All accessors take a call the handler holds, i.e. one
 * not yet answered. Returned pointers belong to the call and stay valid
 * until it is answered. --- */

/* The full method name, "package.Service/Method". */
ACKRPC_EXPORT const char *ackrpc_call_method(const ackrpc_call *call);

/* The credentials of the process at the other end of the connection, as
 * the kernel gave them. For a bridged call (ackrpc_call_bridged()) that
 * process is the bridge, not the caller: its uid says nothing about who
 * called, so authorize a bridged call by ackrpc_call_principal() only.
 * Owned by the call; NULL only for a NULL call. */
ACKRPC_EXPORT const ackrpc_peer *ackrpc_call_peer(const ackrpc_call *call);

/* 1 if the call came on a connection from a peer the server's `bridges`
 * option trusts (its caller is elsewhere, named by
 * ackrpc_call_principal()), 0 for a local call or a NULL call. */
ACKRPC_EXPORT int ackrpc_call_bridged(const ackrpc_call *call);

/* The caller's principal, as the trusted bridge vouched for it (e.g.
 * "nats:CLI/alice", docs/SCALE.md): NUL-terminated, 1 to
 * ACKRPC_MAX_PRINCIPAL bytes of printable ASCII, owned by the call (valid
 * until it is answered). NULL for a local call, for an anonymous bridged
 * call, or a NULL call. It is also among the metadata (key
 * ACKRPC_PRINCIPAL_KEY), where only a bridge could have put it: the
 * server refuses that key from any other peer. */
ACKRPC_EXPORT const char *ackrpc_call_principal(const ackrpc_call *call);

/* The call id the client sent (1 to 64 bytes); its length in *ret_len. */
ACKRPC_EXPORT const uint8_t *ackrpc_call_id(const ackrpc_call *call, size_t *ret_len);

/* The call's deadline on CLOCK_MONOTONIC, in microseconds: the client's
 * timeout measured from when the request was complete, capped by
 * handler_timeout_ms. When it passes (plus 5 ms if it is the client's, so
 * that the client reports its own timeout rather than racing this answer),
 * the server answers DEADLINE_EXCEEDED itself, the session goes on, and a
 * later ackrpc_call_reply() returns E_ALREADY_ANSWERED. */
ACKRPC_EXPORT uint64_t ackrpc_call_deadline_us(const ackrpc_call *call);

/* The digest of the request: XXH3-128 over the peer's uid (and, for a
 * bridged call, its principal), the method name
 * and the request body's bytes as they arrived (docs/DELIVERY.md gives the
 * exact definition; it is the same in every process and version). A
 * durable reply store keeps it beside a call id, so that the id reused for
 * another request is caught. ACKRPC_DIGEST_LEN bytes owned by the call; NULL
 * when the call has no call id or the server has neither a reply cache nor
 * a reply store (the digest is then not computed). */
ACKRPC_EXPORT const uint8_t *ackrpc_call_request_digest(const ackrpc_call *call);

/* Number of metadata entries the client sent. */
ACKRPC_EXPORT size_t ackrpc_call_metadata_count(const ackrpc_call *call);

/* The metadata entry at `index`: key (NUL-terminated) and value. Returns 0,
 * or -1 if index is out of range (outputs untouched). */
ACKRPC_EXPORT int ackrpc_call_metadata_at(const ackrpc_call *call, size_t index,
                                          const char **ret_key,
                                          const uint8_t **ret_value,
                                          size_t *ret_value_len);

/* The value of the first entry with `key`, its length in *ret_len; NULL if
 * there is none. */
ACKRPC_EXPORT const uint8_t *ackrpc_call_metadata(const ackrpc_call *call,
                                                  const char *key, size_t *ret_len);

/* Descriptors the request carried (0 unless its method takes them,
 * ackrpc_server_set_method_fds()). */
ACKRPC_EXPORT size_t ackrpc_call_fd_count(const ackrpc_call *call);

/* The request's body as it was sent (its encoded bytes), in place: in the
 * read-only mapping of its memfd when it came in one (docs/PROTOCOL.md
 * §2.6), else in the connection's buffer. Borrowed: valid until the
 * handler returns, or for a body that came in a memfd
 * (ackrpc_call_body_in_memfd()) until the call is answered; never write
 * to it. *ret_len (if not NULL) gets its length. NULL for a NULL call
 * (a valid pointer for an empty body). Same thread rule as the other
 * accessors. */
ACKRPC_EXPORT const uint8_t *ackrpc_call_request_body(const ackrpc_call *call,
                                                      size_t *ret_len);

/* 1 if the request's body came in a sealed memfd, else 0. */
ACKRPC_EXPORT int ackrpc_call_body_in_memfd(const ackrpc_call *call);

/* Takes the request's descriptor `index` (close-on-exec, in the order the
 * client sent them): from now on it is the caller's to close. Returns it,
 * or -1 if index is out of range or it was taken already. Descriptors not
 * taken are closed by the library when the call ends (after it is
 * answered and the loop and the handler have let it go). Same thread rule
 * as the other accessors. */
ACKRPC_EXPORT int ackrpc_call_take_fd(ackrpc_call *call, size_t index);

/* Answers the call: `status` (a canonical code, 0..16), an optional message
 * (copied; NULL for none) and the reply message (serialized before this
 * returns; NULL sends an empty body). Callable once per call, from any
 * thread. The call handle and the request message are invalid afterwards,
 * whatever the result.
 * Returns OK (the reply is written or queued for writing), E_ALREADY_ANSWERED
 * (the server answered first: the deadline passed or it shut down; the reply
 * is dropped), E_INVAL (status not canonical: the client gets INTERNAL),
 * E_NOMEM (the client gets INTERNAL if even that can be sent). */
ACKRPC_EXPORT ackrpc_status ackrpc_call_reply(ackrpc_call *call, ackrpc_status status,
                                              const char *message,
                                              const struct ProtobufCMessage *reply);

/* ackrpc_call_reply() that also passes descriptors to the client with the
 * reply (docs/PROTOCOL.md §2.5), in order: fds[0..n_fds), at most 253,
 * each open. The client receives them only if its call accepts that many
 * (ackrpc_call_options.max_reply_fds); otherwise it closes them and
 * reports E_BAD_REPLY. Ownership: the descriptors are the library's once
 * this is called, whatever it returns: it closes its copies once the
 * reply is sent, or at once if it cannot be (E_ALREADY_ANSWERED, the
 * connection gone, an error). The caller must not close them. A reply
 * with descriptors is never kept by the reply cache (a repeat waiting for
 * it is answered UNAVAILABLE; later ones run the handler again).
 * Returns those of ackrpc_call_reply(), and E_INVAL also for n_fds over
 * 253, fds NULL with n_fds > 0, or a descriptor that is not open (then
 * the client gets INTERNAL, without descriptors). */
ACKRPC_EXPORT ackrpc_status ackrpc_call_reply_fds(ackrpc_call *call,
                                                  ackrpc_status status,
                                                  const char *message,
                                                  const struct ProtobufCMessage *reply,
                                                  const int *fds, size_t n_fds);

/* --- Descriptor fields: messages with fields of type ackrpc.Fd
 * (ackrpc/fd.proto, docs/PROTOCOL.md §2.5 "Descriptor fields"). Generated
 * handlers and P__S_M_reply() call these; a handler registered by hand
 * may too. --- */

/* Writes the request's descriptors into its ackrpc.Fd fields (fields of
 * the request message itself), in place of the indices that came on the
 * wire, after checking that they name each descriptor that came exactly
 * once: every index below ackrpc_call_fd_count(), none twice, every
 * singular Fd field present. Call it once, before using the request.
 * On OK the descriptors stay the call's: they are valid until the call is
 * answered and closed when it ends (after the answer); to keep one longer,
 * dup() it. Otherwise the call is answered INVALID_ARGUMENT here (the
 * message says which rule failed), every descriptor it carried is closed
 * at once, and INVALID_ARGUMENT is returned: the handler must not use the
 * call again. E_INVAL: NULL argument (nothing done). Same thread rule as
 * the accessors. */
ACKRPC_EXPORT ackrpc_status
ackrpc_call_bind_fds(ackrpc_call *call, const struct ProtobufCMessage *request);

/* ackrpc_call_reply() for a reply whose ackrpc.Fd fields hold descriptors:
 * they are sent with the reply (ackrpc_call_reply_fds(), in field order)
 * and each field carries its index on the wire; `reply` is not modified.
 * Ownership: every descriptor in the reply's Fd fields is the library's
 * once this is called, whatever it returns (closed once sent, or at once
 * if the reply cannot be made): the caller must not close them.
 * A singular Fd field left empty (NULL), a negative descriptor or more
 * than 253 of them: the client gets INTERNAL, without descriptors, and
 * this returns E_INVAL. Otherwise returns those of
 * ackrpc_call_reply_fds(). NULL `reply`: ackrpc_call_reply(). */
ACKRPC_EXPORT ackrpc_status
ackrpc_call_reply_fd_fields(ackrpc_call *call, ackrpc_status status,
                            const char *message, const struct ProtobufCMessage *reply);

/* Answers the call like ackrpc_call_reply(), with a reply message already
 * encoded: `body_len` bytes at `body` (copied before this returns; NULL
 * with 0 for an empty body), which are not checked against the method's
 * reply type. For answers kept in a store (ackrpc/reply_store.h). Errors as
 * ackrpc_call_reply(); E_INVAL also for a NULL body with a length. */
ACKRPC_EXPORT ackrpc_status ackrpc_call_reply_encoded(ackrpc_call *call,
                                                      ackrpc_status status,
                                                      const char *message,
                                                      const uint8_t *body,
                                                      size_t body_len);

#ifdef __cplusplus
}
#endif

#endif /* ACKRPC_SERVER_H */
