/* test_hardening_input.c: hostile bytes (docs/SECURITY.md, "What a peer can
 * send"): no proper prefix of a valid request is ever dispatched; 10,000
 * malformed requests of many kinds are all refused and the server still
 * serves; a request nested 10,000 deep is refused before protobuf-c recurses
 * into it; a request that would make protobuf-c allocate ~36x its wire size
 * is refused by the per-call memory budget, and the process's memory stays
 * bounded while that happens again and again. Server in a thread, raw
 * sockets. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ackrpc/wire.pb-c.h"
#include "hardening_support.h"

HS_SUITE(hinput);

/* One raw exchange: connect, send (errors ignored: the server may close
 * early), half-close, read what comes back within 10 s. */
/* The process's RSS once the server thread has released what the last
 * call took: it frees right after writing its answer, which the client may
 * read a moment earlier. Polls briefly (bounded) for the value to settle
 * and returns the lowest seen. */
static long settled_rss_kb(void) {
  long best = hs_status_kb(0, "VmRSS");
  for (int i = 0; i < 50; i++) {
    fx_sleep_ms(10);
    long now = hs_status_kb(0, "VmRSS");
    if (now >= best) break;
    best = now;
  }
  return best;
}

static void exchange(const char *sock, const void *bytes, size_t len, hs_reply *r) {
  int fd = hs_connect(sock);
  cr_assert_geq(fd, 0, "connect: %s", strerror(errno));
  if (len) hs_send_all(fd, bytes, len);
  shutdown(fd, SHUT_WR);
  hs_read_reply(fd, 10000, r);
  close(fd);
}

static size_t echo_frame(uint8_t **ret, const char *text) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = (char *)text;
  req.tag = 0;
  uint8_t blob[40];
  memset(blob, 0xb1, sizeof blob);
  req.blob.data = blob;
  req.blob.len = sizeof blob;
  size_t bl;
  uint8_t *body = hs_pack(&req.base, &bl);
  /* With metadata, so the head has every kind of field. */
  Ackrpc__Wire__RequestHead hd = ACKRPC__WIRE__REQUEST_HEAD__INIT;
  Ackrpc__Wire__Metadata m = ACKRPC__WIRE__METADATA__INIT;
  Ackrpc__Wire__Metadata *mp = &m;
  m.key = "trace-id";
  m.value.data = (uint8_t *)"abc";
  m.value.len = 3;
  hd.method = FX_ECHO;
  hd.timeout_us = 5000000;
  hd.call_id.data = (uint8_t *)"prefix-test";
  hd.call_id.len = 11;
  hd.n_metadata = 1;
  hd.metadata = &mp;
  size_t hl;
  uint8_t *head = hs_pack(&hd.base, &hl);
  size_t n = hs_frame_raw(ret, head, hl, body, bl);
  free(head);
  free(body);
  return n;
}

HS_TEST(hinput, every_proper_prefix_refused_never_dispatched) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock, .log = ackrpc_log_discard};
  hs_server_start(&o);
  uint8_t *f;
  size_t n = echo_frame(&f, "a complete request");
  for (size_t k = 0; k < n; k++) {
    hs_reply r;
    exchange(sock, f, k, &r);
    int closed = r.closed, got = r.got;
    uint32_t status = r.status;
    hs_reply_free(&r);
    cr_assert(closed, "prefix of %zu/%zu bytes: the connection was not closed", k, n);
    if (k == 0) {
      cr_assert(!got, "an empty connection was answered (status %u)", status);
    } else {
      cr_assert(got, "prefix of %zu/%zu bytes: no reply", k, n);
      cr_assert_eq(status, ACKRPC_INVALID_ARGUMENT, "prefix of %zu/%zu bytes: status %u",
                   k, n, status);
    }
    cr_assert_eq(fx_handler_calls(), 0, "a prefix of %zu/%zu bytes was dispatched", k,
                 n);
  }
  hs_reply r;
  exchange(sock, f, n, &r);
  cr_assert(r.got && r.status == 0, "the whole frame: got %d status %u", r.got, r.status);
  hs_reply_free(&r);
  cr_assert_eq(fx_handler_calls(), 1);
  free(f);
  printf("hardening: %zu proper prefixes refused, none dispatched\n", n);
}

