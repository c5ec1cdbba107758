/* frames.c: prints the worked example of docs/PROTOCOL.md §9 as the C encoder
 * (src/frame.c) writes it, one frame per line ("request HEX", "reply HEX"),
 * so that the interop test can compare it with the spec's bytes and with the
 * independent Python client's. Not a test by itself. */
#include <stdio.h>
#include <stdlib.h>

#include "ackrpc/bench.pb-c.h"
#include "mem/arena.h"
#include "wire/depth.h"
#include "wire/encode.h"
#include "wire/frame.h"
#include "wire/head.h"
#include "wire/names.h"

static void print_hex(const char *label, const uint8_t *p, size_t n) {
  printf("%s ", label);
  for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
  printf("\n");
}

int main(void) {
  uint8_t call_id[16];
  for (int i = 0; i < 16; i++) call_id[i] = (uint8_t)i;
  uint8_t body[] = "hi";
  Ackrpc__Bench__Request req = ACKRPC__BENCH__REQUEST__INIT;
  req.id = 1;
  req.body.data = body;
  req.body.len = 2;
  akr_request_spec rs = {
      .method = "ackrpc.bench.Bench/Call",
      .timeout_us = 1000000,
      .call_id = call_id,
      .call_id_len = sizeof call_id,
      .body = &req.base,
  };
  Ackrpc__Bench__Ack ack = ACKRPC__BENCH__ACK__INIT;
  ack.id = 1;
  ack.body_len = 2;
  akr_reply_spec ps = {.status = 0, .body = &ack.base};

  uint8_t out[256];
  size_t n = akr_request_size(&rs);
  if (n == 0 || n > sizeof out || akr_request_encode(&rs, out) != n) return 1;
  print_hex("request", out, n);
  n = akr_reply_size(&ps);
  if (n == 0 || n > sizeof out || akr_reply_encode(&ps, out) != n) return 1;
  print_hex("reply", out, n);
  return 0;
}
