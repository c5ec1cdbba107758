/* test_integration_fds.c: descriptors passed with requests
 * (docs/PROTOCOL.md §2.5) between a real client and a real server: one-shot
 * calls, sessions and pipelines each deliver a call's own descriptors; a
 * method that takes none, more than the limits, a count that does not match
 * and descriptors inside a frame are refused and never dispatched; nothing
 * leaks (fx_finish() compares the process's descriptors with setup, and
 * this test runs under valgrind --track-fds). */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixture.h"

FX_SUITE(fds);

#define FD_READ "ackrpc.test.Fd/Read"
#define FD_NONE "ackrpc.test.Fd/None"

static const ackrpc_method read_method = {FD_READ,
                                          &ackrpc__test__echo_request__descriptor,
                                          &ackrpc__test__echo_reply__descriptor};
static const ackrpc_method none_method = {FD_NONE,
                                          &ackrpc__test__echo_request__descriptor,
                                          &ackrpc__test__echo_reply__descriptor};

static atomic_uint handled;

/* Reads what each descriptor holds (the client wrote into pipes whose read
 * ends it sent) and answers it: text = the contents joined by '|',
 * metadata_count = how many came, meta = "cloexec" if all were
 * close-on-exec. With user set, takes none: the library must close them. */
static void read_handler(ackrpc_call *call, const ProtobufCMessage *request,
                         void *user) {
  (void)request;
  atomic_fetch_add(&handled, 1);
  char text[256] = "";
  size_t used = 0;
  int cloexec = 1;
  size_t n = ackrpc_call_fd_count(call);
  for (size_t i = 0; i < n && !user; i++) {
    int fd = ackrpc_call_take_fd(call, i);
    if (fd < 0) continue;
    if (ackrpc_call_take_fd(call, i) != -1) cloexec = 0; /* taken twice: wrong */
    if (!(fcntl(fd, F_GETFD) & FD_CLOEXEC)) cloexec = 0;
    char buf[64];
    ssize_t got = read(fd, buf, sizeof buf);
    if (got < 0) got = 0;
    used += (size_t)snprintf(text + used, sizeof text - used, "%s%.*s", i ? "|" : "",
                             (int)got, buf);
    close(fd);
  }
  Ackrpc__Test__EchoReply rep = ACKRPC__TEST__ECHO_REPLY__INIT;
  rep.text = text;
  rep.metadata_count = (uint32_t)n;
  rep.meta = cloexec ? "cloexec" : "inheritable";
  ackrpc_call_reply(call, ACKRPC_OK, NULL, &rep.base);
}

/* Opens a pipe holding the request's text (or "from server") and hands its
 * read end to the client with the reply; with a text of "bad", a closed
 * descriptor instead. */
static void open_handler(ackrpc_call *call, const ProtobufCMessage *request,
                         void *user) {
  (void)user;
  const Ackrpc__Test__EchoRequest *req = (const Ackrpc__Test__EchoRequest *)request;
  const char *text = req->text && *req->text ? req->text : "from server";
  Ackrpc__Test__EchoReply rep = ACKRPC__TEST__ECHO_REPLY__INIT;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    ackrpc_call_reply(call, ACKRPC_INTERNAL, "pipe", NULL);
    return;
  }
  ssize_t w = write(p[1], text, strlen(text));
  (void)w;
  close(p[1]);
  if (strcmp(text, "bad") == 0) close(p[0]);
  ackrpc_call_reply_fds(call, ACKRPC_OK, NULL, &rep.base, &p[0], 1);
}

/* --- a server of our own, on a thread --- */

typedef struct srv {
  ackrpc_server *s;
  pthread_t thr;
} srv;

static void *srv_main(void *arg) {
  ackrpc_server_run(((srv *)arg)->s);
  return NULL;
}

/* FD_READ takes `read_fds`, FD_NONE none, FD_READ's twin "Fd/Keep" takes
 * them but leaves them to the library. */
