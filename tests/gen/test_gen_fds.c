/* test_gen_fds.c: descriptor fields (ackrpc.Fd, ackrpc/fd.proto) through
 * the generated code of tests/gen/fixtures/fds/files.proto, against a real
 * server: the handler reads the very file the client opened, the client
 * reads the pipe the server handed back, through the blocking stub, the
 * async stub, a session and a pipelined session (each descriptor with its
 * own call); requests whose Fd fields do not match the descriptors that
 * came are refused INVALID_ARGUMENT without running the handler, and
 * nothing leaks (the process's descriptors are counted: client and server
 * share it; this test also runs under valgrind --track-fds). */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "fds/files.ackrpc.h"
#include "fixture.h"

FX_SUITE(gen_fds);

static atomic_uint handled;

/* --- The server --- */

typedef struct served {
  ackrpc_server *server;
  pthread_t thread;
} served;

static void *serve(void *arg) {
  ackrpc_server_run(arg);
  return NULL;
}

/* What a descriptor holds, from the start (at most cap - 1 bytes). */
static size_t read_all(int fd, char *buf, size_t cap) {
  ssize_t n = pread(fd, buf, cap - 1, 0);
  if (n < 0) n = read(fd, buf, cap - 1); /* a pipe */
  buf[n < 0 ? 0 : n] = '\0';
  return n < 0 ? 0 : (size_t)n;
}

static int cloexec(int fd) {
  int flags = fcntl(fd, F_GETFD);
  return flags >= 0 && (flags & FD_CLOEXEC);
}

/* Read: the file's content, or "inheritable" if the descriptor is not
 * close-on-exec. */
static void on_read(ackrpc_call *call, const Fds__ReadRequest *request, void *user) {
  (void)user;
  atomic_fetch_add(&handled, 1);
  char buf[256];
  Fds__ReadReply rep = FDS__READ_REPLY__INIT;
  if (!cloexec(request->file->fd))
    strcpy(buf, "inheritable");
  else
    read_all(request->file->fd, buf, sizeof buf);
  rep.content.data = (uint8_t *)buf;
  rep.content.len = strlen(buf);
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &rep.base);
}

/* A pipe holding `text`; its read end, or -1. */
static int pipe_with(const char *text) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  if (write(p[1], text, strlen(text)) != (ssize_t)strlen(text)) {
    close(p[0]);
    p[0] = -1;
  }
  close(p[1]);
  return p[0];
}

/* Open: a pipe holding the text, handed back in the reply's Fd field.
 * "plain" answers with ackrpc_call_reply() (a number, no descriptor);
 * "missing" leaves the field empty. */
static void on_open(ackrpc_call *call, const Fds__OpenRequest *request, void *user) {
  (void)user;
  atomic_fetch_add(&handled, 1);
  Fds__OpenReply rep = FDS__OPEN_REPLY__INIT;
  Ackrpc__Fd file = ACKRPC__FD__INIT;
  if (strcmp(request->text, "missing") == 0) {
    fds__Files_Open_reply(call, ACKRPC_OK, NULL, &rep);
    return;
  }
  file.fd = strcmp(request->text, "plain") == 0 ? 0 : pipe_with(request->text);
  rep.file = &file;
  rep.size = strlen(request->text);
  if (strcmp(request->text, "plain") == 0)
    ackrpc_call_reply(call, ACKRPC_OK, NULL, &rep.base);
  else
    fds__Files_Open_reply(call, ACKRPC_OK, NULL, &rep);
}

/* Cat: the files' contents joined by `sep`, and one pipe per file holding
 * "p<i>". */
static void on_cat(ackrpc_call *call, const Fds__CatRequest *request, void *user) {
  (void)user;
  atomic_fetch_add(&handled, 1);
  char out[1024] = "", one[256];
  Ackrpc__Fd pipes[8], *ptrs[8];
  size_t n = request->n_files < 8 ? request->n_files : 8;
  for (size_t i = 0; i < n; i++) {
    read_all(request->files[i]->fd, one, sizeof one);
    snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? request->sep : "",
             one);
    char name[16];
    snprintf(name, sizeof name, "p%zu", i);
    ackrpc__fd__init(&pipes[i]);
    pipes[i].fd = pipe_with(name);
    ptrs[i] = &pipes[i];
  }
  Fds__CatReply rep = FDS__CAT_REPLY__INIT;
  rep.content.data = (uint8_t *)out;
  rep.content.len = strlen(out);
  rep.pipes = ptrs;
  rep.n_pipes = n;
  fds__Files_Cat_reply(call, ACKRPC_OK, NULL, &rep);
}

