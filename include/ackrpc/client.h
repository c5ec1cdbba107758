/* ackrpc/client.h: the client: blocking calls that need no event loop, and
 * asynchronous calls on a caller's libevent loop.
 *
 * Each call opens one connection, writes one request frame, half-closes and
 * reads the reply frame. A client object holds only immutable configuration,
 * so one client may be used from any number of threads at once.
 */
#ifndef ACKRPC_CLIENT_H
#define ACKRPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ackrpc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;
struct ProtobufCMessage;

typedef struct ackrpc_client ackrpc_client;

/* When and how a blocking or asynchronous call is tried again
 * (docs/DELIVERY.md). A zero-initialised policy makes no retries: one
 * attempt, exactly as without a policy. Every attempt of a call carries the
 * call id of the first one (the caller's, or one the client makes), so a
 * server that deduplicates by call id (the reply cache, or a handler that
 * stores it) acts at most once. The attempts share the call's deadline
 * (ackrpc_call_options.timeout_ms or the client's); no attempt starts after
 * it, and a backoff that would end past it ends the call instead. A failed
 * attempt is tried again, while attempts are left, if its status is:
 *   - not delivered: E_CONNECT, E_BUSY, E_SEND, E_SEND_TIMEOUT (the server
 *     never saw the request: always safe), and E_NOMEM, E_SYSTEM (this
 *     process ran short of memory or descriptors before sending);
 *   - delivered, no ack: E_NO_ACK, E_ACK_TIMEOUT, E_BAD_REPLY (the server
 *     may have acted: safe because the call id stays the same);
 *   - a server status listed in retry_on (e.g. UNAVAILABLE,
 *     RESOURCE_EXHAUSTED). Other server statuses, errors in the call
 *     itself (E_INVAL, E_ADDRESS), and E_SERVER_IDENTITY (an untrusted
 *     server: trying again would only knock at its door again) end the
 *     call at once.
 * The durable outbox (ackrpc/outbox.h) follows the same rule.
 * Before attempt n+1 the client sleeps a backoff b = min(max_backoff_ms,
 * initial_backoff_ms * 2^(n-1)), jittered uniformly in [b/2, b] so that
 * clients that failed together do not retry together. */
typedef struct ackrpc_retry_policy {
  /* Attempts in all, the first included. 0 or 1: no retries. */
  unsigned max_attempts;
  /* Backoff before the first retry. Default 10 ms. */
  uint32_t initial_backoff_ms;
  /* Largest backoff. Default 1000 ms. */
  uint32_t max_backoff_ms;
  /* How long one attempt waits for its ack before it is abandoned
   * (E_ACK_TIMEOUT) and tried again. The request still carries what is left
   * of the call's deadline, so the server may go on with an abandoned
   * attempt; the retry, with the same call id, joins it in the server's
   * reply cache or is deduplicated by the handler. 0: an attempt may use
   * the rest of the call's deadline (so a missing ack ends the call). */
  uint32_t attempt_timeout_ms;
  /* Server statuses (canonical codes 1..16) that are retried. Copied by
   * ackrpc_client_new(); read during the call for a per-call policy. */
  const ackrpc_status *retry_on;
  size_t n_retry_on;
} ackrpc_retry_policy;

/* Who the server must run as (ackrpc_client_options.server_check). The
 * client checks it on every connection it makes, with SO_PEERCRED (the
 * server's effective uid when it called listen(), as the kernel recorded
 * it), before a byte of a request is written: a server that fails the
 * check never sees a request, and every call queued for that connection
 * fails with E_SERVER_IDENTITY (not delivered; no retry policy retries it;
 * ackrpc_session_open() returns it). This holds on every path: one-shot,
 * pooled, sessions, asynchronous calls and sessions, and the outbox. It is
 * what stops an impostor that took over the socket path (another user who
 * could replace the socket file, or bind the abstract name first) from
 * receiving requests (docs/SECURITY.md §3). */
typedef enum ackrpc_server_check {
  /* The default. The server must run as root, as this process's effective
   * uid, or, for a path, as the owner of the directory that holds the
   * socket file (when that directory is sticky, like /tmp, as the owner of
   * the socket file itself: there only the owner may remove or rename it).
   * For an abstract address (@name), which any user may bind: root or this
   * process's effective uid only. */
  ACKRPC_SERVER_CHECK_DEFAULT = 0,
  /* The server must run as server_uid, exactly (not even root otherwise). */
  ACKRPC_SERVER_CHECK_UID = 1,
  /* No check: any server is trusted. For a server that runs as another
   * user behind an abstract address, when the uid is not known in advance;
   * prefer ACKRPC_SERVER_CHECK_UID. */
  ACKRPC_SERVER_CHECK_NONE = 2,
} ackrpc_server_check;