static void srv_start(srv *v, unsigned max_per_call, unsigned read_fds) {
  ackrpc_server_options o = {.address = fx_sock(),
                             .max_fds_per_call = max_per_call,
                             .log = ackrpc_log_discard};
  cr_assert_eq(ackrpc_server_new(&o, &v->s), ACKRPC_OK);
  static const ackrpc_method keep = {"ackrpc.test.Fd/Keep",
                                     &ackrpc__test__echo_request__descriptor,
                                     &ackrpc__test__echo_reply__descriptor};
  cr_assert_eq(ackrpc_server_add_method(v->s, &read_method, read_handler, NULL),
               ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(v->s, &none_method, read_handler, NULL),
               ACKRPC_OK);
  cr_assert_eq(ackrpc_server_add_method(v->s, &keep, read_handler, v), ACKRPC_OK);
  static const ackrpc_method open_m = {"ackrpc.test.Fd/Open",
                                       &ackrpc__test__echo_request__descriptor,
                                       &ackrpc__test__echo_reply__descriptor};
  cr_assert_eq(ackrpc_server_add_method(v->s, &open_m, open_handler, NULL), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_set_method_fds(v->s, FD_READ, read_fds), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_set_method_fds(v->s, "ackrpc.test.Fd/Keep", read_fds),
               ACKRPC_OK);
  cr_assert_eq(ackrpc_server_set_method_fds(v->s, "no.Such/Method", 1),
               ACKRPC_E_NOT_FOUND);
  cr_assert_eq(ackrpc_server_set_method_fds(v->s, FD_READ, 254), ACKRPC_E_INVAL);
  cr_assert_eq(pthread_create(&v->thr, NULL, srv_main, v), 0);
}

static void srv_stop(srv *v) {
  ackrpc_server_stop(v->s);
  pthread_join(v->thr, NULL);
  v->s = ackrpc_server_free(v->s);
}

/* A pipe holding `text`, its write end kept open in w[i] (to see later
 * whether every copy of the read end was closed), the read end in r[i]. */
static void pipe_with(const char *text, int *r, int *w) {
  int p[2];
  cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
  cr_assert_eq(write(p[1], text, strlen(text)), (ssize_t)strlen(text));
  *r = p[0];
  *w = p[1];
}

/* Whether every copy of the pipe's read end is closed: a write then fails
 * with EPIPE. Closes the write end. */
static int reader_gone(int w) {
  int rc = (int)write(w, "x", 1);
  int e = errno;
  close(w);
  return rc < 0 && e == EPIPE;
}

static ackrpc_status call_with(ackrpc_client *c, const char *method, const int *fds,
                               size_t n, ackrpc_result *r) {
  const ackrpc_method m = {method, &ackrpc__test__echo_request__descriptor,
                           &ackrpc__test__echo_reply__descriptor};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_call_options o = {.fds = fds, .n_fds = n};
  return ackrpc_client_call(c, &m, &req.base, &o, r);
}

FX_TEST(fds, one_shot_delivers_in_order_cloexec_and_leaks_nothing) {
  signal(SIGPIPE, SIG_IGN);
  srv v;
  srv_start(&v, 0, 2);
  ackrpc_client *c = fx_client(fx_sock(), 0);
  int r[2], w[2];
  pipe_with("first", &r[0], &w[0]);
  pipe_with("second", &r[1], &w[1]);
  ackrpc_result res = {0};
  cr_assert_eq(call_with(c, FD_READ, r, 2, &res), ACKRPC_OK, "%s", res.message);
  const Ackrpc__Test__EchoReply *rep = fx_echo_reply(&res);
  cr_assert_str_eq(rep->text, "first|second");
  cr_assert_eq(rep->metadata_count, 2);
  cr_assert_str_eq(rep->meta, "cloexec");
  ackrpc_result_clear(&res);
  /* Borrowed: the client's copies are still open and still ours. */
  cr_assert_geq(fcntl(r[0], F_GETFD), 0);
  close(r[0]);
  close(r[1]);
  cr_assert(reader_gone(w[0]) && reader_gone(w[1]), "the server kept a copy");
  srv_stop(&v);
}

