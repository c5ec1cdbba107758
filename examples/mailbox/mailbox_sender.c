/* mailbox_sender: delivers letters to a mailbox_receiver through a durable
 * outbox (ackrpc/outbox.h), so that each letter is stored by the receiver
 * exactly once even if this process, or the receiver, dies at any point.
 *
 *   mailbox_sender [--timeout MS] [--attempts K] [--sender NAME]
 *                  [--outbox DB] [--wait MS] [--count-socket ADDR] SOCKET [N]
 *
 * Letters seq 1..N go into the outbox database DB (default
 * mailbox_outbox.db): enqueue returns once a letter is on disk, with the
 * call id it will always be sent with. The outbox's worker thread delivers
 * them in order, one at a time, and prints each acknowledgement ("ack
 * seq=..."). A failed attempt is retried after a backoff, with the letter's
 * one call id, whatever its status says:
 *
 *   - not delivered (could not connect or send): the receiver never saw it;
 *   - delivered, no ack, or the receiver's DEADLINE_EXCEEDED/UNAVAILABLE:
 *     the letter may be stored; the receiver recognises the call id and
 *     answers with the original receipt instead of storing it twice;
 *   - any other answer (INVALID_ARGUMENT, ALREADY_EXISTS, ...) is final: the
 *     letter goes to the outbox's dead letters.
 * After K attempts (default 5; 0: no limit) a letter is dead-lettered too.
 *
 * Restarts: this program is the only writer of its outbox, so message ids
 * and sequence numbers coincide; a sender restarted on the same DB enqueues
 * only the letters after the last one it enqueued, and the outbox resends
 * the ones not yet acked. When the outbox is empty it asks the receiver
 * (Count) how many letters it holds from this sender, which must be N; the
 * Count call only reads, so it is retried (up to 30 s, within --wait) if
 * the receiver is restarting. --count-socket asks another address than
 * SOCKET (when SOCKET is a relay that only stores, such as
 * `ackrpc-nats import --jetstream`: its OK is the stream's, with no
 * receipt, and a Count sent to it would be stored, not answered); the
 * letters acked may then still be on their way, so a count below N is
 * asked again, within the same 30 s. The
 * sender's name (--sender) is part of each
 * letter; by default it is "mailbox_sender@HOST:HASH", HASH of the outbox's
 * absolute path: the same on every run with that outbox, so a restarted
 * sender checks the letters it stored before.
 *
 * Exit status: 0 if every letter was acknowledged and counted; 1 otherwise
 * (a dead letter is printed with its status name and message; or the
 * outbox did not empty within --wait MS, default 600000; or the outbox file
 * is damaged: "the outbox ... is damaged: E_STORE_CORRUPT", delivery
 * stopped at once); 2 for a usage error.
 */
/* gethostname, realpath, nanosleep: POSIX beyond C11. */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ackrpc/ackrpc.h>
#include <ackrpc/outbox.h>

#include "mailbox.ackrpc.h"

#define COUNT_WAIT_MS 30000 /* how long the final Count is retried */

static const char *outcome_text(ackrpc_status st) {
  switch (ackrpc_status_outcome(st)) {
  case ACKRPC_OUTCOME_NOT_DELIVERED: return "not delivered";
  case ACKRPC_OUTCOME_NO_ACK: return "delivered, no ack";
  case ACKRPC_OUTCOME_ACKED: return "answered by the receiver";
  }
  return "?";
}

static void hex(const uint8_t *p, size_t n, char *out, size_t cap) {
  size_t i = 0;
  for (; i < n && 2 * i + 2 < cap; i++)
    snprintf(out + 2 * i, 3, "%02x", p[i]);
  out[2 * i] = '\0';
}

/* What the worker thread prints after each attempt (the outbox calls this
 * once the outcome is committed). */
typedef struct sender {
  const char *name;
  uint64_t n;
} sender;