/* Client options; zero means "the default" for every field. */
typedef struct ackrpc_client_options {
  /* "/path/to.sock" or "@abstract-name". Required. Copied. */
  const char *address;
  /* Deadline of a call whose options give none. Default 30000 ms. */
  uint32_t timeout_ms;
  /* Largest reply frame accepted (head + body); a larger one gives
   * E_BAD_REPLY. Default 4 MiB. */
  size_t max_reply_size;
  /* Deepest nesting of a reply body decoded with the method's reply
   * descriptor, counting the reply message as 1 (protobuf-c recurses
   * without a limit: a deep enough body would overflow the stack). An OK
   * reply nested deeper is E_BAD_REPLY; checked only for reply types with
   * message fields. Default 100. Decoding memory is also capped, at 16
   * bytes a body byte + 64 KiB (E_BAD_REPLY beyond). */
  unsigned max_reply_depth;
  /* Who the server must run as: see ackrpc_server_check. Default
   * (ACKRPC_SERVER_CHECK_DEFAULT): root, this process's user, or the owner
   * of the socket's directory. A value outside the enum: E_INVAL. */
  ackrpc_server_check server_check;
  /* The uid the server must run as, with ACKRPC_SERVER_CHECK_UID; ignored
   * otherwise. */
  uid_t server_uid;
  /* Session pool. 0 (the default): every ackrpc_client_call() is a one-shot
   * call on its own connection. N > 0: calls reuse open sessions (see
   * ackrpc_session_open()), keeping up to N idle ones; a call takes an idle
   * session or opens a new one, and gives it back when it got a reply. This
   * saves the connection's cost on every call. Outcomes are the same as for
   * one-shot calls. */
  unsigned pool_size;
  /* Retry policy of every call made with this client (blocking calls,
   * sessions, ackrpc_client_call_async(); not asynchronous sessions), unless
   * a call gives its own. Copied. NULL: no retries. */
  const ackrpc_retry_policy *retry;
  /* Large bodies by memfd (docs/PROTOCOL.md §2.6): a request body of at
   * least this many bytes is written into a sealed memfd, which is passed
   * instead of writing the body to the socket (every kind of call:
   * blocking, sessions, asynchronous calls and sessions). Calls also tell
   * the server that they take a reply body in a memfd. 0, the default:
   * request bodies go inline (a fresh memfd per call was slower than the
   * socket at every size measured, docs/PERFORMANCE.md; an ackrpc_body
   * built once and sent many times is what memfds are for), replies are
   * taken in a memfd; SIZE_MAX: neither. A server that does not take
   * bodies in a memfd refuses such a call without running it
   * (UNIMPLEMENTED from a server of this version with the feature off,
   * INVALID_ARGUMENT from an older one): the client then sends the call
   * once more, at once, with its body inline and the same call id, and
   * from then on sends this client's bodies inline (its sessions' too).
   * A server that took the memfd says so in its reply (body_memfd_read),
   * so a handler's own UNIMPLEMENTED or INVALID_ARGUMENT is final and the
   * handler runs once.
   * On an asynchronous session the call sent again completes after the
   * calls queued behind it. */
  size_t memfd_threshold;
} ackrpc_client_options;

