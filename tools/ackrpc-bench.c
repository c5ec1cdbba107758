/* ackrpc-bench: the benchmark server and load client of ackrpc.
 *
 *   ackrpc-bench serve --socket PATH [--max-request-size BYTES] [limits]
 *   ackrpc-bench run --socket PATH [--mode oneshot|session|pipeline] [--depth N]
 *                    [--size S] [--concurrency C] [--duration SEC] [--warmup SEC]
 *                    [--peer NAME] [--timeout-ms MS] [--csv] [--server-pid PID]
 *   ackrpc-bench idle --socket PATH [--connections N] [--hold SEC]
 *                     [--server-pid PID] [--call]
 *
 * `serve` answers ackrpc.bench.Bench/Call (proto/ackrpc/bench.proto) inline
 * with the request's id and body length. `run` drives it from C threads that
 * share one client: one-shot calls (a connection per call), calls on one
 * session per thread, or pipelined calls (one asynchronous session per
 * thread on its own event_base, N calls in flight). It prints one line
 *
 *   peer=ackrpc size=S conc=C calls_per_s=N p50_us=N p99_us=N errors=N
 *
 * in the format of the peer benchmarks (docs/BENCHMARKS.md), so ackrpc can sit
 * in the same table as them, or with --csv a CSV header and row. `idle` holds
 * N idle connections open so that the server's memory per connection can be
 * read. This measures; it is not a test and has no thresholds. How to run it:
 * docs/BENCHMARKS.md; results: docs/PERFORMANCE.md.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <ackrpc/ackrpc.h>
#include <event2/event.h>
#include <protobuf-c/protobuf-c.h>

#include "ackrpc/bench.pb-c.h"

#define PROG "ackrpc-bench"

/* Exit codes: 0 success, 1 failure (errors during the run, no call completed
 * in the window, server failure), 2 bad command line. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* serve accepts a 64 MiB body by default: the head of a frame is at most
 * 64 KiB (ACKRPC_MAX_HEAD), and the body's protobuf framing adds a few
 * bytes, which the head's allowance covers many times over. */
#define SERVE_DEFAULT_MAX_REQUEST ((size_t)64 * 1024 * 1024 + ACKRPC_MAX_HEAD)
#define SERVE_MAX_MAX_REQUEST ((uint64_t)UINT32_MAX)
#define RUN_MAX_SIZE ((uint64_t)1 << 30)
#define RUN_MAX_CONC 4096
#define RUN_MAX_DEPTH 4096
#define RUN_DEFAULT_DEPTH 16
#define IDLE_MAX_CONNECTIONS 100000
/* Latency samples: each thread starts with room for this many... */
#define SAMPLES_INITIAL 65536
/* ...and all threads together keep at most this many (256 MiB); beyond it a
 * thread keeps a uniform random sample of its calls (reservoir sampling), so
 * memory stays bounded on long runs while the percentiles stay unbiased. */
#define SAMPLES_MAX_TOTAL ((size_t)1 << 25)

static const ackrpc_method bench_call_method = {
    .name = "ackrpc.bench.Bench/Call",
    .request = &ackrpc__bench__request__descriptor,
    .reply = &ackrpc__bench__ack__descriptor,
};

static int serve_main(int argc, char **argv);
static int run_main(int argc, char **argv);
static int idle_main(int argc, char **argv);

static void usage_main(FILE *out) {
  fprintf(out,
          "usage: " PROG " serve --socket PATH [--max-request-size BYTES] [LIMITS]\n"
          "       " PROG " run --socket PATH [--mode oneshot|session|pipeline]\n"
          "                    [--depth N] [--size BYTES] [--concurrency N]\n"
          "                    [--duration SEC] [--warmup SEC] [--peer NAME]\n"
          "                    [--timeout-ms MS] [--csv] [--server-pid PID]\n"
          "       " PROG " idle --socket PATH [--connections N] [--hold SEC]\n"
          "                     [--server-pid PID] [--call]\n"
          "       " PROG " COMMAND --help\n"
          "\n"
          "Benchmark server and load client for ackrpc (ackrpc.bench.Bench/Call).\n"
          "See docs/BENCHMARKS.md and docs/PERFORMANCE.md.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage_main(stderr);
    return EXIT_USAGE;
  }
  if (strcmp(argv[1], "serve") == 0) return serve_main(argc - 1, argv + 1);
  if (strcmp(argv[1], "run") == 0) return run_main(argc - 1, argv + 1);
  if (strcmp(argv[1], "idle") == 0) return idle_main(argc - 1, argv + 1);
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage_main(stdout);
    return EXIT_OK;
  }
  fprintf(stderr, PROG ": unknown command '%s'\n", argv[1]);
  usage_main(stderr);
  return EXIT_USAGE;
}

/* ---- Command-line helpers ---- */

/* Reports a bad command line for `cmd` and returns EXIT_USAGE. */
static int bad_usage(const char *cmd, const char *fmt, const char *arg) {
  fprintf(stderr, PROG " %s: ", cmd);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry '" PROG " %s --help'.\n", cmd);
  return EXIT_USAGE;
}

/* Reports getopt_long's complaint about argv[optind - 1]. */
static int bad_option(const char *cmd, int opt, char **argv) {
  const char *arg = argv[optind - 1];
  if (opt == ':') return bad_usage(cmd, "option '%s' needs a value", arg);
  return bad_usage(cmd, "unknown option '%s'", arg);
}

/* Parses a byte count: decimal digits, optionally followed by K, M or G
 * (powers of 1024). Returns 0 and sets *ret if it lies in [min, max]. */
static int parse_bytes(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
  if (*s < '0' || *s > '9') return -1;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0) return -1;
  unsigned shift = 0;
  if (*end == 'K' || *end == 'k')
    shift = 10, end++;
  else if (*end == 'M' || *end == 'm')
    shift = 20, end++;
  else if (*end == 'G' || *end == 'g')
    shift = 30, end++;
  if (*end != '\0') return -1;
  if (shift && v > (UINT64_MAX >> shift)) return -1;
  uint64_t bytes = (uint64_t)v << shift;
  if (bytes < min || bytes > max) return -1;
  *ret = bytes;
  return 0;
}

/* Parses a decimal integer in [min, max]. */
static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
  if (*s < '0' || *s > '9') return -1;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) return -1;
  *ret = v;
  return 0;
}

/* Parses a number of seconds (a decimal fraction) in [min, max]. */
static int parse_seconds(const char *s, double min, double max, double *ret) {
  if ((*s < '0' || *s > '9') && *s != '.') return -1;
  errno = 0;
  char *end;
  double v = strtod(s, &end);
  if (errno != 0 || *end != '\0' || !isfinite(v) || v < min || v > max) return -1;
  *ret = v;
  return 0;
}

/* Raises the soft limit on open files to the hard one: a server or an idle
 * client holding thousands of connections needs that many descriptors. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* ---- Another process's CPU time and memory, from /proc ---- */

/* CPU time (user + system) of process `pid` in seconds, from
 * /proc/PID/stat. Returns 0 on success. */