static void on_attempt(void *user, const ackrpc_outbox_attempt *a) {
  const sender *s = user;
  char id_hex[2 * ACKRPC_MAX_CALL_ID + 1];
  hex(a->call_id, a->call_id_len, id_hex, sizeof id_hex);
  const char *msg = a->message ? a->message : ackrpc_strerror(a->status);
  uint64_t seq = a->id; /* the only producer: ids are the sequence numbers */
  switch (a->fate) {
  case ACKRPC_OUTBOX_ACKED: {
    if (a->reply_len == 0) {
      /* A relay took it (ackrpc-nats import --jetstream: stored in the
       * stream), not the mailbox: no receipt. */
      printf("ack seq=%" PRIu64 " attempt=%u call_id=%s (relayed: %s)\n", seq,
             a->attempt, id_hex, a->message ? a->message : "no receipt");
      return;
    }
    Ackrpc__Mailbox__Receipt *receipt =
        ackrpc__mailbox__receipt__unpack(NULL, a->reply_len, a->reply);
    if (!receipt) {
      printf("letter seq=%" PRIu64 ": OK without a receipt\n", seq);
      return;
    }
    printf("ack seq=%" PRIu64 " id=%" PRIu64 " stored_at_ms=%" PRIu64
           " attempt=%u call_id=%s\n",
           receipt->seq, receipt->id, receipt->stored_at_ms, a->attempt, id_hex);
    if (receipt->seq != seq || strcmp(receipt->sender, s->name) != 0)
      printf("letter seq=%" PRIu64 ": the receipt is for seq=%" PRIu64 " from %s\n",
             seq, receipt->seq, receipt->sender);
    ackrpc__mailbox__receipt__free_unpacked(receipt, NULL);
    return;
  }
  case ACKRPC_OUTBOX_RETRY:
    printf("letter seq=%" PRIu64 " attempt %u: %s: %s (%s): retrying with the same "
           "call id %s\n",
           seq, a->attempt, ackrpc_status_name(a->status), msg, outcome_text(a->status),
           id_hex);
    return;
  case ACKRPC_OUTBOX_DEAD:
    printf("letter seq=%" PRIu64 " failed after %u attempt(s): %s: %s (%s)\n", seq,
           a->attempt, ackrpc_status_name(a->status), msg, outcome_text(a->status));
    return;
  case ACKRPC_OUTBOX_HALTED:
    /* The outbox file is damaged: nothing more will be sent from it. */
    if (a->id)
      printf("delivery stopped at letter seq=%" PRIu64 ": %s: %s\n", seq,
             ackrpc_status_name(a->status), msg);
    else
      printf("delivery stopped: %s: %s\n", ackrpc_status_name(a->status), msg);
    return;
  }
}

