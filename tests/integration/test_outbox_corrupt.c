/* test_outbox_corrupt.c: a damaged outbox database is reported, never
 * retried in silence (include/ackrpc/outbox.h, docs/DELIVERY.md "Disk full,
 * I/O errors, a corrupt database"), on real SQLite files:
 *   - the outbox table's root page overwritten with random bytes: the
 *     worker tells on_attempt (fate HALTED, E_STORE_CORRUPT) once, stops,
 *     and wait_idle returns E_STORE_CORRUPT at once, not at its timeout;
 *     pump and start say so too;
 *   - a changed byte in a stored body (the row still parses): the message
 *     fails its checksum and is never sent; delivery stops as above;
 *   - garbage in a valid WAL frame left by a killed process (SQLite would
 *     silently drop that commit and every later one): the reopen is
 *     refused with E_STORE_CORRUPT; the same crash without the garbage
 *     reopens with every commit there (no false alarm);
 *   - a database from before the checksum and the mark opens, delivers its
 *     old row, and reopens without a false alarm. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include <ackrpc/outbox.h>

#include "fixture.h"

FX_SUITE(outbox_corrupt);

typedef struct halt_log {
  pthread_mutex_t mu;
  unsigned attempts, halts;
  ackrpc_status status;
  uint64_t id;
  int had_message;
} halt_log;

static void on_attempt(void *user, const ackrpc_outbox_attempt *a) {
  halt_log *l = user;
  pthread_mutex_lock(&l->mu);
  l->attempts++;
  if (a->fate == ACKRPC_OUTBOX_HALTED) {
    l->halts++;
    l->status = a->status;
    l->id = a->id;
    l->had_message = a->message != NULL && a->message[0] != '\0';
  }
  pthread_mutex_unlock(&l->mu);
}

static ackrpc_status put(ackrpc_outbox *ob, unsigned i) {
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  char text[160];
  snprintf(text, sizeof text, "letter %u, padded to spread the table over pages %0100u",
           i, i);
  req.text = text;
  uint8_t buf[512];
  size_t n = protobuf_c_message_pack(&req.base, buf);
  return ackrpc_outbox_enqueue(ob, FX_ECHO, buf, n, NULL);
}

/* The root page and page size of table `outbox` in the database at path
 * (read with SQLite directly, after the outbox closed it). */
static void root_page(const char *path, long *ret_page, long *ret_size) {
  sqlite3 *db = NULL;
  cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_stmt *st = NULL;
  cr_assert_eq(sqlite3_prepare_v2(db,
                                  "SELECT rootpage, (SELECT page_size FROM "
                                  "pragma_page_size) FROM sqlite_master WHERE "
                                  "name = 'outbox'",
                                  -1, &st, NULL),
               SQLITE_OK);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
  *ret_page = (long)sqlite3_column_int64(st, 0);
  *ret_size = (long)sqlite3_column_int64(st, 1);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

/* Overwrites `len` bytes at `off` of the file with pseudo-random bytes. */
static void scribble(const char *path, long off, size_t len, unsigned seed) {
  uint8_t *junk = malloc(len);
  cr_assert_not_null(junk);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    junk[i] = (uint8_t)x;
  }
  int fd = open(path, O_WRONLY);
  cr_assert_geq(fd, 0, "open %s", path);
  cr_assert_eq(pwrite(fd, junk, len, off), (ssize_t)len);
  cr_assert_eq(fsync(fd), 0);
  close(fd);
  free(junk);
}

/* 200 messages in an outbox that is then closed (its WAL checkpointed into
 * the file), and the outbox table's root page overwritten. */
static const char *damaged_outbox(void) {
  const char *path = fx_path("outbox.db");
  ackrpc_outbox_options o = {.path = path};
  ackrpc_outbox *ob = NULL;
  cr_assert_eq(ackrpc_outbox_open(&o, &ob), ACKRPC_OK);
  for (unsigned i = 1; i <= 200; i++)
    cr_assert_eq(put(ob, i), ACKRPC_OK);
  ackrpc_outbox_close(ob);
  long page = 0, size = 0;
  root_page(path, &page, &size);
  cr_assert_gt(page, 1);
  scribble(path, (page - 1) * size, (size_t)size, 7);
  return path;
}