static void on_plain(ackrpc_call *call, const Fds__OpenRequest *request, void *user) {
  (void)request;
  (void)user;
  atomic_fetch_add(&handled, 1);
  ackrpc_call_reply(call, ACKRPC_OK, NULL, NULL);
}

static void serve_start(served *s) {
  ackrpc_server_options o = {.address = fx_sock(), .log = ackrpc_log_discard};
  fds__Files_handlers h = {
      .Read = on_read, .Open = on_open, .Cat = on_cat, .Plain = on_plain};
  cr_assert_eq(ackrpc_server_new(&o, &s->server), ACKRPC_OK);
  cr_assert_eq(fds__Files_register(s->server, &h, NULL), ACKRPC_OK);
  cr_assert_eq(pthread_create(&s->thread, NULL, serve, s->server), 0);
}

static void serve_stop(served *s) {
  ackrpc_server_stop(s->server);
  pthread_join(s->thread, NULL);
  s->server = ackrpc_server_free(s->server);
}

/* --- Helpers --- */

/* A file in the test's directory holding `text`, opened read-only. */
static int file_with(const char *name, const char *text) {
  const char *path = fx_path(name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  cr_assert_geq(fd, 0);
  return fd;
}

/* Waits (up to 5 s) until the process has `n` descriptors open: the server
 * closes a call's descriptors when the call ends, just after its reply. */
static void expect_fds(int n) {
  for (int i = 0; i < 500 && fx_fd_count() != n; i++)
    fx_sleep_ms(10);
  cr_assert_eq(fx_fd_count(), n, "descriptors open: %d, expected %d", fx_fd_count(), n);
}

/* --- Blocking stubs --- */

FX_TEST(gen_fds, blocking_request_descriptor_reaches_the_handler) {
  served s;
  serve_start(&s);
  ackrpc_client *client = fx_client(fx_sock(), 5000);
  int fd = file_with("a.txt", "contents of a");
  int before = fx_fd_count();
  Ackrpc__Fd file = ACKRPC__FD__INIT;
  file.fd = fd;
  Fds__ReadRequest req = FDS__READ_REQUEST__INIT;
  req.file = &file;
  Fds__ReadReply *rep = NULL;
  ackrpc_result result = {0};
  cr_assert_eq(fds__Files_Read_call(client, &req, &rep, NULL, &result), ACKRPC_OK, "%s",
               result.message ? result.message : "");
  cr_assert_eq(rep->content.len, strlen("contents of a"));
  cr_assert_eq(memcmp(rep->content.data, "contents of a", rep->content.len), 0);
  cr_assert_eq(file.fd, fd, "the request is not modified");
  cr_assert(fcntl(fd, F_GETFD) >= 0, "the caller's descriptor stays open");
  fds__read_reply__free_unpacked(rep, NULL);
  ackrpc_result_clear(&result);
  expect_fds(before);
  close(fd);
  serve_stop(&s);
}

FX_TEST(gen_fds, blocking_reply_descriptor_is_the_callers) {
  served s;
  serve_start(&s);
  ackrpc_client *client = fx_client(fx_sock(), 5000);
  int before = fx_fd_count();
  Fds__OpenRequest req = FDS__OPEN_REQUEST__INIT;
  req.text = "from the server";
  Fds__OpenReply *rep = NULL;
  cr_assert_eq(fds__Files_Open_call(client, &req, &rep, NULL, NULL), ACKRPC_OK);
  cr_assert_not_null(rep->file);
  cr_assert(cloexec(rep->file->fd), "received close-on-exec");
  char buf[64];
  read_all(rep->file->fd, buf, sizeof buf);
  cr_assert_str_eq(buf, "from the server");
  cr_assert_eq(rep->size, strlen("from the server"));
  close(rep->file->fd); /* the caller's */
  fds__open_reply__free_unpacked(rep, NULL);
  expect_fds(before);

  /* Left in the result: ackrpc_result_clear() closes it. */
  ackrpc_result result = {0};
  cr_assert_eq(fds__Files_Open_call(client, &req, NULL, NULL, &result), ACKRPC_OK);
  Fds__OpenReply *kept = (Fds__OpenReply *)result.reply;
  cr_assert_not_null(kept);
  cr_assert(fcntl(kept->file->fd, F_GETFD) >= 0);
  cr_assert_eq(result.n_fds, 0, "the descriptor is in the field, not in result.fds");
  ackrpc_result_clear(&result);
  expect_fds(before);
  serve_stop(&s);
}

FX_TEST(gen_fds, reply_descriptors_that_do_not_match_are_refused) {
  served s;
  serve_start(&s);
  ackrpc_client *client = fx_client(fx_sock(), 5000);
  int before = fx_fd_count();
  Fds__OpenRequest req = FDS__OPEN_REQUEST__INIT;
  Fds__OpenReply *rep = NULL;
  ackrpc_result result = {0};
  /* ackrpc_call_reply(): the field says 0, no descriptor came. */
  req.text = "plain";
  cr_assert_eq(fds__Files_Open_call(client, &req, &rep, NULL, &result),
               ACKRPC_E_BAD_REPLY);
  cr_assert_null(rep);
  ackrpc_result_clear(&result);
  /* The handler left the field empty: INTERNAL, nothing sent. */
  req.text = "missing";
  cr_assert_eq(fds__Files_Open_call(client, &req, &rep, NULL, &result),
               ACKRPC_INTERNAL);
  cr_assert_null(rep);
  ackrpc_result_clear(&result);
  expect_fds(before);
  serve_stop(&s);
}

/* --- Async stub, sessions --- */

typedef struct cat_seen {
  ackrpc_status status;
  char content[256];
  char pipes[64];
  int calls;
} cat_seen;

static void cat_done(ackrpc_status status, Fds__CatReply *reply, ackrpc_result *result,
                     void *user) {
  cat_seen *seen = user;
  seen->calls++;
  seen->status = status;
  if (status != ACKRPC_OK) return;
  snprintf(seen->content, sizeof seen->content, "%.*s", (int)reply->content.len,
           (const char *)reply->content.data);
  /* Reads one pipe and leaves the reply (and its descriptors) to the
   * library; ackrpc_result_clear() closes them. */
  for (size_t i = 0; i < reply->n_pipes; i++) {
    char buf[16];
    read_all(reply->pipes[i]->fd, buf, sizeof buf);
    strncat(seen->pipes, buf, sizeof seen->pipes - strlen(seen->pipes) - 1);
  }
  (void)result;
}

FX_TEST(gen_fds, async_stub_repeated_descriptors_both_ways) {
  served s;
  serve_start(&s);
  ackrpc_client *client = fx_client(fx_sock(), 5000);
  int a = file_with("a.txt", "alpha"), b = file_with("b.txt", "beta"),
      c = file_with("c.txt", "gamma");
  int before = fx_fd_count();
  Ackrpc__Fd fa = ACKRPC__FD__INIT, fb = ACKRPC__FD__INIT, fc = ACKRPC__FD__INIT;
  fa.fd = a;
  fb.fd = b;
  fc.fd = c;
  Ackrpc__Fd *files[] = {&fc, &fa, &fb};
  Fds__CatRequest req = FDS__CAT_REQUEST__INIT;
  req.sep = "+";
  req.files = files;
  req.n_files = 3;
  struct event_base *base = event_base_new();
  cat_seen seen = {0};
  cr_assert_eq(fds__Files_Cat_call_async(client, base, &req, NULL, cat_done, &seen),
               ACKRPC_OK);
  cr_assert_neq(event_base_dispatch(base), -1);
  event_base_free(base);
  cr_assert_eq(seen.calls, 1);
  cr_assert_eq(seen.status, ACKRPC_OK);
  cr_assert_str_eq(seen.content, "gamma+alpha+beta", "in field order");
  cr_assert_str_eq(seen.pipes, "p0p1p2");
  expect_fds(before);
  close(a);
  close(b);
  close(c);
  serve_stop(&s);
}

typedef struct read_seen {
  char content[64];
  ackrpc_status status;
} read_seen;

static void read_done(ackrpc_result *result, void *user) {
  read_seen *seen = user;
  seen->status = result->status;
  const Fds__ReadReply *rep = (const Fds__ReadReply *)result->reply;
  if (rep)
    snprintf(seen->content, sizeof seen->content, "%.*s", (int)rep->content.len,
             (const char *)rep->content.data);
}

FX_TEST(gen_fds, sessions_give_each_call_its_own_descriptors) {
  served s;
  serve_start(&s);
  ackrpc_client *client = fx_client(fx_sock(), 5000);
  int fd[3] = {file_with("0", "zero"), file_with("1", "one"), file_with("2", "two")};
  const char *want[3] = {"zero", "one", "two"};
  int before = fx_fd_count();
  Ackrpc__Fd f[3];
  Fds__ReadRequest req[3];
  for (int i = 0; i < 3; i++) {
    ackrpc__fd__init(&f[i]);
    f[i].fd = fd[i];
    fds__read_request__init(&req[i]);
    req[i].file = &f[i];
  }

  /* A blocking session: the generic call of the method does the same. */
  ackrpc_session *session = NULL;
  cr_assert_eq(ackrpc_session_open(client, 5000, &session), ACKRPC_OK);
  for (int i = 0; i < 3; i++) {
    ackrpc_result result = {0};
    cr_assert_eq(ackrpc_session_call(session, &fds__Files_Read_method, &req[i].base,
                                     NULL, &result),
                 ACKRPC_OK);
    const Fds__ReadReply *rep = (const Fds__ReadReply *)result.reply;
    cr_assert_eq(memcmp(rep->content.data, want[i], strlen(want[i])), 0);
    ackrpc_result_clear(&result);
  }
  ackrpc_session_close(session);

  /* Pipelined: three frames written at once, each with its descriptor. */
  struct event_base *base = event_base_new();
  ackrpc_async_session *as = NULL;
  read_seen seen[3];
  memset(seen, 0, sizeof seen);
  cr_assert_eq(ackrpc_async_session_open(client, base, &as), ACKRPC_OK);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(ackrpc_async_session_call(as, &fds__Files_Read_method, &req[i].base,
                                           NULL, read_done, &seen[i]),
                 ACKRPC_OK);
  ackrpc_async_session_close(as);
  cr_assert_neq(event_base_dispatch(base), -1);
  event_base_free(base);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(seen[i].status, ACKRPC_OK);
    cr_assert_str_eq(seen[i].content, want[i]);
  }
  expect_fds(before);
  for (int i = 0; i < 3; i++)
    close(fd[i]);
  serve_stop(&s);
}

