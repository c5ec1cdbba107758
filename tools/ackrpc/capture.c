/* capture.c: `ackrpc capture SOCKET [-w FILE] [--json]`: calls the
 * server's built-in ackrpc.reflection.Capture/Watch and takes the pcapng
 * stream that follows its reply: into a file (or standard output) as it
 * comes, and/or one JSON line per record, decoded with the server's
 * descriptors. docs/CAPTURE.md, ackrpc-capture(1).
 *
 * The call is made here by hand, not through the client library: the
 * library ends a call at its reply, and here the connection goes on. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "capfile.h"
#include "cli.h"
#include "jsoncodec.h"

static const char usage[] =
    "usage: ackrpc capture [OPTIONS] SOCKET\n"
    "\n"
    "Captures the calls the server at SOCKET serves, until interrupted (or\n"
    "COUNT records), as pcapng: to FILE with -w (Wireshark and tshark read it\n"
    "with tools/wireshark/ackrpc.lua), to standard output without -w and\n"
    "--json. With --json, one JSON line per request and per reply, bodies\n"
    "decoded with the server's descriptors (reflection, or -D/-P). Only root,\n"
    "the server's user or the socket file's owner may capture (else 7).\n"
    "\n"
    "Options:\n"
    "  -w, --write FILE   write the pcapng stream to FILE (\"-\": standard output)\n"
    "  -j, --json         print one JSON line per record\n"
    "  -c, --count N      stop after N records\n"
    "  -h, --help         this help\n";

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

/* --- the Watch call ---------------------------------------------------- */

static const char watch_method[] = "ackrpc.reflection.Capture/Watch";

/* Connects to `address` ("/path" or "@name"). The fd, or -1 (errno). */
static int connect_to(const char *address) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t n = strlen(address);
  if (n == 0 || n >= sizeof sa.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(sa.sun_path, address, n);
  if (address[0] == '@') sa.sun_path[0] = 0;
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                              (address[0] == '@' ? 0 : 1));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sa, len) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads exactly n bytes: 0, or -1 (EOF or error). */
static int read_all(int fd, uint8_t *p, size_t n) {
  while (n) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR && !interrupted) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static void put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* A varint at p[*i, n); -1 if malformed. */
static int varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v) {
  *v = 0;
  for (int s = 0; s < 64 && *i < n; s += 7) {
    uint8_t b = p[(*i)++];
    *v |= (uint64_t)(b & 0x7f) << s;
    if (!(b & 0x80)) return 0;
  }
  return -1;
}

/* Sends the Watch request and reads its reply. 0 when OK; otherwise prints
 * why and returns an exit status. */
static int watch(int fd, const char *socket) {
  uint8_t frame[12 + 2 + sizeof watch_method + 2 + 16];
  uint8_t *h = frame + 12;
  size_t m = strlen(watch_method);
  h[0] = 0x0a; /* RequestHead.method */
  h[1] = (uint8_t)m;
  memcpy(h + 2, watch_method, m);
  h[2 + m] = 0x1a; /* RequestHead.call_id */
  h[3 + m] = 16;
  if (getrandom(h + 4 + m, 16, 0) != 16)
    memset(h + 4 + m, 0x5a, 16); /* any id will do: Watch is never repeated */
  size_t head_len = 4 + m + 16;
  frame[0] = 'A';
  frame[1] = 'K';
  frame[2] = 1;
  frame[3] = 1;
  put_le32(frame + 4, (uint32_t)head_len);
  put_le32(frame + 8, 0);
  if (write_all(fd, frame, 12 + head_len) != 0) {
    fprintf(stderr, "%s capture: %s: cannot send: %s\n", AKRCLI_PROG, socket,
            strerror(errno));
    return AKRCLI_EXIT_NOT_DELIVERED;
  }
  uint8_t prefix[12];
  if (read_all(fd, prefix, 12) != 0 || prefix[0] != 'A' || prefix[1] != 'K' ||
      prefix[2] != 1 || prefix[3] != 2 || le32(prefix + 4) > 65536) {
    fprintf(stderr, "%s capture: %s: no reply to %s\n", AKRCLI_PROG, socket,
            watch_method);
    return AKRCLI_EXIT_NO_ACK;
  }
  size_t hl = le32(prefix + 4), bl = le32(prefix + 8);
  uint8_t *head = malloc(hl + bl + 1);
  if (!head || read_all(fd, head, hl + bl) != 0) {
    free(head);
    fprintf(stderr, "%s capture: %s: no reply to %s\n", AKRCLI_PROG, socket,
            watch_method);
    return AKRCLI_EXIT_NO_ACK;
  }
  uint64_t status = 0;
  const char *message = "";
  size_t msg_len = 0;
  for (size_t i = 0; i < hl;) {
    uint64_t tag, v;
    if (varint(head, hl, &i, &tag) != 0) break;
    if ((tag & 7) == 0) {
      if (varint(head, hl, &i, &v) != 0) break;
      if (tag >> 3 == 1) status = v;
    } else if ((tag & 7) == 2) {
      if (varint(head, hl, &i, &v) != 0 || v > hl - i) break;
      if (tag >> 3 == 2) {
        message = (const char *)head + i;
        msg_len = (size_t)v;
      }
      i += (size_t)v;
    } else {
      break;
    }
  }
  int rc = AKRCLI_EXIT_OK;
  if (status == ACKRPC_UNIMPLEMENTED) {
    fprintf(stderr, "%s capture: %s: the server does not offer %s (%.*s)\n",
            AKRCLI_PROG, socket, watch_method, (int)msg_len, message);
    rc = AKRCLI_EXIT_UNSUPPORTED;
  } else if (status != 0) {
    fprintf(stderr, "%s capture: %s: %s (%u): %.*s\n", AKRCLI_PROG, socket,
            ackrpc_status_name((ackrpc_status)status), (unsigned)status, (int)msg_len,
            message);
    rc = status <= 16 ? (int)status : AKRCLI_EXIT_UNKNOWN_STATUS;
  }
  free(head);
  return rc;
}