/* Per-call options; pass NULL for all defaults. */
typedef struct ackrpc_call_options {
  /* Deadline of this call, from its start to the reply. 0: the client's. */
  uint32_t timeout_ms;
  /* Call id, 1 to 64 bytes (ACKRPC_MAX_CALL_ID). NULL: the client makes a
   * unique 16-byte id (64 random bits fixed per client object, then a
   * 64-bit counter). Pass the same id again to retry a call idempotently. */
  const uint8_t *call_id;
  size_t call_id_len;
  /* Metadata entries sent with the request (ACKRPC_MAX_METADATA at most). */
  const ackrpc_metadata *metadata;
  size_t metadata_count;
  /* This call's retry policy, instead of the client's (a zeroed one: no
   * retries). Must stay valid during the call (for an asynchronous call:
   * during ackrpc_client_call_async() only). NULL: the client's. */
  const ackrpc_retry_policy *retry;
  /* Descriptors sent with the request (docs/PROTOCOL.md §2.5), in order:
   * the handler sees fds[i] as its descriptor i. At most 253, each open;
   * only to a method whose server takes them (a server refuses them
   * otherwise: INVALID_ARGUMENT). Borrowed: the library never closes them;
   * they must stay open until the call completes (a blocking call returns,
   * an asynchronous call's callback runs). A retry sends them again. The
   * array itself need stay valid only during the call that takes `options`
   * (asynchronous calls copy it).
   * For a method whose request type has ackrpc.Fd fields
   * (ackrpc/fd.proto), leave these empty and put the descriptors in the
   * fields: the call sends them from there, in field order, each field
   * carrying its index (same ownership: borrowed); both at once: E_INVAL. */
  const int *fds;
  size_t n_fds;
  /* Descriptors accepted with the reply; 0 (the default): none. A reply
   * that carries more, or any when 0, is E_BAD_REPLY and its descriptors
   * are closed at once. For a method whose reply type has ackrpc.Fd
   * fields, 0 means as many as the type holds (its singular Fd fields,
   * or 253 with a repeated one). A reply body in a memfd is not counted
   * here. */
  unsigned max_reply_fds;
  /* The request's body, already encoded in a sealed memfd
   * (ackrpc_body_new()), sent in place of the request message, which must
   * then be NULL (ackrpc_client_call_raw(): body NULL, body_len 0): the
   * server maps it, nothing is copied on the way. Borrowed: it must stay
   * alive until the call returns. Blocking calls and sessions only (an
   * asynchronous call with one: E_INVAL); n_fds must then be at most 252.
   * To a server that does not take bodies in a memfd it is sent inline,
   * read back from the memfd (as memfd_threshold says). NULL: the request
   * is encoded as usual. */
  const struct ackrpc_body *body;
} ackrpc_call_options;

/* What a call returns besides its status. Zero-initialise it before the
 * call; after the call, release it with ackrpc_result_clear(). */
typedef struct ackrpc_result {
  ackrpc_status status;
  /* For local failures, the errno behind it (0 if none). */
  int sys_errno;
  /* The server's message for a non-OK status, or a local explanation;
   * NUL-terminated, malloc'd, owned by the result; may be NULL. */
  char *message;
  /* The decoded reply (the ack) when the server sent one that decoded with
   * the method's reply descriptor; owned by the result. To keep it, take the
   * pointer and set the field to NULL, then free it later with
   * protobuf_c_message_free_unpacked(reply, NULL). */
  struct ProtobufCMessage *reply;
  /* For ackrpc_client_call_raw() only: the reply body as sent, whatever
   * the status (malloc'd, owned by the result; NULL if empty). */
  uint8_t *reply_bytes;
  size_t reply_bytes_len;
  /* The call id that was sent (so a caller may retry with it); the same for
   * every attempt of a call. */
  uint8_t call_id[ACKRPC_MAX_CALL_ID];
  size_t call_id_len;
  /* Attempts made (1 without retries; 0 if the call failed before its first
   * attempt, e.g. E_INVAL). The other fields describe the last one. */
  unsigned attempts;
  /* The descriptors the reply carried (close-on-exec), in their order;
   * only if the call accepted them (ackrpc_call_options.max_reply_fds).
   * Owned by the result: ackrpc_result_clear() closes every entry that is
   * not -1 and frees the array. To keep one, copy it and set its entry to
   * -1. NULL and 0 when there are none.
   * For a method whose reply type has ackrpc.Fd fields, the descriptors
   * are in those fields of `reply` instead (result->fds stays empty): they
   * go with the reply message. ackrpc_result_clear() closes them while the
   * reply is still in the result; a caller that takes the reply (sets
   * `reply` to NULL, or gets it from a stub) takes them, and closes them
   * itself (free_unpacked does not). Descriptors that do not match the
   * fields (an index out of range, named twice or by no field, a singular
   * field missing) make the call E_BAD_REPLY and are closed at once. */
  int *fds;
  size_t n_fds;
} ackrpc_result;

/* --- Large bodies in sealed memfds (docs/PROTOCOL.md §2.6). --- */

/* A request body built in place: a memfd of a fixed length mapped into
 * this process, which the caller fills with an encoded request message
 * (protobuf_c_message_pack() into ackrpc_body_data(), or by hand: e.g. a
 * `bytes` field's tag and length, then its data read straight from a
 * file), then seals. Sent with ackrpc_call_options.body, so that writing
 * the body is its only copy. A sealed body never changes: it may be sent by
 * any number of calls, from any thread. */
typedef struct ackrpc_body ackrpc_body;