static int proc_cpu_s(pid_t pid, double *ret) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* The command name (field 2) may hold spaces: count from its ')'. */
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  unsigned long long utime, stime;
  /* After ')': state (3), ppid .. cmajflt (4-12), utime (14), stime (15). */
  if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
             &stime) != 2)
    return -1;
  long hz = sysconf(_SC_CLK_TCK);
  if (hz <= 0) return -1;
  *ret = (double)(utime + stime) / (double)hz;
  return 0;
}

/* A "Key:   N kB" field of /proc/PID/status (VmRSS, VmHWM), in KiB. */
static int proc_status_kb(pid_t pid, const char *key, uint64_t *ret) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t klen = strlen(key);
  int rc = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
      unsigned long long v;
      if (sscanf(line + klen + 1, "%llu", &v) == 1) {
        *ret = v;
        rc = 0;
      }
      break;
    }
  }
  fclose(f);
  return rc;
}

/* ---- serve ---- */

typedef struct serve_stats {
  uint64_t calls;
  uint64_t reply_failures;
} serve_stats;

/* The server the signal handler stops. A lock-free atomic: one of the few
 * objects a signal handler may read. */
static _Atomic(ackrpc_server *) g_server;

static void usage_serve(FILE *out) {
  fprintf(
      out,
      "usage: " PROG " serve --socket PATH [--max-request-size BYTES] [LIMITS]\n"
      "\n"
      "Serves ackrpc.bench.Bench/Call on PATH (a socket file path, or @name for the\n"
      "Linux abstract namespace), acking each request inline with its id and body\n"
      "length. Runs until SIGTERM or SIGINT, then drains, removes the socket file\n"
      "and exits 0.\n"
      "\n"
      "  -a, --socket PATH            the address to serve (required)\n"
      "  -m, --max-request-size BYTES largest request frame accepted; a suffix\n"
      "                               K, M or G multiplies by 1024, 1024^2, 1024^3\n"
      "                               (default 64M + 64K: bodies up to 64 MiB;\n"
      "                               pass more for bigger --size in run)\n"
      "LIMITS (the library's defaults unless given; raise them to hold many idle\n"
      "connections, e.g. for '" PROG " idle'):\n"
      "      --max-connections N      connections served at once (default 1024)\n"
      "      --max-pending N          connections waiting for a request (256)\n"
      "      --max-per-uid N          connections from one uid (256)\n"
      "      --read-timeout-ms MS     time for a request to arrive (10000)\n"
      "      --view                   read each request's id and body length in\n"
      "                               place (a raw method), without protobuf-c's\n"
      "                               copy of the body: with bodies in memfds, the\n"
      "                               body is then never copied by the server\n"
      "      --memfd-threshold BYTES  reply bodies from this size go in a memfd\n"
      "                               (or 'off'; default: the library's, 64K)\n"
      "  -h, --help                   this text\n");
}

static void serve_on_call(ackrpc_call *call, const ProtobufCMessage *request,
                          void *user) {
  serve_stats *stats = user;
  const Ackrpc__Bench__Request *req = (const Ackrpc__Bench__Request *)request;
  Ackrpc__Bench__Ack ack = ACKRPC__BENCH__ACK__INIT;
  ack.id = req->id;
  ack.body_len = (uint32_t)req->body.len;
  stats->calls++;
  /* Nothing to print per call under load: count, and report at exit. */
  if (ackrpc_call_reply(call, ACKRPC_OK, NULL, &ack.base) != ACKRPC_OK)
    stats->reply_failures++;
}

/* A varint at *p (before end); 0 and *p moved past it, or -1. */
static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret) {
  uint64_t v = 0;
  for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
    uint8_t b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *ret = v;
      return 0;
    }
  }
  return -1;
}

/* --view: Bench/Call served raw (ackrpc_server_set_method_raw()): the
 * request's id and body length are read from its encoded bytes in place,
 * so that a body that came in a memfd is never copied (protobuf-c would
 * copy the bytes field out of it). Fields other than 1 and 2 are skipped
 * as protobuf says; a malformed body is INVALID_ARGUMENT. */
static void serve_on_view(ackrpc_call *call, const ProtobufCMessage *request,
                          void *user) {
  (void)request;
  serve_stats *stats = user;
  size_t len;
  const uint8_t *p = ackrpc_call_request_body(call, &len), *end = p + len;
  Ackrpc__Bench__Ack ack = ACKRPC__BENCH__ACK__INIT;
  int bad = 0;
  while (p < end && !bad) {
    uint64_t key, v;
    bad = get_varint(&p, end, &key) != 0;
    if (bad) break;
    switch (key & 7) {
    case 0: bad = get_varint(&p, end, &v) != 0; break;
    case 1: v = 8; goto skip;
    case 5: v = 4; goto skip;
    case 2:
      bad = get_varint(&p, end, &v) != 0;
    skip:
      if (bad || v > (uint64_t)(end - p)) {
        bad = 1;
        break;
      }
      p += v;
      break;
    default: bad = 1; break;
    }
    if (!bad && key == (1 << 3 | 0)) ack.id = v;
    if (!bad && key == (2 << 3 | 2)) ack.body_len = (uint32_t)v;
  }
  stats->calls++;
  ackrpc_status st =
      bad ? ackrpc_call_reply(call, ACKRPC_INVALID_ARGUMENT, "malformed Request", NULL)
          : ackrpc_call_reply(call, ACKRPC_OK, NULL, &ack.base);
  if (st != ACKRPC_OK) stats->reply_failures++;
}

static void serve_on_signal(int sig) {
  (void)sig;
  ackrpc_server_stop(atomic_load(&g_server));
}