FX_TEST(fds, untaken_descriptors_are_closed_by_the_library) {
  signal(SIGPIPE, SIG_IGN);
  srv v;
  srv_start(&v, 0, 2);
  ackrpc_client *c = fx_client(fx_sock(), 0);
  int r, w;
  pipe_with("kept", &r, &w);
  ackrpc_result res = {0};
  cr_assert_eq(call_with(c, "ackrpc.test.Fd/Keep", &r, 1, &res), ACKRPC_OK, "%s",
               res.message);
  cr_assert_eq(fx_echo_reply(&res)->metadata_count, 1);
  ackrpc_result_clear(&res);
  close(r);
  /* The call has ended once its reply is out; give the loop a moment. */
  int gone = 0;
  for (int i = 0; i < 200 && !gone; i++) {
    int d = dup(w);
    gone = reader_gone(d);
    if (!gone) fx_sleep_ms(5);
  }
  close(w);
  cr_assert(gone, "a descriptor the handler did not take was left open");
  srv_stop(&v);
}

FX_TEST(fds, a_method_that_takes_none_refuses_them_undispatched) {
  signal(SIGPIPE, SIG_IGN);
  srv v;
  srv_start(&v, 0, 2);
  ackrpc_client *c = fx_client(fx_sock(), 0);
  int r, w;
  pipe_with("no", &r, &w);
  unsigned before = atomic_load(&handled);
  ackrpc_result res = {0};
  cr_assert_eq(call_with(c, FD_NONE, &r, 1, &res), ACKRPC_INVALID_ARGUMENT);
  ackrpc_result_clear(&res);
  cr_assert_eq(atomic_load(&handled), before, "dispatched anyway");
  close(r);
  cr_assert(reader_gone(w), "the refused descriptor was not closed");
  /* Without descriptors the same method works. */
  cr_assert_eq(call_with(c, FD_NONE, NULL, 0, &res), ACKRPC_OK);
  ackrpc_result_clear(&res);
  srv_stop(&v);
}

FX_TEST(fds, over_the_method_and_the_server_limits) {
  signal(SIGPIPE, SIG_IGN);
  srv v;
  srv_start(&v, 3, 2);
  ackrpc_client *c = fx_client(fx_sock(), 0);
  int r[5], w[5];
  for (int i = 0; i < 5; i++)
    pipe_with("x", &r[i], &w[i]);
  unsigned before = atomic_load(&handled);
  ackrpc_result res = {0};
  /* 3: within the server's 3, over the method's 2. */
  cr_assert_eq(call_with(c, FD_READ, r, 3, &res), ACKRPC_INVALID_ARGUMENT);
  ackrpc_result_clear(&res);
  /* 5: over the server's 3; the kernel cuts them (MSG_CTRUNC). */
  cr_assert_eq(call_with(c, FD_READ, r, 5, &res), ACKRPC_RESOURCE_EXHAUSTED, "%s",
               res.message);
  ackrpc_result_clear(&res);
  cr_assert_eq(atomic_load(&handled), before, "dispatched anyway");
  for (int i = 0; i < 5; i++) {
    close(r[i]);
    cr_assert(reader_gone(w[i]), "descriptor %d of a refused call left open", i);
  }
  /* A closed descriptor is the caller's error: nothing is sent. */
  int closed = r[0];
  cr_assert_eq(call_with(c, FD_READ, &closed, 1, &res), ACKRPC_E_INVAL);
  ackrpc_result_clear(&res);
  srv_stop(&v);
}

FX_TEST(fds, sessions_give_each_call_its_own) {
  srv v;
  srv_start(&v, 0, 1);
  ackrpc_client *c = fx_client(fx_sock(), 0);
  ackrpc_session *sess;
  cr_assert_eq(ackrpc_session_open(c, 0, &sess), ACKRPC_OK);
  const char *words[] = {"alpha", "", "gamma", "delta"};
  for (int i = 0; i < 4; i++) {
    int r = -1, w = -1;
    if (*words[i]) pipe_with(words[i], &r, &w);
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    ackrpc_call_options o = {.fds = &r, .n_fds = *words[i] ? 1 : 0};
    ackrpc_result res = {0};
    cr_assert_eq(ackrpc_session_call(sess, &read_method, &req.base, &o, &res),
                 ACKRPC_OK);
    cr_assert_str_eq(fx_echo_reply(&res)->text, words[i]);
    ackrpc_result_clear(&res);
    if (r >= 0) close(r);
    if (w >= 0) close(w);
  }
  ackrpc_session_close(sess);
  srv_stop(&v);
}

/* --- pipelines --- */

typedef struct pcall {
  int done;
  ackrpc_status status;
  char text[32];
} pcall;

