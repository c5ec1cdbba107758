/* fixture.h: the per-test fixture of the integration tests (test_server*.c,
 * test_client*.c, test_integration*.c): a private directory for socket
 * files, servers running their own loop in a thread, "fake servers" that
 * speak raw bytes, hand-built frames, and the checks every test ends with
 * (no fd leaked, no socket file left behind).
 *
 * Criterion runs each test in its own process, so the fixture keeps its state
 * in one process-wide object; FX_SUITE() wires fx_setup()/fx_teardown() as
 * the suite's .init/.fini and FX_TEST() makes every test end with
 * fx_finish(), whose assertions count (Criterion ignores a failed assertion
 * in .fini; there fx_teardown() only cleans up, so a failing test still
 * leaves no thread, socket file or directory behind).
 *
 * Not a unit-test helper for src/ internals: everything here goes through the
 * public API or raw sockets and the wire format of docs/PROTOCOL.md.
 *
 * Assertions (cr_assert) may only run on the test's main thread: helpers
 * meant for other threads say so and report through return values.
 */
#ifndef ACKRPC_TEST_FIXTURE_H
#define ACKRPC_TEST_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <criterion/criterion.h>
#include <protobuf-c/protobuf-c.h>

#include <ackrpc/ackrpc.h>

#include "ackrpc/reflection.pb-c.h"
#include "strict.pb-c.h"
#include "test.pb-c.h"

/* --- Suites and tests --- */

void fx_setup(void);
void fx_teardown(void);

/* Stops and frees everything the test started, then asserts that the
 * process has as many open fds as at setup and that no socket file is left
 * in the test's directory. Called by FX_TEST after the body. */
void fx_finish(void);

#define FX_SUITE(suite) TestSuite(suite, .init = fx_setup, .fini = fx_teardown)

/* Test(suite, name) whose body is followed by fx_finish(). */
#define FX_TEST(suite, name)                                                  \
  static void fx_body_##suite##_##name(void);                                 \
  Test(suite, name) {                                                         \
    fx_body_##suite##_##name();                                               \
    fx_finish();                                                              \
  }                                                                           \
  static void fx_body_##suite##_##name(void)

/* --- Environment --- */

/* The test's private directory (mkdtemp; removed with its content at
 * teardown) and "<dir>/s.sock", a fresh socket path. */
const char *fx_dir(void);
const char *fx_sock(void);
/* "<dir>/<name>"; the string lives until teardown. */
const char *fx_path(const char *name);
/* A unique abstract address "@ackrpc-test-<pid>-<n>"; lives until teardown. */
const char *fx_abstract(void);

uint64_t fx_now_us(void); /* CLOCK_MONOTONIC */
void fx_sleep_ms(uint32_t ms);
int fx_fd_count(void);
/* Nonzero under valgrind (tests shrink their loops there). */
int fx_valgrind(void);
/* A generous upper margin for timing checks: 1 s, 10 s under valgrind. */
uint64_t fx_slack_us(void);

/* --- The test service --- */

#define FX_ECHO "ackrpc.test.Test/Echo"
#define FX_STRICT "ackrpc.test.Test/Strict"
#define FX_PROBE "ackrpc.test.Fixture/Connections"

extern const ackrpc_method fx_echo_method;   /* EchoRequest -> EchoReply */
extern const ackrpc_method fx_strict_method; /* Strict -> StrictReply */

/* The fixture's handlers, for tests that build a server by hand. `user` is
 * ignored by fx_echo_handler except for DEFER_TIMER, which needs the server:
 * pass the ackrpc_server ** that will hold it. */
void fx_echo_handler(ackrpc_call *call, const ProtobufCMessage *request,
                     void *user);
void fx_strict_handler(ackrpc_call *call, const ProtobufCMessage *request,
                       void *user);

/* How many times any fixture handler ran in this process. */
unsigned fx_handler_calls(void);

/* The result of the handler's ackrpc_call_reply() for a request with this
 * tag (1..FX_MAX_TAGS-1), or -1 if it has not replied yet. */
#define FX_MAX_TAGS 64
int fx_reply_rc(uint32_t tag);
/* Waits up to `ms` for fx_reply_rc(tag) to be set; returns it (or -1). */
int fx_reply_rc_wait(uint32_t tag, uint32_t ms);

/* Calls parked by mode HOLD, in arrival order. */
#define FX_MAX_HELD 16
/* Waits up to `ms` until at least `n` calls have been parked; returns how
 * many were. */
size_t fx_held_wait(size_t n, uint32_t ms);
/* Answers parked call `i` (its EchoReply, status and message). Returns
 * ackrpc_call_reply()'s result. Any thread. */
