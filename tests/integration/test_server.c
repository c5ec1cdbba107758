/* test_server.c: the server's addresses (abstract names, stale, live and
 * foreign files, long paths, socket modes), its API contract on misuse, a
 * server attached to the caller's event_base, freeing with calls still held,
 * and stopping from a signal handler. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "fixture.h"

FX_SUITE(server);

static void ignore_call(ackrpc_call *call, const ProtobufCMessage *req, void *user) {
  (void)req;
  (void)user;
  ackrpc_call_reply(call, ACKRPC_OK, NULL, NULL);
}

static ackrpc_server *const SENTINEL = (ackrpc_server *)0x1;

static void bind_and_close(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  cr_assert_geq(fd, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  close(fd);
}

static mode_t file_mode(const char *path) {
  struct stat st;
  cr_assert_eq(lstat(path, &st), 0, "stat %s: %s", path, strerror(errno));
  cr_assert(S_ISSOCK(st.st_mode), "%s is not a socket", path);
  return st.st_mode & 07777;
}

static int dir_is_empty(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", dir);
  return system(cmd) == 0;
}

FX_TEST(server, abstract_address) {
  const char *name = fx_abstract();
  ackrpc_server_options o = {.address = name};
  fx_server *fs = fx_server_start(&o);
  ackrpc_client *c = fx_client(name, 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "abstract";
  ackrpc_result r = {0};
  cr_assert_eq(fx_echo(c, &req, NULL, &r), ACKRPC_OK);
  cr_assert_str_eq(fx_echo_reply(&r)->text, "abstract");
  ackrpc_result_clear(&r);
  cr_assert(dir_is_empty(fx_dir()));
  struct stat st;
  cr_assert_neq(lstat(name, &st), 0, "an abstract address created a file \"%s\"", name);

  /* Taken while the server lives ... */
  ackrpc_server *s2 = SENTINEL;
  ackrpc_server_options o2 = {.address = name, .log = ackrpc_log_discard};
  cr_assert_eq(ackrpc_server_new(&o2, &s2), ACKRPC_E_ADDR_IN_USE);
  cr_assert_eq(s2, SENTINEL, "*ret_server touched on failure");
  /* ... and free again once it is gone. */
  fx_server_stop(fs);
  cr_assert_eq(ackrpc_server_new(&o2, &s2), ACKRPC_OK, "the abstract name was not released");
  ackrpc_server_free(s2);
}

FX_TEST(server, stale_socket_file_is_replaced) {
  bind_and_close(fx_sock());
  struct stat st;
  cr_assert_eq(lstat(fx_sock(), &st), 0);
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK);
}

FX_TEST(server, live_socket_is_not_taken_over) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server_start(&o);
  ackrpc_server *s2 = SENTINEL;
  ackrpc_server_options o2 = {.address = fx_sock(), .log = ackrpc_log_discard};
  cr_assert_eq(ackrpc_server_new(&o2, &s2), ACKRPC_E_ADDR_IN_USE);
  cr_assert_eq(s2, SENTINEL, "*ret_server touched on failure");
  struct stat st;
  cr_assert_eq(lstat(fx_sock(), &st), 0, "the failed server removed the live server's file");
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "first";
  ackrpc_result r = {0};
  cr_assert_eq(fx_echo(c, &req, NULL, &r), ACKRPC_OK, "the first server no longer answers");
  cr_assert_str_eq(fx_echo_reply(&r)->text, "first");
  ackrpc_result_clear(&r);
}

FX_TEST(server, regular_file_is_not_removed) {
  const char *p = fx_sock();
  FILE *f = fopen(p, "w");
  cr_assert_not_null(f);
  fputs("keep me", f);
  fclose(f);
  ackrpc_server *s = SENTINEL;
  ackrpc_server_options o = {.address = p, .log = ackrpc_log_discard};
  cr_assert_eq(ackrpc_server_new(&o, &s), ACKRPC_E_EXISTS);
  cr_assert_eq(s, SENTINEL);
  char buf[32] = "";
  f = fopen(p, "r");
  cr_assert_not_null(f, "the regular file was removed");
  cr_assert_not_null(fgets(buf, sizeof buf, f));
  fclose(f);
  cr_assert_str_eq(buf, "keep me");
}