/* --- 10,000 malformed requests ------------------------------------------ */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

/* A head with these fields (method NULL: none; call_id_len 0: none). */
static uint8_t *head_with(const char *method, size_t method_len, size_t call_id_len,
                          Ackrpc__Wire__Metadata **md, size_t n_md, size_t *ret_len) {
  static uint8_t id[128];
  memset(id, 'i', sizeof id);
  Ackrpc__Wire__RequestHead hd = ACKRPC__WIRE__REQUEST_HEAD__INIT;
  (void)method_len;
  hd.method = (char *)method;
  hd.call_id.data = id;
  hd.call_id.len = call_id_len;
  hd.metadata = md;
  hd.n_metadata = n_md;
  return hs_pack(&hd.base, ret_len);
}

enum kind {
  K_RANDOM,      /* random bytes, first byte not 'A' */
  K_MAGIC2,      /* second magic byte wrong */
  K_VERSION,     /* version byte not 1 */
  K_TYPE,        /* type byte not 1 */
  K_HEAD_HUGE,   /* head length > 64 KiB */
  K_FRAME_HUGE,  /* head + body > max_request_size */
  K_BOTH_MAX,    /* both lengths 0xffffffff */
  K_HEAD_GARBAGE,/* random bytes as head */
  K_METHOD,      /* malformed method names */
  K_METHOD_NUL,  /* NUL inside the method name (raw head bytes) */
  K_CALL_ID,     /* call id missing or too long */
  K_METADATA,    /* metadata over its limits */
  K_UNKNOWN,     /* a well-formed name nobody serves */
  K_BODY,        /* bodies that do not decode */
  K_TRUNCATED,   /* a valid frame cut short */
  K_EMPTY_HEAD,  /* lengths 0/0 */
  K_COUNT
};

static const char *kind_name[K_COUNT] = {
    "random", "magic", "version", "type", "head-huge", "frame-huge", "both-max",
    "head-garbage", "method", "method-nul", "call-id", "metadata", "unknown-method",
    "body", "truncated", "empty-head"};

/* Builds malformed request number i of kind k; returns its length and the
 * statuses it may be answered (0 for "any non-OK or none"). */