static int serve_main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"socket", required_argument, NULL, 'a'},
      {"max-request-size", required_argument, NULL, 'm'},
      {"max-connections", required_argument, NULL, 'C'},
      {"max-pending", required_argument, NULL, 'P'},
      {"max-per-uid", required_argument, NULL, 'U'},
      {"read-timeout-ms", required_argument, NULL, 'R'},
      {"view", no_argument, NULL, 'V'},
      {"memfd-threshold", required_argument, NULL, 'T'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *address = NULL;
  int view = 0;
  uint64_t memfd_threshold = 0;
  uint64_t max_request = SERVE_DEFAULT_MAX_REQUEST;
  uint64_t max_conns = 0, max_pending = 0, max_per_uid = 0, read_timeout_ms = 0;
  int opt;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":a:m:h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'a': address = optarg; break;
    case 'm':
      if (parse_bytes(optarg, 1024, SERVE_MAX_MAX_REQUEST, &max_request) != 0)
        return bad_usage(
            "serve", "--max-request-size: expected 1K to 4G bytes, got '%s'", optarg);
      break;
    case 'C':
    case 'P':
    case 'U':
    case 'R': {
      const char *name = opt == 'C'   ? "max-connections"
                         : opt == 'P' ? "max-pending"
                         : opt == 'U' ? "max-per-uid"
                                      : "read-timeout-ms";
      uint64_t *limit = opt == 'C'   ? &max_conns
                        : opt == 'P' ? &max_pending
                        : opt == 'U' ? &max_per_uid
                                     : &read_timeout_ms;
      if (parse_uint(optarg, 1, UINT32_MAX, limit) != 0) {
        char what[160];
        snprintf(what, sizeof what, "--%s: expected 1 to 4294967295, got '%s'", name,
                 optarg);
        return bad_usage("serve", "%s", what);
      }
      break;
    }
    case 'V': view = 1; break;
    case 'T':
      if (strcmp(optarg, "off") == 0)
        memfd_threshold = SIZE_MAX;
      else if (parse_bytes(optarg, 1, SIZE_MAX, &memfd_threshold) != 0)
        return bad_usage("serve", "--memfd-threshold: expected bytes or off, got '%s'",
                         optarg);
      break;
    case 'h': usage_serve(stdout); return EXIT_OK;
    default: return bad_option("serve", opt, argv);
    }
  }
  if (optind < argc)
    return bad_usage("serve", "unexpected argument '%s'", argv[optind]);
  if (!address) return bad_usage("serve", "%s", "--socket PATH is required");

  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    perror(PROG " serve: signal");
    return EXIT_FAIL;
  }
  /* Hold SIGTERM/SIGINT until the server exists and the handler can stop it:
   * one that arrives earlier then stops the server as soon as it runs. */
  sigset_t stop_signals, old_mask;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  int err = pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);
  if (err != 0) {
    fprintf(stderr, PROG " serve: pthread_sigmask: %s\n", strerror(err));
    return EXIT_FAIL;
  }

  serve_stats stats = {0};
  raise_fd_limit();
  ackrpc_server_options options = {
      .address = address,
      .max_request_size = (size_t)max_request,
      .max_connections = (uint32_t)max_conns,
      .max_pending = (uint32_t)max_pending,
      .max_connections_per_uid = (uint32_t)max_per_uid,
      .read_timeout_ms = (uint32_t)read_timeout_ms,
      .memfd_threshold = (size_t)memfd_threshold,
  };
  const char *level = getenv("ACKRPC_LOG_LEVEL"); /* debug: one line per call */
  if (level && ackrpc_log_level_parse(level, &options.log_level) != ACKRPC_OK)
    fprintf(stderr, PROG " serve: ignoring ACKRPC_LOG_LEVEL=%s\n", level);
  ackrpc_server *server = NULL;
  ackrpc_status st = ackrpc_server_new(&options, &server);
  if (st != ACKRPC_OK) {
    fprintf(stderr, PROG " serve: cannot serve on '%s': %s: %s%s%s\n", address,
            ackrpc_status_name(st), ackrpc_strerror(st),
            st == ACKRPC_E_SYSTEM ? ": " : "",
            st == ACKRPC_E_SYSTEM ? strerror(errno) : "");
    return st == ACKRPC_E_ADDRESS ? EXIT_USAGE : EXIT_FAIL;
  }
  st = ackrpc_server_add_method(server, &bench_call_method,
                                view ? serve_on_view : serve_on_call, &stats);
  if (st == ACKRPC_OK && view)
    st = ackrpc_server_set_method_raw(server, bench_call_method.name, 1);
  if (st != ACKRPC_OK) {
    fprintf(stderr, PROG " serve: cannot register %s: %s: %s\n", bench_call_method.name,
            ackrpc_status_name(st), ackrpc_strerror(st));
    ackrpc_server_free(server);
    return EXIT_FAIL;
  }

  atomic_store(&g_server, server);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = serve_on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
    perror(PROG " serve: sigaction");
    atomic_store(&g_server, NULL);
    ackrpc_server_free(server);
    return EXIT_FAIL;
  }
  err = pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  if (err != 0) {
    fprintf(stderr, PROG " serve: pthread_sigmask: %s\n", strerror(err));
    atomic_store(&g_server, NULL);
    ackrpc_server_free(server);
    return EXIT_FAIL;
  }

  st = ackrpc_server_run(server);

  /* Block the stop signals again so that a late one cannot reach a freed
   * server, then free it (this closes and removes the socket). */
  err = pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
  if (err != 0) fprintf(stderr, PROG " serve: pthread_sigmask: %s\n", strerror(err));
  atomic_store(&g_server, NULL);
  server = ackrpc_server_free(server);

  fprintf(stderr, "# server calls=%" PRIu64 " reply_failures=%" PRIu64 "\n",
          stats.calls, stats.reply_failures);
  if (st != ACKRPC_OK) {
    fprintf(stderr, PROG " serve: the server loop failed: %s: %s\n",
            ackrpc_status_name(st), ackrpc_strerror(st));
    return EXIT_FAIL;
  }
  return err == 0 ? EXIT_OK : EXIT_FAIL;
}

/* ---- run ---- */

typedef enum run_mode { MODE_ONESHOT, MODE_SESSION, MODE_PIPELINE } run_mode;

static const char *const mode_names[] = {"oneshot", "session", "pipeline"};

typedef struct run_cfg {
  const char *peer;
  const char *address;
  run_mode mode;
  unsigned depth; /* pipeline: calls in flight per connection */
  size_t size;
  int conc;
  double warmup_s;
  double duration_s;
  uint32_t timeout_ms; /* 0: the client's default */
  int csv;
  pid_t server_pid;         /* 0: not measured */
  uint64_t memfd_threshold; /* the client's option; 0: the default */
  int body_buffer;          /* each call's body is built in an ackrpc_body */
  int body_reuse;           /* one ackrpc_body per thread, sent by every call */
} run_cfg;

/* State shared by the load threads; read-only once they start, except the
 * start gate and the two phase flags. */
typedef struct run_shared {
  const run_cfg *cfg;
  ackrpc_client *client;
  uint8_t *body;
  pthread_mutex_t gate_mu;
  pthread_cond_t gate_cv;
  int gate_open;
  atomic_int measuring;
  atomic_int stop;
} run_shared;

typedef struct worker worker;

/* One call in flight in pipeline mode; its address is the callback's user. */
typedef struct pipe_slot {
  worker *w;
  uint64_t id;
  uint64_t t0;
  int measuring; /* started inside the window */
} pipe_slot;

struct worker {
  run_shared *shared;
  pthread_t thread;
  int tid;
  uint64_t *lat;              /* latency samples, ns, of ok calls in the window */
  size_t n;                   /* samples held */
  size_t cap;                 /* room in lat */
  size_t max_samples;         /* most samples this thread may hold */
  uint64_t ok;                /* ok calls in the window (may exceed n) */
  uint64_t errors;            /* failed calls in the window */
  uint64_t calls_all;         /* every call, warm-up included (for CPU per call) */
  uint64_t rng;               /* xorshift state for reservoir sampling */
  uint64_t seq;               /* the next call's sequence number */
  ackrpc_status first_status; /* the first error in the window, if any */
  char first_error[200];
  ackrpc_body *body; /* --body-reuse: this thread's request */
  /* session mode */
  ackrpc_session *session;
  /* pipeline mode */
  struct event_base *base;
  ackrpc_async_session *asession;
  pipe_slot *slots;
  unsigned in_flight;
};

