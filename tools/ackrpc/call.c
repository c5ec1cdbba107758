/* call.c: `ackrpc call SOCKET METHOD [JSON]`: JSON in, the request encoded
 * with the method's descriptors, one blocking call (ackrpc_client_call_raw),
 * the reply printed as JSON; or raw bytes in and out with --binary. The exit
 * status tells the outcome (cli.h, docs/CLI.md). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "jsoncodec.h"

static const char usage[] =
    "usage: ackrpc call [OPTIONS] SOCKET METHOD [JSON]\n"
    "\n"
    "Calls METHOD (\"package.Service/Method\") on the server at SOCKET (a path or\n"
    "@abstract-name). The request is JSON (the proto3 JSON mapping), from the\n"
    "JSON argument, from the file FILE with @FILE, or, without it (or with \"-\"\n"
    "or \"@-\"), from standard input; the reply\n"
    "is printed as JSON on standard output. The status, when not OK, is printed\n"
    "on standard error as \"NAME (code): message\" (the server's status) or\n"
    "\"NAME: meaning\" (the library's own, such as E_CONNECT).\n"
    "\n"
    "Options:\n"
    "  -t, --timeout-ms MS    deadline of the call, the reflection lookup\n"
    "                         included (default 30000)\n"
    "  -m, --metadata KEY=VALUE\n"
    "                         send a metadata entry (repeatable, at most 64; KEY is\n"
    "                         1-64 characters of [a-z0-9._-], VALUE up to 4096 bytes)\n"
    "  -c, --call-id HEX      the call id (1-64 bytes in hex); default: a fresh\n"
    "                         one. Sending an id again runs the call once only\n"
    "                         if the server deduplicates: its reply cache on\n"
    "                         (reply_cache = 1, docs/DELIVERY.md) or a handler\n"
    "                         that stores the id with its effect; otherwise the\n"
    "                         handler runs again\n"
    "  -f, --fd N=PATH        open PATH read-only and send it as descriptor N\n"
    "                         (repeatable; N counts from 0 with no gap: the\n"
    "                         JSON names it in an ackrpc.Fd field, {\"fd\": N});\n"
    "                         descriptors in the reply are described on\n"
    "                         standard error and closed\n"
    "  -b, --binary           send standard input's bytes as the request as they\n"
    "                         are and write the reply's bytes to standard output\n"
    "                         (no descriptors needed)\n"
    "  -p, --pretty           indent the JSON output\n"
    "  -e, --emit-defaults    also print fields that hold their default value\n"
    "  -v, --verbose          print the call id and the status on standard error\n"
    "  -h, --help             this help\n";

#define MAX_METADATA ACKRPC_MAX_METADATA
#define MAX_FDS 253 /* SCM_MAX_FD: docs/PROTOCOL.md §2.5 */

/* Descriptors given with --fd, by index; -1 where none is yet. */
typedef struct fd_args {
  int fd[MAX_FDS];
  size_t n; /* highest index given + 1 */
} fd_args;

/* Takes "N=PATH": opens PATH read-only (close-on-exec, never as a
 * controlling terminal) as descriptor N. Returns 0, or an exit status
 * after saying why. */
static int fd_take(fd_args *f, const char *arg) {
  char *end;
  const char *eq = strchr(arg, '=');
  errno = 0;
  unsigned long n = strtoul(arg, &end, 10);
  if (!eq || end != eq || eq == arg || arg[0] == '-' || errno || n >= MAX_FDS ||
      !eq[1]) {
    fprintf(stderr, "%s call: --fd wants N=PATH, N from 0 to %d (got \"%s\")\n",
            AKRCLI_PROG, MAX_FDS - 1, arg);
    return AKRCLI_EXIT_USAGE;
  }
  if (n < f->n && f->fd[n] >= 0) {
    fprintf(stderr, "%s call: --fd %lu given twice\n", AKRCLI_PROG, n);
    return AKRCLI_EXIT_USAGE;
  }
  int fd = open(eq + 1, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    fprintf(stderr, "%s call: --fd %lu: opening %s: %s\n", AKRCLI_PROG, n, eq + 1,
            strerror(errno));
    return AKRCLI_EXIT_NOINPUT;
  }
  while (f->n <= n)
    f->fd[f->n++] = -1;
  f->fd[n] = fd;
  return 0;
}