static size_t malformed(enum kind k, uint8_t **ret, uint32_t *want1, uint32_t *want2) {
  uint8_t *b = NULL;
  size_t n = 0;
  *want1 = *want2 = ACKRPC_INVALID_ARGUMENT;
  switch (k) {
  case K_RANDOM:
    n = 1 + rnd() % 200;
    b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)rnd();
    if (b[0] == 0x41) b[0] = 0x42;
    break;
  case K_MAGIC2:
  case K_VERSION:
  case K_TYPE:
    n = 12 + rnd() % 64;
    b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)rnd();
    b[0] = 0x41;
    b[1] = 0x4B;
    b[2] = 1;
    b[3] = 1;
    if (k == K_MAGIC2) b[1] = (uint8_t)(0x4C + rnd() % 100);
    if (k == K_VERSION) {
      b[2] = (uint8_t)(2 + rnd() % 254);
      *want1 = *want2 = ACKRPC_UNIMPLEMENTED;
    }
    if (k == K_TYPE) b[3] = (uint8_t)(rnd() % 2 ? 2 : 3 + rnd() % 253);
    break;
  case K_HEAD_HUGE:
  case K_FRAME_HUGE:
  case K_BOTH_MAX:
    n = 12 + rnd() % 32;
    b = calloc(1, n);
    b[0] = 0x41;
    b[1] = 0x4B;
    b[2] = 1;
    b[3] = 1;
    if (k == K_HEAD_HUGE) {
      put_le32(b + 4, 65537 + rnd() % 0x7fffffff);
      put_le32(b + 8, rnd() % 100);
    } else if (k == K_FRAME_HUGE) {
      put_le32(b + 4, rnd() % 100);
      put_le32(b + 8, (1u << 20) + rnd() % 0x7fffffff); /* server max: 1 MiB */
    } else {
      put_le32(b + 4, 0xffffffffu);
      put_le32(b + 8, 0xffffffffu);
    }
    *want1 = *want2 = ACKRPC_RESOURCE_EXHAUSTED;
    break;
  case K_HEAD_GARBAGE: {
    size_t hl = 1 + rnd() % 300;
    uint8_t *hd = malloc(hl);
    for (size_t i = 0; i < hl; i++) hd[i] = (uint8_t)rnd();
    n = hs_frame_raw(&b, hd, hl, NULL, 0);
    free(hd);
    *want2 = ACKRPC_UNIMPLEMENTED; /* if it happens to decode with a valid name */
    break;
  }
  case K_METHOD: {
    static const char *bad[] = {"",
                                "noslash",
                                "/ackrpc.test.Test/Echo",
                                "ackrpc.test.Test/",
                                "ackrpc..test.Test/Echo",
                                "ackrpc.test.Test/Echo/Again",
                                "ackrpc.test.Test//Echo",
                                "ackrpc test.Test/Echo",
                                "ackrpc.test.Test/Ech\xc3\xb6",
                                ".ackrpc.test.Test/Echo",
                                "ackrpc.test.Test/Echo\n",
                                NULL /* 257 characters */};
    size_t i = rnd() % (sizeof bad / sizeof *bad);
    char longname[300];
    const char *m = bad[i];
    if (!m) {
      memset(longname, 'a', 250);
      memcpy(longname + 250, ".B/Cdef", 8);
      m = longname;
    }
    size_t hl;
    uint8_t *hd = head_with(m, strlen(m), 8, NULL, 0, &hl);
    n = hs_frame_raw(&b, hd, hl, NULL, 0);
    free(hd);
    break;
  }
  case K_METHOD_NUL: {
    /* field 1 = "ackrpc.test.Test/Echo\0x", field 3 = "id" */
    uint8_t hd[64];
    size_t m = strlen(FX_ECHO);
    size_t p = 0;
    hd[p++] = 0x0a;
    hd[p++] = (uint8_t)(m + 2);
    memcpy(hd + p, FX_ECHO, m);
    p += m;
    hd[p++] = 0;
    hd[p++] = 'x';
    hd[p++] = 0x1a;
    hd[p++] = 2;
    hd[p++] = 'i';
    hd[p++] = 'd';
    n = hs_frame_raw(&b, hd, p, NULL, 0);
    break;
  }
  case K_CALL_ID: {
    size_t hl;
    uint8_t *hd = head_with(FX_ECHO, 0, rnd() % 2 ? 0 : 65 + rnd() % 60, NULL, 0, &hl);
    n = hs_frame_raw(&b, hd, hl, NULL, 0);
    free(hd);
    break;
  }
  case K_METADATA: {
    Ackrpc__Wire__Metadata ms[70];
    Ackrpc__Wire__Metadata *mp[70];
    static uint8_t big[5000];
    size_t count = 1;
    for (size_t i = 0; i < 70; i++) {
      ackrpc__wire__metadata__init(&ms[i]);
      ms[i].key = "ok-key";
      mp[i] = &ms[i];
    }
    switch (rnd() % 5) {
    case 0: count = 65; break;               /* too many */
    case 1: ms[0].key = "Upper"; break;      /* bad character */
    case 2: ms[0].key = ""; break;           /* empty key */
    case 3:                                  /* value too long */
      ms[0].value.data = big;
      ms[0].value.len = 4097;
      break;
    default: ms[0].key = "k\x01y"; break;
    }
    size_t hl;
    uint8_t *hd = head_with(FX_ECHO, 0, 8, mp, count, &hl);
    n = hs_frame_raw(&b, hd, hl, NULL, 0);
    free(hd);
    break;
  }
  case K_UNKNOWN: {
    char name[64];
    snprintf(name, sizeof name, "evil.Svc%u/Method%u", rnd() % 1000, rnd() % 1000);
    n = hs_frame(&b, name, 0, "\x08\x01", 2);
    *want1 = *want2 = ACKRPC_UNIMPLEMENTED;
    break;
  }
  case K_BODY: {
    static const struct {
      const char *method;
      const char *bytes;
      size_t len;
    } bodies[] = {
        {FX_STRICT, "", 0},                    /* required field missing */
        {FX_STRICT, "\x08\x01", 2},            /* wrong wire type, still missing */
        {FX_ECHO, "\x08\xff", 2},              /* truncated varint */
        {FX_ECHO, "\x0a\x10" "abc", 5},        /* length past the end */
        {FX_ECHO, "\x08\x01", 2},              /* varint for a string field */
        {FX_ECHO, "\x0e\x00", 2},              /* wire type 6 */
        {FX_ECHO, "\x00\x00", 2},              /* field number 0 */
        {FX_ECHO, "\x0c", 1},                  /* stray end-group */
        {FX_ECHO, "\x2a\xff\xff\xff\xff\x0f", 6}, /* blob of 4 GiB announced */
        {HS_NEST, "\x0a\x05\x0a\x03\x0a\x01", 6}, /* inner lengths overrun */
        {HS_FILL, "\x0a\x02\x08", 3},          /* item cut short */
    };
    size_t i = rnd() % (sizeof bodies / sizeof *bodies);
    n = hs_frame(&b, bodies[i].method, 0, bodies[i].bytes, bodies[i].len);
    break;
  }
  case K_TRUNCATED: {
    uint8_t *f;
    size_t fl = echo_frame(&f, "cut me");
    n = 1 + rnd() % (fl - 1);
    b = f;
    break;
  }
  case K_EMPTY_HEAD:
    n = hs_frame_raw(&b, NULL, 0, NULL, 0);
    break;
  case K_COUNT: break;
  }
  cr_assert_not_null(b);
  *ret = b;
  return n;
}