static void usage_run(FILE *out) {
  fprintf(
      out,
      "usage: " PROG " run --socket PATH [--mode oneshot|session|pipeline]\n"
      "                    [--depth N] [--size BYTES] [--concurrency N]\n"
      "                    [--duration SEC] [--warmup SEC] [--peer NAME]\n"
      "                    [--timeout-ms MS] [--csv] [--server-pid PID]\n"
      "\n"
      "Runs N threads that call ackrpc.bench.Bench/Call back to back on one shared\n"
      "client, each with a body of BYTES bytes: a warm-up, then a measured window.\n"
      "  oneshot   blocking calls, each on its own connection (the default)\n"
      "  session   blocking calls on one session (connection) per thread\n"
      "  pipeline  each thread runs its own event_base with one asynchronous\n"
      "            session and keeps --depth calls in flight on it\n"
      "Prints one line on stdout:\n"
      "  peer=NAME size=S conc=C calls_per_s=N p50_us=N p99_us=N errors=N\n"
      "(with --csv: a CSV header and one row instead) and on stderr a '# client'\n"
      "line (calls, client CPU per call), a '# latency' line (p50 to p99.9, max)\n"
      "and, with --server-pid, a '# server' line (the server's CPU per call over\n"
      "the window, its RSS and peak RSS).\n"
      "A call is an error if its status is not OK, if the reply is missing, or if\n"
      "the ack's id or body_len is wrong. Exits 0 if errors=0 and at least one\n"
      "call completed in the window, else 1 (no call completed: the server may be\n"
      "stopped or hung; a call counts only if it started and ended in the window).\n"
      "\n"
      "  -a, --socket PATH      the server's address (required)\n"
      "  -m, --mode MODE        oneshot, session or pipeline (default oneshot)\n"
      "  -q, --depth N          pipeline: calls in flight per thread, 1 to %d\n"
      "                         (default %d)\n"
      "  -s, --size BYTES       request body size; suffix K, M, G allowed; at most\n"
      "                         1G (default 64). The server must accept it: serve's\n"
      "                         default takes bodies up to 64 MiB.\n"
      "  -c, --concurrency N    client threads (one connection each in session and\n"
      "                         pipeline modes), 1 to %d (default 1)\n"
      "  -d, --duration SEC     measured window (default 3)\n"
      "  -w, --warmup SEC       warm-up before it (default 0.5)\n"
      "  -p, --peer NAME        the name printed as peer= (default ackrpc)\n"
      "  -t, --timeout-ms MS    deadline of each call (default: the client's, 30000)\n"
      "      --csv              print a CSV header and row instead of the line\n"
      "      --server-pid PID   also measure that server process (from /proc)\n"
      "      --memfd-threshold BYTES  request bodies from this size go in a sealed\n"
      "                         memfd, not through the socket (or 'off'; default:\n"
      "                         the library's, off; every mode)\n"
      "      --body-buffer      oneshot/session: build each call's request straight\n"
      "                         into a sealed memfd (ackrpc_body) and send that\n"
      "      --body-reuse       --body-buffer, but each thread builds one request\n"
      "                         (its id fixed) and sends it again on every call:\n"
      "                         a body that is made once and sent many times\n"
      "  -h, --help             this text\n"
      "The short options -p -a -s -c -d -w are those of the peer benchmarks.\n",
      RUN_MAX_DEPTH, RUN_DEFAULT_DEPTH, RUN_MAX_CONC);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  /* CLOCK_MONOTONIC cannot fail on Linux; checked in run_main once. */
  (void)clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int cpu_s(double *ret) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
  *ret = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  return 0;
}

static uint64_t rng_next(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* Keeps the latency of one ok call: every one while there is room (growing
 * the array up to max_samples), then a uniform sample (algorithm R). */
static void worker_record(worker *w, uint64_t ns) {
  w->ok++;
  if (w->n == w->cap && w->cap < w->max_samples) {
    size_t cap = w->cap * 2 > w->max_samples ? w->max_samples : w->cap * 2;
    uint64_t *lat = realloc(w->lat, cap * sizeof *lat);
    /* Without memory to grow, sample within what is there. */
    if (lat) {
      w->lat = lat;
      w->cap = cap;
    } else {
      w->max_samples = w->cap;
    }
  }
  if (w->n < w->cap) {
    w->lat[w->n++] = ns;
    return;
  }
  uint64_t j = rng_next(&w->rng) % w->ok;
  if (j < w->n) w->lat[j] = ns;
}

static void worker_error(worker *w, ackrpc_status st, const char *what) {
  w->errors++;
  if (w->errors > 1) return;
  w->first_status = st;
  snprintf(w->first_error, sizeof w->first_error, "%s", what ? what : "");
}

/* Ids are unique across threads: the thread in the top bits. */
static uint64_t worker_next_id(worker *w) {
  return ((uint64_t)w->tid << 40) | w->seq++;
}

/* Whether a finished call succeeded: status OK and the ack matching the
 * request. If not, describes the failure into err. */
static int check_reply(const run_shared *sh, ackrpc_status st, const ackrpc_result *res,
                       uint64_t id, char *err, size_t err_size) {
  if (st != ACKRPC_OK) {
    snprintf(err, err_size, "%s", res->message ? res->message : ackrpc_strerror(st));
    return 0;
  }
  if (!res->reply) {
    snprintf(err, err_size, "status OK but no ack message");
    return 0;
  }
  const Ackrpc__Bench__Ack *ack = (const Ackrpc__Bench__Ack *)res->reply;
  if (ack->id != id) {
    snprintf(err, err_size, "ack id %" PRIu64 " for request id %" PRIu64, ack->id, id);
    return 0;
  }
  if (ack->body_len != sh->cfg->size) {
    snprintf(err, err_size, "ack body_len %" PRIu32 " for a body of %zu bytes",
             ack->body_len, sh->cfg->size);
    return 0;
  }
  return 1;
}

/* One blocking call, one-shot or on the worker's session. Returns 1 if it
 * succeeded, else 0 and writes a description of the failure into err
 * (status in *ret_status). */
static int one_call(worker *w, uint64_t id, ackrpc_status *ret_status, char *err,
                    size_t err_size) {
  const run_shared *sh = w->shared;
  Ackrpc__Bench__Request req = ACKRPC__BENCH__REQUEST__INIT;
  req.id = id;
  req.body.data = sh->body;
  req.body.len = sh->cfg->size;
  ackrpc_result res = {0};
  ackrpc_call_options o = {0};
  ackrpc_body *b = NULL;
  if (sh->cfg->body_reuse && !w->body) {
    req.id = id = 1;
    if (ackrpc_body_from_message(&req.base, &w->body) != ACKRPC_OK) w->body = NULL;
  }
  if (sh->cfg->body_reuse) {
    id = 1;
    o.body = w->body;
  } else if (sh->cfg->body_buffer) {
    ackrpc_status bst = ackrpc_body_from_message(&req.base, &b);
    if (bst != ACKRPC_OK) {
      *ret_status = bst;
      snprintf(err, err_size, "ackrpc_body_from_message: %s", ackrpc_strerror(bst));
      return 0;
    }
    o.body = b;
  }
  const ProtobufCMessage *m = o.body ? NULL : &req.base;
  ackrpc_status st =
      w->session ? ackrpc_session_call(w->session, &bench_call_method, m, &o, &res)
                 : ackrpc_client_call(sh->client, &bench_call_method, m, &o, &res);
  ackrpc_body_free(b);
  *ret_status = st;
  int ok = check_reply(sh, st, &res, id, err, err_size);
  ackrpc_result_clear(&res);
  return ok;
}

static void wait_gate(run_shared *sh) {
  pthread_mutex_lock(&sh->gate_mu);
  while (!sh->gate_open)
    pthread_cond_wait(&sh->gate_cv, &sh->gate_mu);
  pthread_mutex_unlock(&sh->gate_mu);
}

/* oneshot and session modes: blocking calls back to back. */
static void blocking_loop(worker *w) {
  run_shared *sh = w->shared;
  char err[sizeof w->first_error];
  while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
    uint64_t id = worker_next_id(w);
    int measuring = atomic_load_explicit(&sh->measuring, memory_order_relaxed);
    ackrpc_status st;
    uint64_t t0 = now_ns();
    int ok = one_call(w, id, &st, err, sizeof err);
    uint64_t t1 = now_ns();
    w->calls_all++;
    /* Count only calls that started and finished inside the window. */
    if (!measuring || atomic_load_explicit(&sh->stop, memory_order_relaxed)) continue;
    if (!ok) {
      worker_error(w, st, err);
      continue;
    }
    worker_record(w, t1 - t0);
  }
}