FX_TEST(outbox_corrupt, worker_reports_a_damaged_table_and_stops) {
  const char *path = damaged_outbox();
  halt_log log = {.mu = PTHREAD_MUTEX_INITIALIZER};
  ackrpc_outbox_options o = {.path = path,
                             .address = fx_sock(), /* never reached */
                             .on_attempt = on_attempt,
                             .on_attempt_user = &log};
  ackrpc_outbox *ob = NULL;
  /* Opening reads only the method index, which is intact. */
  ackrpc_status st = ackrpc_outbox_open(&o, &ob);
  cr_assert_eq(st, ACKRPC_OK, "open: %s", ackrpc_status_name(st));
  cr_assert_eq(ackrpc_outbox_start(ob), ACKRPC_OK);
  uint64_t t0 = fx_now_us();
  st = ackrpc_outbox_wait_idle(ob, 5000);
  uint64_t took = fx_now_us() - t0;
  cr_assert_eq(st, ACKRPC_E_STORE_CORRUPT, "wait_idle: %s after %llu ms",
               ackrpc_status_name(st), (unsigned long long)(took / 1000));
  cr_assert_lt(took, 1000000 + fx_slack_us(), "not reported promptly: %llu ms",
               (unsigned long long)(took / 1000));
  fx_sleep_ms(300); /* a worker still retrying would report more */
  pthread_mutex_lock(&log.mu);
  cr_assert_eq(log.halts, 1, "on_attempt told of the damage %u times", log.halts);
  cr_assert_eq(log.attempts, 1, "attempts after the halt: %u", log.attempts);
  cr_assert_eq(log.status, ACKRPC_E_STORE_CORRUPT, "%s",
               ackrpc_status_name(log.status));
  cr_assert(log.had_message, "the report explains nothing");
  pthread_mutex_unlock(&log.mu);
  cr_assert_eq(ackrpc_outbox_wait_idle(ob, 5000), ACKRPC_E_STORE_CORRUPT, "sticky");
  cr_assert_eq(ackrpc_outbox_start(ob), ACKRPC_E_STORE_CORRUPT,
               "before stop, start says why delivery is not running");
  cr_assert_eq(ackrpc_outbox_stop(ob), ACKRPC_OK);
  cr_assert_eq(ackrpc_outbox_start(ob), ACKRPC_E_STORE_CORRUPT,
               "a restarted worker would retry in silence");
  ackrpc_outbox_close(ob);
}

FX_TEST(outbox_corrupt, pump_reports_a_damaged_table_once) {
  const char *path = damaged_outbox();
  halt_log log = {.mu = PTHREAD_MUTEX_INITIALIZER};
  ackrpc_outbox_options o = {.path = path,
                             .address = fx_sock(),
                             .on_attempt = on_attempt,
                             .on_attempt_user = &log};
  ackrpc_outbox *ob = NULL;
  cr_assert_eq(ackrpc_outbox_open(&o, &ob), ACKRPC_OK);
  unsigned n = 99;
  cr_assert_eq(ackrpc_outbox_pump(ob, 10, &n), ACKRPC_E_STORE_CORRUPT);
  cr_assert_eq(n, 0);
  cr_assert_eq(log.halts, 1);
  cr_assert_eq(log.id, 0, "no message was picked");
  cr_assert_eq(ackrpc_outbox_pump(ob, 10, &n), ACKRPC_E_STORE_CORRUPT);
  cr_assert_eq(log.halts, 1, "reported once, not at every pump");
  cr_assert_eq(ackrpc_outbox_wait_idle(ob, 5000), ACKRPC_E_STORE_CORRUPT);
  ackrpc_outbox_close(ob);
}

/* A byte of a stored message changed in a way SQLite cannot see (the row
 * still parses): the message's checksum stops it from being sent. */