static void on_done(ackrpc_result *r, void *user) {
  pcall *p = user;
  p->done = 1;
  p->status = r->status;
  if (r->reply)
    snprintf(p->text, sizeof p->text, "%s",
             ((const Ackrpc__Test__EchoReply *)r->reply)->text);
}

FX_TEST(fds, pipelined_frames_keep_their_own_descriptors) {
  srv v;
  srv_start(&v, 0, 2);
  ackrpc_client *c = fx_client(fx_sock(), 0);
  struct event_base *base = event_base_new();
  ackrpc_async_session *as;
  cr_assert_eq(ackrpc_async_session_open(c, base, &as), ACKRPC_OK);
  enum { N = 12 };
  static uint8_t blob[256 << 10];
  pcall calls[N] = {0};
  int r[N][2], w[N][2];
  for (int i = 0; i < N; i++) {
    char a[16], b[16];
    snprintf(a, sizeof a, "a%d", i);
    snprintf(b, sizeof b, "b%d", i);
    pipe_with(a, &r[i][0], &w[i][0]);
    pipe_with(b, &r[i][1], &w[i][1]);
    /* Every third call passes none, so frames with and without
     * descriptors follow one another on the wire; those are large, so
     * that a send taking one and the next frame would be cut into several
     * socket buffers (the descriptors must start their own send). */
    size_t n = i % 3 == 2 ? 0 : (size_t)(i % 3 + 1);
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    if (!n) {
      req.blob.data = blob;
      req.blob.len = sizeof blob;
    }
    ackrpc_call_options o = {.fds = r[i], .n_fds = n};
    cr_assert_eq(
        ackrpc_async_session_call(as, &read_method, &req.base, &o, on_done, &calls[i]),
        ACKRPC_OK);
  }
  uint64_t end = fx_now_us() + 10 * fx_slack_us();
  int all = 0;
  while (!all && fx_now_us() < end) {
    event_base_loop(base, EVLOOP_ONCE);
    all = 1;
    for (int i = 0; i < N; i++)
      all &= calls[i].done;
  }
  cr_assert(all, "pipelined calls did not complete");
  for (int i = 0; i < N; i++) {
    char want[32];
    int k = i % 3;
    if (k == 0) snprintf(want, sizeof want, "a%d", i);
    if (k == 1) snprintf(want, sizeof want, "a%d|b%d", i, i);
    if (k == 2) want[0] = 0;
    cr_assert_eq(calls[i].status, ACKRPC_OK, "call %d", i);
    cr_assert_str_eq(calls[i].text, want, "call %d got another call's descriptors", i);
  }
  ackrpc_async_session_close(as);
  for (int i = 0; i < 50; i++)
    event_base_loop(base, EVLOOP_NONBLOCK);
  event_base_free(base);
  for (int i = 0; i < N; i++)
    for (int j = 0; j < 2; j++) {
      close(r[i][j]);
      close(w[i][j]);
    }
  srv_stop(&v);
}

/* --- hostile peers, with raw sockets --- */

/* A request frame for `method` whose head says fd_count = `count`, with an
 * empty EchoRequest; malloc'd. */
static size_t frame_counting(uint8_t **ret, const char *method, unsigned count) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  enum { CAP = 512 };
  *ret = malloc(CAP);
  cr_assert_not_null(*ret);
  return fx_frame_request_fds(*ret, CAP, method, count, 0, &req.base);
}

static void send_with(int s, const uint8_t *buf, size_t len, const int *fds, size_t n) {
  cr_assert_eq(fx_raw_send_fds(s, buf, len, fds, n), 0);
}

/* Sends `parts` as separate sendmsg() calls, descriptors with part
 * `with`, then a plain FD_NONE frame, half-closes, and returns the
 * statuses of the replies (up to 4; *ret_n of them). */