FX_TEST(server, too_long_path) {
  char p[300];
  memset(p, 'a', sizeof p);
  memcpy(p, "/tmp/", 5);
  size_t lens[] = {sizeof(((struct sockaddr_un *)0)->sun_path), 200, 299};
  for (size_t i = 0; i < 3; i++) {
    p[lens[i]] = 0;
    ackrpc_server *s = SENTINEL;
    ackrpc_server_options o = {.address = p, .log = ackrpc_log_discard};
    cr_assert_eq(ackrpc_server_new(&o, &s), ACKRPC_E_ADDRESS, "a %zu-byte path", lens[i]);
    cr_assert_eq(s, SENTINEL);
    ackrpc_client *c = (ackrpc_client *)0x1;
    ackrpc_client_options co = {.address = p};
    cr_assert_eq(ackrpc_client_new(&co, &c), ACKRPC_E_ADDRESS, "client, a %zu-byte path", lens[i]);
    cr_assert_eq(c, (ackrpc_client *)0x1);
    p[lens[i]] = 'a';
  }
}

FX_TEST(server, socket_mode_default_0600) {
  umask(0); /* the file is never wider than asked, whatever the umask */
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server_start(&o);
  mode_t m = file_mode(fx_sock());
  cr_assert_eq(m, 0600, "mode %o", (unsigned)m);
}

FX_TEST(server, socket_mode_is_honoured) {
  umask(022);
  ackrpc_server_options o = {.address = fx_sock(), .socket_mode = 0660};
  fx_server_start(&o);
  mode_t m = file_mode(fx_sock());
  cr_assert_eq(m, 0660, "socket_mode 0660 under umask 022 gave %o", (unsigned)m);
  umask(0);
  ackrpc_server_options o2 = {.address = fx_path("b.sock"), .socket_mode = 0640};
  fx_server_start(&o2);
  m = file_mode(o2.address);
  cr_assert_eq(m, 0640, "socket_mode 0640 under umask 0 gave %o", (unsigned)m);
}

FX_TEST(server, new_rejects_bad_arguments) {
  ackrpc_server *s = SENTINEL;
  ackrpc_server_options o = {.address = fx_sock()};
  cr_assert_eq(ackrpc_server_new(NULL, &s), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_server_new(&o, NULL), ACKRPC_E_INVAL);
  ackrpc_server_options none = {0};
  cr_assert_eq(ackrpc_server_new(&none, &s), ACKRPC_E_INVAL);
  ackrpc_server_options empty = {.address = ""};
  ackrpc_status st = ackrpc_server_new(&empty, &s);
  cr_assert(st == ACKRPC_E_INVAL || st == ACKRPC_E_ADDRESS, "empty address: %s",
            ackrpc_status_name(st));
  cr_assert_eq(s, SENTINEL);
  struct stat sb;
  cr_assert_neq(lstat(fx_sock(), &sb), 0, "a failed ackrpc_server_new left a file");
}

FX_TEST(server, add_method_contract) {
  ackrpc_server_options o = {.address = fx_sock()};
  ackrpc_server *s = NULL;
  cr_assert_eq(ackrpc_server_new(&o, &s), ACKRPC_OK);
  const ProtobufCMessageDescriptor *rq = &ackrpc__test__echo_request__descriptor;
  const ProtobufCMessageDescriptor *rp = &ackrpc__test__echo_reply__descriptor;
  ackrpc_method good = {"pkg.Svc/Method", rq, rp};
  cr_assert_eq(ackrpc_server_add_method(NULL, &good, ignore_call, NULL), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_server_add_method(s, NULL, ignore_call, NULL), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_server_add_method(s, &good, NULL, NULL), ACKRPC_E_INVAL);
  const char *bad[] = {"", "noslash", "/Method", "pkg.Svc/", "pkg.Svc/Me thod", "a/b/c",
                       "pkg..Svc/M", "pkg.Svc/M\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ackrpc_method m = {bad[i], rq, rp};
    cr_assert_eq(ackrpc_server_add_method(s, &m, ignore_call, NULL), ACKRPC_E_INVAL,
                 "malformed name \"%s\" accepted", bad[i]);
  }
  ackrpc_method nullname = {NULL, rq, rp};
  cr_assert_eq(ackrpc_server_add_method(s, &nullname, ignore_call, NULL), ACKRPC_E_INVAL);
  ackrpc_method noreq = {"pkg.Svc/NoReq", NULL, rp};
  cr_assert_eq(ackrpc_server_add_method(s, &noreq, ignore_call, NULL), ACKRPC_E_INVAL);
  ackrpc_method norep = {"pkg.Svc/NoRep", rq, NULL};
  cr_assert_eq(ackrpc_server_add_method(s, &norep, ignore_call, NULL), ACKRPC_E_INVAL);

  /* The method description may be a temporary: the server copies it. */
  char *name = strdup("pkg.Svc/Method");
  ackrpc_method tmp = {name, rq, rp};
  cr_assert_eq(ackrpc_server_add_method(s, &tmp, ignore_call, NULL), ACKRPC_OK);
  memset(name, 'x', strlen(name));
  free(name);
  cr_assert_eq(ackrpc_server_add_method(s, &good, ignore_call, NULL), ACKRPC_E_EXISTS);
  ackrpc_method other = {"pkg.Svc/Other", rq, rp};
  cr_assert_eq(ackrpc_server_add_method(s, &other, ignore_call, NULL), ACKRPC_OK);
  cr_assert_null(ackrpc_server_free(s));
}