static void pipe_done(ackrpc_result *res, void *user);

/* Starts the call of `slot` on the worker's asynchronous session. */
static void pipe_issue(worker *w, pipe_slot *slot) {
  run_shared *sh = w->shared;
  Ackrpc__Bench__Request req = ACKRPC__BENCH__REQUEST__INIT;
  slot->id = worker_next_id(w);
  req.id = slot->id;
  req.body.data = sh->body;
  req.body.len = sh->cfg->size;
  slot->measuring = atomic_load_explicit(&sh->measuring, memory_order_relaxed);
  slot->t0 = now_ns();
  ackrpc_status st = ackrpc_async_session_call(w->asession, &bench_call_method,
                                               &req.base, NULL, pipe_done, slot);
  if (st == ACKRPC_OK) {
    w->in_flight++;
    return;
  }
  /* The pipeline shrinks by one; the error shows in the result. */
  worker_error(w, st, "ackrpc_async_session_call failed");
  if (w->in_flight == 0 && w->asession) {
    ackrpc_async_session_close(w->asession);
    w->asession = NULL;
  }
}

/* Completion of a pipelined call: record it and, until the run stops, start
 * the next one in its slot, so `depth` calls stay in flight. */
static void pipe_done(ackrpc_result *res, void *user) {
  pipe_slot *slot = user;
  worker *w = slot->w;
  run_shared *sh = w->shared;
  uint64_t t1 = now_ns();
  w->in_flight--;
  w->calls_all++;
  int stop = atomic_load_explicit(&sh->stop, memory_order_relaxed);
  if (slot->measuring && !stop) {
    char err[sizeof w->first_error];
    if (check_reply(sh, res->status, res, slot->id, err, sizeof err))
      worker_record(w, t1 - slot->t0);
    else
      worker_error(w, res->status, err);
  }
  if (!stop) {
    pipe_issue(w, slot);
  } else if (w->in_flight == 0 && w->asession) {
    /* The last call is in: the session frees itself, the loop runs dry. */
    ackrpc_async_session_close(w->asession);
    w->asession = NULL;
  }
}

/* pipeline mode: the worker's loop keeps `depth` calls in flight. */
static void pipeline_loop(worker *w) {
  unsigned depth = w->shared->cfg->depth;
  for (unsigned i = 0; i < depth && w->asession; i++)
    pipe_issue(w, &w->slots[i]);
  while (w->asession || w->in_flight) {
    int r = event_base_loop(w->base, EVLOOP_ONCE);
    if (r != 0) { /* -1: failed; 1: nothing left to wait for, calls lost */
      worker_error(w, ACKRPC_E_SYSTEM, "the event loop stopped with calls in flight");
      break;
    }
  }
  /* Let a closed session finish its half-close and free itself. */
  event_base_loop(w->base, EVLOOP_NONBLOCK);
}

/* Sets up what the worker's mode needs before the start gate opens, so that
 * connecting is not part of the measurement. Returns 0, or -1 with the
 * failure counted as an error. */
static int worker_setup(worker *w) {
  run_shared *sh = w->shared;
  const run_cfg *cfg = sh->cfg;
  ackrpc_status st = ACKRPC_OK;
  if (cfg->mode == MODE_SESSION) {
    st = ackrpc_session_open(sh->client, 0, &w->session);
    if (st != ACKRPC_OK) worker_error(w, st, "cannot open a session");
  } else if (cfg->mode == MODE_PIPELINE) {
    w->slots = calloc(cfg->depth, sizeof *w->slots);
    w->base = event_base_new();
    if (!w->slots || !w->base) {
      worker_error(w, ACKRPC_E_NOMEM, "cannot create the event_base");
      return -1;
    }
    for (unsigned i = 0; i < cfg->depth; i++)
      w->slots[i].w = w;
    st = ackrpc_async_session_open(sh->client, w->base, &w->asession);
    if (st != ACKRPC_OK) worker_error(w, st, "cannot open an asynchronous session");
  }
  return st == ACKRPC_OK ? 0 : -1;
}