ackrpc_status fx_held_reply(size_t i, ackrpc_status status,
                            const char *message);

/* Joins the threads of DEFER_THREAD replies (each bounded by its delay). */
void fx_deferred_join(void);

/* --- Servers on their own loop, in a thread --- */

typedef struct fx_server fx_server;

/* ackrpc_server_new(options) (asserted OK), registers FX_ECHO, FX_STRICT and
 * FX_PROBE, and runs ackrpc_server_run() in a new thread. */
fx_server *fx_server_start(const ackrpc_server_options *options);
/* The same, calling setup(server, user) after the registrations and before
 * the loop runs: for what must be installed first (method policies, a
 * fallback). */
fx_server *fx_server_start_setup(const ackrpc_server_options *options,
                                 void (*setup)(ackrpc_server *server, void *user),
                                 void *user);
/* As fx_server_start_setup() but registering none of the fixture's methods:
 * setup registers the test's own (FX_ECHO with another handler, say).
 * fx_server_connections() does not work on such a server (no FX_PROBE). */
fx_server *fx_server_start_bare(const ackrpc_server_options *options,
                                void (*setup)(ackrpc_server *server, void *user),
                                void *user);
ackrpc_server *fx_server_get(const fx_server *fs);
/* ackrpc_server_stop() only. */
void fx_server_request_stop(fx_server *fs);
/* Waits up to `ms` for ackrpc_server_run() to return (asserted) and returns
 * its status. */
ackrpc_status fx_server_join(fx_server *fs, uint32_t ms);
/* Frees a joined server. */
void fx_server_free(fx_server *fs);
/* Stop, join within drain time + slack, assert run returned OK, free. */
void fx_server_stop(fx_server *fs);
/* ackrpc_server_connections() read on the loop's thread (through a FX_PROBE
 * call, which is not counted). Asserts the probe call succeeds. */
size_t fx_server_connections(fx_server *fs);

/* --- Clients --- */

/* ackrpc_client_new() (asserted OK); freed by fx_finish(). timeout 0: the
 * default. */
ackrpc_client *fx_client(const char *address, uint32_t timeout_ms);
ackrpc_client *fx_client_opts(const ackrpc_client_options *options);

/* The server's counters (ackrpc_counters), asked through the built-in
 * Stats service with client `c`; asserts the call succeeds and that the
 * message has as many fields as the struct (the server copies one into the
 * other in order). */
Ackrpc__Reflection__Counters fx_counters(ackrpc_client *c);

/* A blocking FX_ECHO call. */
ackrpc_status fx_echo(ackrpc_client *client,
                      const Ackrpc__Test__EchoRequest *request,
                      const ackrpc_call_options *options,
                      ackrpc_result *result);
/* The result's reply as an EchoReply (asserted present and of that type). */
const Ackrpc__Test__EchoReply *fx_echo_reply(const ackrpc_result *result);

/* A blocking call run in a new thread (for calls that block while the test
 * acts). The request is copied. */
typedef struct fx_bg_call fx_bg_call;
fx_bg_call *fx_bg_echo(ackrpc_client *client,
                       const Ackrpc__Test__EchoRequest *request,
                       uint32_t timeout_ms);
/* Nonzero once the call has returned. */
int fx_bg_done(const fx_bg_call *bg);
/* Waits up to `ms` for the call (asserted) and returns its status; the
 * result stays valid until fx_finish(). */
ackrpc_status fx_bg_join(fx_bg_call *bg, uint32_t ms, ackrpc_result **ret);

/* --- Fake servers: a listening socket and a thread that plays one script
 * on the first connection --- */

typedef enum fx_fake_mode {
  FX_FAKE_CLOSE,     /* read until EOF, close without a reply */
  FX_FAKE_REPLY,     /* read until EOF, write the given bytes, close */
  FX_FAKE_HOLD,      /* read until EOF, then wait for the client to close */
  FX_FAKE_NO_READ,   /* accept, never read; wait for the client to close */
  FX_FAKE_NO_ACCEPT, /* listen only */
} fx_fake_mode;

typedef struct fx_fake fx_fake;

/* Binds `path` (a file path), listens with `backlog`, starts the script.
 * `reply` is copied. */
fx_fake *fx_fake_start(const char *path, fx_fake_mode mode, const void *reply,
                       size_t reply_len, int backlog);
/* Joins the script (bounded: every wait in it is) and returns the bytes it
 * read from its connection (owned by the fake; *ret_len their count) and
 * whether it saw EOF. */
