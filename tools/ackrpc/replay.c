/* replay.c: `ackrpc replay FILE SOCKET`: sends the requests of a capture
 * (`ackrpc capture -w FILE`) to a server again, in their order, each with
 * a new call id, and compares each reply with the one captured: status and
 * body bytes. A capture thus becomes a regression test. Exit 0 when every
 * reply is the same, 1 when one differs (each difference is printed). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capfile.h"
#include "cli.h"
#include "jsoncodec.h"

#define REPLAY_EXIT_DIFFERS 1
/* The largest capture file read. */
#define MAX_FILE (1024u * 1024 * 1024)

static const char usage[] =
    "usage: ackrpc replay [OPTIONS] FILE SOCKET\n"
    "\n"
    "Sends the requests captured in FILE (ackrpc capture -w) to the server at\n"
    "SOCKET again, in order and each with a new call id, and compares every\n"
    "reply with the captured one (status, message aside, and body). Prints\n"
    "each difference; exit status 0 when all replies are the same, 1 when any\n"
    "differs, 65 when FILE is not a capture. Requests whose body the capture\n"
    "left out or cut are skipped (and said so).\n"
    "\n"
    "Options:\n"
    "  -q, --quiet         print differences only\n"
    "  -t, --timeout-ms N  each call's deadline\n"
    "  -h, --help          this help\n";

typedef struct capture {
  akrcli_cap_record *recs;
  size_t n;
} capture;

/* Reads every record of buf; 0, or -1 (printed). */
static int parse(const char *file, const uint8_t *buf, size_t len, capture *c) {
  akrcli_capreader reader = {0};
  size_t off = 0, cap = 0;
  while (off < len) {
    akrcli_cap_record rec;
    int has;
    char err[128];
    long used =
        akrcli_cap_next(&reader, buf + off, len - off, &rec, &has, err, sizeof err);
    if (used <= 0) {
      fprintf(stderr, "%s replay: %s: %s\n", AKRCLI_PROG, file,
              used < 0 ? err : "the file ends inside a block");
      return -1;
    }
    off += (size_t)used;
    if (!has) continue;
    if (c->n == cap) {
      cap = cap ? 2 * cap : 64;
      akrcli_cap_record *r = realloc(c->recs, cap * sizeof *r);
      if (!r) {
        fprintf(stderr, "%s replay: out of memory\n", AKRCLI_PROG);
        return -1;
      }
      c->recs = r;
    }
    c->recs[c->n++] = rec;
  }
  return 0;
}

/* The captured reply to request i: the next reply with its call id. */
static const akrcli_cap_record *reply_of(const capture *c, size_t i) {
  const akrcli_cap_record *q = &c->recs[i];
  for (size_t k = i + 1; k < c->n; k++) {
    const akrcli_cap_record *r = &c->recs[k];
    if (r->kind == AKRCLI_CAP_REPLY && r->pid == q->pid &&
        r->call_id_len == q->call_id_len &&
        memcmp(r->call_id, q->call_id, q->call_id_len) == 0 &&
        r->method_len == q->method_len &&
        memcmp(r->method, q->method, q->method_len) == 0)
      return r;
  }
  return NULL;
}

/* A body as one line: JSON when the descriptors know the type, else
 * base64-free hex of at most 64 bytes. */
static void print_body(const char *sign, const akrcli_pool *pool, const char *method,
                       int request, const uint8_t *p, size_t n) {
  const akrcli_method *m = pool ? akrcli_pool_method(pool, method) : NULL;
  const akrcli_msg *type = m ? (request ? m->input : m->output) : NULL;
  json_t *j = NULL;
  char err[128];
  if (type && akrcli_wire_to_json(type, p, n, NULL, &j, err, sizeof err) == 0) {
    char *text = akrcli_json_dump(j, 0);
    json_decref(j);
    if (text) {
      printf("  %s body %s\n", sign, text);
      free(text);
      return;
    }
  }
  printf("  %s body (%zu bytes)", sign, n);
  for (size_t i = 0; i < n && i < 64; i++)
    printf("%s%02x", i ? "" : " ", p[i]);
  printf("%s\n", n > 64 ? "..." : "");
}

