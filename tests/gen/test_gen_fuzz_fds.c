/* test_gen_fuzz_fds.c: the libFuzzer entry protoc-gen-ackrpc generates for
 * a file with descriptor fields (fds/files.ackrpc-fuzz.c, linked in: each
 * entry defines LLVMFuzzerTestOneInput, hence an executable of its own).
 * Its inputs start with a byte choosing the descriptors sent with the
 * first frame (the entry's banner, docs/GENERATOR.md). Real request frames
 * go through it with the right descriptors, with too many, with none where
 * some are declared, with some to methods that take none, with bodies in
 * memfds, and garbage; every input runs several times and the entry
 * returns 0.
 *
 * What is checked: the server answered each frame as docs/PROTOCOL.md
 * §2.5-2.6 say it must for the descriptors the byte chose (OK only if
 * they arrived), read from the statistics of the entry's own server (the
 * built-in Stats service, asked on a connection of the test's while the
 * entry turns the server's loop); and the process has as many descriptors
 * open after all the runs as before (the entry's, the server's and the
 * kernel's: no leak anywhere). A replay, not fuzzing: with
 * ACKRPC_GENERATE_FUZZ=ON and clang the same entry is a libFuzzer binary. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ackrpc/wire.pb-c.h"
#include "fds/files.ackrpc.h"
#include "fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Each input is run this many times in one process. */
#define RUNS 3

/* The first byte of an input: how many descriptors, and their kinds. */
enum { SEALED = 0, UNSEALED = 1, PIPE = 2, DEVNULL = 3 };
#define NO_FDS 0u
#define FDS1(a) (1u | (a) << 2)
#define FDS2(a, b) (2u | (a) << 2 | (b) << 4)
#define FDS3(a, b, c) (3u | (a) << 2 | (b) << 4 | (c) << 6)

#define READ "fds.Files/Read"
#define OPEN "fds.Files/Open"
#define CAT "fds.Files/Cat"
#define PLAIN "fds.Files/Plain"

typedef struct input {
  uint8_t buf[2048];
  size_t len;
} input;

/* An input whose descriptor byte is `spec`, no frame yet. */
static input *input_new(unsigned spec) {
  input *in = calloc(1, sizeof *in);
  cr_assert_not_null(in);
  in->buf[0] = (uint8_t)spec;
  in->len = 1;
  return in;
}

/* Appends a request frame of `method` whose head announces `fd_count`
 * descriptors (and, if body_memfd, a body in the last of them), with
 * `body` (NULL: empty): fx_frame_request_fds(). */
static void add_frame(input *in, const char *method, uint32_t fd_count, int body_memfd,
                      const ProtobufCMessage *body) {
  in->len += fx_frame_request_fds(in->buf + in->len, sizeof in->buf - in->len, method,
                                  fd_count, body_memfd, body);
}

/* --- The entry's server, watched from outside --- */

static char fuzz_address[64];
static int fds_at_start;

/* Runs the entry on an empty connection: the server's loop turns. */
static void turn(void) {
  cr_assert_eq(LLVMFuzzerTestOneInput(NULL, 0), 0);
}

/* The statistics of the entry's server, through its built-in Stats service
 * on a connection of our own, served while the entry runs; freed by the
 * caller. The server closes the connection after its reply (we half-close
 * ours), so no descriptor of it is left when this returns. */
static Ackrpc__Reflection__StatsReply *stats(void) {
  input *req = input_new(0);
  add_frame(req, "ackrpc.reflection.Stats/Get", 0, 0, NULL);
  int fd = fx_raw_connect(fuzz_address);
  cr_assert_geq(fd, 0, "connect %s", fuzz_address);
  cr_assert_eq(fx_raw_send(fd, req->buf + 1, req->len - 1), 0);
  free(req);
  shutdown(fd, SHUT_WR);
  static uint8_t buf[1 << 16];
  size_t got = 0;
  int eof = 0;
  for (int i = 0; i < 1000 && !eof; i++) {
    turn();
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (!eof && poll(&p, 1, 0) == 1) {
      ssize_t n = recv(fd, buf + got, sizeof buf - got, 0);
      if (n <= 0)
        eof = 1;
      else
        got += (size_t)n;
      cr_assert_lt(got, sizeof buf);
    }
  }
  close(fd);
  cr_assert(eof, "the Stats call did not end");
  uint32_t status = 99;
  const uint8_t *body = NULL;
  size_t body_len = 0;
  cr_assert_eq(fx_parse_reply(buf, got, &status, NULL, &body, &body_len), got);
  cr_assert_eq(status, ACKRPC_OK);
  Ackrpc__Reflection__StatsReply *r =
      ackrpc__reflection__stats_reply__unpack(NULL, body_len, body);
  cr_assert_not_null(r);
  return r;
}