static void worker_teardown(worker *w) {
  w->body = ackrpc_body_free(w->body);
  w->session = ackrpc_session_close(w->session);
  if (w->asession) {
    ackrpc_async_session_close(w->asession);
    w->asession = NULL;
  }
  if (w->base) {
    event_base_loop(w->base, EVLOOP_NONBLOCK);
    event_base_free(w->base);
    w->base = NULL;
  }
  free(w->slots);
  w->slots = NULL;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  run_shared *sh = w->shared;
  w->seq = 1;
  int ready = worker_setup(w) == 0;
  wait_gate(sh);
  if (ready && !atomic_load(&sh->stop)) {
    if (sh->cfg->mode == MODE_PIPELINE)
      pipeline_loop(w);
    else
      blocking_loop(w);
  }
  worker_teardown(w);
  return NULL;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

enum { OPT_CSV = 256, OPT_SERVER_PID, OPT_MEMFD, OPT_BODY_BUFFER, OPT_BODY_REUSE };

static int parse_run_args(int argc, char **argv, run_cfg *cfg) {
  static const struct option longopts[] = {
      {"socket", required_argument, NULL, 'a'},
      {"mode", required_argument, NULL, 'm'},
      {"depth", required_argument, NULL, 'q'},
      {"size", required_argument, NULL, 's'},
      {"concurrency", required_argument, NULL, 'c'},
      {"duration", required_argument, NULL, 'd'},
      {"warmup", required_argument, NULL, 'w'},
      {"peer", required_argument, NULL, 'p'},
      {"timeout-ms", required_argument, NULL, 't'},
      {"csv", no_argument, NULL, OPT_CSV},
      {"server-pid", required_argument, NULL, OPT_SERVER_PID},
      {"memfd-threshold", required_argument, NULL, OPT_MEMFD},
      {"body-buffer", no_argument, NULL, OPT_BODY_BUFFER},
      {"body-reuse", no_argument, NULL, OPT_BODY_REUSE},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  uint64_t v;
  int opt;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":a:m:q:s:c:d:w:p:t:h", longopts, NULL)) !=
         -1) {
    switch (opt) {
    case 'a': cfg->address = optarg; break;
    case 'm': {
      size_t i = 0;
      while (i < sizeof mode_names / sizeof *mode_names &&
             strcmp(optarg, mode_names[i]) != 0)
        i++;
      if (i == sizeof mode_names / sizeof *mode_names)
        return bad_usage(
            "run", "--mode: expected oneshot, session or pipeline, got '%s'", optarg);
      cfg->mode = (run_mode)i;
      break;
    }
    case 'q':
      if (parse_uint(optarg, 1, RUN_MAX_DEPTH, &v) != 0)
        return bad_usage("run", "--depth: expected 1 to 4096, got '%s'", optarg);
      cfg->depth = (unsigned)v;
      break;
    case 's':
      if (parse_bytes(optarg, 0, RUN_MAX_SIZE, &v) != 0)
        return bad_usage("run", "--size: expected 0 to 1G bytes, got '%s'", optarg);
      cfg->size = (size_t)v;
      break;
    case 'c':
      if (parse_uint(optarg, 1, RUN_MAX_CONC, &v) != 0)
        return bad_usage("run", "--concurrency: expected 1 to 4096, got '%s'", optarg);
      cfg->conc = (int)v;
      break;
    case 'd':
      if (parse_seconds(optarg, 0.001, 1e6, &cfg->duration_s) != 0)
        return bad_usage("run", "--duration: expected seconds > 0, got '%s'", optarg);
      break;
    case 'w':
      if (parse_seconds(optarg, 0, 1e6, &cfg->warmup_s) != 0)
        return bad_usage("run", "--warmup: expected seconds >= 0, got '%s'", optarg);
      break;
    case 'p':
      if (*optarg == '\0' || strpbrk(optarg, " \t\n=,"))
        return bad_usage("run",
                         "--peer: expected a name without spaces, ',' or '=', got '%s'",
                         optarg);
      cfg->peer = optarg;
      break;
    case 't':
      if (parse_uint(optarg, 1, UINT32_MAX, &v) != 0)
        return bad_usage("run", "--timeout-ms: expected 1 to 4294967295, got '%s'",
                         optarg);
      cfg->timeout_ms = (uint32_t)v;
      break;
    case OPT_CSV: cfg->csv = 1; break;
    case OPT_MEMFD:
      if (strcmp(optarg, "off") == 0)
        cfg->memfd_threshold = SIZE_MAX;
      else if (parse_bytes(optarg, 1, SIZE_MAX, &cfg->memfd_threshold) != 0)
        return bad_usage("run", "--memfd-threshold: expected bytes or off, got '%s'",
                         optarg);
      break;
    case OPT_BODY_BUFFER: cfg->body_buffer = 1; break;
    case OPT_BODY_REUSE: cfg->body_buffer = cfg->body_reuse = 1; break;
    case OPT_SERVER_PID:
      if (parse_uint(optarg, 1, INT32_MAX, &v) != 0)
        return bad_usage("run", "--server-pid: expected a process id, got '%s'",
                         optarg);
      cfg->server_pid = (pid_t)v;
      break;
    case 'h': usage_run(stdout); return EXIT_OK;
    default: return bad_option("run", opt, argv);
    }
  }
  if (optind < argc) return bad_usage("run", "unexpected argument '%s'", argv[optind]);
  if (!cfg->address) return bad_usage("run", "%s", "--socket PATH is required");
  if (cfg->mode != MODE_PIPELINE) cfg->depth = 1;
  if (cfg->body_buffer && cfg->mode == MODE_PIPELINE)
    return bad_usage("run", "%s", "--body-buffer: oneshot and session modes only");
  return -1; /* go on */
}

/* Opens the start gate (also used to release threads on a failed start). */
static void open_gate(run_shared *sh) {
  pthread_mutex_lock(&sh->gate_mu);
  sh->gate_open = 1;
  pthread_cond_broadcast(&sh->gate_cv);
  pthread_mutex_unlock(&sh->gate_mu);
}

/* The server's side of the window, read from /proc when --server-pid is
 * given: CPU time at both ends, RSS at both ends and the peak. */
typedef struct server_probe {
  int ok;
  double cpu0, cpu1;
  uint64_t rss0_kb, rss1_kb, hwm_kb;
} server_probe;

static void probe_start(pid_t pid, server_probe *p) {
  p->ok = pid > 0 && proc_cpu_s(pid, &p->cpu0) == 0 &&
          proc_status_kb(pid, "VmRSS", &p->rss0_kb) == 0;
}

static void probe_end(pid_t pid, server_probe *p) {
  p->ok = p->ok && proc_cpu_s(pid, &p->cpu1) == 0 &&
          proc_status_kb(pid, "VmRSS", &p->rss1_kb) == 0 &&
          proc_status_kb(pid, "VmHWM", &p->hwm_kb) == 0;
}

/* The sample at quantile q of the sorted array, as common/bench.c reads it. */
static double quantile_us(const uint64_t *sorted, size_t n, double q) {
  return n ? (double)sorted[(size_t)(q * (double)(n - 1))] / 1e3 : 0;
}