/* A new body of `len` bytes (1 to 4 GiB - 1), zero-filled, writable
 * through ackrpc_body_data() until sealed. On success *ret_body is the
 * caller's (ackrpc_body_free()); on error untouched. Errors: E_INVAL (NULL
 * ret_body, len 0 or over UINT32_MAX), E_SYSTEM (memfd_create(), ftruncate()
 * or mmap() failed, e.g. out of memory or descriptors). */
ACKRPC_EXPORT ackrpc_status ackrpc_body_new(size_t len, ackrpc_body **ret_body);

/* Where to write the body: len bytes, valid until ackrpc_body_seal().
 * NULL once sealed, or for NULL. */
ACKRPC_EXPORT uint8_t *ackrpc_body_data(ackrpc_body *body);

/* The body's length (0 for NULL). */
ACKRPC_EXPORT size_t ackrpc_body_len(const ackrpc_body *body);

/* Ends writing: unmaps the data and seals the memfd against writing,
 * growing and shrinking, so that a receiver may map it safely. Sealing a
 * sealed body is OK. Errors: E_INVAL (NULL), E_SYSTEM (the kernel refused
 * the seals; the body cannot be sent). */
ACKRPC_EXPORT ackrpc_status ackrpc_body_seal(ackrpc_body *body);

/* A sealed body holding `message` encoded: ackrpc_body_new() of its packed
 * size, protobuf_c_message_pack() into it, ackrpc_body_seal(). Same
 * ownership and errors (E_INVAL also for an empty message: send it
 * inline). */
ACKRPC_EXPORT ackrpc_status ackrpc_body_from_message(
    const struct ProtobufCMessage *message, ackrpc_body **ret_body);

/* Frees the body: unmaps it and closes its memfd (calls that are still
 * sending it must have returned). NULL is ignored. Returns NULL. */
ACKRPC_EXPORT ackrpc_body *ackrpc_body_free(ackrpc_body *body);

/* Frees what a result owns (closing its descriptors) and zeroes it. NULL
 * is ignored. */
ACKRPC_EXPORT void ackrpc_result_clear(ackrpc_result *result);

/* Creates a client. The address is checked (not connected to) here.
 * On success *ret_client is the caller's, to free with ackrpc_client_free().
 * Errors: E_INVAL (NULL argument, no address, a retry policy listing a
 * status that is not a canonical code from 1 to 16, an unknown
 * server_check), E_ADDRESS, E_NOMEM; on error *ret_client is untouched. */
ACKRPC_EXPORT ackrpc_status ackrpc_client_new(const ackrpc_client_options *options,
                                              ackrpc_client **ret_client);

/* Frees a client. Asynchronous calls already started are not affected (they
 * keep what they need). NULL is ignored. Returns NULL. */
ACKRPC_EXPORT ackrpc_client *ackrpc_client_free(ackrpc_client *client);

/* Makes a blocking call: connects, sends `request` (a message of
 * method->request's type, not modified), half-closes and waits for the reply
 * until the deadline, using poll() on a non-blocking socket; signals (EINTR)
 * do not shorten or break it. Returns the call's status, also stored in
 * ret_result->status if ret_result is not NULL (then the caller clears it
 * with ackrpc_result_clear()). With a NULL ret_result, the reply is freed.
 * Statuses: a canonical code (the server's answer); E_CONNECT, E_BUSY,
 * E_SEND, E_SEND_TIMEOUT (not delivered); E_SERVER_IDENTITY (the server
 * runs as a user the client does not trust: nothing sent); E_NO_ACK,
 * E_ACK_TIMEOUT, E_BAD_REPLY (outcome unknown; also a reply body over
 * max_reply_depth or the decoding memory cap); E_INVAL, E_NOMEM, E_SYSTEM
 * (nothing sent).
 * With a retry policy (options->retry, or the client's), the status and
 * result are those of the last attempt; ret_result->attempts counts them.
 * `request` and everything its fields point to must stay valid and
 * unchanged until the call returns: large bytes and string values (16 KiB
 * and more) are sent from where they are, not copied first.
 * Safe to call from many threads on one client. */
ACKRPC_EXPORT ackrpc_status ackrpc_client_call(ackrpc_client *client,
                                               const ackrpc_method *method,
                                               const struct ProtobufCMessage *request,
                                               const ackrpc_call_options *options,
                                               ackrpc_result *ret_result);

/* --- Sessions: several calls on one connection (docs/PROTOCOL.md). --- */

typedef struct ackrpc_session ackrpc_session;