/* How many times the server answered `method` with `code`. */
static uint64_t answered(const char *method, ackrpc_status code) {
  Ackrpc__Reflection__StatsReply *r = stats();
  uint64_t n = 0;
  int found = 0;
  for (size_t i = 0; i < r->n_methods; i++) {
    if (strcmp(r->methods[i]->method, method) != 0) continue;
    found = 1;
    for (size_t j = 0; j < r->methods[i]->n_statuses; j++)
      if (r->methods[i]->statuses[j]->code == (uint32_t)code)
        n = r->methods[i]->statuses[j]->count;
  }
  ackrpc__reflection__stats_reply__free_unpacked(r, NULL);
  cr_assert(found, "%s is not served", method);
  return n;
}

/* The server exists (the entry creates it on its first input) and the
 * descriptors it and the test hold for good are counted. */
static void start(void) {
  snprintf(fuzz_address, sizeof fuzz_address, "@ackrpc-fuzz-%ld", (long)getpid());
  turn();
  (void)answered(READ, ACKRPC_OK);
  fds_at_start = fx_fd_count();
  cr_assert_gt(fds_at_start, 0);
}

/* Nothing leaked: the entry closed its copies, the server the ones it
 * received, refused or not. */
static void finish(void) {
  cr_assert_eq(fx_fd_count(), fds_at_start, "descriptors open: %d, at the start: %d",
               fx_fd_count(), fds_at_start);
}

/* With ACKRPC_FUZZ_SEEDS=DIR, each input is also written to DIR, named by
 * its bytes' FNV-1a hash: the seed corpus of the entry's libFuzzer binary
 * (tests/fuzz/corpus/gen_fds/, tests/fuzz/run.sh) is made so: the real
 * frames of the first two tests, not the garbage (libFuzzer makes its own). */
static void save_seed(const input *in) {
  const char *dir = getenv("ACKRPC_FUZZ_SEEDS");
  if (!dir || !*dir) return;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < in->len; i++)
    h = (h ^ in->buf[i]) * 1099511628211ull;
  char path[4096];
  snprintf(path, sizeof path, "%s/seed-%016llx", dir, (unsigned long long)h);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "%s", path);
  cr_assert_eq(fwrite(in->buf, 1, in->len, f), in->len);
  cr_assert_eq(fclose(f), 0);
}

static void run(const input *in) {
  for (int i = 0; i < RUNS; i++)
    cr_assert_eq(LLVMFuzzerTestOneInput(in->buf, in->len), 0);
}

/* Runs `in` RUNS times: the server answers `method` with `code` `per_run`
 * times each. Frees `in`. */
static void expect_n(input *in, const char *method, ackrpc_status code,
                     unsigned per_run) {
  uint64_t before = answered(method, code);
  save_seed(in);
  run(in);
  uint64_t after = answered(method, code);
  cr_assert_eq(after, before + (uint64_t)RUNS * per_run,
               "%s answered %s %llu times, expected %u (input byte 0x%02x)", method,
               ackrpc_status_name(code), (unsigned long long)(after - before),
               RUNS * per_run, in->buf[0]);
  free(in);
}

static void expect(input *in, const char *method, ackrpc_status code) {
  expect_n(in, method, code, 1);
}

/* Request bodies: Read naming descriptor `index`, or none (index < 0). */
static input *read_frame(unsigned spec, uint32_t fd_count, int index) {
  Ackrpc__Fd fd = ACKRPC__FD__INIT;
  Fds__ReadRequest read = FDS__READ_REQUEST__INIT;
  fd.fd = index;
  if (index >= 0) read.file = &fd;
  input *in = input_new(spec);
  add_frame(in, READ, fd_count, 0, &read.base);
  return in;
}

/* Cat naming descriptors 0 .. n-1. */
static input *cat_frame(unsigned spec, uint32_t fd_count, size_t n) {
  Ackrpc__Fd fds[3], *ptrs[3];
  Fds__CatRequest cat = FDS__CAT_REQUEST__INIT;
  for (size_t i = 0; i < n; i++) {
    ackrpc__fd__init(&fds[i]);
    fds[i].fd = (int32_t)i;
    ptrs[i] = &fds[i];
  }
  cat.files = ptrs;
  cat.n_files = n;
  input *in = input_new(spec);
  add_frame(in, CAT, fd_count, 0, &cat.base);
  return in;
}

static input *plain_frame(unsigned spec, const char *method, uint32_t fd_count,
                          int body_memfd) {
  Fds__OpenRequest req = FDS__OPEN_REQUEST__INIT;
  req.text = "x";
  input *in = input_new(spec);
  add_frame(in, method, fd_count, body_memfd, body_memfd ? NULL : &req.base);
  return in;
}