static int run_main(int argc, char **argv) {
  run_cfg cfg = {
      .peer = "ackrpc",
      .mode = MODE_ONESHOT,
      .depth = RUN_DEFAULT_DEPTH,
      .size = 64,
      .conc = 1,
      .warmup_s = 0.5,
      .duration_s = 3.0,
  };
  int rc = parse_run_args(argc, argv, &cfg);
  if (rc >= 0) return rc;

  struct timespec probe;
  double cpu_probe;
  if (clock_gettime(CLOCK_MONOTONIC, &probe) != 0 || cpu_s(&cpu_probe) != 0) {
    perror(PROG " run: clock");
    return EXIT_FAIL;
  }
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    perror(PROG " run: signal");
    return EXIT_FAIL;
  }
  if (cfg.server_pid) {
    server_probe sp;
    probe_start(cfg.server_pid, &sp);
    if (!sp.ok) {
      fprintf(stderr, PROG " run: cannot read /proc/%d/stat and status\n",
              (int)cfg.server_pid);
      return EXIT_USAGE;
    }
  }
  raise_fd_limit();

  run_shared sh = {.cfg = &cfg};
  ackrpc_client_options copts = {.address = cfg.address,
                                 .timeout_ms = cfg.timeout_ms,
                                 .memfd_threshold = (size_t)cfg.memfd_threshold};
  ackrpc_status st = ackrpc_client_new(&copts, &sh.client);
  if (st != ACKRPC_OK) {
    fprintf(stderr, PROG " run: cannot use address '%s': %s: %s\n", cfg.address,
            ackrpc_status_name(st), ackrpc_strerror(st));
    return st == ACKRPC_E_ADDRESS || st == ACKRPC_E_INVAL ? EXIT_USAGE : EXIT_FAIL;
  }

  rc = EXIT_FAIL;
  int created = 0;
  int gate_ready = 0;
  worker *ws = NULL;
  uint64_t *all = NULL;
  sh.body = malloc(cfg.size ? cfg.size : 1);
  ws = calloc((size_t)cfg.conc, sizeof *ws);
  if (!sh.body || !ws) {
    fprintf(stderr, PROG " run: out of memory for a %zu-byte body and %d threads\n",
            cfg.size, cfg.conc);
    goto out;
  }
  for (size_t i = 0; i < cfg.size; i++)
    sh.body[i] = (uint8_t)(i * 31 + 7);

  int err = pthread_mutex_init(&sh.gate_mu, NULL);
  if (err == 0) {
    err = pthread_cond_init(&sh.gate_cv, NULL);
    if (err != 0) pthread_mutex_destroy(&sh.gate_mu);
  }
  if (err != 0) {
    fprintf(stderr, PROG " run: cannot set up threads: %s\n", strerror(err));
    goto out;
  }
  gate_ready = 1;

  size_t per_thread_max = SAMPLES_MAX_TOTAL / (size_t)cfg.conc;
  if (per_thread_max < SAMPLES_INITIAL) per_thread_max = SAMPLES_INITIAL;
  for (int i = 0; i < cfg.conc; i++) {
    worker *w = &ws[i];
    w->shared = &sh;
    w->tid = i;
    w->rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
    w->max_samples = per_thread_max;
    w->cap = SAMPLES_INITIAL;
    w->lat = malloc(w->cap * sizeof *w->lat);
    if (!w->lat) {
      fprintf(stderr, PROG " run: out of memory for latency samples\n");
      goto out;
    }
  }
  for (; created < cfg.conc; created++) {
    err = pthread_create(&ws[created].thread, NULL, worker_main, &ws[created]);
    if (err != 0) {
      fprintf(stderr, PROG " run: cannot start thread %d of %d: %s\n", created + 1,
              cfg.conc, strerror(err));
      goto out;
    }
  }

  open_gate(&sh);
  sleep_s(cfg.warmup_s);
  double cpu0 = 0, cpu1 = 0;
  server_probe sp = {0};
  probe_start(cfg.server_pid, &sp);
  int cpu_ok = cpu_s(&cpu0) == 0;
  uint64_t t0 = now_ns();
  atomic_store(&sh.measuring, 1);
  sleep_s(cfg.duration_s);
  atomic_store(&sh.stop, 1);
  uint64_t t1 = now_ns();
  cpu_ok = cpu_ok && cpu_s(&cpu1) == 0;
  probe_end(cfg.server_pid, &sp);
  for (int i = 0; i < created; i++)
    pthread_join(ws[i].thread, NULL);
  created = 0;

  size_t n = 0;
  uint64_t ok = 0, errors = 0, calls_all = 0;
  const worker *first_err = NULL;
  for (int i = 0; i < cfg.conc; i++) {
    n += ws[i].n;
    ok += ws[i].ok;
    errors += ws[i].errors;
    calls_all += ws[i].calls_all;
    if (ws[i].errors && !first_err) first_err = &ws[i];
  }
  all = malloc((n ? n : 1) * sizeof *all);
  if (!all) {
    fprintf(stderr, PROG " run: out of memory to sort %zu samples\n", n);
    goto out;
  }
  double sum_us = 0;
  for (size_t i = 0, k = 0; i < (size_t)cfg.conc; i++) {
    if (ws[i].n) memcpy(all + k, ws[i].lat, ws[i].n * sizeof *all);
    k += ws[i].n;
  }
  for (size_t i = 0; i < n; i++)
    sum_us += (double)all[i] / 1e3;
  qsort(all, n, sizeof *all, cmp_u64);

  /* The same arithmetic and formats as the peers' common/bench.c. */
  double window = (double)(t1 - t0) / 1e9;
  double rate = (double)ok / window;
  double p50 = quantile_us(all, n, 0.50), p90 = quantile_us(all, n, 0.90);
  double p99 = quantile_us(all, n, 0.99), p999 = quantile_us(all, n, 0.999);
  double max_us = n ? (double)all[n - 1] / 1e3 : 0;
  double cli_cpu = ok && cpu_ok ? (cpu1 - cpu0) * 1e6 / (double)ok : 0.0;
  double srv_cpu = ok && sp.ok ? (sp.cpu1 - sp.cpu0) * 1e6 / (double)ok : 0.0;
  if (cfg.csv) {
    printf("peer,mode,size,conc,depth,calls_per_s,mib_per_s,p50_us,p90_us,p99_us,"
           "p999_us,max_us,errors,calls,window_s,cli_cpu_us_per_call,"
           "srv_cpu_us_per_call,srv_rss_kb,srv_hwm_kb\n");
    printf("%s,%s,%zu,%d,%u,%.0f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%llu,%llu,%.3f,%.1f,",
           cfg.peer, mode_names[cfg.mode], cfg.size, cfg.conc, cfg.depth, rate,
           rate * (double)cfg.size / (1024.0 * 1024.0), p50, p90, p99, p999, max_us,
           (unsigned long long)errors, (unsigned long long)ok, window, cli_cpu);
    if (sp.ok)
      printf("%.1f,%llu,%llu\n", srv_cpu, (unsigned long long)sp.rss1_kb,
             (unsigned long long)sp.hwm_kb);
    else
      printf(",,\n");
  } else {
    printf("peer=%s size=%zu conc=%d calls_per_s=%.0f p50_us=%.1f p99_us=%.1f "
           "errors=%llu\n",
           cfg.peer, cfg.size, cfg.conc, rate, p50, p99, (unsigned long long)errors);
  }
  if (fflush(stdout) != 0) {
    perror(PROG " run: stdout");
    goto out;
  }
  fprintf(stderr,
          "# client peer=%s size=%zu conc=%d calls=%llu calls_all=%llu window_s=%.3f "
          "cli_cpu_us_per_call=%.1f\n",
          cfg.peer, cfg.size, cfg.conc, (unsigned long long)ok,
          (unsigned long long)calls_all, window, cli_cpu);
  fprintf(stderr,
          "# latency peer=%s mode=%s depth=%u p50_us=%.1f p90_us=%.1f p99_us=%.1f "
          "p999_us=%.1f max_us=%.1f mean_us=%.1f\n",
          cfg.peer, mode_names[cfg.mode], cfg.depth, p50, p90, p99, p999, max_us,
          n ? sum_us / (double)n : 0.0);
  if (sp.ok)
    fprintf(stderr,
            "# server pid=%d srv_cpu_us_per_call=%.1f srv_cpu_pct=%.0f "
            "srv_rss_kb_start=%llu srv_rss_kb_end=%llu srv_hwm_kb=%llu\n",
            (int)cfg.server_pid, srv_cpu, 100 * (sp.cpu1 - sp.cpu0) / window,
            (unsigned long long)sp.rss0_kb, (unsigned long long)sp.rss1_kb,
            (unsigned long long)sp.hwm_kb);
  else if (cfg.server_pid)
    fprintf(stderr,
            "# note: the server (pid %d) could not be read at the window's end\n",
            (int)cfg.server_pid);
  if (n < ok)
    fprintf(stderr, "# note: percentiles from a uniform sample of %zu of %llu calls\n",
            n, (unsigned long long)ok);
  if (first_err)
    fprintf(stderr, PROG " run: %llu failed calls; the first (thread %d): %s: %s\n",
            (unsigned long long)errors, first_err->tid,
            ackrpc_status_name(first_err->first_status), first_err->first_error);
  /* No call at all is a failure too, not a quiet errors=0: a stopped or hung
   * server must not look like a fast one. */
  if (ok == 0)
    fprintf(stderr,
            PROG " run: no call completed in the %.3f s window (%llu calls ended in "
                 "all, none inside it): the server may be stopped or hung\n",
            window, (unsigned long long)calls_all);
  rc = errors == 0 && ok > 0 ? EXIT_OK : EXIT_FAIL;