HS_TEST(hinput, ten_thousand_malformed_requests_then_a_good_call) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock, .max_request_size = 1u << 20,
                             .log = ackrpc_log_discard};
  hs_server_start(&o);
  int total = hs_slow() ? 3000 : 10000; /* ASan: each exchange is ~5x slower */
  unsigned by_kind[K_COUNT] = {0}, refused[K_COUNT] = {0};
  long rss0 = hs_status_kb(0, "VmRSS");
  for (int i = 0; i < total; i++) {
    enum kind k = (enum kind)(i % K_COUNT);
    uint32_t w1, w2;
    uint8_t *b;
    size_t n = malformed(k, &b, &w1, &w2);
    hs_reply r;
    exchange(sock, b, n, &r);
    free(b);
    by_kind[k]++;
    int got = r.got, closed = r.closed;
    uint32_t status = r.status;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", r.message);
    hs_reply_free(&r);
    cr_assert(closed, "#%d (%s): the connection was not closed", i, kind_name[k]);
    if (got) {
      cr_assert_neq(status, 0, "#%d (%s) was answered OK", i, kind_name[k]);
      cr_assert(status == w1 || status == w2, "#%d (%s): status %u (%s), expected %u",
                i, kind_name[k], status, msg, w1);
      refused[k]++;
    } else {
      cr_assert(k == K_RANDOM || k == K_TRUNCATED, "#%d (%s): no reply", i,
                kind_name[k]);
    }
    cr_assert_eq(fx_handler_calls() + hs_handler_calls(), 0,
                 "#%d (%s) reached a handler", i, kind_name[k]);
  }
  long rss1 = hs_status_kb(0, "VmRSS");
  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "after the storm";
  ackrpc_result res = {0};
  ackrpc_status st = fx_echo(c, &req, NULL, &res);
  cr_assert_eq(st, ACKRPC_OK, "the good call: %s", ackrpc_status_name(st));
  cr_assert_str_eq(fx_echo_reply(&res)->text, "after the storm");
  ackrpc_result_clear(&res);
  size_t conns = hs_server_conns(sock);
  char line[1024] = "";
  for (int k = 0; k < K_COUNT; k++) {
    char part[64];
    snprintf(part, sizeof part, "%s%s %u/%u", k ? ", " : "", kind_name[k], refused[k],
             by_kind[k]);
    strncat(line, part, sizeof line - strlen(line) - 1);
  }
  printf("hardening: %d malformed requests, answered/sent by kind: %s; process RSS "
         "%ld -> %ld kB; the good call after them: OK\n",
         total, line, rss0, rss1);
  cr_assert_eq(conns, 0, "%zu connections still open after the malformed ones", conns);
}