/* Every index below the highest must be given. Returns 0 or an exit
 * status. */
static int fd_check(const fd_args *f) {
  for (size_t i = 0; i < f->n; i++)
    if (f->fd[i] < 0) {
      fprintf(stderr, "%s call: --fd %zu is missing (descriptors count from 0)\n",
              AKRCLI_PROG, i);
      return AKRCLI_EXIT_USAGE;
    }
  return 0;
}

static void fd_close(fd_args *f) {
  for (size_t i = 0; i < f->n; i++)
    if (f->fd[i] >= 0) close(f->fd[i]);
  f->n = 0;
}

static const char *file_type(mode_t m) {
  return S_ISREG(m)    ? "regular file"
         : S_ISDIR(m)  ? "directory"
         : S_ISFIFO(m) ? "pipe"
         : S_ISSOCK(m) ? "socket"
         : S_ISCHR(m)  ? "character device"
         : S_ISBLK(m)  ? "block device"
                       : "other";
}

/* One line on standard error per descriptor the reply carried: its index,
 * what it is and, for a regular file or a memfd, its size. */
static void describe_reply_fds(const ackrpc_result *r) {
  for (size_t i = 0; i < r->n_fds; i++) {
    struct stat st;
    if (r->fds[i] < 0 || fstat(r->fds[i], &st) != 0) {
      fprintf(stderr, "%s call: reply descriptor %zu: fstat failed\n", AKRCLI_PROG, i);
      continue;
    }
    fprintf(stderr, "%s call: reply descriptor %zu: %s", AKRCLI_PROG, i,
            file_type(st.st_mode));
    if (S_ISREG(st.st_mode)) fprintf(stderr, ", %lld bytes", (long long)st.st_size);
    fputc('\n', stderr);
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int parse_hex(const char *s, uint8_t *out, size_t max, size_t *len) {
  size_t n = strlen(s);
  if (n == 0 || n % 2 || n / 2 > max) return -1;
  for (size_t i = 0; i < n; i += 2) {
    int a = hexval(s[i]), b = hexval(s[i + 1]);
    if (a < 0 || b < 0) return -1;
    out[i / 2] = (uint8_t)(a << 4 | b);
  }
  *len = n / 2;
  return 0;
}

static void print_hex(FILE *f, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%02x", p[i]);
}

static int valid_key(const char *k, size_t n) {
  if (n < 1 || n > ACKRPC_MAX_METADATA_KEY) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = k[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-'))
      return 0;
  }
  return 1;
}

static int write_all(FILE *f, const void *p, size_t n) {
  if (n && fwrite(p, 1, n, f) != n) return -1;
  return fflush(f);
}

int akrcli_report_status(const char *cmd, const char *socket, const ackrpc_result *r,
                         ackrpc_status st, const char *method) {
  if (st == ACKRPC_OK) return AKRCLI_EXIT_OK;
  const char *msg = r->message && r->message[0] ? r->message : ackrpc_strerror(st);
  /* A server's status shows its code (the exit status); the library's own
   * (not delivered, no ack, local errors) only its name and meaning: their
   * numbers are internal. */
  if (ackrpc_status_outcome(st) == ACKRPC_OUTCOME_ACKED)
    fprintf(stderr, "%s %s: %s (%d): %s", AKRCLI_PROG, cmd, ackrpc_status_name(st),
            (int)st, msg);
  else
    fprintf(stderr, "%s %s: %s: %s", AKRCLI_PROG, cmd, ackrpc_status_name(st), msg);
  if (r->sys_errno && !(r->message && r->message[0]))
    fprintf(stderr, " (%s)", strerror(r->sys_errno));
  /* The library does not print an abstract name (it may hold any byte):
   * say which one, as given. */
  const char *addr = akrcli_address(socket);
  if (st == ACKRPC_E_CONNECT && addr && addr[0] == '@')
    fprintf(stderr, " (socket %s)", addr);
  fputc('\n', stderr);
  switch (ackrpc_status_outcome(st)) {
  case ACKRPC_OUTCOME_ACKED:
    return st >= 1 && st <= 16 ? (int)st : AKRCLI_EXIT_UNKNOWN_STATUS;
  case ACKRPC_OUTCOME_NO_ACK:
    fprintf(stderr, "%s %s: %s may or may not have run; to retry, pass --call-id ",
            AKRCLI_PROG, cmd, method);
    print_hex(stderr, r->call_id, r->call_id_len);
    fputc('\n', stderr);
    return AKRCLI_EXIT_NO_ACK;
  default: break;
  }
  switch (st) {
  case ACKRPC_E_CONNECT:
  case ACKRPC_E_BUSY:
  case ACKRPC_E_SEND:
  case ACKRPC_E_SEND_TIMEOUT: return AKRCLI_EXIT_NOT_DELIVERED;
  case ACKRPC_E_INVAL:
  case ACKRPC_E_ADDRESS: return AKRCLI_EXIT_USAGE;
  case ACKRPC_E_SERVER_IDENTITY:
    fprintf(stderr,
            "%s %s: nothing was sent; if the server should run as that user, say "
            "so with --server-uid\n",
            AKRCLI_PROG, cmd);
    return AKRCLI_EXIT_NOPERM;
  default: return AKRCLI_EXIT_SOFTWARE;
  }
}

int akrcli_cmd_call(int argc, char **argv) {
  static const struct option longopts[] = {
      {"metadata", 1, NULL, 'm'}, {"call-id", 1, NULL, 'c'},
      {"fd", 1, NULL, 'f'},       {"binary", 0, NULL, 'b'},
      {"pretty", 0, NULL, 'p'},   {"emit-defaults", 0, NULL, 'e'},
      {"verbose", 0, NULL, 'v'},  {"help", 0, NULL, 'h'},
      AKRCLI_SERVER_LONGOPT,      AKRCLI_DESC_LONGOPTS,
      {NULL, 0, NULL, 0},
  };
  akrcli_descopts d = {0};
  akrcli_server srv = {0};
  ackrpc_metadata md[MAX_METADATA];
  size_t n_md = 0;
  uint8_t call_id[ACKRPC_MAX_CALL_ID];
  size_t call_id_len = 0;
  uint32_t timeout = 0;
  int binary = 0, pretty = 0, verbose = 0;
  akrcli_codec_options copts = {0};
  fd_args fds = {.n = 0};
  const char *fd_specs[MAX_FDS];
  size_t n_fd_specs = 0;
  int opt;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "t:m:c:f:bpevh" AKRCLI_DESC_SHORTOPTS, longopts,
                            NULL)) != -1) {
    int taken = akrcli_descopts_take(&d, "call", opt, optarg);
    if (taken < 0) return AKRCLI_EXIT_USAGE;
    if (taken) continue;
    switch (opt) {
    case 'f':
      /* Opened once the arguments are known good (nothing to close on the
       * way out before that). */
      if (n_fd_specs == MAX_FDS) {
        fprintf(stderr, "%s call: at most %d --fd\n", AKRCLI_PROG, MAX_FDS);
        return AKRCLI_EXIT_USAGE;
      }
      fd_specs[n_fd_specs++] = optarg;
      break;
    case 't':
      if (akrcli_timeout_take(&srv, "call", optarg) < 0) return AKRCLI_EXIT_USAGE;
      timeout = srv.timeout_ms;
      break;
    case 'm': {
      const char *eq = strchr(optarg, '=');
      if (n_md >= MAX_METADATA) {
        fprintf(stderr, "%s call: at most %d --metadata entries\n", AKRCLI_PROG,
                MAX_METADATA);
        return AKRCLI_EXIT_USAGE;
      }
      if (!eq || !valid_key(optarg, (size_t)(eq - optarg)) ||
          strlen(eq + 1) > ACKRPC_MAX_METADATA_VALUE) {
        fprintf(stderr,
                "%s call: --metadata wants KEY=VALUE, KEY 1-64 characters of "
                "[a-z0-9._-], VALUE up to 4096 bytes (got \"%s\")\n",
                AKRCLI_PROG, optarg);
        return AKRCLI_EXIT_USAGE;
      }
      /* The key is cut from the argument in place (argv is ours). */
      *(char *)eq = '\0';
      md[n_md].key = optarg;
      md[n_md].value = eq + 1;
      md[n_md].value_len = strlen(eq + 1);
      n_md++;
      break;
    }
    case 'c':
      if (parse_hex(optarg, call_id, sizeof call_id, &call_id_len) < 0) {
        fprintf(stderr, "%s call: --call-id wants 1 to 64 bytes in hex (got \"%s\")\n",
                AKRCLI_PROG, optarg);
        return AKRCLI_EXIT_USAGE;
      }
      break;
    case AKRCLI_OPT_SERVER_UID:
      if (akrcli_server_uid_take(&srv, "call", optarg) < 0) return AKRCLI_EXIT_USAGE;
      break;
    case 'b': binary = 1; break;
    case 'p': pretty = 1; break;
    case 'e': copts.emit_defaults = 1; break;
    case 'v': verbose = 1; break;
    case 'h':
      printf("%s\n%s\n%s\n%s", usage, akrcli_server_help, akrcli_desc_help,
             akrcli_exit_help);
      return AKRCLI_EXIT_OK;
    default: fprintf(stderr, "%s", usage); return AKRCLI_EXIT_USAGE;
    }
  }
  int npos = argc - optind;
  if (npos < 2 || npos > 3 || (binary && npos == 3)) {
    fprintf(stderr, "%s call: %s\n%s", AKRCLI_PROG,
            binary && npos == 3 ? "--binary reads the request from standard input only"
                                : "wants SOCKET METHOD [JSON]",
            usage);
    return AKRCLI_EXIT_USAGE;
  }
  const char *socket = argv[optind], *method_name = argv[optind + 1];
  srv.socket = socket;
  const char *json_arg = npos == 3 ? argv[optind + 2] : "-";

  akrcli_pool pool = {0};
  const akrcli_method *method = NULL;
  uint8_t *body = NULL, *input = NULL;
  size_t body_len = 0, input_len = 0;
  json_t *json = NULL;
  ackrpc_client *client = NULL;
  ackrpc_result res = {0};
  char err[1024];
  int rc;

  for (size_t i = 0; i < n_fd_specs; i++)
    if ((rc = fd_take(&fds, fd_specs[i])) != 0) goto out;
  if ((rc = fd_check(&fds)) != 0) goto out;
  if (binary && (d.n_sets || d.n_protos) && verbose)
    fprintf(stderr, "%s call: --binary: the descriptors are not used\n", AKRCLI_PROG);
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (!binary) {
    if ((rc = akrcli_load_descriptors("call", &d, &srv, method_name, &pool)) != 0)
      goto out;
    method = akrcli_pool_method(&pool, method_name);
    if (!method) {
      fprintf(stderr, "%s call: no such method %s\n", AKRCLI_PROG, method_name);
      rc = AKRCLI_EXIT_NO_METHOD;
      goto out;
    }
    method_name = method->wire_name;
  }

  /* The JSON argument, or a file: "-" and "@-" are standard input, "@PATH"
   * a file (JSON text never starts with '@'). */
  const char *path = strcmp(json_arg, "-") == 0 ? "-"
                     : json_arg[0] == '@'       ? json_arg + 1
                                                : NULL;
  if (binary) path = "-";
  const char *what = !path ? NULL : strcmp(path, "-") == 0 ? "standard input" : path;
  if (path) {
    if (akrcli_read_file(path, binary ? AKRCLI_MAX_STDIN : AKRCLI_MAX_JSON_TEXT, &input,
                         &input_len) < 0) {
      int e = errno;
      fprintf(stderr, "%s call: reading %s: %s\n", AKRCLI_PROG, what,
              e == EFBIG ? "larger than the limit (64 MiB)" : strerror(e));
      rc = e == EFBIG ? AKRCLI_EXIT_DATAERR : AKRCLI_EXIT_NOINPUT;
      goto out;
    }
  }
  if (binary) {
    body = input;
    body_len = input_len;
    input = NULL;
  } else {
    const char *text = what ? (const char *)input : json_arg;
    size_t len = what ? input_len : strlen(json_arg);
    json = akrcli_json_parse(text, len, err, sizeof err);
    if (!json) {
      fprintf(stderr, "%s call: bad JSON in %s: %s\n", AKRCLI_PROG,
              what ? what : "the JSON argument", err);
      rc = AKRCLI_EXIT_DATAERR;
      goto out;
    }
    if (akrcli_json_to_wire(method->input, json, &copts, &body, &body_len, err,
                            sizeof err) < 0) {
      fprintf(stderr, "%s call: the JSON does not fit %s: %s\n", AKRCLI_PROG,
              method->input->full_name, err);
      rc = AKRCLI_EXIT_DATAERR;
      goto out;
    }
  }

  ackrpc_status st = akrcli_client_new(&srv, 0, &client);
  if (st != ACKRPC_OK) {
    akrcli_client_error("call", socket, st);
    rc = st == ACKRPC_E_NOMEM ? AKRCLI_EXIT_SOFTWARE : AKRCLI_EXIT_USAGE;
    goto out;
  }
  if (timeout && !binary) {
    /* The lookup's time counts against -t. */
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t spent =
        (int64_t)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    timeout = spent <= 0 ? timeout : spent >= timeout ? 1 : timeout - (uint32_t)spent;
  }
  ackrpc_call_options callo = {
      .timeout_ms = timeout,
      .call_id = call_id_len ? call_id : NULL,
      .call_id_len = call_id_len,
      .metadata = n_md ? md : NULL,
      .metadata_count = n_md,
      .fds = fds.n ? fds.fd : NULL,
      .n_fds = fds.n,
      .max_reply_fds = MAX_FDS, /* any: described below */
  };
  st = ackrpc_client_call_raw(client, method_name, body, body_len, &callo, &res);
  if (verbose) {
    fprintf(stderr, "%s call: %s: %s, call id ", AKRCLI_PROG, method_name,
            ackrpc_status_name(st));
    print_hex(stderr, res.call_id, res.call_id_len);
    fputc('\n', stderr);
  }
  if (binary && st == ACKRPC_UNIMPLEMENTED && res.message &&
      strncmp(res.message, "unknown method ", 15) == 0 &&
      strcmp(res.message + 15, method_name) == 0) {
    /* The server's dispatcher's own answer (src/server/dispatch.c): said
     * as when the descriptors lack the method. */
    fprintf(stderr, "%s call: no such method %s\n", AKRCLI_PROG, method_name);
    rc = AKRCLI_EXIT_NO_METHOD;
    goto out;
  }
  describe_reply_fds(&res);
  rc = akrcli_report_status("call", socket, &res, st, method_name);
  if (ackrpc_status_outcome(st) != ACKRPC_OUTCOME_ACKED) goto out;

  /* Acked: print the reply (for a non-OK status, only if the server sent
   * one). */
  if (binary) {
    if (write_all(stdout, res.reply_bytes, res.reply_bytes_len) != 0) {
      fprintf(stderr, "%s call: writing standard output: %s\n", AKRCLI_PROG,
              strerror(errno));
      rc = AKRCLI_EXIT_SOFTWARE;
    }
    goto out;
  }
  if (st != ACKRPC_OK && res.reply_bytes_len == 0) goto out;
  json_t *reply = NULL;
  if (akrcli_wire_to_json(method->output, res.reply_bytes, res.reply_bytes_len, &copts,
                          &reply, err, sizeof err) < 0) {
    fprintf(stderr, "%s call: the reply does not decode as %s: %s\n", AKRCLI_PROG,
            method->output->full_name, err);
    if (rc == AKRCLI_EXIT_OK) {
      /* An OK reply whose body does not decode is not well-formed:
       * delivered, no ack (docs/PROTOCOL.md §7). An error status stands. */
      fprintf(stderr, "%s call: %s may or may not have run; to retry, pass --call-id ",
              AKRCLI_PROG, method_name);
      print_hex(stderr, res.call_id, res.call_id_len);
      fputc('\n', stderr);
      rc = AKRCLI_EXIT_NO_ACK;
    }
    goto out;
  }
  char *text = akrcli_json_dump(reply, pretty);
  json_decref(reply);
  if (!text || printf("%s\n", text) < 0 || fflush(stdout) != 0) {
    fprintf(stderr, "%s call: %s\n", AKRCLI_PROG,
            text ? "writing standard output failed" : "out of memory");
    if (rc == AKRCLI_EXIT_OK) rc = AKRCLI_EXIT_SOFTWARE;
  }
  free(text);
out:
  fd_close(&fds);
  ackrpc_result_clear(&res); /* closes the reply's descriptors */
  ackrpc_client_free(client);
  json_decref(json);
  free(body);
  free(input);
  akrcli_pool_clear(&pool);
  return rc;
}