out:
  /* On a failed start, release the threads already created and wait. */
  if (created > 0) {
    atomic_store(&sh.stop, 1);
    open_gate(&sh);
    for (int i = 0; i < created; i++)
      pthread_join(ws[i].thread, NULL);
  }
  if (gate_ready) {
    pthread_cond_destroy(&sh.gate_cv);
    pthread_mutex_destroy(&sh.gate_mu);
  }
  if (ws)
    for (int i = 0; i < cfg.conc; i++)
      free(ws[i].lat);
  free(all);
  free(ws);
  free(sh.body);
  ackrpc_client_free(sh.client);
  return rc;
}

/* ---- idle ---- */

static void usage_idle(FILE *out) {
  fprintf(out,
          "usage: " PROG " idle --socket PATH [--connections N] [--hold SEC]\n"
          "                     [--server-pid PID] [--call]\n"
          "\n"
          "Opens N connections (sessions) to the server and holds them idle, so that\n"
          "the server's memory per idle connection can be read. With --server-pid,\n"
          "reads the server's VmRSS before connecting and once all are open, and\n"
          "prints on stdout:\n"
          "  idle connections=N open=N rss_before_kb=N rss_after_kb=N hwm_kb=N\n"
          "       bytes_per_connection=N\n"
          "The server's limits must admit them (serve --max-connections,\n"
          "--max-pending, --max-per-uid) and its read timeout must exceed the hold\n"
          "(serve --read-timeout-ms), or it drops idle connections by design.\n"
          "\n"
          "  -a, --socket PATH      the server's address (required)\n"
          "  -n, --connections N    connections to hold, 1 to %d (default 1000)\n"
          "  -H, --hold SEC         how long to hold them once open (default 2)\n"
          "      --server-pid PID   the server process to read /proc/PID/status of\n"
          "      --call             make one call on each connection first, so that\n"
          "                         each is an idle session between calls\n"
          "  -h, --help             this text\n",
          IDLE_MAX_CONNECTIONS);
}

static int idle_main(int argc, char **argv) {
  enum { OPT_CALL = 256, OPT_PID };
  static const struct option longopts[] = {
      {"socket", required_argument, NULL, 'a'},
      {"connections", required_argument, NULL, 'n'},
      {"hold", required_argument, NULL, 'H'},
      {"server-pid", required_argument, NULL, OPT_PID},
      {"call", no_argument, NULL, OPT_CALL},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *address = NULL;
  uint64_t n_conns = 1000, v;
  double hold_s = 2.0;
  pid_t pid = 0;
  int do_call = 0;
  int opt;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":a:n:H:h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'a': address = optarg; break;
    case 'n':
      if (parse_uint(optarg, 1, IDLE_MAX_CONNECTIONS, &n_conns) != 0)
        return bad_usage("idle", "--connections: expected 1 to 100000, got '%s'",
                         optarg);
      break;
    case 'H':
      if (parse_seconds(optarg, 0, 1e6, &hold_s) != 0)
        return bad_usage("idle", "--hold: expected seconds >= 0, got '%s'", optarg);
      break;
    case OPT_PID:
      if (parse_uint(optarg, 1, INT32_MAX, &v) != 0)
        return bad_usage("idle", "--server-pid: expected a process id, got '%s'",
                         optarg);
      pid = (pid_t)v;
      break;
    case OPT_CALL: do_call = 1; break;
    case 'h': usage_idle(stdout); return EXIT_OK;
    default: return bad_option("idle", opt, argv);
    }
  }
  if (optind < argc) return bad_usage("idle", "unexpected argument '%s'", argv[optind]);
  if (!address) return bad_usage("idle", "%s", "--socket PATH is required");
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    perror(PROG " idle: signal");
    return EXIT_FAIL;
  }
  raise_fd_limit();

  uint64_t rss0 = 0, rss1 = 0, hwm = 0;
  if (pid && proc_status_kb(pid, "VmRSS", &rss0) != 0) {
    fprintf(stderr, PROG " idle: cannot read /proc/%d/status\n", (int)pid);
    return EXIT_USAGE;
  }
  ackrpc_client *client = NULL;
  ackrpc_client_options copts = {.address = address};
  ackrpc_status st = ackrpc_client_new(&copts, &client);
  if (st != ACKRPC_OK) {
    fprintf(stderr, PROG " idle: cannot use address '%s': %s: %s\n", address,
            ackrpc_status_name(st), ackrpc_strerror(st));
    return st == ACKRPC_E_ADDRESS || st == ACKRPC_E_INVAL ? EXIT_USAGE : EXIT_FAIL;
  }
  ackrpc_session **sessions = calloc((size_t)n_conns, sizeof *sessions);
  if (!sessions) {
    fprintf(stderr, PROG " idle: out of memory\n");
    ackrpc_client_free(client);
    return EXIT_FAIL;
  }
  uint64_t open = 0, failed = 0;
  ackrpc_status first = ACKRPC_OK;
  for (uint64_t i = 0; i < n_conns; i++) {
    st = ackrpc_session_open(client, 0, &sessions[i]);
    if (st == ACKRPC_OK && do_call) {
      Ackrpc__Bench__Request req = ACKRPC__BENCH__REQUEST__INIT;
      req.id = i + 1;
      st = ackrpc_session_call(sessions[i], &bench_call_method, &req.base, NULL, NULL);
    }
    if (st == ACKRPC_OK) {
      open++;
    } else {
      if (!failed++) first = st;
    }
  }
  /* Let the server take in the last connections before reading its RSS. */
  sleep_s(0.5);
  int rss_ok = pid && proc_status_kb(pid, "VmRSS", &rss1) == 0 &&
               proc_status_kb(pid, "VmHWM", &hwm) == 0;
  sleep_s(hold_s > 0.5 ? hold_s - 0.5 : 0);
  for (uint64_t i = 0; i < n_conns; i++)
    sessions[i] = ackrpc_session_close(sessions[i]);
  free(sessions);
  ackrpc_client_free(client);
  printf("idle connections=%llu open=%llu", (unsigned long long)n_conns,
         (unsigned long long)open);
  if (rss_ok)
    printf(
        " rss_before_kb=%llu rss_after_kb=%llu hwm_kb=%llu bytes_per_connection=%.0f",
        (unsigned long long)rss0, (unsigned long long)rss1, (unsigned long long)hwm,
        open ? ((double)rss1 - (double)rss0) * 1024.0 / (double)open : 0.0);
  printf("\n");
  if (failed)
    fprintf(stderr, PROG " idle: %llu of %llu connections failed; the first: %s: %s\n",
            (unsigned long long)failed, (unsigned long long)n_conns,
            ackrpc_status_name(first), ackrpc_strerror(first));
  return failed ? EXIT_FAIL : EXIT_OK;
}