/* Opens a session: a connection on which calls follow one another, each
 * request frame answered by its reply frame. Connecting waits up to
 * timeout_ms (0: the client's timeout) while the server's queue is full.
 * A session is used by one thread at a time; it keeps what it needs from the
 * client (the client may be freed first). On success the caller owns
 * *ret_session (ackrpc_session_close()); on error it is untouched.
 * Errors: E_INVAL, E_NOMEM, E_CONNECT, E_BUSY, E_SERVER_IDENTITY (the
 * server failed options.server_check: nothing was sent). */
ACKRPC_EXPORT ackrpc_status ackrpc_session_open(ackrpc_client *client,
                                                uint32_t timeout_ms,
                                                ackrpc_session **ret_session);

/* Makes a call on the session, exactly like ackrpc_client_call() (same
 * statuses, same result). If the server ended an idle session before this
 * call was sent, the session reconnects first, which is safe (nothing was
 * sent). After an outcome other than ACKED, or E_BAD_REPLY, the connection
 * is dropped and the next call reconnects. The retry policy (per call, or
 * the client's as it was when the session was opened) applies: a retry
 * reconnects if the connection was dropped. */
ACKRPC_EXPORT ackrpc_status ackrpc_session_call(ackrpc_session *session,
                                                const ackrpc_method *method,
                                                const struct ProtobufCMessage *request,
                                                const ackrpc_call_options *options,
                                                ackrpc_result *ret_result);

/* Ends the session: half-closes, lets the server finish, and frees it.
 * NULL is ignored. Returns NULL. */
ACKRPC_EXPORT ackrpc_session *ackrpc_session_close(ackrpc_session *session);

/* A blocking call for tools that have no compiled message types (such as
 * the ackrpc command): `method` is the full name, the request body is sent
 * as the bytes given (a serialized message of the method's request type,
 * not checked here), and the reply body comes back undecoded in
 * ret_result->reply_bytes whatever the status (ret_result->reply stays
 * NULL). Always a one-shot call (the pool is not used). Otherwise exactly
 * like ackrpc_client_call(); E_INVAL also for a malformed method name.
 * `body` must stay unchanged until the call returns (a large one is sent
 * from where it is). */
ACKRPC_EXPORT ackrpc_status ackrpc_client_call_raw(ackrpc_client *client,
                                                   const char *method,
                                                   const uint8_t *body, size_t body_len,
                                                   const ackrpc_call_options *options,
                                                   ackrpc_result *ret_result);

/* Completion of an asynchronous call. `result` belongs to the library and
 * is cleared after the callback returns: to keep the reply or the message,
 * take the pointer and set the field to NULL. */
typedef void (*ackrpc_done_fn)(ackrpc_result *result, void *user);

/* Starts an asynchronous call on `base`. The request is serialized before
 * this returns. On OK, `done` runs exactly once, on the thread running
 * `base`, never from inside this function, even if the call fails at once.
 * If this returns an error, `done` is never called. The retry policy
 * (options->retry, copied here, or the client's) applies: retries wait on
 * `base` (a timer), and `done` runs once, after the last attempt.
 * The call must complete (it always does, by its deadline at the latest)
 * before `base` is freed. Call from the thread that runs `base` (or enable
 * libevent's thread support).
 * Errors: E_INVAL, E_NOMEM (nothing was sent). */
ACKRPC_EXPORT ackrpc_status ackrpc_client_call_async(
    ackrpc_client *client, struct event_base *base, const ackrpc_method *method,
    const struct ProtobufCMessage *request, const ackrpc_call_options *options,
    ackrpc_done_fn done, void *user);

/* --- The runtime of generated stubs (docs/GENERATOR.md). ---
 * protoc-gen-ackrpc's typed stubs are thin wrappers over these two calls,
 * so that generated code holds tables and casts, not logic. */

/* ackrpc_client_call() that hands the decoded reply to the caller: on OK,
 * if ret_reply is not NULL, *ret_reply receives the reply (the caller's, to
 * free with protobuf_c_message_free_unpacked(reply, NULL) or its type's
 * free_unpacked function) and ret_result->reply is left NULL; on any other
 * status *ret_reply is untouched. ret_result may be NULL; otherwise it is
 * zeroed first and cleared by the caller, as for ackrpc_client_call().
 * Statuses and errors: those of ackrpc_client_call(). */