Test(gen_fuzz_fds, descriptors_a_method_takes_reach_it) {
  start();
  /* Read takes one, of any kind. */
  expect(read_frame(FDS1(PIPE), 1, 0), READ, ACKRPC_OK);
  expect(read_frame(FDS1(DEVNULL), 1, 0), READ, ACKRPC_OK);
  expect(read_frame(FDS1(SEALED), 1, 0), READ, ACKRPC_OK);
  expect(read_frame(FDS1(UNSEALED), 1, 0), READ, ACKRPC_OK);
  /* Cat takes up to the server's limit (2 in the entry), and none. */
  expect(cat_frame(FDS2(PIPE, SEALED), 2, 2), CAT, ACKRPC_OK);
  expect(cat_frame(FDS1(DEVNULL), 1, 1), CAT, ACKRPC_OK);
  expect(cat_frame(NO_FDS, 0, 0), CAT, ACKRPC_OK);
  /* A method without descriptors, with its body in a sealed memfd (the
   * memfd's content decodes as any message): only a sealed memfd is. */
  expect(plain_frame(FDS1(SEALED), PLAIN, 1, 1), PLAIN, ACKRPC_OK);
  /* A session: the descriptor goes with the first frame, the second has
   * none. */
  input *two = read_frame(FDS1(PIPE), 1, 0);
  input *plain = plain_frame(NO_FDS, PLAIN, 0, 0);
  memcpy(two->buf + two->len, plain->buf + 1, plain->len - 1);
  two->len += plain->len - 1;
  free(plain);
  input *copy = malloc(sizeof *copy);
  cr_assert_not_null(copy);
  memcpy(copy, two, sizeof *two);
  expect(two, READ, ACKRPC_OK);
  expect(copy, PLAIN, ACKRPC_OK);
  finish();
}

Test(gen_fuzz_fds, descriptors_that_do_not_fit_are_refused_and_closed) {
  start();
  /* None where the method's request declares one: the head announces one
   * that does not come, or the field is missing. */
  expect(read_frame(NO_FDS, 1, 0), READ, ACKRPC_INVALID_ARGUMENT);
  expect(read_frame(NO_FDS, 0, -1), READ, ACKRPC_INVALID_ARGUMENT);
  /* One came, the head announces none; one came, no field names it. */
  expect(read_frame(FDS1(PIPE), 0, 0), READ, ACKRPC_INVALID_ARGUMENT);
  expect(read_frame(FDS1(PIPE), 1, -1), READ, ACKRPC_INVALID_ARGUMENT);
  /* More than the method takes (one singular field), more than the server
   * takes (the third is cut off by the kernel). */
  expect(read_frame(FDS2(PIPE, DEVNULL), 2, 0), READ, ACKRPC_INVALID_ARGUMENT);
  expect(cat_frame(FDS3(PIPE, SEALED, DEVNULL), 3, 3), CAT, ACKRPC_RESOURCE_EXHAUSTED);
  expect(cat_frame(FDS3(PIPE, SEALED, DEVNULL), 2, 2), CAT, ACKRPC_RESOURCE_EXHAUSTED);
  /* To methods that take none (Open only returns one). */
  expect(plain_frame(FDS1(PIPE), PLAIN, 1, 0), PLAIN, ACKRPC_INVALID_ARGUMENT);
  expect(plain_frame(FDS2(SEALED, UNSEALED), OPEN, 2, 0), OPEN,
         ACKRPC_INVALID_ARGUMENT);
  /* A body "in a memfd" that is not a sealed one. */
  expect(plain_frame(FDS1(UNSEALED), PLAIN, 1, 1), PLAIN, ACKRPC_INVALID_ARGUMENT);
  expect(plain_frame(FDS1(PIPE), PLAIN, 1, 1), PLAIN, ACKRPC_INVALID_ARGUMENT);
  expect(plain_frame(FDS1(DEVNULL), PLAIN, 1, 1), PLAIN, ACKRPC_INVALID_ARGUMENT);
  /* A body in a sealed memfd that does not name Read's descriptor. */
  expect(plain_frame(FDS2(PIPE, SEALED), READ, 2, 1), READ, ACKRPC_INVALID_ARGUMENT);
  finish();
}

Test(gen_fuzz_fds, garbage_with_descriptors_leaks_nothing) {
  start();
  uint8_t junk[1024];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (uint8_t)(i * 131 + 7);
  input *in = input_new(0);
  /* Every count and kind, on junk (bad magic), on nothing (one byte: an
   * empty connection, nothing sent), on the start of a frame. */
  for (unsigned spec = 0; spec < 256; spec += 7) {
    in->buf[0] = (uint8_t)spec;
    memcpy(in->buf + 1, junk, sizeof junk);
    in->len = 1 + sizeof junk;
    run(in);
    in->len = 1;
    run(in);
    in->len = 1 + 5;
    memcpy(in->buf + 1, "AK\x01\x01\x00", 5);
    run(in);
  }
  free(in);
  /* Frames cut short with their descriptors (never dispatched: they close
   * with the connection), to an unknown method, and with a bad head. */
  in = cat_frame(FDS2(SEALED, PIPE), 2, 2);
  in->len -= 3;
  run(in);
  free(in);
  in = plain_frame(FDS3(PIPE, PIPE, PIPE), "fds.Files/Nope", 3, 0);
  run(in);
  in->buf[0] = FDS2(DEVNULL, UNSEALED);
  run(in);
  in->buf[1 + 12] ^= 0xff; /* the head's first tag */
  run(in);
  free(in);
  /* The server still serves. */
  expect(read_frame(FDS1(PIPE), 1, 0), READ, ACKRPC_OK);
  finish();
}