FX_TEST(server, null_handles) {
  cr_assert_null(ackrpc_server_free(NULL));
  ackrpc_server_stop(NULL);
  cr_assert_eq(ackrpc_server_run(NULL), ACKRPC_E_INVAL);
  cr_assert_null(ackrpc_client_free(NULL));
  ackrpc_result_clear(NULL);
}

/* --- A server on the caller's event_base --- */

struct async_state {
  struct event_base *base;
  ackrpc_server *srv;
  int done;
  ackrpc_status status;
  char text[64];
};

static void attached_done(ackrpc_result *r, void *user) {
  struct async_state *a = user;
  a->done++;
  a->status = r->status;
  if (r->reply && r->reply->descriptor == &ackrpc__test__echo_reply__descriptor)
    snprintf(a->text, sizeof a->text, "%s", ((Ackrpc__Test__EchoReply *)r->reply)->text);
  ackrpc_server_stop(a->srv);
  event_base_loopexit(a->base, NULL);
}

FX_TEST(server, attached_to_callers_base) {
  struct event_base *base = event_base_new();
  cr_assert_not_null(base);
  ackrpc_server_options o = {.address = fx_sock(), .base = base};
  ackrpc_server *s = NULL;
  cr_assert_eq(ackrpc_server_new(&o, &s), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_base(s), base);
  cr_assert_eq(ackrpc_server_add_method(s, &fx_echo_method, fx_echo_handler, NULL), ACKRPC_OK);
  cr_assert_eq(ackrpc_server_run(s), ACKRPC_E_STATE, "run on an attached server");

  /* Client and server on one loop, one thread. */
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  struct async_state a = {.base = base, .srv = s};
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "same loop";
  cr_assert_eq(ackrpc_client_call_async(c, base, &fx_echo_method, &req.base, NULL, attached_done,
                                        &a),
               ACKRPC_OK);
  struct timeval guard = {10, 0};
  event_base_loopexit(base, &guard);
  event_base_dispatch(base);
  cr_assert_eq(a.done, 1, "callback ran %d times", a.done);
  cr_assert_eq(a.status, ACKRPC_OK, "%s", ackrpc_status_name(a.status));
  cr_assert_str_eq(a.text, "same loop");
  /* Let the stop finish on the loop, bounded. */
  struct timeval drain = {0, 200000};
  event_base_loopexit(base, &drain);
  event_base_dispatch(base);
  struct stat st;
  cr_assert_neq(lstat(fx_sock(), &st), 0, "stop left the socket file");
  cr_assert_null(ackrpc_server_free(s));
  event_base_free(base);
}

/* --- Freeing with a call still held --- */

FX_TEST(server, held_call_outlives_server) {
  ackrpc_server_options o = {.address = fx_sock(), .drain_timeout_ms = 100};
  fx_server *fs = fx_server_start(&o);
  ackrpc_client *c = fx_client(fx_sock(), 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.mode = ACKRPC__TEST__ECHO_REQUEST__MODE__HOLD;
  fx_bg_call *bg = fx_bg_echo(c, &req, 10000);
  cr_assert_eq(fx_held_wait(1, 5000), 1);
  fx_server_request_stop(fs);
  cr_assert_eq(fx_bg_join(bg, 10000, NULL), ACKRPC_UNAVAILABLE);
  cr_assert_eq(fx_server_join(fs, 10000), ACKRPC_OK);
  fx_server_free(fs);
  /* The handler still holds the call: answering it now is refused, safely. */
  cr_assert_eq(fx_held_reply(0, ACKRPC_OK, NULL), ACKRPC_E_ALREADY_ANSWERED);
}

/* --- Stop from a signal handler --- */

static ackrpc_server *g_sig_server;
static void on_term(int sig) {
  (void)sig;
  ackrpc_server_stop(g_sig_server);
}

FX_TEST(server, stop_from_signal_handler) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server *fs = fx_server_start(&o);
  g_sig_server = fx_server_get(fs);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigemptyset(&sa.sa_mask);
  cr_assert_eq(sigaction(SIGUSR2, &sa, NULL), 0);
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK);
  raise(SIGUSR2); /* runs the handler on this (non-loop) thread */
  cr_assert_eq(fx_server_join(fs, 10000), ACKRPC_OK);
  signal(SIGUSR2, SIG_DFL);
  fx_server_free(fs);
}