/* --- JSON lines -------------------------------------------------------- */

static char *hex(const uint8_t *p, size_t n) {
  char *s = malloc(2 * n + 1);
  if (!s) return NULL;
  for (size_t i = 0; i < n; i++)
    snprintf(s + 2 * i, 3, "%02x", p[i]);
  s[2 * n] = 0;
  return s;
}

static char *base64(const uint8_t *p, size_t n) {
  static const char t[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *s = malloc((n + 2) / 3 * 4 + 1), *o = s;
  if (!s) return NULL;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    *o++ = t[v >> 18 & 63];
    *o++ = t[v >> 12 & 63];
    *o++ = i + 1 < n ? t[v >> 6 & 63] : '=';
    *o++ = i + 2 < n ? t[v & 63] : '=';
  }
  *o = 0;
  return s;
}

/* One record as a JSON object (a new reference; NULL if out of memory):
 * the body decoded with `pool` (may be NULL), else in base64. */
static json_t *record_json(const akrcli_cap_record *r, const akrcli_pool *pool) {
  json_t *o = json_object();
  if (!o) return NULL;
  char method[65536 + 1];
  memcpy(method, r->method, r->method_len);
  method[r->method_len] = 0;
  char *id = hex(r->call_id, r->call_id_len);
  json_object_set_new(o, "time_us", json_integer((json_int_t)r->time_us));
  json_object_set_new(o, "kind",
                      json_string(r->kind == AKRCLI_CAP_REQUEST ? "request" : "reply"));
  json_object_set_new(o, "method", json_string(method));
  json_object_set_new(o, "call_id", json_string(id ? id : ""));
  free(id);
  json_object_set_new(o, "uid", json_integer(r->uid));
  json_object_set_new(o, "gid", json_integer(r->gid));
  json_object_set_new(o, "pid", json_integer(r->pid));
  if (r->kind == AKRCLI_CAP_REPLY) {
    json_object_set_new(o, "status",
                        json_string(ackrpc_status_name((ackrpc_status)r->status)));
    json_object_set_new(o, "code", json_integer(r->status));
    if (r->message_len)
      json_object_set_new(o, "message", json_stringn(r->message, r->message_len));
  }
  if (r->flags & AKRCLI_CAP_REDACTED) json_object_set_new(o, "redacted", json_true());
  if (r->flags & AKRCLI_CAP_TRUNCATED) json_object_set_new(o, "truncated", json_true());
  if (r->lost) json_object_set_new(o, "lost", json_integer(r->lost));
  if (r->flags & AKRCLI_CAP_OMITTED) return o;
  const akrcli_method *m = pool ? akrcli_pool_method(pool, method) : NULL;
  const akrcli_msg *type =
      m ? (r->kind == AKRCLI_CAP_REQUEST ? m->input : m->output) : NULL;
  json_t *body = NULL;
  char err[256];
  if (type && !(r->flags & AKRCLI_CAP_TRUNCATED) &&
      akrcli_wire_to_json(type, r->body, r->body_len, NULL, &body, err, sizeof err) ==
          0) {
    json_object_set_new(o, "body", body);
  } else {
    char *b = base64(r->body, r->body_len);
    json_object_set_new(o, "body_base64", json_string(b ? b : ""));
    free(b);
  }
  return o;
}

/* --- the command ------------------------------------------------------- */