/* --- nesting -------------------------------------------------------------- */

/* A Node nested `depth` deep (the request itself is depth 1), built from
 * the inside out without protobuf-c (whose packer would recurse too). */
static uint8_t *nested(size_t depth, size_t *ret_len) {
  size_t cap = depth * 6 + 16;
  uint8_t *buf = malloc(cap);
  cr_assert_not_null(buf);
  size_t pos = cap; /* content is buf[pos..cap) */
  for (size_t d = 1; d < depth; d++) {
    size_t len = cap - pos;
    uint8_t v[10];
    size_t vn = 0;
    do {
      v[vn++] = (uint8_t)((len & 0x7f) | (len > 0x7f ? 0x80 : 0));
      len >>= 7;
    } while (len);
    pos -= vn;
    memcpy(buf + pos, v, vn);
    buf[--pos] = 0x0a; /* field 1, length-delimited */
  }
  size_t n = cap - pos;
  memmove(buf, buf + pos, n);
  *ret_len = n;
  return buf;
}

static void call_raw(const char *sock, const char *method, const uint8_t *body,
                     size_t len, hs_reply *r) {
  uint8_t *f;
  size_t n = hs_frame(&f, method, 10000000, body, len);
  exchange(sock, f, n, r);
  free(f);
}

static uint64_t count_of(const hs_reply *r) {
  Ackrpc__Hardening__Count *c =
      ackrpc__hardening__count__unpack(NULL, r->body_len, r->buf + r->body_off);
  cr_assert_not_null(c, "the reply body is not a Count");
  uint64_t n = c->n;
  ackrpc__hardening__count__free_unpacked(c, NULL);
  return n;
}

HS_TEST(hinput, deep_nesting_refused_server_lives) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock, .log = ackrpc_log_discard};
  hs_server_start(&o);
  size_t len;
  hs_reply r;

  /* At the default limit (100): accepted, decoded whole. */
  uint8_t *b = nested(100, &len);
  call_raw(sock, HS_NEST, b, len, &r);
  free(b);
  cr_assert(r.got && r.status == 0, "depth 100: got %d status %u (%s)", r.got, r.status,
            r.message);
  cr_assert_eq(count_of(&r), 100);
  hs_reply_free(&r);

  b = nested(101, &len);
  call_raw(sock, HS_NEST, b, len, &r);
  free(b);
  cr_assert(r.got && r.status == ACKRPC_INVALID_ARGUMENT, "depth 101: got %d status %u",
            r.got, r.status);
  hs_reply_free(&r);

  b = nested(10000, &len);
  call_raw(sock, HS_NEST, b, len, &r);
  free(b);
  printf("hardening: a Node nested 10,000 deep (%zu bytes): status %u (%s)\n", len,
         r.status, r.message);
  cr_assert(r.got && r.status == ACKRPC_INVALID_ARGUMENT,
            "depth 10,000: got %d status %u", r.got, r.status);
  cr_assert(len > 25000 && len < 40000, "the deep body is %zu bytes", len);
  hs_reply_free(&r);

  /* Nesting hidden in groups (wire type 3), in a type that cannot nest:
   * 10,000 start-group tags. */
  size_t gn = 10000;
  uint8_t *g = malloc(gn);
  memset(g, 0x1b, gn); /* field 3, start group */
  call_raw(sock, FX_ECHO, g, gn, &r);
  free(g);
  cr_assert(r.got && r.status == ACKRPC_INVALID_ARGUMENT,
            "10,000 nested groups: got %d status %u", r.got, r.status);
  hs_reply_free(&r);
  /* The same in the recursive type. */
  g = malloc(gn);
  memset(g, 0x1b, gn);
  call_raw(sock, HS_NEST, g, gn, &r);
  free(g);
  cr_assert(r.got && r.status == ACKRPC_INVALID_ARGUMENT,
            "10,000 nested groups in Node: got %d status %u", r.got, r.status);
  hs_reply_free(&r);

  cr_assert_eq(hs_handler_calls(), 1, "only the depth-100 request reaches its handler");
  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK, "the server died");
}

