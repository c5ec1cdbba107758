/* log.c: the log sinks and the names of log levels (include/ackrpc/common.h). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ackrpc/common.h"

ackrpc_status ackrpc_log_level_parse(const char *name, ackrpc_log_level *ret_level) {
  static const struct {
    const char *name;
    ackrpc_log_level level;
  } names[] = {{"error", ACKRPC_LOG_ERROR},
               {"warning", ACKRPC_LOG_WARNING},
               {"warn", ACKRPC_LOG_WARNING},
               {"info", ACKRPC_LOG_INFO},
               {"debug", ACKRPC_LOG_DEBUG}};
  if (!name || !ret_level) return ACKRPC_E_INVAL;
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (strcasecmp(name, names[i].name) == 0) {
      *ret_level = names[i].level;
      return ACKRPC_OK;
    }
  return ACKRPC_E_INVAL;
}

ackrpc_status ackrpc_log_level_from_env(ackrpc_log_level *ret_level, char *errbuf,
                                        size_t errbuf_len) {
  if (!ret_level) return ACKRPC_E_INVAL;
  const char *value = getenv(ACKRPC_LOG_LEVEL_ENV);
  if (!value || !value[0]) {
    *ret_level = ACKRPC_LOG_DEFAULT;
    return ACKRPC_OK;
  }
  if (ackrpc_log_level_parse(value, ret_level) == ACKRPC_OK) return ACKRPC_OK;
  if (errbuf && errbuf_len)
    snprintf(errbuf, errbuf_len,
             "%s=\"%s\" is not a log level (error, warning, info or debug)",
             ACKRPC_LOG_LEVEL_ENV, value);
  return ACKRPC_E_INVAL;
}

static const char *level_name(ackrpc_log_level level) {
  switch (level) {
  case ACKRPC_LOG_ERROR: return "error";
  case ACKRPC_LOG_WARNING: return "warning";
  case ACKRPC_LOG_INFO: return "info";
  case ACKRPC_LOG_DEBUG: return "debug";
  case ACKRPC_LOG_DEFAULT: break;
  }
  return "log";
}

static atomic_uint_fast64_t stderr_dropped;

/* Writes one line to fd 2 without waiting: a log sink runs on the
 * server's loop, and a stderr pipe that nobody reads must not stop it.
 * The descriptor's own flags are not changed (the file description is
 * shared with other processes): a socket gets MSG_DONTWAIT; anything else
 * is written only if poll() says it is writable now. A pipe that is
 * writable has room for at least one page, and a line is shorter; the
 * mutex keeps two threads of this process from both taking the last room.
 * A reader that leaves between poll() and write() would raise SIGPIPE:
 * blocked for this thread meanwhile, and taken back if this write raised
 * it. (A terminal may report room for fewer bytes than a long line: a
 * stalled terminal can still hold one line up.) */
static pthread_mutex_t stderr_mu = PTHREAD_MUTEX_INITIALIZER;

static int write_now(const char *line, size_t len) {
  ssize_t n = send(STDERR_FILENO, line, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n >= 0 || errno != ENOTSOCK) return n == (ssize_t)len ? 0 : -1;
  sigset_t pipe_set, old, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_mutex_lock(&stderr_mu);
  struct pollfd p = {.fd = STDERR_FILENO, .events = POLLOUT};
  if (poll(&p, 1, 0) == 1 && (p.revents & (POLLOUT | POLLERR)) == POLLOUT) {
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    n = write(STDERR_FILENO, line, len);
    if (n < 0 && errno == EPIPE && !was_pending) {
      struct timespec zero = {0, 0};
      sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  }
  pthread_mutex_unlock(&stderr_mu);
  return n == (ssize_t)len ? 0 : -1;
}

void ackrpc_log_stderr(void *user, ackrpc_log_level level, const char *message) {
  (void)user;
  /* One write: the line goes out in one piece and lines from several
   * threads do not interleave. */
  char line[1024];
  int n = snprintf(line, sizeof line, "ackrpc: %s: %s\n", level_name(level),
                   message ? message : "");
  if (n < 0) return;
  size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
  line[len - 1] = '\n'; /* a truncated line still ends its line */
  if (write_now(line, len) != 0)
    atomic_fetch_add_explicit(&stderr_dropped, 1, memory_order_relaxed);
}

uint64_t ackrpc_log_stderr_dropped(void) {
  return atomic_load_explicit(&stderr_dropped, memory_order_relaxed);
}

void ackrpc_log_discard(void *user, ackrpc_log_level level, const char *message) {
  (void)user;
  (void)level;
  (void)message;
}
