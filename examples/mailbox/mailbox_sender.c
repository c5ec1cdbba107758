/* mailbox_sender: delivers letters to a mailbox_receiver with the generated
 * blocking stub, retrying each one safely until it is acknowledged.
 *
 *   mailbox_sender [--timeout MS] [--attempts K] [--sender NAME] SOCKET [N]
 *
 * Sends N letters (default 5), seq 1..N, one blocking call each, and prints
 * each acknowledgement ("ack seq=..."). A failed call is retried, at most K
 * attempts per letter (default 5), according to what its status says:
 *
 *   - not delivered (could not connect or send): the receiver never saw the
 *     call, so it is simply sent again;
 *   - delivered, no ack (or the receiver's own DEADLINE_EXCEEDED or
 *     UNAVAILABLE, answered while the letter may still be committing): the
 *     letter may be stored, so it is sent again WITH THE SAME CALL ID
 *     (ackrpc_result.call_id); the receiver recognises the id and answers
 *     with the original receipt instead of storing the letter twice. Once an
 *     id may have reached the receiver, every later attempt keeps it;
 *   - any other answer (INVALID_ARGUMENT, ALREADY_EXISTS, ...) is final.
 *
 * Finally it asks the receiver (Count) how many letters it holds from this
 * sender, which must be N: each letter stored exactly once.
 *
 * Exit status: 0 if every letter was acknowledged and counted; 1 otherwise,
 * after printing the status name and message of the final failure; 2 for a
 * usage error.
 */
/* getpid, nanosleep: POSIX beyond C11. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ackrpc/ackrpc.h>

#include "mailbox.ackrpc.h"

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

static void sleep_ms(unsigned ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* The receiver may have stored the letter: retry only with the same id. */
static int maybe_stored(ackrpc_status st) {
  return ackrpc_status_outcome(st) == ACKRPC_OUTCOME_NO_ACK ||
         st == ACKRPC_DEADLINE_EXCEEDED || st == ACKRPC_UNAVAILABLE;
}

/* Never reached the receiver: a plain retry is safe. */
static int not_delivered(ackrpc_status st) {
  return st == ACKRPC_E_CONNECT || st == ACKRPC_E_BUSY || st == ACKRPC_E_SEND ||
         st == ACKRPC_E_SEND_TIMEOUT;
}

/* Delivers letter `seq` with up to `attempts` attempts. Returns 0 once it is
 * acknowledged with a matching receipt. */
static int deliver(ackrpc_client *client, const char *sender, uint64_t seq, uint64_t n,
                   unsigned attempts) {
  char body[256];
  snprintf(body, sizeof body, "letter %" PRIu64 " of %" PRIu64 " from %s", seq, n,
           sender);
  Ackrpc__Mailbox__Letter letter = ACKRPC__MAILBOX__LETTER__INIT;
  letter.sender = (char *)sender;
  letter.seq = seq;
  letter.body = body;

  /* Empty until an attempt may have reached the receiver: the library then
   * makes a fresh id for each attempt. */
  uint8_t id[ACKRPC_MAX_CALL_ID];
  size_t id_len = 0;
  for (unsigned attempt = 1;; attempt++) {
    ackrpc_call_options opts = {.call_id = id_len ? id : NULL, .call_id_len = id_len};
    ackrpc_result result = {0};
    Ackrpc__Mailbox__Receipt *receipt = NULL;
    ackrpc_status st = ackrpc__mailbox__Mailbox_Deliver_call(client, &letter, &receipt,
                                                             &opts, &result);
    char id_hex[2 * ACKRPC_MAX_CALL_ID + 1];
    hex(result.call_id, result.call_id_len, id_hex, sizeof id_hex);

    if (st == ACKRPC_OK) {
      int rc = 0;
      if (!receipt) {
        printf("letter seq=%" PRIu64 ": OK without a receipt\n", seq);
        rc = -1;
      } else {
        printf("ack seq=%" PRIu64 " id=%" PRIu64 " stored_at_ms=%" PRIu64
               " attempt=%u call_id=%s\n",
               receipt->seq, receipt->id, receipt->stored_at_ms, attempt, id_hex);
        if (receipt->seq != seq || strcmp(receipt->sender, sender) != 0) {
          printf("letter seq=%" PRIu64 ": the receipt is for seq=%" PRIu64 " from %s\n",
                 seq, receipt->seq, receipt->sender);
          rc = -1;
        }
        ackrpc__mailbox__receipt__free_unpacked(receipt, NULL);
      }
      ackrpc_result_clear(&result);
      return rc;
    }

    const char *msg = result.message ? result.message : ackrpc_strerror(st);
    int retry_same = maybe_stored(st);
    int retry = retry_same || not_delivered(st);
    if (!retry || attempt >= attempts) {
      printf("letter seq=%" PRIu64 " failed after %u attempt(s): %s: %s (%s)", seq,
             attempt, ackrpc_status_name(st), msg, outcome_text(st));
      if (!result.message && result.sys_errno)
        printf(" [%s]", strerror(result.sys_errno));
      printf("\n");
      ackrpc_result_clear(&result);
      return -1;
    }
    if (retry_same) {
      memcpy(id, result.call_id, result.call_id_len);
      id_len = result.call_id_len;
      printf("letter seq=%" PRIu64 " attempt %u: %s: %s (%s): retrying with the same "
             "call id %s\n",
             seq, attempt, ackrpc_status_name(st), msg, outcome_text(st), id_hex);
    } else {
      printf("letter seq=%" PRIu64 " attempt %u: %s: %s (%s): retrying\n", seq, attempt,
             ackrpc_status_name(st), msg, outcome_text(st));
    }
    ackrpc_result_clear(&result);
    sleep_ms(attempt * 100 < 1000 ? attempt * 100 : 1000);
  }
}