const uint8_t *fx_fake_join(fx_fake *fake, size_t *ret_len, int *ret_eof);
/* The listening fd (for FX_FAKE_NO_ACCEPT tests). */
int fx_fake_fd(const fx_fake *fake);

/* --- Frames built and parsed by hand (docs/PROTOCOL.md, src/frame.h) --- */

/* A reply frame; malloc'd into *ret_frame; returns its length. `body` NULL:
 * empty; `message` NULL: none. */
size_t fx_frame_reply(uint8_t **ret_frame, uint32_t status, const char *message,
                      const ProtobufCMessage *body);
/* A reply frame prefix announcing these lengths (12 bytes into out). */
void fx_frame_prefix(uint8_t out[12], uint8_t type, uint32_t head_len,
                     uint32_t body_len);
/* A request frame; call_id NULL: "fixture-call-id". */
size_t fx_frame_request(uint8_t **ret_frame, const char *method,
                        uint64_t timeout_us, const uint8_t *call_id,
                        size_t call_id_len, const ProtobufCMessage *body);
/* A request frame written to out[0..cap) (asserted to fit), whose head
 * announces `fd_count` descriptors and, if `body_memfd`, a body in the last
 * of them (docs/PROTOCOL.md §2.5-2.6: the frame's body is then the one byte
 * 0x00 and `body` is ignored); else `body` (NULL: empty). Call id
 * "fixture-call-id", no timeout. Returns the frame's length. */
size_t fx_frame_request_fds(uint8_t *out, size_t cap, const char *method, uint32_t fd_count,
                            int body_memfd, const ProtobufCMessage *body);
/* Parses the reply frame at buf[0..len): returns its length, 0 if it is
 * not a complete, well-formed reply frame. Status and message (malloc'd,
 * may be NULL) go to the outputs; the body stays in buf. */
size_t fx_parse_reply(const uint8_t *buf, size_t len, uint32_t *ret_status,
                      char **ret_message, const uint8_t **ret_body,
                      size_t *ret_body_len);

/* --- Raw sockets --- */

/* A blocking connection to a path or "@name"; -1 on failure. Closed by the
 * caller. */
int fx_raw_connect(const char *address);
/* Writes everything (MSG_NOSIGNAL); 0 or -1. */
int fx_raw_send(int fd, const void *buf, size_t len);
/* Most descriptors fx_raw_send_fds() sends at once. */
#define FX_MAX_SEND_FDS 16
/* Writes everything, as fx_raw_send(), with fds[0..n_fds) in one
 * SCM_RIGHTS message on the first sendmsg() (n_fds 0: none). The caller
 * keeps its own descriptors (the peer gets copies). 0, or -1 if a send
 * fails or n_fds is over FX_MAX_SEND_FDS or len is 0 with descriptors. */
int fx_raw_send_fds(int fd, const void *buf, size_t len, const int *fds, size_t n_fds);
/* Reads until EOF or `ms` pass; returns a malloc'd buffer (freed at
 * teardown), its length in *ret_len, and *ret_eof nonzero if EOF came. */
uint8_t *fx_raw_read_all(int fd, uint32_t ms, size_t *ret_len, int *ret_eof);

/* --- Child processes --- */

/* fork() for a child that must not outlive the test process: the child
 * (0 returned) has PR_SET_PDEATHSIG(SIGKILL) and exits 127 at once if the
 * parent is already gone. stdio is flushed first. Returns the pid in the
 * parent (fork asserted). */
pid_t fx_fork(void);

/* Forks (fx_fork) a child that runs argv[0] (execv) with stdout and
 * stderr appended to `log` (created 0600; NULL: /dev/null), no signal
 * blocked and SIGPIPE at its default. The child exits 127 if it cannot
 * open the log or run argv[0].
 * Returns its pid (fork asserted); the caller keeps it and reaps it. */
pid_t fx_spawn(char *const argv[], const char *log);

/* --- Listeners of another user --- */

/* A listening, non-blocking socket bound to `address` whose listen() was
 * called by a child process running as uid:gid (so SO_PEERCRED shows its
 * clients that user; the socket file, if any, belongs to this process's
 * user). No process is left running. Needs root unless uid is this
 * process's euid. Returns the fd (closed by the caller, who also unlinks a
 * path), or -1 (nothing left behind). */
int fx_listen_as(const char *address, uid_t uid, gid_t gid);

/* Accepts every connection queued on the non-blocking listener `lfd`,
 * reads each until EOF (at most 2 s each) and closes it. Returns how many
 * there were, and the bytes they sent in all in *ret_bytes. */
size_t fx_listener_drain(int lfd, size_t *ret_bytes);

#endif /* ACKRPC_TEST_FIXTURE_H */