ACKRPC_EXPORT ackrpc_status ackrpc_stub_call(ackrpc_client *client,
                                             const ackrpc_method *method,
                                             const struct ProtobufCMessage *request,
                                             struct ProtobufCMessage **ret_reply,
                                             const ackrpc_call_options *options,
                                             ackrpc_result *ret_result);

/* A function pointer of any type, passed through untouched: a stub stores
 * its typed callback here and its adapter casts it back to that type. */
typedef void (*ackrpc_stub_fn)(void);

/* Completes an asynchronous stub call: calls `done` (cast back to its own
 * type) with what it wants from `result`. Same ownership as ackrpc_done_fn:
 * `result` is cleared after the adapter returns. */
typedef void (*ackrpc_stub_adapter_fn)(ackrpc_result *result, ackrpc_stub_fn done,
                                       void *user);

/* ackrpc_client_call_async() whose completion is adapter(result, done,
 * user): the call keeps the three in its own state, so a typed stub needs
 * no allocation of its own. Same contract as ackrpc_client_call_async():
 * on OK the adapter runs exactly once, later, on the thread running `base`;
 * on an error it never runs. Errors: E_INVAL (also a NULL adapter or done),
 * E_NOMEM. */
ACKRPC_EXPORT ackrpc_status ackrpc_stub_call_async(
    ackrpc_client *client, struct event_base *base, const ackrpc_method *method,
    const struct ProtobufCMessage *request, const ackrpc_call_options *options,
    ackrpc_stub_adapter_fn adapter, ackrpc_stub_fn done, void *user);

/* --- Asynchronous sessions: pipelined calls on one connection. --- */

typedef struct ackrpc_async_session ackrpc_async_session;

/* Opens an asynchronous session on `base`: calls made on it are written to
 * one connection at once, without waiting for earlier replies (pipelining);
 * the server answers them in order. Connecting happens from the loop; if it
 * fails, each call reports it through its callback (E_CONNECT, E_BUSY,
 * E_SERVER_IDENTITY).
 * Use from the thread running `base`. On success the caller owns
 * *ret_session (ackrpc_async_session_close()); on error it is untouched.
 * Errors: E_INVAL, E_NOMEM. */
ACKRPC_EXPORT ackrpc_status ackrpc_async_session_open(
    ackrpc_client *client, struct event_base *base, ackrpc_async_session **ret_session);

/* Queues a call on the session; the request is serialized before this
 * returns. On OK, `done` runs exactly once, on the thread running the base,
 * never from inside this function, with the same statuses and outcomes as
 * ackrpc_client_call_async(). A call whose deadline passes is completed with
 * E_ACK_TIMEOUT (or E_SEND_TIMEOUT) at once; its late reply, if any, is
 * discarded. Calls on an asynchronous session are never retried (the retry
 * policy does not apply; result->attempts is 1). If the connection fails, the calls
 * already sent complete with E_NO_ACK and the others with E_SEND; the next call
 * reconnects. Callable from inside a `done` callback. If this returns an error, `done`
 * is never called. Errors: E_INVAL, E_NOMEM, E_STATE (the session is
 * closing). */
ACKRPC_EXPORT ackrpc_status ackrpc_async_session_call(
    ackrpc_async_session *session, const ackrpc_method *method,
    const struct ProtobufCMessage *request, const ackrpc_call_options *options,
    ackrpc_done_fn done, void *user);

/* ackrpc_async_session_call() for tools that have no compiled message
 * types, as ackrpc_client_call_raw() is for blocking calls: `method` is the
 * full name, `body` the serialized request (body_len bytes, copied before
 * this returns; NULL if body_len is 0), and the reply body comes back
 * undecoded in result->reply_bytes whatever the status. Same contract as
 * ackrpc_async_session_call() otherwise: pipelined, in order, never
 * retried; on OK `done` runs exactly once, later, on the base's thread.
 * Errors: E_INVAL (also a malformed method name, or a body too large for
 * one frame), E_NOMEM, E_STATE (the session is closing). */
ACKRPC_EXPORT ackrpc_status ackrpc_async_session_call_raw(
    ackrpc_async_session *session, const char *method, const uint8_t *body,
    size_t body_len, const ackrpc_call_options *options, ackrpc_done_fn done,
    void *user);

/* Closes the session: no new calls; those already queued still complete
 * (each `done` runs); then the connection is half-closed and the session
 * frees itself. Safe from inside a `done` callback. NULL is ignored. */
ACKRPC_EXPORT void ackrpc_async_session_close(ackrpc_async_session *session);

#ifdef __cplusplus
}
#endif

#endif /* ACKRPC_CLIENT_H */
