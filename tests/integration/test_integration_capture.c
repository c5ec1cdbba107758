/* test_integration_capture.c: the capture tap (src/server/tap.c) in
 * process, so that valgrind sees it too: a raw listener calls
 * ackrpc.reflection.Capture/Watch, calls go through, and the server
 * stopping ends the stream, with every record in it; a Watch pipelined
 * behind another frame is refused. The ackrpc tool's side (capture, replay,
 * tshark, redaction) is in tests/cli/run_capture_tests.py. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixture.h"

FX_SUITE(capture);

#define WATCH "ackrpc.reflection.Capture/Watch"

/* Reads until a whole reply frame is in buf (at most `cap` bytes, 5 s).
 * Returns the bytes read; the frame's status in *ret_status. */
static size_t read_reply(int fd, uint8_t *buf, size_t cap, uint32_t *ret_status,
                         size_t *ret_frame_len) {
  size_t len = 0;
  uint64_t deadline = fx_now_us() + 5000000u;
  while (fx_now_us() < deadline && len < cap) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = recv(fd, buf + len, cap - len, 0);
    if (n <= 0) break;
    len += (size_t)n;
    char *message = NULL;
    const uint8_t *body;
    size_t body_len;
    size_t f = fx_parse_reply(buf, len, ret_status, &message, &body, &body_len);
    free(message);
    if (f) {
      *ret_frame_len = f;
      return len;
    }
  }
  cr_assert_fail("no reply frame to Watch (%zu bytes)", len);
  return 0;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

typedef struct rec {
  uint8_t kind;
  uint32_t uid, gid, pid, status;
  char method[64];
  char message[64];
} rec;

/* The records of a pcapng stream in this host's byte order. */
static size_t parse(const uint8_t *p, size_t len, rec *out, size_t max) {
  size_t off = 0, n = 0;
  uint32_t type, blen;
  while (off + 12 <= len) {
    memcpy(&type, p + off, 4);
    memcpy(&blen, p + off + 4, 4);
    cr_assert(blen >= 12 && blen % 4 == 0 && off + blen <= len, "block at %zu", off);
    if (type == 1) {
      uint16_t linktype;
      memcpy(&linktype, p + off + 8, 2);
      cr_assert_eq(linktype, 147, "the interface's link type is USER0");
    }
    if (type == 6 && n < max) {
      const uint8_t *d = p + off + 28;
      rec *r = &out[n++];
      memset(r, 0, sizeof *r);
      r->kind = d[1];
      r->uid = be32(d + 4);
      r->gid = be32(d + 8);
      r->pid = be32(d + 12);
      r->status = be32(d + 16);
      size_t m = (size_t)d[24] << 8 | d[25], c = d[26], t = (size_t)d[28] << 8 | d[29];
      memcpy(r->method, d + 32, m < 63 ? m : 63);
      memcpy(r->message, d + 32 + m + c, t < 63 ? t : 63);
    }
    off += blen;
  }
  cr_assert_eq(off, len, "the stream ends at a block's end");
  return n;
}

FX_TEST(capture, watch_streams_calls_until_the_server_stops) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server *fs = fx_server_start(&o);
  int fd = fx_raw_connect(fx_sock());
  cr_assert_geq(fd, 0);
  uint8_t *frame;
  size_t n = fx_frame_request(&frame, WATCH, 0, NULL, 0, NULL);
  cr_assert_eq(fx_raw_send(fd, frame, n), 0); /* frames: the fixture's */
  uint8_t head[4096];
  uint32_t status = 99;
  size_t frame_len = 0, got = read_reply(fd, head, sizeof head, &status, &frame_len);
  cr_assert_eq(status, ACKRPC_OK, "Watch answers OK (got %u)", status);

  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "captured";
  req.reply_status = ACKRPC_NOT_FOUND;
  req.reply_message = "not here";
  ackrpc_result res = {0};
  cr_assert_eq(fx_echo(c, &req, NULL, &res), ACKRPC_NOT_FOUND);
  ackrpc_result_clear(&res);

  /* The server stopping ends the stream after what it holds. */
  fx_server_stop(fs);
  size_t rest_len;
  int eof;
  uint8_t *rest = fx_raw_read_all(fd, 5000, &rest_len, &eof);
  close(fd);
  cr_assert(eof, "the stream ends when the server stops");
  size_t total = got - frame_len + rest_len;
  uint8_t *stream = malloc(total ? total : 1);
  cr_assert_not_null(stream);
  memcpy(stream, head + frame_len, got - frame_len);
  memcpy(stream + got - frame_len, rest, rest_len);

  rec recs[16];
  size_t k = parse(stream, total, recs, 16), echo = 0;
  free(stream);
  for (size_t i = 0; i < k; i++) {
    if (strcmp(recs[i].method, FX_ECHO) != 0) continue;
    cr_assert_eq(recs[i].kind, echo == 0 ? 1 : 2, "request, then reply");
    cr_assert_eq(recs[i].uid, (uint32_t)getuid());
    cr_assert_eq(recs[i].gid, (uint32_t)getgid());
    cr_assert_eq(recs[i].pid, (uint32_t)getpid());
    if (recs[i].kind == 2) {
      cr_assert_eq(recs[i].status, ACKRPC_NOT_FOUND);
      cr_assert_str_eq(recs[i].message, "not here");
    }
    echo++;
  }
  cr_assert_eq(echo, 2, "the Echo call's request and reply (%zu records)", k);
}

FX_TEST(capture, watch_behind_another_frame_is_refused) {
  ackrpc_server_options o = {.address = fx_sock()};
  fx_server_start(&o);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "first";
  uint8_t *watch, *echo;
  size_t nw = fx_frame_request(&watch, WATCH, 0, NULL, 0, NULL);
  size_t ne = fx_frame_request(&echo, FX_ECHO, 0, NULL, 0, &req.base);
  uint8_t *both = malloc(nw + ne);
  cr_assert_not_null(both);
  memcpy(both, watch, nw);
  memcpy(both + nw, echo, ne);
  int fd = fx_raw_connect(fx_sock());
  cr_assert_geq(fd, 0);
  cr_assert_eq(fx_raw_send(fd, both, nw + ne), 0);
  shutdown(fd, SHUT_WR);
  free(both); /* (the frames are the fixture's) */
  size_t len;
  int eof;
  uint8_t *buf = fx_raw_read_all(fd, 5000, &len, &eof);
  close(fd);
  uint32_t st1 = 99, st2 = 99;
  char *msg = NULL;
  const uint8_t *body;
  size_t body_len;
  size_t f1 = fx_parse_reply(buf, len, &st1, &msg, &body, &body_len);
  cr_assert_gt(f1, 0, "a reply to Watch");
  cr_assert_eq(st1, ACKRPC_FAILED_PRECONDITION, "Watch not alone: got %u (%s)", st1,
               msg ? msg : "");
  free(msg);
  msg = NULL;
  size_t f2 = fx_parse_reply(buf + f1, len - f1, &st2, &msg, &body, &body_len);
  free(msg);
  cr_assert_gt(f2, 0, "a reply to the Echo behind it");
  cr_assert_eq(st2, ACKRPC_OK);
  cr_assert_eq(f1 + f2, len, "nothing else on the connection");
}
