/* nats_harness.h: child processes and real nats-servers for the NATS tests
 * (test_nats_*). Test code only: it asserts with Criterion and uses the
 * integration fixture's temp dir (tests/support/fixture.h), so fx_setup()
 * must have run.
 *
 * Children are started by the fixture's fx_spawn(): stdout and stderr
 * appended to a log file, a clean signal state, and PR_SET_PDEATHSIG: they
 * die with the test process.
 * Each gets a slot (0 to NH_MAX_CHILDREN-1); nh_kill_children() in the
 * suite's teardown reaps whatever is left. Every wait is bounded (10 s). */
#ifndef ACKRPC_NATS_HARNESS_H
#define ACKRPC_NATS_HARNESS_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

enum { NH_MAX_CHILDREN = 16 };

/* The nats-server binary found on PATH (or /usr/sbin, /usr/bin,
 * /usr/local/bin), or NULL: the tests exit 77 (skipped) then. */
const char *nh_find_nats_server(void);

/* A NATS test program's main(): exits 77 (skipped) with a note when
 * nats-server is not installed, else runs the Criterion tests with
 * argc/argv and returns the exit status. */
int nh_main(int argc, char *argv[]);

/* Starts argv[0] (execv) with its output to `log`; returns the slot. */
int nh_start_child(char *const argv[], const char *log);

/* The pid in a slot (0 if none). */
pid_t nh_pid(int slot);

/* SIGTERM, then waits up to 10 s (then SIGKILL); frees the slot. Returns
 * the status as waitpid() gives it, or -1 for an empty slot. */
int nh_stop_child(int slot);

/* Sends `sig` and reaps the child (bounded, then SIGKILL); frees the slot.
 * For crash tests: nh_signal_child(slot, SIGKILL). */
int nh_signal_child(int slot, int sig);

/* Waits up to `ms` for the child to exit by itself; returns its status, or
 * -1 if it is still running (then it stays in its slot). */
int nh_wait_child(int slot, unsigned ms);

/* SIGKILLs and reaps every child still running. */
void nh_kill_children(void);

/* The whole file (up to 1 MiB), NUL-terminated, malloc'd; NULL if absent. */
char *nh_slurp(const char *path);

/* Waits up to 10 s for `what` to appear in the file; fails the test with
 * the file's text otherwise. */
void nh_wait_for_text(const char *path, const char *what);

/* nats-server on 127.0.0.1 with a client port of its own choosing (read
 * from its ports file). `name` names its files in the test's dir
 * (NAME.conf, NAME.log); `conf` is the text of a configuration file or
 * NULL; `extra` more arguments (NULL-terminated, or NULL). Writes
 * "nats://127.0.0.1:PORT" ("tls://..." for a server that requires TLS) to
 * url (cap bytes). Returns the slot. */
int nh_start_nats(const char *name, const char *conf, const char *const extra[],
                  char *url, size_t cap);

/* SIGTERM, then asserts the child exited 0 (a clean stop), showing its
 * log (a file in the test's dir) if not. */
void nh_stop_clean(int slot, const char *log);

/* The value of metadata `key` as the fixture's echo handler reports it
 * (EchoReply.meta, "key=hex;" per entry), decoded as text into out (cap
 * bytes); "" if absent. */
void nh_metadata_value(const char *meta, const char *key, char *out, size_t cap);

/* A suite's .init and .fini: fx_setup(); and nh_kill_children(), then
 * fx_teardown(). */
#define NH_SUITE(suite) TestSuite(suite, .init = fx_setup, .fini = nh_suite_fini)
void nh_suite_fini(void);

/* A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
 * released): for cluster routes, which must be known before the servers
 * start. */
int nh_free_port(void);

#endif