HS_TEST(hinput, max_depth_option_is_honoured) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock, .max_depth = 20, .log = ackrpc_log_discard};
  hs_server_start(&o);
  size_t len;
  hs_reply r;
  uint8_t *b = nested(20, &len);
  call_raw(sock, HS_NEST, b, len, &r);
  free(b);
  cr_assert(r.got && r.status == 0, "depth 20 with max_depth 20: status %u", r.status);
  cr_assert_eq(count_of(&r), 20);
  hs_reply_free(&r);
  b = nested(21, &len);
  call_raw(sock, HS_NEST, b, len, &r);
  free(b);
  cr_assert(r.got && r.status == ACKRPC_INVALID_ARGUMENT,
            "depth 21 with max_depth 20: status %u", r.status);
  hs_reply_free(&r);
}

/* --- amplification -------------------------------------------------------- */

static uint8_t *bag(size_t items, size_t *ret_len) {
  uint8_t *b = malloc(2 * items + 1);
  cr_assert_not_null(b);
  for (size_t i = 0; i < items; i++) {
    b[2 * i] = 0x0a; /* field 1, length-delimited */
    b[2 * i + 1] = 0x00; /* an empty Empty */
  }
  *ret_len = 2 * items;
  return b;
}

HS_TEST(hinput, amplification_refused_memory_bounded) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock, .log = ackrpc_log_discard};
  hs_server_start(&o);
  size_t len;
  hs_reply r;

  /* A small bag decodes: the budget is not in the way of normal use. */
  uint8_t *b = bag(1000, &len);
  call_raw(sock, HS_FILL, b, len, &r);
  free(b);
  cr_assert(r.got && r.status == 0, "1,000 items: status %u (%s)", r.status, r.message);
  cr_assert_eq(count_of(&r), 1000);
  hs_reply_free(&r);

  /* 2 MiB of empty items: ~72 MiB decoded, budget 16 x 2 MiB + 64 KiB. */
  size_t items = 1u << 20;
  b = bag(items, &len);
  uint8_t *f;
  size_t fl = hs_frame(&f, HS_FILL, 10000000, b, len);
  free(b);
  long hwm0 = hs_status_kb(0, "VmHWM"), rss0 = hs_status_kb(0, "VmRSS");
  int rounds = hs_slow() ? 5 : 20;
  /* glibc raises its mmap threshold after the first large free, so the
   * arena's later chunks come from the heap and stay resident: RSS settles
   * after a few rounds. Bounded means: no growth from then on. */
  int settle = hs_slow() ? 2 : 5;
  long rss_after_first = 0, hwm_settled = 0;
  for (int i = 0; i < rounds; i++) {
    exchange(sock, f, fl, &r);
    int got = r.got;
    uint32_t status = r.status;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", r.message);
    hs_reply_free(&r);
    cr_assert(got && status == ACKRPC_RESOURCE_EXHAUSTED,
              "round %d: %zu empty submessages: got %d status %u (%s)", i, items, got,
              status, msg);
    if (i + 1 == settle) {
      rss_after_first = settled_rss_kb();
      hwm_settled = hs_status_kb(0, "VmHWM");
    }
  }
  free(f);
  long hwm1 = hs_status_kb(0, "VmHWM"), rss1 = settled_rss_kb();
  cr_assert_eq(hs_handler_calls(), 1, "an over-budget request reached its handler");
  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  cr_assert_eq(fx_echo(c, &req, NULL, NULL), ACKRPC_OK, "the server died");

  long budget_kb = (long)((16 * (fl) + (64u << 10)) / 1024);
  printf("hardening: amplification: %d requests of %zu bytes (%zu empty items) refused "
         "RESOURCE_EXHAUSTED; process RSS %ld kB before, %ld after %d, %ld after all; "
         "peak RSS %ld -> %ld kB (+%ld kB; decode budget %ld kB)\n",
         rounds, fl, items, rss0, rss_after_first, settle, rss1, hwm0, hwm1, hwm1 - hwm0,
         budget_kb);
  if (hs_asan()) {
    printf("hardening: RSS bounds not checked under ASan (its quarantine keeps freed "
           "memory)\n");
    return;
  }
  /* Unbounded decoding would need ~36 bytes per wire byte (~72 MiB here).
   * Allowed: the budget, the frame in the server's buffer and in ours, and
   * 8 MiB of slack. */
  long allowed = budget_kb + 2 * (long)(fl / 1024) + 8192;
  cr_assert_lt(hwm1 - hwm0, allowed, "peak RSS grew %ld kB (allowed %ld kB)", hwm1 - hwm0,
               allowed);
  cr_assert_lt(rss1 - rss_after_first, 4096,
               "RSS kept growing with each refused request: %ld kB after %d, %ld after %d",
               rss_after_first, settle, rss1, rounds);
  cr_assert_lt(hwm1 - hwm_settled, 4096,
               "peak RSS kept growing with each refused request: %ld kB after %d, %ld "
               "after %d",
               hwm_settled, settle, hwm1, rounds);
}