static void hostile(const uint8_t *const *parts, const size_t *lens, size_t n_parts,
                    size_t with, const int *fds, size_t n_fds, uint32_t *ret_st,
                    size_t *ret_n) {
  int s = fx_raw_connect(fx_sock());
  cr_assert_geq(s, 0);
  for (size_t i = 0; i < n_parts; i++) {
    /* Apart, so that the server reads them apart: a read that takes both
     * gets the descriptors with the frame's first byte after all. */
    if (i) fx_sleep_ms(100);
    send_with(s, parts[i], lens[i], fds, i == with ? n_fds : 0);
  }
  uint8_t *ok;
  size_t ok_len = frame_counting(&ok, FD_NONE, 0);
  send_with(s, ok, ok_len, NULL, 0);
  free(ok);
  shutdown(s, SHUT_WR);
  size_t len;
  int eof;
  uint8_t *in = fx_raw_read_all(s, 5000, &len, &eof);
  close(s);
  *ret_n = 0;
  size_t off = 0, used;
  while (*ret_n < 4 && (used = fx_parse_reply(in + off, len - off, &ret_st[*ret_n],
                                              NULL, NULL, NULL))) {
    off += used;
    (*ret_n)++;
  }
}

FX_TEST(fds, counts_that_do_not_match_and_misplaced_descriptors_are_refused) {
  signal(SIGPIPE, SIG_IGN);
  srv v;
  srv_start(&v, 0, 2);
  int r[2], w[2];
  pipe_with("p", &r[0], &w[0]);
  pipe_with("q", &r[1], &w[1]);
  unsigned before = atomic_load(&handled);
  uint32_t st[4];
  size_t n;

  /* The head says 2, one came. */
  uint8_t *f;
  size_t len = frame_counting(&f, FD_READ, 2);
  const uint8_t *parts[2] = {f, NULL};
  size_t lens[2] = {len, 0};
  hostile(parts, lens, 1, 0, r, 1, st, &n);
  cr_assert_eq(n, 2, "the session must go on after the refusal");
  cr_assert_eq(st[0], ACKRPC_INVALID_ARGUMENT);
  cr_assert_eq(st[1], ACKRPC_OK);
  free(f);

  /* The head says none, two came. */
  len = frame_counting(&f, FD_READ, 0);
  parts[0] = f;
  lens[0] = len;
  hostile(parts, lens, 1, 0, r, 2, st, &n);
  cr_assert_eq(n, 2);
  cr_assert_eq(st[0], ACKRPC_INVALID_ARGUMENT);
  cr_assert_eq(st[1], ACKRPC_OK);
  free(f);

  /* The count is right, but they came with bytes inside the frame, not
   * with its first byte. */
  len = frame_counting(&f, FD_READ, 1);
  parts[0] = f;
  lens[0] = 5;
  parts[1] = f + 5;
  lens[1] = len - 5;
  hostile(parts, lens, 2, 1, r, 1, st, &n);
  cr_assert_eq(n, 2);
  cr_assert_eq(st[0], ACKRPC_INVALID_ARGUMENT);
  cr_assert_eq(st[1], ACKRPC_OK);

  /* The same frame with its descriptors at its first byte is served. */
  parts[0] = f;
  lens[0] = len;
  hostile(parts, lens, 1, 0, r, 1, st, &n);
  cr_assert_eq(n, 2);
  cr_assert_eq(st[0], ACKRPC_OK);
  free(f);

  /* The one served frame, and the plain FD_NONE frame after each of 4. */
  cr_assert_eq(atomic_load(&handled), before + 5, "a refused frame was dispatched");
  for (int i = 0; i < 2; i++) {
    close(r[i]);
    cr_assert(reader_gone(w[i]), "descriptor %d left open by the server", i);
  }
  srv_stop(&v);
}

/* --- descriptors in replies --- */

static const ackrpc_method open_method = {"ackrpc.test.Fd/Open",
                                          &ackrpc__test__echo_request__descriptor,
                                          &ackrpc__test__echo_reply__descriptor};

/* Reads what the reply's descriptor `i` holds, and closes it. */
static void read_reply_fd(ackrpc_result *res, size_t i, char *out, size_t cap) {
  cr_assert_lt(i, res->n_fds);
  int fd = res->fds[i];
  res->fds[i] = -1; /* taken */
  cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC, "a received descriptor is inheritable");
  ssize_t n = read(fd, out, cap - 1);
  out[n > 0 ? n : 0] = 0;
  close(fd);
}