/* Enqueues the letters after the last one this outbox ever took, up to n. */
static int enqueue_letters(ackrpc_outbox *ob, const char *name, uint64_t n) {
  uint64_t last = 0;
  ackrpc_status st = ackrpc_outbox_last_id(ob, &last);
  if (st != ACKRPC_OK) {
    printf("cannot read the outbox: %s: %s\n", ackrpc_status_name(st),
           ackrpc_strerror(st));
    return -1;
  }
  if (last) printf("resuming after letter %" PRIu64 "\n", last);
  for (uint64_t seq = last + 1; seq <= n; seq++) {
    char body[256];
    snprintf(body, sizeof body, "letter %" PRIu64 " of %" PRIu64 " from %s", seq, n,
             name);
    Ackrpc__Mailbox__Letter letter = ACKRPC__MAILBOX__LETTER__INIT;
    letter.sender = (char *)name;
    letter.seq = seq;
    letter.body = body;
    uint8_t buf[512];
    size_t len = ackrpc__mailbox__letter__pack(&letter, buf);
    uint64_t id = 0;
    st = ackrpc_outbox_enqueue(ob, ackrpc__mailbox__Mailbox_Deliver_method.name, buf,
                               len, &id);
    if (st != ACKRPC_OK) {
      printf("letter seq=%" PRIu64 " not stored in the outbox: %s: %s\n", seq,
             ackrpc_status_name(st), ackrpc_strerror(st));
      return -1;
    }
    if (id != seq) {
      printf("the outbox has another producer: letter seq=%" PRIu64 " got id %" PRIu64
             "\n",
             seq, id);
      return -1;
    }
  }
  return 0;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Whether a failed Count may succeed if asked again: it only reads, so any
 * transport failure (the receiver restarting, say) and the server's
 * temporary statuses are worth another try. */
static int count_retryable(ackrpc_status st) {
  return ackrpc_status_outcome(st) != ACKRPC_OUTCOME_ACKED ||
         st == ACKRPC_UNAVAILABLE || st == ACKRPC_DEADLINE_EXCEEDED ||
         st == ACKRPC_RESOURCE_EXHAUSTED || st == ACKRPC_ABORTED;
}

/* Asks the receiver how many letters it holds, retrying a failed call
 * (backoff 100 ms doubling to 1 s) for up to `wait_ms`; 0 if it holds
 * exactly `n` from this sender. */
static int check_count(ackrpc_client *client, const char *sender, uint64_t n,
                       uint64_t wait_ms, int relayed) {
  Ackrpc__Mailbox__CountRequest req = ACKRPC__MAILBOX__COUNT_REQUEST__INIT;
  req.sender = (char *)sender;
  Ackrpc__Mailbox__CountReply *reply = NULL;
  ackrpc_result result = {0};
  uint64_t waited = 0;
  unsigned backoff = 100;
  ackrpc_status st;
  for (unsigned attempt = 1;; attempt++) {
    st = ackrpc__mailbox__Mailbox_Count_call(client, &req, &reply, NULL, &result);
    if (st == ACKRPC_OK && relayed && reply && reply->from_sender < n &&
        waited + backoff <= wait_ms) {
      /* Through a relay, the letters acked may still be on their way. */
      ackrpc__mailbox__count_reply__free_unpacked(reply, NULL);
      reply = NULL;
      ackrpc_result_clear(&result);
      sleep_ms(backoff);
      waited += backoff;
      backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
      continue;
    }
    if (st == ACKRPC_OK) break;
    int again = count_retryable(st) && waited + backoff <= wait_ms;
    printf("count attempt %u failed: %s: %s (%s)%s\n", attempt, ackrpc_status_name(st),
           result.message ? result.message : ackrpc_strerror(st), outcome_text(st),
           again ? ": retrying" : "");
    ackrpc_result_clear(&result);
    if (!again) {
      printf("count failed\n");
      return -1;
    }
    sleep_ms(backoff);
    waited += backoff;
    backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
  }
  ackrpc_result_clear(&result);
  int rc = 0;
  if (!reply) {
    printf("count failed: OK without a reply\n");
    return -1;
  }
  printf("the mailbox holds %" PRIu64 " letters, %" PRIu64 " from %s\n", reply->letters,
         reply->from_sender, sender);
  if (reply->from_sender != n) {
    printf("expected exactly %" PRIu64 " letters from %s\n", n, sender);
    rc = -1;
  }
  ackrpc__mailbox__count_reply__free_unpacked(reply, NULL);
  return rc;
}

/* The default sender name: the same every time this outbox is used, so a
 * restarted sender resumes under the name its letters were stored with,
 * and different for different outboxes, so two senders do not mix their
 * letters: "mailbox_sender@HOST:HASH", HASH the FNV-1a hash of the outbox's
 * absolute path (it exists: the outbox is open). */
static void default_name(const char *outbox_path, char *out, size_t cap) {
  char host[64] = "localhost";
  if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
  host[sizeof host - 1] = '\0';
  char *abs = realpath(outbox_path, NULL);
  const char *p = abs ? abs : outbox_path;
  uint64_t h = 14695981039346656037u;
  for (; *p; p++)
    h = (h ^ (uint8_t)*p) * 1099511628211u;
  free(abs);
  snprintf(out, cap, "mailbox_sender@%s:%016" PRIx64, host, h);
}

static int usage(FILE *out, int rc) {
  fprintf(
      out,
      "usage: mailbox_sender [--timeout MS] [--attempts K] [--sender NAME]\n"
      "                      [--outbox DB] [--wait MS] [--count-socket ADDR]\n"
      "                      SOCKET [N]\n"
      "Delivers N letters (default 5) to the mailbox on SOCKET through the durable\n"
      "outbox DB (default mailbox_outbox.db), each with one call id for all its\n"
      "attempts, at most K attempts (default 5; 0: no limit), then checks the\n"
      "receiver's count. Each attempt's deadline is MS (default 5000). Restarted\n"
      "on the same DB, it resumes. --wait bounds the wait for the outbox to\n"
      "empty (default 600000 ms). The letters are sent as NAME, by default\n"
      "mailbox_sender@HOST:HASH of the outbox's path (the same on every run\n"
      "with that outbox). The final count is retried for up to 30 s, on ADDR\n"
      "if given (SOCKET a relay that only stores), else on SOCKET.\n");
  return rc;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
  char *end;
  if (s[0] < '0' || s[0] > '9') return -1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end != '\0' || errno != 0 || v < min || v > max) return -1;
  *ret = v;
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
    return usage(stdout, 0);
  if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) return 1;

  uint64_t timeout_ms = 5000, attempts = 5, n = 5, wait_ms = 600000;
  const char *outbox_path = "mailbox_outbox.db", *count_address = NULL;
  char name[128] = "";
  int i = 1;
  for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
    if (strcmp(argv[i], "--timeout") == 0 &&
        parse_u64(argv[i + 1], 1, 3600000, &timeout_ms) == 0)
      continue;
    if (strcmp(argv[i], "--attempts") == 0 &&
        parse_u64(argv[i + 1], 0, 1000000, &attempts) == 0)
      continue;
    if (strcmp(argv[i], "--wait") == 0 &&
        parse_u64(argv[i + 1], 1, 86400000, &wait_ms) == 0)
      continue;
    if (strcmp(argv[i], "--outbox") == 0 && argv[i + 1][0] != '\0') {
      outbox_path = argv[i + 1];
      continue;
    }
    if (strcmp(argv[i], "--count-socket") == 0 && argv[i + 1][0] != '\0') {
      count_address = argv[i + 1];
      continue;
    }
    if (strcmp(argv[i], "--sender") == 0 && argv[i + 1][0] != '\0' &&
        strlen(argv[i + 1]) < sizeof name) {
      snprintf(name, sizeof name, "%s", argv[i + 1]);
      continue;
    }
    return usage(stderr, 2);
  }
  if (argc - i < 1 || argc - i > 2 || argv[i][0] == '-') return usage(stderr, 2);
  const char *address = argv[i];
  if (argc - i == 2 && parse_u64(argv[i + 1], 1, 1000000, &n) != 0) {
    fprintf(stderr, "mailbox_sender: N must be 1 to 1000000, got '%s'\n", argv[i + 1]);
    return 2;
  }

  ackrpc_client_options options = {.address = count_address ? count_address : address,
                                   .timeout_ms = (uint32_t)timeout_ms};
  ackrpc_client *client = NULL;
  ackrpc_status st = ackrpc_client_new(&options, &client);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "mailbox_sender: cannot use address %s: %s: %s\n", address,
            ackrpc_status_name(st), ackrpc_strerror(st));
    return 2;
  }
  sender s = {.name = name, .n = n};
  uint64_t count_wait_ms = wait_ms < COUNT_WAIT_MS ? wait_ms : COUNT_WAIT_MS;
  ackrpc_outbox_options oo = {.path = outbox_path,
                              .address = address,
                              .call_timeout_ms = (uint32_t)timeout_ms,
                              .max_attempts = (unsigned)attempts,
                              .initial_backoff_ms = 100,
                              .max_backoff_ms = 1000,
                              .on_attempt = on_attempt,
                              .on_attempt_user = &s};
  ackrpc_outbox *ob = NULL;
  st = ackrpc_outbox_open(&oo, &ob);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "mailbox_sender: cannot open the outbox %s: %s: %s\n", outbox_path,
            ackrpc_status_name(st), ackrpc_strerror(st));
    ackrpc_client_free(client);
    return st == ACKRPC_E_INVAL || st == ACKRPC_E_ADDRESS ? 2 : 1;
  }

  if (!name[0]) default_name(outbox_path, name, sizeof name);
  printf("sender %s, outbox %s\n", name, outbox_path);

  int rc = 0;
  /* The worker runs while letters are enqueued: delivery starts at once. */
  st = ackrpc_outbox_start(ob);
  if (st != ACKRPC_OK) {
    printf("cannot start the outbox worker: %s\n", ackrpc_status_name(st));
    rc = 1;
  }
  if (rc == 0 && enqueue_letters(ob, name, n) != 0) rc = 1;
  if (rc == 0) {
    st = ackrpc_outbox_wait_idle(ob, (uint32_t)wait_ms);
    if (st == ACKRPC_E_STORE_CORRUPT) {
      printf("the outbox %s is damaged: %s: %s; delivery stopped. The letters not "
             "yet acked are still in it: recover them (sqlite3 .recover) or resend "
             "them; do not reuse the file.\n",
             outbox_path, ackrpc_status_name(st), ackrpc_strerror(st));
      rc = 1;
    } else if (st != ACKRPC_OK) {
      printf("the outbox did not empty: %s: %s\n", ackrpc_status_name(st),
             ackrpc_strerror(st));
      rc = 1;
    }
  }
  ackrpc_outbox_stop(ob);
  ackrpc_outbox_counts c = {0};
  if (ackrpc_outbox_count(ob, &c) == ACKRPC_OK)
    printf("%" PRIu64 " of %" PRIu64 " letters acknowledged (outbox: %" PRIu64
           " pending, %" PRIu64 " dead)\n",
           n - c.pending - c.dead, n, c.pending, c.dead);
  if (c.dead || c.pending) rc = 1;
  ackrpc_outbox_close(ob);
  if (rc == 0 &&
      check_count(client, name, n, count_wait_ms, count_address != NULL) != 0)
    rc = 1;
  ackrpc_client_free(client);
  return rc;
}