/* --- UTF-8 in strings ----------------------------------------------------- */

/* Nest with a Node body built by protobuf-c, which packs any bytes as a
 * string: the check is the server's alone. */
static void call_node(const char *sock, const Ackrpc__Hardening__Node *n, hs_reply *r) {
  size_t len;
  uint8_t *body = hs_pack(&n->base, &len);
  call_raw(sock, HS_NEST, body, len, r);
  free(body);
}

/* A Node three deep with strings in every place, all valid. */
typedef struct good_nodes {
  Ackrpc__Hardening__Node n[3];
  char *tags[2];
  Ackrpc__Hardening__Node__AttrsEntry attr, *attrs[1];
} good_nodes;

static void good_nodes_init(good_nodes *g) {
  for (int i = 0; i < 3; i++) {
    ackrpc__hardening__node__init(&g->n[i]);
    g->n[i].child = i < 2 ? &g->n[i + 1] : NULL;
    g->n[i].label = "caf\xc3\xa9 \xf0\x9f\x98\x80";
  }
  g->tags[0] = "\xe2\x9c\x93", g->tags[1] = "plain";
  g->n[2].n_tags = 2, g->n[2].tags = g->tags;
  ackrpc__hardening__node__attrs_entry__init(&g->attr);
  g->attr.key = "k\xc3\xa9", g->attr.value = "v";
  g->attrs[0] = &g->attr;
  g->n[1].n_attrs = 1, g->n[1].attrs = g->attrs;
}