int akrcli_cmd_capture(int argc, char **argv) {
  static const struct option longopts[] = {
      {"write", 1, NULL, 'w'}, {"json", 0, NULL, 'j'}, {"count", 1, NULL, 'c'},
      {"help", 0, NULL, 'h'},  AKRCLI_DESC_LONGOPTS,   {NULL, 0, NULL, 0}};
  akrcli_descopts d = {0};
  const char *path = NULL;
  int json = 0, opt;
  unsigned long long count = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "w:jc:h" AKRCLI_DESC_SHORTOPTS, longopts,
                            NULL)) != -1) {
    int taken = akrcli_descopts_take(&d, "capture", opt, optarg);
    if (taken < 0) return AKRCLI_EXIT_USAGE;
    if (taken) continue;
    if (opt == 'w') {
      path = optarg;
    } else if (opt == 'j') {
      json = 1;
    } else if (opt == 'c') {
      char *end;
      errno = 0;
      count = strtoull(optarg, &end, 10);
      if (errno || *end || !*optarg || optarg[0] == '-' || count == 0) {
        fprintf(stderr, "%s capture: -c wants a count of records (1 or more)\n",
                AKRCLI_PROG);
        return AKRCLI_EXIT_USAGE;
      }
    } else if (opt == 'h') {
      printf("%s\n%s\n%s", usage, akrcli_desc_help, akrcli_exit_help);
      return AKRCLI_EXIT_OK;
    } else {
      fprintf(stderr, "%s", usage);
      return AKRCLI_EXIT_USAGE;
    }
  }
  if (argc - optind != 1) {
    fprintf(stderr, "%s capture: wants SOCKET\n%s", AKRCLI_PROG, usage);
    return AKRCLI_EXIT_USAGE;
  }
  if (!path && !json) path = "-";
  if (json && path && strcmp(path, "-") == 0) {
    fprintf(stderr, "%s capture: --json and -w - both want standard output\n",
            AKRCLI_PROG);
    return AKRCLI_EXIT_USAGE;
  }
  akrcli_server srv = {.socket = argv[optind]};
  const char *address = akrcli_address(srv.socket);
  akrcli_pool pool = {0};
  int have_pool = 0;
  if (json) {
    /* Descriptors first (a separate call): the stream's connection then
     * carries the stream alone. Without them, bodies print in base64. */
    int rc = akrcli_load_descriptors("capture", &d, &srv, "", &pool);
    if (rc == 0)
      have_pool = 1;
    else if (d.n_sets || d.n_protos)
      return rc;
    else
      fprintf(stderr, "%s capture: bodies follow in base64\n", AKRCLI_PROG);
  }
  int rc = AKRCLI_EXIT_OK;
  FILE *out = NULL;
  uint8_t *buf = NULL;
  int fd = connect_to(address);
  if (fd < 0) {
    fprintf(stderr, "%s capture: %s: cannot connect: %s\n", AKRCLI_PROG, srv.socket,
            strerror(errno));
    rc = AKRCLI_EXIT_NOT_DELIVERED;
    goto out;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  if ((rc = watch(fd, srv.socket)) != 0) goto out;
  fprintf(stderr, "%s capture: listening on %s\n", AKRCLI_PROG, srv.socket);
  if (path) {
    out = strcmp(path, "-") == 0 ? stdout : fopen(path, "wb");
    if (!out) {
      fprintf(stderr, "%s capture: %s: %s\n", AKRCLI_PROG, path, strerror(errno));
      rc = AKRCLI_EXIT_NOINPUT;
      goto out;
    }
  }
  size_t cap = 1u << 16, len = 0;
  buf = malloc(cap);
  akrcli_capreader reader = {0};
  uint64_t records = 0, lost = 0;
  while (!interrupted && rc == 0 && buf) {
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* the server stopped, or ended the capture */
    len += (size_t)n;
    size_t off = 0;
    for (;;) {
      akrcli_cap_record rec;
      int has;
      char err[128];
      long used =
          akrcli_cap_next(&reader, buf + off, len - off, &rec, &has, err, sizeof err);
      if (used < 0) {
        fprintf(stderr, "%s capture: %s: %s\n", AKRCLI_PROG, srv.socket, err);
        rc = AKRCLI_EXIT_BAD_REPLY;
        break;
      }
      if (used == 0) break;
      if (out && fwrite(buf + off, 1, (size_t)used, out) != (size_t)used) {
        fprintf(stderr, "%s capture: %s: %s\n", AKRCLI_PROG, path, strerror(errno));
        rc = AKRCLI_EXIT_SOFTWARE;
        break;
      }
      off += (size_t)used;
      if (!has) continue;
      lost = rec.lost;
      if (json) {
        json_t *o = record_json(&rec, have_pool ? &pool : NULL);
        char *text = o ? akrcli_json_dump(o, 0) : NULL;
        json_decref(o);
        if (text) printf("%s\n", text);
        free(text);
        fflush(stdout);
      }
      if (count && ++records == count) break;
    }
    if (out) fflush(out);
    if (count && records == count) break;
    memmove(buf, buf + off, len - off);
    len -= off;
    if (len == cap) {
      /* A block bigger than the buffer: grow, within the block limit. */
      if (cap >= AKRCLI_CAP_MAX_BLOCK) break;
      uint8_t *b = realloc(buf, cap * 2);
      if (!b) break;
      buf = b;
      cap *= 2;
    }
  }
  if (lost)
    fprintf(stderr,
            "%s capture: %" PRIu64 " records lost: the capture did not keep up\n",
            AKRCLI_PROG, lost);
out:
  free(buf);
  if (fd >= 0) close(fd);
  if (out && out != stdout && fclose(out) != 0 && rc == 0) rc = AKRCLI_EXIT_SOFTWARE;
  if (have_pool) akrcli_pool_clear(&pool);
  return rc;
}