FX_TEST(fds, replies_carry_descriptors_to_a_client_that_takes_them) {
  srv v;
  srv_start(&v, 0, 1);
  ackrpc_client *c = fx_client(fx_sock(), 0);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  ackrpc_call_options o = {.max_reply_fds = 1};
  ackrpc_result res = {0};
  char got[64];
  cr_assert_eq(ackrpc_client_call(c, &open_method, &req.base, &o, &res), ACKRPC_OK,
               "%s", res.message);
  cr_assert_eq(res.n_fds, 1);
  read_reply_fd(&res, 0, got, sizeof got);
  cr_assert_str_eq(got, "from server");
  ackrpc_result_clear(&res);

  /* Not taken: ackrpc_result_clear() closes it (fx_finish counts). */
  cr_assert_eq(ackrpc_client_call(c, &open_method, &req.base, &o, &res), ACKRPC_OK);
  cr_assert_eq(res.n_fds, 1);
  ackrpc_result_clear(&res);

  /* A client that accepts none: E_BAD_REPLY, and nothing is left open. */
  cr_assert_eq(ackrpc_client_call(c, &open_method, &req.base, NULL, &res),
               ACKRPC_E_BAD_REPLY);
  cr_assert_null(res.fds);
  ackrpc_result_clear(&res);

  /* A handler that passes a closed descriptor: INTERNAL, without any. */
  req.text = "bad";
  cr_assert_eq(ackrpc_client_call(c, &open_method, &req.base, &o, &res),
               ACKRPC_INTERNAL);
  cr_assert_eq(res.n_fds, 0);
  ackrpc_result_clear(&res);

  /* In a session, each reply brings its own. */
  ackrpc_session *sess;
  cr_assert_eq(ackrpc_session_open(c, 0, &sess), ACKRPC_OK);
  for (int i = 0; i < 3; i++) {
    char text[16];
    snprintf(text, sizeof text, "s%d", i);
    req.text = text;
    cr_assert_eq(ackrpc_session_call(sess, &open_method, &req.base, &o, &res),
                 ACKRPC_OK);
    read_reply_fd(&res, 0, got, sizeof got);
    cr_assert_str_eq(got, text);
    ackrpc_result_clear(&res);
  }
  ackrpc_session_close(sess);
  srv_stop(&v);
}

typedef struct rcall {
  int done;
  ackrpc_status status;
  char text[32];
} rcall;

static void on_reply_fd(ackrpc_result *r, void *user) {
  rcall *p = user;
  p->done = 1;
  p->status = r->status;
  if (r->n_fds == 1) {
    ssize_t n = read(r->fds[0], p->text, sizeof p->text - 1);
    p->text[n > 0 ? n : 0] = 0;
  }
  /* The result is cleared after this returns: its descriptor closed. */
}

FX_TEST(fds, pipelined_replies_keep_their_own_descriptors) {
  srv v;
  srv_start(&v, 0, 1);
  ackrpc_client *c = fx_client(fx_sock(), 0);
  struct event_base *base = event_base_new();
  ackrpc_async_session *as;
  cr_assert_eq(ackrpc_async_session_open(c, base, &as), ACKRPC_OK);
  enum { N = 12 };
  rcall calls[N] = {0};
  char texts[N][16];
  for (int i = 0; i < N; i++) {
    snprintf(texts[i], sizeof texts[i], "r%d", i);
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    req.text = texts[i];
    /* Replies with descriptors between replies without. */
    const ackrpc_method *m = i % 3 == 2 ? &read_method : &open_method;
    ackrpc_call_options o = {.max_reply_fds = 1};
    cr_assert_eq(
        ackrpc_async_session_call(as, m, &req.base, &o, on_reply_fd, &calls[i]),
        ACKRPC_OK);
  }
  uint64_t end = fx_now_us() + 10 * fx_slack_us();
  int all = 0;
  while (!all && fx_now_us() < end) {
    event_base_loop(base, EVLOOP_ONCE);
    all = 1;
    for (int i = 0; i < N; i++)
      all &= calls[i].done;
  }
  cr_assert(all, "pipelined calls did not complete");
  for (int i = 0; i < N; i++) {
    cr_assert_eq(calls[i].status, ACKRPC_OK, "call %d", i);
    cr_assert_str_eq(calls[i].text, i % 3 == 2 ? "" : texts[i],
                     "call %d got another reply's descriptor", i);
  }
  ackrpc_async_session_close(as);
  for (int i = 0; i < 50; i++)
    event_base_loop(base, EVLOOP_NONBLOCK);
  event_base_free(base);
  srv_stop(&v);
}