HS_TEST(hinput, invalid_utf8_in_proto3_strings_refused) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock, .log = ackrpc_log_discard};
  hs_server_start(&o);
  good_nodes g;
  good_nodes_init(&g);
  hs_reply r;
  call_node(sock, &g.n[0], &r);
  cr_assert(r.got && r.status == 0, "valid strings: status %u (%s)", r.status,
            r.message);
  cr_assert_eq(count_of(&r), 3);
  hs_reply_free(&r);

  /* Each bad string, put in place, then taken back. */
  const char *N = "ackrpc.hardening.Node", *A = "ackrpc.hardening.Node.AttrsEntry";
  struct {
    char **slot;
    const char *bad, *type, *field;
  } cases[] = {
      {&g.n[0].label, "\xc0\xaf", N, "label"},       /* overlong '/' */
      {&g.n[2].label, "ab\xed\xa0\x80", N, "label"}, /* U+D800, 3 deep */
      {&g.tags[1], "\xf4\x90\x80\x80", N, "tags"},   /* > U+10FFFF, repeated */
      {&g.attr.key, "\xe2\x82", A, "key"},           /* truncated, map key */
      {&g.attr.value, "x\xff", A, "value"},          /* map value */
  };
  unsigned refused = 0;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *was = *cases[i].slot;
    *cases[i].slot = (char *)cases[i].bad;
    call_node(sock, &g.n[0], &r);
    *cases[i].slot = was;
    char want[128];
    snprintf(want, sizeof want, "invalid UTF-8 in field %s.%s", cases[i].type,
             cases[i].field);
    cr_assert(r.got && r.status == ACKRPC_INVALID_ARGUMENT, "case %zu (%s): status %u",
              i, want, r.status);
    cr_assert_str_eq(r.message, want, "case %zu", i);
    hs_reply_free(&r);
    refused++;
  }
  cr_assert_eq(hs_handler_calls(), 1,
               "a request with a bad string reached its handler");

  /* Through the real client, on one connection: refused, then served. */
  ackrpc_client *c = fx_client(sock, 10000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  char *keys[] = {"ok", "bad\x80"};
  req.n_lookup_keys = 2, req.lookup_keys = keys;
  ackrpc_result res = {0};
  cr_assert_eq(fx_echo(c, &req, NULL, &res), ACKRPC_INVALID_ARGUMENT);
  cr_assert_str_eq(res.message,
                   "invalid UTF-8 in field ackrpc.test.EchoRequest.lookup_keys");
  ackrpc_result_clear(&res);
  req.n_lookup_keys = 1;
  req.text = "\xe6\x97\xa5\xe6\x9c\xac"; /* bytes stay unchecked: echo_frame's 0xb1s */
  cr_assert_eq(fx_echo(c, &req, NULL, &res), ACKRPC_OK);
  cr_assert_str_eq(fx_echo_reply(&res)->text, req.text);
  ackrpc_result_clear(&res);
  uint8_t *f;
  size_t n = echo_frame(&f, "\xce\xbb");
  exchange(sock, f, n, &r);
  free(f);
  cr_assert(r.got && r.status == 0, "bytes field with 0xb1: status %u", r.status);
  hs_reply_free(&r);
  cr_assert_eq(fx_handler_calls(), 2, "only the valid echoes reached the handler");
  printf("hardening: %u requests with invalid UTF-8 in proto3 strings (top level, 3 "
         "deep, repeated, map key and value) refused INVALID_ARGUMENT; valid ones "
         "served\n",
         refused + 1);
}

/* proto2 strings promise no UTF-8 (nor do other runtimes check them). */
HS_TEST(hinput, proto2_strings_not_checked) {
  const char *sock = fx_sock();
  ackrpc_server_options o = {.address = sock, .log = ackrpc_log_discard};
  hs_server_start(&o);
  Ackrpc__Test__Strict s = ACKRPC__TEST__STRICT__INIT;
  s.must = "latin-1 \xe9t\xe9";
  size_t len;
  uint8_t *body = hs_pack(&s.base, &len);
  hs_reply r;
  call_raw(sock, FX_STRICT, body, len, &r);
  free(body);
  cr_assert(r.got && r.status == 0, "proto2 string: status %u (%s)", r.status,
            r.message);
  hs_reply_free(&r);
  cr_assert_eq(fx_handler_calls(), 1);
}