/* --- What is refused --- */

/* A raw call of `method` with `body` (a packed message whose Fd fields hold
 * indices) and descriptors fds[0..n). */
static ackrpc_status raw_call(ackrpc_client *client, const char *method,
                              const ProtobufCMessage *body, const int *fds, size_t n,
                              ackrpc_result *result) {
  uint8_t buf[256];
  size_t len = protobuf_c_message_pack(body, buf);
  ackrpc_call_options o = {.fds = fds, .n_fds = n};
  memset(result, 0, sizeof *result);
  return ackrpc_client_call_raw(client, method, buf, len, &o, result);
}

FX_TEST(gen_fds, requests_whose_fields_do_not_match_are_refused) {
  served s;
  serve_start(&s);
  ackrpc_client *client = fx_client(fx_sock(), 5000);
  int x = file_with("x", "x"), y = file_with("y", "y");
  int two[2] = {x, y};
  int before = fx_fd_count();
  unsigned ran = atomic_load(&handled);
  ackrpc_result r;
  Ackrpc__Fd i0 = ACKRPC__FD__INIT, i5 = ACKRPC__FD__INIT;
  i5.fd = 5;
  Fds__ReadRequest read = FDS__READ_REQUEST__INIT;
  Fds__CatRequest cat = FDS__CAT_REQUEST__INIT;

  /* Index 5 when 1 came. */
  read.file = &i5;
  cr_assert_eq(raw_call(client, "fds.Files/Read", &read.base, two, 1, &r),
               ACKRPC_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(r.message, "names descriptor 5"), "%s", r.message);
  ackrpc_result_clear(&r);
  /* The Fd field missing, with and without a descriptor. */
  read.file = NULL;
  cr_assert_eq(raw_call(client, "fds.Files/Read", &read.base, two, 1, &r),
               ACKRPC_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(r.message, "missing"), "%s", r.message);
  ackrpc_result_clear(&r);
  cr_assert_eq(raw_call(client, "fds.Files/Read", &read.base, NULL, 0, &r),
               ACKRPC_INVALID_ARGUMENT);
  ackrpc_result_clear(&r);
  /* More than the method takes (one singular field). */
  read.file = &i0;
  cr_assert_eq(raw_call(client, "fds.Files/Read", &read.base, two, 2, &r),
               ACKRPC_INVALID_ARGUMENT);
  ackrpc_result_clear(&r);
  /* Index 5 when 2 came (a method that takes several). */
  Ackrpc__Fd *five[] = {&i5, &i0};
  cat.files = five;
  cat.n_files = 2;
  cr_assert_eq(raw_call(client, "fds.Files/Cat", &cat.base, two, 2, &r),
               ACKRPC_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(r.message, "names descriptor 5, but 2 came"), "%s",
                     r.message);
  ackrpc_result_clear(&r);
  /* The same index twice; a descriptor no field names. */
  Ackrpc__Fd *twice[] = {&i0, &i0};
  cat.files = twice;
  cat.n_files = 2;
  cr_assert_eq(raw_call(client, "fds.Files/Cat", &cat.base, two, 2, &r),
               ACKRPC_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(r.message, "twice"), "%s", r.message);
  ackrpc_result_clear(&r);
  cat.n_files = 1;
  cr_assert_eq(raw_call(client, "fds.Files/Cat", &cat.base, two, 2, &r),
               ACKRPC_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(r.message, "no field"), "%s", r.message);
  ackrpc_result_clear(&r);
  /* A method that declares no Fd field takes none. */
  Fds__OpenRequest plain = FDS__OPEN_REQUEST__INIT;
  cr_assert_eq(raw_call(client, "fds.Files/Plain", &plain.base, two, 1, &r),
               ACKRPC_INVALID_ARGUMENT);
  ackrpc_result_clear(&r);
  cr_assert_eq(atomic_load(&handled), ran, "no handler ran");

  /* Refused by the client, nothing sent: an empty or negative field. */
  read.file = NULL;
  cr_assert_eq(fds__Files_Read_call(client, &read, NULL, NULL, &r), ACKRPC_E_INVAL);
  ackrpc_result_clear(&r);
  i0.fd = -1;
  read.file = &i0;
  cr_assert_eq(fds__Files_Read_call(client, &read, NULL, NULL, &r), ACKRPC_E_INVAL);
  ackrpc_result_clear(&r);
  /* Descriptors both in the fields and in the options. */
  i0.fd = x;
  ackrpc_call_options o = {.fds = &y, .n_fds = 1};
  cr_assert_eq(fds__Files_Read_call(client, &read, NULL, &o, &r), ACKRPC_E_INVAL);
  ackrpc_result_clear(&r);
  cr_assert_eq(atomic_load(&handled), ran);

  /* The server still serves, and every refused descriptor was closed. */
  Fds__ReadReply *rep = NULL;
  cr_assert_eq(fds__Files_Read_call(client, &read, &rep, NULL, NULL), ACKRPC_OK);
  cr_assert_eq(rep->content.len, 1);
  fds__read_reply__free_unpacked(rep, NULL);
  expect_fds(before);
  close(x);
  close(y);
  serve_stop(&s);
}

