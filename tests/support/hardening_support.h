/* hardening_support.h: helpers for the hardening tests (tests/hardening/test_hardening*.c
 * and test_soak.c), on top of fixture.h: servers in child processes
 * (fork), readings from /proc (fds, CPU time, RSS), request frames built from
 * raw parts, and raw-socket reads that scale to thousands of connections
 * (fixture.h's fx_raw_read_all keeps at most 64 buffers per test).
 *
 * Suites use HS_SUITE/HS_TEST instead of FX_SUITE/FX_TEST: the same fixture,
 * plus child processes and in-process servers that are always killed or
 * stopped, even when the test fails. Everything waits with a bound.
 *
 * Child processes are made with fork() and never exec (except
 * hs_spawn()): they run only the code given to them and end with _exit(), so
 * no Criterion or sanitizer exit handler runs in them. They get SIGKILL if
 * the test process dies (PR_SET_PDEATHSIG).
 */
#ifndef ACKRPC_TEST_HARDENING_SUPPORT_H
#define ACKRPC_TEST_HARDENING_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "fixture.h"
#include "hardening.pb-c.h"

/* --- Suites and tests --- */

void hs_setup(void);
void hs_teardown(void);
/* Stops the in-process servers (asserting a clean stop) and asserts that
 * every child process was reaped; kills and reaps the ones left. */
void hs_finish(void);

#define HS_SUITE(suite) TestSuite(suite, .init = hs_setup, .fini = hs_teardown)

#define HS_TEST(suite, name)                                                  \
  static void hs_body_##suite##_##name(void);                                 \
  Test(suite, name) {                                                         \
    hs_body_##suite##_##name();                                               \
    hs_finish();                                                              \
    fx_finish();                                                              \
  }                                                                           \
  static void hs_body_##suite##_##name(void)

/* --- Environment --- */

/* Nonzero in a build with AddressSanitizer. */
int hs_asan(void);
/* Nonzero under valgrind or ASan: tests shrink their counts there. */
int hs_slow(void);
/* Raises this process's RLIMIT_NOFILE soft limit to at least `want`
 * (asserted possible). */
void hs_raise_nofile(rlim_t want);

/* --- /proc readings; pid 0 means this process --- */

long hs_fd_count(pid_t pid);
/* utime + stime in clock ticks (sysconf(_SC_CLK_TCK) per second). */
long hs_cpu_ticks(pid_t pid);
/* A "Name:   N kB" field of /proc/PID/status ("VmRSS", "VmHWM"), in kB;
 * -1 if absent. */
long hs_status_kb(pid_t pid, const char *field);

/* --- Child processes --- */

typedef int (*hs_child_fn)(void *arg);

/* Forks a child that runs fn(arg) and _exit()s with its result. Registered:
 * hs_finish()/hs_teardown() kill it if it is still there. */
pid_t hs_fork(hs_child_fn fn, void *arg);
/* fx_spawn(argv, log_path): a child that runs argv[0] with stdout and
 * stderr appended to `log_path` (NULL: /dev/null). Registered like
 * hs_fork(). */
pid_t hs_spawn(char *const argv[], const char *log_path);
/* Waits up to `ms` for the child to end; 0 and its wait status in
 * *ret_status if it did, -1 if it still runs. */
int hs_wait(pid_t pid, uint32_t ms, int *ret_status);
/* SIGKILL and reap (bounded). */
void hs_kill(pid_t pid);
/* Nonzero if the child has not ended (and was not reaped). */
int hs_alive(pid_t pid);

/* A server in a child process: ackrpc_server_new(options) with the fixture's
 * methods (FX_ECHO, FX_STRICT) and the Hard service (HS_NEST, HS_FILL,
 * HS_CONNS), after setting RLIMIT_NOFILE to `nofile` if it is not 0. The
 * child reports ackrpc_server_new()'s status (in *ret_status), then serves
 * until SIGTERM, frees the server and exits 0 (1 if run failed). Returns the
 * pid; if the status is not OK, the child has already been reaped. */
pid_t hs_server_proc(const ackrpc_server_options *options, rlim_t nofile,
                     ackrpc_status *ret_status);
/* SIGTERM, then waits up to `ms` for the exit (asserted) and returns the
 * wait status. */
int hs_server_proc_stop(pid_t pid, uint32_t ms);

/* --- In-process servers (own loop, own thread) with the same methods --- */

typedef struct hs_server hs_server;
hs_server *hs_server_start(const ackrpc_server_options *options);
/* Stop, join within drain time + slack (asserted), free. */
void hs_server_stop(hs_server *hs);
/* Connections open on the server, the asking one excluded (a Conns call). */
size_t hs_server_conns(const char *address);

#define HS_NEST "ackrpc.hardening.Hard/Nest"
#define HS_FILL "ackrpc.hardening.Hard/Fill"
#define HS_CONNS "ackrpc.hardening.Hard/Conns"
extern const ackrpc_method hs_nest_method;
extern const ackrpc_method hs_fill_method;
extern const ackrpc_method hs_conns_method;
/* Calls of the Hard service's handlers in this process. */
unsigned hs_handler_calls(void);

/* --- Frames and raw sockets --- */

/* A request frame (malloc'd into *ret, caller frees) for `method` with a
 * fixed call id, no metadata, and the given body bytes. */
size_t hs_frame(uint8_t **ret, const char *method, uint64_t timeout_us,
                const void *body, size_t body_len);
/* A request frame from a raw head and body (lengths as given). */
size_t hs_frame_raw(uint8_t **ret, const void *head, size_t head_len,
                    const void *body, size_t body_len);
/* A packed message (malloc'd; caller frees). */
uint8_t *hs_pack(const ProtobufCMessage *m, size_t *ret_len);

/* Connects to a path; -1 on failure (errno set). */
int hs_connect(const char *path);
/* Sends everything (MSG_NOSIGNAL, waits on EAGAIN); 0 or -1 (errno). */
int hs_send_all(int fd, const void *buf, size_t len);

/* What a raw read saw: the first reply frame, if any, and whether the
 * server ended the connection (EOF or ECONNRESET). */
typedef struct hs_reply {
  int got;         /* a complete reply frame was read */
  uint32_t status; /* its status */
  char message[256];
  int closed; /* EOF or ECONNRESET came */
  uint8_t *buf; /* everything read (malloc'd; hs_reply_free) */
  size_t len;
  size_t body_off, body_len; /* the first reply's body within buf */
} hs_reply;

/* Reads until the connection ends or `ms` pass. */
void hs_read_reply(int fd, uint32_t ms, hs_reply *ret);
void hs_reply_free(hs_reply *r);
/* Parses one reply frame at buf[0..len); 0 if incomplete or malformed, else
 * its length (status, message, body placement to the outputs). */
size_t hs_parse_reply(const uint8_t *buf, size_t len, hs_reply *out);

/* --- Numbers --- */

/* Sorts v and returns the p-th percentile (0..1). */
uint64_t hs_percentile(uint64_t *v, size_t n, double p);

#endif /* ACKRPC_TEST_HARDENING_SUPPORT_H */