/* Asks the receiver how many letters it holds; 0 if it holds exactly `n`
 * from this sender. */
static int check_count(ackrpc_client *client, const char *sender, uint64_t n) {
  Ackrpc__Mailbox__CountRequest req = ACKRPC__MAILBOX__COUNT_REQUEST__INIT;
  req.sender = (char *)sender;
  Ackrpc__Mailbox__CountReply *reply = NULL;
  ackrpc_result result = {0};
  ackrpc_status st =
      ackrpc__mailbox__Mailbox_Count_call(client, &req, &reply, NULL, &result);
  if (st != ACKRPC_OK) {
    printf("count failed: %s: %s (%s)\n", ackrpc_status_name(st),
           result.message ? result.message : ackrpc_strerror(st), outcome_text(st));
    ackrpc_result_clear(&result);
    return -1;
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

static int usage(FILE *out, int rc) {
  fprintf(out,
          "usage: mailbox_sender [--timeout MS] [--attempts K] [--sender NAME] SOCKET "
          "[N]\n"
          "Delivers N letters (default 5) to the mailbox on SOCKET, retrying each up\n"
          "to K times (default 5; the same call id when the outcome is unknown), then\n"
          "checks the receiver's count. Each call's deadline is MS (default 5000).\n");
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

  uint64_t timeout_ms = 5000, attempts = 5, n = 5;
  char sender[128];
  snprintf(sender, sizeof sender, "mailbox_sender[%ld]", (long)getpid());
  int i = 1;
  for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
    if (strcmp(argv[i], "--timeout") == 0 &&
        parse_u64(argv[i + 1], 1, 3600000, &timeout_ms) == 0)
      continue;
    if (strcmp(argv[i], "--attempts") == 0 &&
        parse_u64(argv[i + 1], 1, 1000, &attempts) == 0)
      continue;
    if (strcmp(argv[i], "--sender") == 0 && argv[i + 1][0] != '\0' &&
        strlen(argv[i + 1]) < sizeof sender) {
      snprintf(sender, sizeof sender, "%s", argv[i + 1]);
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

  ackrpc_client_options options = {.address = address,
                                   .timeout_ms = (uint32_t)timeout_ms};
  ackrpc_client *client = NULL;
  ackrpc_status st = ackrpc_client_new(&options, &client);
  if (st != ACKRPC_OK) {
    fprintf(stderr, "mailbox_sender: cannot use address %s: %s: %s\n", address,
            ackrpc_status_name(st), ackrpc_strerror(st));
    return 2;
  }

  int rc = 0;
  uint64_t acked = 0;
  for (uint64_t seq = 1; seq <= n; seq++) {
    if (deliver(client, sender, seq, n, (unsigned)attempts) != 0) {
      rc = 1;
      break;
    }
    acked++;
  }
  printf("%" PRIu64 " of %" PRIu64 " letters acknowledged\n", acked, n);
  if (rc == 0 && check_count(client, sender, n) != 0) rc = 1;
  ackrpc_client_free(client);
  return rc;
}