#ifdef GEN_ACKRPC_CLI
#include <sys/wait.h>

/* Runs the ackrpc tool with `args` (shell words); returns its exit status,
 * with its output (stdout and stderr) in `out`. */
static int run_cli(const char *args, char *out, size_t size) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", GEN_ACKRPC_CLI, args);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  size_t n = fread(out, 1, size - 1, p);
  out[n] = '\0';
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ackrpc call --fd N=PATH sends the file; the reply's descriptors are
 * described and closed. */
FX_TEST(gen_fds, cli_passes_and_describes_descriptors) {
  served s;
  char args[1024], out[4096];
  serve_start(&s);
  close(file_with("f.txt", "contents of f"));
  int before = fx_fd_count();
  snprintf(args, sizeof args, "call --fd 0='%s' '%s' fds.Files/Read '{\"file\": {}}'",
           fx_path("f.txt"), fx_sock());
  cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, "\"Y29udGVudHMgb2YgZg==\""), "base64 of the file: %s", out);
  snprintf(args, sizeof args, "call '%s' fds.Files/Open '{\"text\": \"hello\"}'",
           fx_sock());
  cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, "reply descriptor 0: pipe"), "%s", out);
  cr_assert(strstr(out, "\"size\":\"5\""), "%s", out);
  /* A gap in the numbers; a method that takes none. */
  snprintf(args, sizeof args, "call --fd 1='%s' '%s' fds.Files/Read '{\"file\": {}}'",
           fx_path("f.txt"), fx_sock());
  cr_assert_eq(run_cli(args, out, sizeof out), 64, "%s", out);
  cr_assert(strstr(out, "--fd 0 is missing"), "%s", out);
  snprintf(args, sizeof args, "call --fd 0='%s' '%s' fds.Files/Plain '{}'",
           fx_path("f.txt"), fx_sock());
  cr_assert_eq(run_cli(args, out, sizeof out), ACKRPC_INVALID_ARGUMENT, "%s", out);
  expect_fds(before);
  serve_stop(&s);
}
#endif