FX_TEST(outbox_corrupt, a_changed_body_fails_its_checksum_and_is_not_sent) {
  const char *path = fx_path("outbox.db");
  ackrpc_outbox_options o = {.path = path};
  ackrpc_outbox *ob = NULL;
  cr_assert_eq(ackrpc_outbox_open(&o, &ob), ACKRPC_OK);
  const char *texts[] = {"first-intact", "second-marker-to-flip", "third-intact"};
  for (size_t i = 0; i < 3; i++) {
    Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
    req.text = (char *)texts[i];
    uint8_t buf[128];
    size_t n = protobuf_c_message_pack(&req.base, buf);
    cr_assert_eq(ackrpc_outbox_enqueue(ob, FX_ECHO, buf, n, NULL), ACKRPC_OK);
  }
  ackrpc_outbox_close(ob); /* checkpointed: the rows are in the file */
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0);
  struct stat sb;
  cr_assert_eq(fstat(fd, &sb), 0);
  uint8_t *file = malloc((size_t)sb.st_size);
  cr_assert_not_null(file);
  cr_assert_eq(pread(fd, file, (size_t)sb.st_size, 0), (ssize_t)sb.st_size);
  const char *needle = "marker";
  uint8_t *at = memmem(file, (size_t)sb.st_size, needle, strlen(needle));
  cr_assert_not_null(at, "the body is not in the file");
  cr_assert_eq(pwrite(fd, "n", 1, at - file), 1); /* "marker" -> "narker" */
  cr_assert_eq(fsync(fd), 0);
  close(fd);
  free(file);

  fx_server *fs = fx_server_start(
      &(ackrpc_server_options){.address = fx_sock(), .log = ackrpc_log_discard});
  halt_log log = {.mu = PTHREAD_MUTEX_INITIALIZER};
  o = (ackrpc_outbox_options){.path = path,
                              .address = fx_sock(),
                              .on_attempt = on_attempt,
                              .on_attempt_user = &log};
  ackrpc_status st = ackrpc_outbox_open(&o, &ob);
  cr_assert_eq(st, ACKRPC_OK, "open: %s", ackrpc_status_name(st));
  unsigned n = 0;
  st = ackrpc_outbox_pump(ob, 10, &n);
  unsigned calls = fx_handler_calls();
  ackrpc_outbox_close(ob);
  fx_server_stop(fs);
  cr_assert_eq(st, ACKRPC_E_STORE_CORRUPT, "pump: %s after %u attempts, %u delivered",
               ackrpc_status_name(st), n, calls);
  cr_assert_eq(n, 1, "only the intact first message goes out");
  cr_assert_eq(calls, 1, "the changed message reached the receiver");
  cr_assert_eq(log.halts, 1);
}

/* A database made before the checksum and the commit mark (main's schema,
 * written here with SQLite directly): it opens without a false alarm, its
 * old row (no checksum) is delivered, and new ones are checked. */
FX_TEST(outbox_corrupt, a_database_from_before_opens_and_delivers) {
  const char *path = fx_path("outbox.db");
  sqlite3 *db = NULL;
  cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "old";
  uint8_t buf[64];
  size_t blen = protobuf_c_message_pack(&req.base, buf);
  cr_assert_eq(sqlite3_exec(db,
                            "PRAGMA journal_mode=WAL;"
                            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                            " method TEXT NOT NULL, body BLOB NOT NULL,"
                            " call_id BLOB NOT NULL UNIQUE,"
                            " enqueued_at_ms INTEGER NOT NULL,"
                            " attempts INTEGER NOT NULL DEFAULT 0,"
                            " last_status INTEGER, last_message TEXT);",
                            NULL, NULL, NULL),
               SQLITE_OK);
  sqlite3_stmt *st = NULL;
  cr_assert_eq(sqlite3_prepare_v2(db,
                                  "INSERT INTO outbox (method, body, call_id, "
                                  "enqueued_at_ms) VALUES (?1, ?2, ?3, 1)",
                                  -1, &st, NULL),
               SQLITE_OK);
  sqlite3_bind_text(st, 1, FX_ECHO, -1, SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, buf, (int)blen, SQLITE_STATIC);
  sqlite3_bind_blob(st, 3, "0123456789abcdef", 16, SQLITE_STATIC);
  cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(db);

  fx_server *fs = fx_server_start(
      &(ackrpc_server_options){.address = fx_sock(), .log = ackrpc_log_discard});
  ackrpc_outbox_options o = {.path = path, .address = fx_sock()};
  ackrpc_outbox *ob = NULL;
  ackrpc_status s = ackrpc_outbox_open(&o, &ob);
  cr_assert_eq(s, ACKRPC_OK, "open: %s", ackrpc_status_name(s));
  cr_assert_eq(put(ob, 2), ACKRPC_OK);
  unsigned n = 0;
  s = ackrpc_outbox_pump(ob, 10, &n);
  ackrpc_outbox_counts c = {0};
  cr_assert_eq(ackrpc_outbox_count(ob, &c), ACKRPC_OK);
  ackrpc_outbox_close(ob);
  fx_server_stop(fs);
  cr_assert_eq(s, ACKRPC_OK, "pump: %s", ackrpc_status_name(s));
  cr_assert_eq(n, 2);
  cr_assert_eq(c.pending, 0);
  cr_assert_eq(ackrpc_outbox_open(&o, &ob), ACKRPC_OK, "reopened: a false alarm");
  ackrpc_outbox_close(ob);
}

/* --- WAL damage --- */

#define WAL_MESSAGES 30
#define WAL_ACKED 20

/* In a child process: opens the outbox, enqueues WAL_MESSAGES, delivers
 * (acks) the first WAL_ACKED to the echo server of the parent, and dies
 * without closing: every commit stays in the WAL. Returns once it is dead. */