int akrcli_cmd_replay(int argc, char **argv) {
  static const struct option longopts[] = {{"quiet", 0, NULL, 'q'},
                                           {"help", 0, NULL, 'h'},
                                           AKRCLI_SERVER_LONGOPT,
                                           {NULL, 0, NULL, 0}};
  akrcli_server srv = {0};
  int opt, quiet = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "qt:h", longopts, NULL)) != -1) {
    int taken = akrcli_server_opt_take(&srv, "replay", opt, optarg);
    if (taken < 0) return AKRCLI_EXIT_USAGE;
    if (taken) continue;
    if (opt == 'q') {
      quiet = 1;
    } else if (opt == 'h') {
      printf("%s\n%s\n%s", usage, akrcli_server_help, akrcli_exit_help);
      return AKRCLI_EXIT_OK;
    } else {
      fprintf(stderr, "%s", usage);
      return AKRCLI_EXIT_USAGE;
    }
  }
  if (argc - optind != 2) {
    fprintf(stderr, "%s replay: wants FILE and SOCKET\n%s", AKRCLI_PROG, usage);
    return AKRCLI_EXIT_USAGE;
  }
  const char *file = argv[optind];
  srv.socket = argv[optind + 1];
  uint8_t *buf = NULL;
  size_t len = 0;
  if (akrcli_read_file(file, MAX_FILE, &buf, &len) != 0) {
    perror(file);
    return AKRCLI_EXIT_NOINPUT;
  }
  capture c = {0};
  ackrpc_client *client = NULL;
  akrcli_pool pool = {0};
  int have_pool = 0, rc = AKRCLI_EXIT_OK;
  size_t calls = 0, differ = 0, skipped = 0;
  if (parse(file, buf, len, &c) != 0) {
    rc = AKRCLI_EXIT_DATAERR;
    goto out;
  }
  ackrpc_status st = akrcli_client_new(&srv, srv.timeout_ms, &client);
  if (st != ACKRPC_OK) {
    akrcli_client_error("replay", srv.socket, st);
    rc = st == ACKRPC_E_NOMEM ? AKRCLI_EXIT_SOFTWARE : AKRCLI_EXIT_USAGE;
    goto out;
  }
  for (size_t i = 0; i < c.n; i++) {
    const akrcli_cap_record *q = &c.recs[i];
    if (q->kind != AKRCLI_CAP_REQUEST) continue;
    char method[65536 + 1];
    memcpy(method, q->method, q->method_len);
    method[q->method_len] = 0;
    if (q->flags & (AKRCLI_CAP_OMITTED | AKRCLI_CAP_TRUNCATED | AKRCLI_CAP_REDACTED)) {
      printf("skipped %s: the capture holds %s body\n", method,
             q->flags & AKRCLI_CAP_REDACTED ? "a redacted" : "no whole");
      skipped++;
      continue;
    }
    const akrcli_cap_record *want = reply_of(&c, i);
    ackrpc_result res = {0};
    ackrpc_call_options callo = {.timeout_ms = srv.timeout_ms};
    st = ackrpc_client_call_raw(client, method, q->body, q->body_len, &callo, &res);
    calls++;
    if (ackrpc_status_outcome(st) == ACKRPC_OUTCOME_NOT_DELIVERED && calls == 1) {
      rc = akrcli_report_status("replay", srv.socket, &res, st, method);
      ackrpc_result_clear(&res);
      goto out;
    }
    if (!want) {
      if (!quiet)
        printf("sent %s: %s (no captured reply to compare)\n", method,
               ackrpc_status_name(st));
      ackrpc_result_clear(&res);
      continue;
    }
    int acked = ackrpc_status_outcome(st) == ACKRPC_OUTCOME_ACKED;
    int same_status = acked && (uint32_t)st == want->status;
    int same_body = acked && res.reply_bytes_len == want->body_len &&
                    (want->body_len == 0 ||
                     memcmp(res.reply_bytes, want->body, want->body_len) == 0);
    if (want->flags & (AKRCLI_CAP_OMITTED | AKRCLI_CAP_TRUNCATED | AKRCLI_CAP_REDACTED))
      same_body = 1; /* nothing whole to compare the body with */
    if (same_status && same_body) {
      if (!quiet) printf("same %s: %s\n", method, ackrpc_status_name(st));
      ackrpc_result_clear(&res);
      continue;
    }
    differ++;
    if (!have_pool && akrcli_reflect_files("replay", &srv, "", &pool) == 0) {
      char err[256];
      have_pool = akrcli_pool_build(&pool, err, sizeof err) == 0;
    }
    printf("DIFFERS %s (request %zu of the capture)\n", method, calls);
    print_body("request", have_pool ? &pool : NULL, method, 1, q->body, q->body_len);
    printf("  - status %s (%u)%s%.*s\n",
           ackrpc_status_name((ackrpc_status)want->status), (unsigned)want->status,
           want->message_len ? ": " : "", (int)want->message_len, want->message);
    printf("  + status %s (%d)%s%s\n", ackrpc_status_name(st), (int)st,
           res.message && *res.message ? ": " : "", res.message ? res.message : "");
    if (!same_body || !same_status) {
      print_body("-", have_pool ? &pool : NULL, method, 0, want->body, want->body_len);
      print_body("+", have_pool ? &pool : NULL, method, 0, res.reply_bytes,
                 res.reply_bytes_len);
    }
    ackrpc_result_clear(&res);
  }
  printf("%zu calls replayed, %zu differ, %zu skipped\n", calls, differ, skipped);
  if (differ) rc = REPLAY_EXIT_DIFFERS;
out:
  if (fflush(stdout) != 0 && rc == 0) rc = AKRCLI_EXIT_SOFTWARE;
  akrcli_pool_clear(&pool);
  ackrpc_client_free(client);
  free(c.recs);
  free(buf);
  return rc;
}