static void crash_with_wal(const char *path) {
  fx_server *fs = fx_server_start(
      &(ackrpc_server_options){.address = fx_sock(), .log = ackrpc_log_discard});
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    ackrpc_outbox_options o = {.path = path, .address = fx_sock()};
    ackrpc_outbox *ob = NULL;
    if (ackrpc_outbox_open(&o, &ob) != ACKRPC_OK) _exit(10);
    for (unsigned i = 1; i <= WAL_MESSAGES; i++)
      if (put(ob, i) != ACKRPC_OK) _exit(11);
    unsigned n = 0;
    if (ackrpc_outbox_pump(ob, WAL_ACKED, &n) != ACKRPC_OK || n != WAL_ACKED) _exit(12);
    ackrpc_outbox_counts c;
    if (ackrpc_outbox_count(ob, &c) != ACKRPC_OK ||
        c.pending != WAL_MESSAGES - WAL_ACKED)
      _exit(13);
    _exit(0); /* no close: no checkpoint */
  }
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %d", status);
  fx_server_stop(fs);
}

FX_TEST(outbox_corrupt, a_crash_with_an_intact_wal_reopens_whole) {
  const char *path = fx_path("outbox.db");
  crash_with_wal(path);
  char wal[512];
  snprintf(wal, sizeof wal, "%s-wal", path);
  struct stat sb;
  cr_assert_eq(stat(wal, &sb), 0, "the WAL was not left behind");
  ackrpc_outbox_options o = {.path = path};
  ackrpc_outbox *ob = NULL;
  ackrpc_status st = ackrpc_outbox_open(&o, &ob);
  cr_assert_eq(st, ACKRPC_OK, "a false alarm: %s", ackrpc_status_name(st));
  ackrpc_outbox_counts c;
  cr_assert_eq(ackrpc_outbox_count(ob, &c), ACKRPC_OK);
  cr_assert_eq(c.pending, WAL_MESSAGES - WAL_ACKED);
  uint64_t last = 0;
  cr_assert_eq(ackrpc_outbox_last_id(ob, &last), ACKRPC_OK);
  cr_assert_eq(last, WAL_MESSAGES);
  ackrpc_outbox_close(ob);
  /* And again, after that clean close (checkpointed): still no alarm. */
  cr_assert_eq(ackrpc_outbox_open(&o, &ob), ACKRPC_OK);
  cr_assert_eq(put(ob, 99), ACKRPC_OK);
  ackrpc_outbox_close(ob);
  cr_assert_eq(ackrpc_outbox_open(&o, &ob), ACKRPC_OK);
  ackrpc_outbox_close(ob);
}

FX_TEST(outbox_corrupt, garbage_in_a_wal_frame_is_reported_at_open) {
  const char *path = fx_path("outbox.db");
  crash_with_wal(path);
  char wal[512];
  snprintf(wal, sizeof wal, "%s-wal", path);
  /* WAL: a 32-byte header (page size at 8, big-endian), then frames of a
   * 24-byte header and a page. Garbage inside the page of a frame at 3/4:
   * among the acks' commits. */
  int fd = open(wal, O_RDONLY);
  cr_assert_geq(fd, 0);
  uint8_t h[32];
  cr_assert_eq(pread(fd, h, sizeof h, 0), (ssize_t)sizeof h);
  struct stat sb;
  cr_assert_eq(fstat(fd, &sb), 0);
  close(fd);
  long page = (long)h[8] << 24 | (long)h[9] << 16 | (long)h[10] << 8 | h[11];
  long frame = 24 + page, frames = ((long)sb.st_size - 32) / frame;
  cr_assert_gt(frames, WAL_MESSAGES + WAL_ACKED, "%ld frames", frames);
  long k = frames * 3 / 4;
  scribble(wal, 32 + k * frame + 24 + page / 2, 64, 11);

  ackrpc_outbox_options o = {.path = path};
  ackrpc_outbox *ob = NULL;
  ackrpc_status st = ackrpc_outbox_open(&o, &ob);
  if (st == ACKRPC_OK) {
    ackrpc_outbox_counts c = {0};
    uint64_t last = 0;
    ackrpc_outbox_count(ob, &c);
    ackrpc_outbox_last_id(ob, &last);
    ackrpc_outbox_close(ob);
    cr_assert_fail("frame %ld of %ld garbled: opened OK with %llu pending (%d before "
                   "the crash), last id %llu",
                   k, frames, (unsigned long long)c.pending, WAL_MESSAGES - WAL_ACKED,
                   (unsigned long long)last);
  }
  cr_assert_eq(st, ACKRPC_E_STORE_CORRUPT, "%s", ackrpc_status_name(st));
  cr_assert_null(ob);
}
