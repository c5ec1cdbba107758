/* jetstream.c: durable delivery through a JetStream stream; see jetstream.h
 * and docs/SCALE.md, "Durable delivery (JetStream)".
 *
 * The guarantee rests on two de-duplications by call id: JetStream's
 * (Nats-Msg-Id, within the stream's duplicate window) for the sender's
 * retries into the stream, and the receiver's durable reply store for
 * redeliveries out of it (an ack to JetStream that was lost). Nothing is
 * acked on either side before the next hop has it on disk. */
#include "jetstream.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bridge.h"
#include "envelope.h"

#define SETUP_TRIES 60    /* 500 ms apart: 30 s for a cluster to elect */
#define FETCH_WAIT_MS 500 /* how often the consumer looks at the stop flag */
#define NAK_MIN_MS 100
#define NAK_MAX_MS 5000
/* AckWait beyond the local call's deadline: the bridge answers JetStream
 * (ack, nak or term) well within it, so a redelivery by AckWait means the
 * bridge is gone. */
#define ACK_WAIT_MARGIN_MS 10000
#define DEAD_PUB_WAIT_MS 5000 /* a dead letter's PubAck */

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* What went wrong, for the log: the status, nats.c's explanation on this
 * thread, and JetStream's error code. */
static const char *js_text(natsStatus s, jsErrCode jerr, char *buf, size_t cap) {
  natsStatus last = NATS_OK;
  const char *why = nats_GetLastError(&last);
  if (last != s || !why || !why[0]) why = natsStatus_GetText(s);
  if (jerr)
    snprintf(buf, cap, "%s (JetStream error %d)", why, (int)jerr);
  else
    snprintf(buf, cap, "%s", why);
  return buf;
}

/* Whether a failed JetStream API call may succeed later: the cluster is
 * electing leaders or the connection is moving (not a refusal, such as a
 * stream that does not exist or a consumer with other settings). */
static int transient(natsStatus s, jsErrCode jerr) {
  return s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS ||
         (jerr != 0 && jerr != JSStreamNotFoundErr);
}

/* --- setup ------------------------------------------------------------- */

/* Creates stream `name` storing `subject` (file storage, j->replicas). */
static natsStatus add_stream(const ackrpc_nats_js *j, const char *name,
                             const char *subject, jsErrCode *jerr) {
  const char *subjects[] = {subject};
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  sc.Name = name;
  sc.Subjects = subjects;
  sc.SubjectsLen = 1;
  sc.Storage = js_FileStorage;
  sc.Replicas = j->replicas > 0 ? j->replicas : 1;
  jsStreamInfo *si = NULL;
  *jerr = 0;
  natsStatus s = js_AddStream(&si, j->js, &sc, NULL, jerr);
  jsStreamInfo_Destroy(si);
  return s;
}

static natsStatus stream_check(ackrpc_nats_js *j, const char *prefix, jsErrCode *jerr) {
  jsStreamInfo *si = NULL;
  *jerr = 0;
  natsStatus s = js_GetStreamInfo(&si, j->js, j->stream, NULL, jerr);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(si);
    return NATS_OK;
  }
  if (!j->create_stream || *jerr != JSStreamNotFoundErr) return s;
  char subject[512];
  snprintf(subject, sizeof subject, "%s.>", prefix);
  s = add_stream(j, j->stream, subject, jerr);
  if (s == NATS_OK) {
    logf_("created stream %s (subjects %s, replicas %d)", j->stream, subject,
          j->replicas > 0 ? j->replicas : 1);
  } else if (*jerr == JSStreamNameExistErr) {
    s = NATS_OK; /* another bridge made it meanwhile */
  }
  return s;
}

int ackrpc_nats_js_setup(natsConnection *nc, ackrpc_nats_js *j, const char *prefix) {
  jsOptions jo;
  jsOptions_Init(&jo);
  natsStatus s = natsConnection_JetStream(&j->js, nc, &jo);
  if (s != NATS_OK) {
    logf_("cannot use JetStream: %s", natsStatus_GetText(s));
    return -1;
  }
  jsErrCode jerr = 0;
  char text[256];
  for (int i = 0; i < SETUP_TRIES; i++) {
    s = stream_check(j, prefix, &jerr);
    if (s == NATS_OK) return 0;
    if (!transient(s, jerr)) break;
    sleep_ms(500);
  }
  logf_("stream %s: %s%s", j->stream, js_text(s, jerr, text, sizeof text),
        jerr == JSStreamNotFoundErr ? " (create it, or pass --create-stream)" : "");
  return -1;
}

int ackrpc_nats_js_dead_letter_ok(const char *subject, const char *prefix, char *why,
                                  size_t cap) {
  size_t n = strlen(subject), plen = strlen(prefix);
  const char *bad = NULL;
  if (n == 0 || n > 255)
    bad = "must be 1 to 255 bytes";
  else if (subject[0] == '.' || subject[n - 1] == '.' || strstr(subject, ".."))
    bad = "has an empty token";
  for (size_t i = 0; !bad && i < n; i++)
    if (subject[i] <= ' ' || subject[i] > '~')
      bad = "may hold printable ASCII only, no spaces";
    else if (subject[i] == '*' || subject[i] == '>')
      bad = "must be literal (no wildcard)";
  if (!bad && strncmp(subject, prefix, plen) == 0 &&
      (subject[plen] == '.' || subject[plen] == '\0'))
    bad = "is under the prefix, whose subjects the export consumes";
  if (!bad) return 0;
  snprintf(why, cap, "the dead-letter subject '%s' %s", subject, bad);
  return -1;
}

int ackrpc_nats_js_dead_letter_setup(ackrpc_nats_js *j) {
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Info.SubjectsFilter = j->dead_letter;
  jsStreamNamesList *list = NULL;
  jsErrCode jerr = 0;
  char text[256];
  natsStatus s = NATS_ERR;
  for (int i = 0; i < SETUP_TRIES; i++) {
    jerr = 0;
    s = js_StreamNames(&list, j->js, &o, &jerr);
    if (s == NATS_OK || s == NATS_NOT_FOUND || !transient(s, jerr)) break;
    sleep_ms(500);
  }
  if (s == NATS_OK) {
    logf_("dead letters go to %s (stream %s)", j->dead_letter, list->List[0]);
    jsStreamNamesList_Destroy(list);
    return 0;
  }
  if (s != NATS_NOT_FOUND) {
    logf_("cannot look for the stream of %s: %s", j->dead_letter,
          js_text(s, jerr, text, sizeof text));
    return -1;
  }
  if (!j->create_stream) {
    logf_("no stream stores the dead-letter subject %s (create one, or pass "
          "--create-stream)",
          j->dead_letter);
    return -1;
  }
  char name[300];
  snprintf(name, sizeof name, "%s_DEAD", j->stream);
  for (int i = 0; i < SETUP_TRIES; i++) {
    s = add_stream(j, name, j->dead_letter, &jerr);
    if (s == NATS_OK || jerr == JSStreamNameExistErr || !transient(s, jerr)) break;
    sleep_ms(500);
  }
  if (s == NATS_OK) {
    logf_("dead letters go to %s (stream %s, created)", j->dead_letter, name);
    return 0;
  }
  if (jerr == JSStreamNameExistErr) {
    /* Another export made it meanwhile (then it stores the subject now),
     * or a stream of that name with other subjects is in the way. */
    s = js_StreamNames(&list, j->js, &o, &jerr);
    if (s == NATS_OK) {
      logf_("dead letters go to %s (stream %s)", j->dead_letter, list->List[0]);
      jsStreamNamesList_Destroy(list);
      return 0;
    }
    logf_("cannot create stream %s for %s: a stream of that name exists and does not "
          "store it",
          name, j->dead_letter);
    return -1;
  }
  logf_("cannot create stream %s for %s: %s", name, j->dead_letter,
        js_text(s, jerr, text, sizeof text));
  return -1;
}

void ackrpc_nats_js_close(ackrpc_nats_js *j) {
  if (j->js) jsCtx_Destroy(j->js);
  j->js = NULL;
}

/* --- import: publish, answer after the PubAck --------------------------- */

void ackrpc_nats_js_import_one(const ackrpc_nats_js *j, ackrpc_call *call, natsMsg *msg,
                               int64_t timeout_ms, int verbose) {
  const char *id_hex = NULL;
  char text[512], why[256];
  if (natsMsgHeader_Get(msg, ACKRPC_NATS_H_CALL_ID, &id_hex) != NATS_OK ||
      id_hex[0] == '\0') {
    /* The protocol requires a call id, so this does not happen through an
     * ackrpc socket; without one there would be no de-duplication. */
    ackrpc_call_reply_encoded(call, ACKRPC_INVALID_ARGUMENT,
                              "a message for JetStream needs a call id", NULL, 0);
    return;
  }
  natsMsgHeader_Delete(msg, ACKRPC_NATS_H_TIMEOUT);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = id_hex;
  po.ExpectStream = j->stream;
  po.MaxWait = timeout_ms > 0 ? timeout_ms : 1;
  jsPubAck *pa = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_PublishMsg(&pa, j->js, msg, &po, &jerr);
  if (s == NATS_OK) {
    snprintf(text, sizeof text, "%s in stream %s as message %llu",
             pa->Duplicate ? "already stored" : "stored", pa->Stream,
             (unsigned long long)pa->Sequence);
    ackrpc_call_reply_encoded(call, ACKRPC_OK, text, NULL, 0);
  } else if (s == NATS_TIMEOUT) {
    /* The message may be stored: a retry with the same call id is stored
     * once (within the duplicate window). */
    snprintf(text, sizeof text, "no PubAck from stream %s before the deadline",
             j->stream);
    ackrpc_call_reply_encoded(call, ACKRPC_DEADLINE_EXCEEDED, text, NULL, 0);
  } else {
    snprintf(text, sizeof text, "stream %s did not store the message: %s", j->stream,
             js_text(s, jerr, why, sizeof why));
    ackrpc_call_reply_encoded(call, ACKRPC_UNAVAILABLE, text, NULL, 0);
  }
  if (verbose)
    logf_("%s call_id=%s: %s", natsMsg_GetSubject(msg), id_hex,
          s == NATS_OK ? text : js_text(s, jerr, why, sizeof why));
  jsPubAck_Destroy(pa);
}

/* --- export: a durable consumer delivering to the local server ---------- */

typedef struct consumer {
  const ackrpc_nats_js *j;
  ackrpc_client *client;
  const char *prefix;
  uint32_t timeout_ms;
  int verbose;
  natsSubscription *sub;
  atomic_int stop;
} consumer;

/* Statuses after which the message is offered again (as the outbox's
 * default retry_on). */
static int retryable(ackrpc_status st) {
  return st == ACKRPC_UNAVAILABLE || st == ACKRPC_DEADLINE_EXCEEDED ||
         st == ACKRPC_RESOURCE_EXHAUSTED || st == ACKRPC_ABORTED;
}

static uint64_t stream_seq(natsMsg *msg, uint64_t *delivered) {
  jsMsgMetaData *meta = NULL;
  uint64_t seq = 0;
  *delivered = 1;
  if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
    seq = meta->Sequence.Stream;
    *delivered = meta->NumDelivered ? meta->NumDelivered : 1;
    jsMsgMetaData_Destroy(meta);
  }
  return seq;
}

/* Copies msg's headers to d, but not JetStream's own (Nats-*). */
static natsStatus copy_headers(natsMsg *msg, natsMsg *d) {
  const char **keys = NULL;
  int n = 0;
  natsStatus s = natsMsgHeader_Keys(msg, &keys, &n);
  if (s == NATS_NOT_FOUND) return NATS_OK; /* no headers */
  for (int i = 0; s == NATS_OK && i < n; i++) {
    if (strncasecmp(keys[i], "Nats-", 5) == 0) continue;
    const char **values = NULL;
    int nv = 0;
    s = natsMsgHeader_Values(msg, keys[i], &values, &nv);
    for (int k = 0; s == NATS_OK && k < nv; k++)
      s = natsMsgHeader_Add(d, keys[i], values[k]);
    free((void *)values);
  }
  free((void *)keys);
  return s;
}

/* The dead letter of `msg`: its body, its headers but JetStream's own
 * (unless `copy` is 0: none of them), and the Ackrpc-Dead-* headers. */
static natsStatus dead_msg(const consumer *c, natsMsg *msg, unsigned long long seq,
                           const char *reason, int status, int copy, natsMsg **ret) {
  char line[512], num[32];
  natsMsg *d = NULL;
  natsStatus s = natsMsg_Create(&d, c->j->dead_letter, NULL, natsMsg_GetData(msg),
                                natsMsg_GetDataLength(msg));
  if (s == NATS_OK && copy) s = copy_headers(msg, d);
  ackrpc_nats_message_clean(reason, line, sizeof line);
  if (s == NATS_OK) s = natsMsgHeader_Set(d, ACKRPC_NATS_H_DEAD_REASON, line);
  if (s == NATS_OK && status >= 0) {
    snprintf(num, sizeof num, "%d", status);
    s = natsMsgHeader_Set(d, ACKRPC_NATS_H_DEAD_STATUS, num);
  }
  if (s == NATS_OK)
    s = natsMsgHeader_Set(d, ACKRPC_NATS_H_DEAD_SUBJECT, natsMsg_GetSubject(msg));
  if (s == NATS_OK) s = natsMsgHeader_Set(d, ACKRPC_NATS_H_DEAD_STREAM, c->j->stream);
  snprintf(num, sizeof num, "%llu", seq);
  if (s == NATS_OK) s = natsMsgHeader_Set(d, ACKRPC_NATS_H_DEAD_SEQ, num);
  if (s != NATS_OK) {
    natsMsg_Destroy(d);
    d = NULL;
  }
  *ret = d;
  return s;
}

/* Whether publishing a dead letter may work later: nobody answered (the
 * stream is gone, JetStream is down), no PubAck in time, the connection
 * is moving, or memory ran out. A refusal by the stream (too large, full
 * with DiscardNew) or the server (over max_payload) will not change. */
static int dead_retry(natsStatus s) {
  /* (nats.c sets a JetStream error code with NATS_NO_RESPONDERS too.) */
  return s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS || s == NATS_CONNECTION_CLOSED ||
         s == NATS_CONNECTION_DISCONNECTED || s == NATS_NO_MEMORY;
}

/* A message that will never be delivered: terminated, after it is stored
 * on the dead-letter subject when there is one. While the dead letter may
 * yet be stored it is kept (Nak'ed); refused for good there, it is
 * terminated anyway (and stays in its stream under the stream's limits, as
 * without --dead-letter). `status` is the local server's refusal, or -1 if
 * it was never delivered. */
static void terminate(consumer *c, natsMsg *msg, unsigned long long seq,
                      const char *reason, int status) {
  const ackrpc_nats_js *j = c->j;
  if (!j->dead_letter) {
    natsMsg_Term(msg, NULL);
    return;
  }
  char id[300], text[256], why[600];
  natsMsg *d = NULL;
  natsStatus s = dead_msg(c, msg, seq, reason, status, 1, &d);
  if (s != NATS_OK && s != NATS_NO_MEMORY) {
    /* Headers nats.c cannot read back (a peer's malformed header block):
     * the body and why, without them. */
    snprintf(why, sizeof why, "%s (its headers could not be read: %s)", reason,
             natsStatus_GetText(s));
    s = dead_msg(c, msg, seq, why, status, 0, &d);
  }
  jsPubAck *pa = NULL;
  jsErrCode jerr = 0;
  if (s == NATS_OK) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    snprintf(id, sizeof id, "%s-%llu", j->stream, seq);
    /* A redelivery (this Term lost) is stored once, within the dead-letter
     * stream's duplicate window; without a sequence, no id. */
    po.MsgId = seq ? id : NULL;
    po.MaxWait = DEAD_PUB_WAIT_MS;
    s = js_PublishMsg(&pa, j->js, d, &po, &jerr);
  }
  if (s == NATS_OK) {
    logf_("stream message %llu: stored on %s as message %llu of stream %s%s: "
          "terminated",
          seq, j->dead_letter, (unsigned long long)pa->Sequence, pa->Stream,
          pa->Duplicate ? " (already there)" : "");
    natsMsg_Term(msg, NULL);
  } else if (dead_retry(s)) {
    logf_("stream message %llu: cannot store it on %s: %s: kept, again in %d ms", seq,
          j->dead_letter, js_text(s, jerr, text, sizeof text), NAK_MAX_MS);
    natsMsg_NakWithDelay(msg, NAK_MAX_MS, NULL);
  } else {
    logf_("stream message %llu: %s refused it: %s: terminated without a dead letter "
          "(it stays in stream %s under its limits)",
          seq, j->dead_letter, js_text(s, jerr, text, sizeof text), j->stream);
    natsMsg_Term(msg, NULL);
  }
  jsPubAck_Destroy(pa);
  natsMsg_Destroy(d);
}

/* Delivers one message to the local server and settles it on JetStream. */
static void deliver_one(consumer *c, natsMsg *msg) {
  uint64_t delivered = 1;
  unsigned long long seq = (unsigned long long)stream_seq(msg, &delivered);
  char method[ACKRPC_MAX_METHOD_NAME + 1], text[256];
  uint8_t call_id[ACKRPC_MAX_CALL_ID];
  size_t call_id_len = 0;
  const char *v = NULL, *why = NULL;
  md_buf *mb = calloc(1, sizeof *mb);
  if (!mb) {
    natsMsg_NakWithDelay(msg, NAK_MAX_MS, NULL); /* out of memory: later */
    return;
  }
  if (ackrpc_nats_method(c->prefix, natsMsg_GetSubject(msg), method, sizeof method) !=
      0)
    why = "the subject names no method";
  else if (natsMsgHeader_Get(msg, ACKRPC_NATS_H_CALL_ID, &v) != NATS_OK ||
           ackrpc_nats_hex_decode(v, call_id, sizeof call_id, &call_id_len) != 0 ||
           call_id_len == 0)
    why = "no Ackrpc-Call-Id of 1 to 64 bytes in lowercase hex";
  else
    md_decode(msg, mb, &why);
  if (why) {
    /* Not an envelope we can deliver: it never will be. */
    logf_("stream message %llu (%s): %s: %s", seq, natsMsg_GetSubject(msg), why,
          c->j->dead_letter ? "a dead letter" : "terminated");
    terminate(c, msg, seq, why, -1);
    free(mb);
    return;
  }
  ackrpc_call_options o = {.timeout_ms = c->timeout_ms,
                           .call_id = call_id,
                           .call_id_len = call_id_len,
                           .metadata = mb->md,
                           .metadata_count = mb->n};
  ackrpc_result r = {0};
  ackrpc_status st =
      ackrpc_client_call_raw(c->client, method, (const uint8_t *)natsMsg_GetData(msg),
                             (size_t)natsMsg_GetDataLength(msg), &o, &r);
  ackrpc_outcome out = ackrpc_status_outcome(st);
  const char *msg_text = r.message ? r.message : ackrpc_strerror(st);
  if (st == ACKRPC_OK) {
    /* Acked on JetStream only now. If this ack is lost, JetStream
     * redelivers and the server's reply store answers the repeat. */
    jsErrCode jerr = 0;
    natsStatus s = natsMsg_AckSync(msg, NULL, &jerr);
    if (s != NATS_OK)
      logf_("stream message %llu call_id=%s: delivered, ack to JetStream failed: %s "
            "(it will be redelivered)",
            seq, v, js_text(s, jerr, text, sizeof text));
    else if (c->verbose)
      logf_("stream message %llu call_id=%s: %s OK", seq, v, method);
  } else if ((out == ACKRPC_OUTCOME_ACKED && retryable(st)) ||
             (out != ACKRPC_OUTCOME_ACKED && st != ACKRPC_E_INVAL)) {
    uint64_t delay = NAK_MIN_MS;
    for (uint64_t i = 1; i < delivered && delay < NAK_MAX_MS; i++)
      delay *= 2;
    if (delay > NAK_MAX_MS) delay = NAK_MAX_MS;
    if (c->verbose || delivered == 1)
      logf_("stream message %llu call_id=%s: %s: %s (delivery %llu): again in %llu ms",
            seq, v, ackrpc_status_name(st), msg_text, (unsigned long long)delivered,
            (unsigned long long)delay);
    natsMsg_NakWithDelay(msg, (int64_t)delay, NULL);
  } else {
    /* A refusal for good: redelivering it would get the same answer and,
     * with MaxAckPending 1, hold up every message behind it. */
    logf_("stream message %llu call_id=%s: %s refused: %s: %s: %s", seq, v, method,
          ackrpc_status_name(st), msg_text,
          c->j->dead_letter ? "a dead letter" : "terminated");
    snprintf(text, sizeof text, "%s: %s", ackrpc_status_name(st), msg_text);
    terminate(c, msg, seq, text, out == ACKRPC_OUTCOME_ACKED ? (int)st : -1);
  }
  ackrpc_result_clear(&r);
  md_free(mb);
  free(mb);
}

static void *consume(void *arg) {
  consumer *c = arg;
  char text[256];
  natsStatus last = NATS_OK;
  while (!atomic_load(&c->stop)) {
    natsMsgList list = {0};
    jsErrCode jerr = 0;
    natsStatus s = natsSubscription_Fetch(&list, c->sub, 1, FETCH_WAIT_MS, &jerr);
    if (s == NATS_OK) {
      for (int i = 0; i < list.Count; i++) {
        if (!atomic_load(&c->stop))
          deliver_one(c, list.Msgs[i]);
        else
          natsMsg_Nak(list.Msgs[i], NULL); /* now, not after AckWait */
      }
      natsMsgList_Destroy(&list);
    } else if (s != NATS_TIMEOUT) {
      /* The connection is moving to another node, or the consumer's
       * leader is being elected: try again shortly (logged once a run). */
      if (s != last) logf_("fetch: %s", js_text(s, jerr, text, sizeof text));
      sleep_ms(250);
    }
    if (s != NATS_TIMEOUT) last = s;
  }
  return NULL;
}

int ackrpc_nats_js_export(const ackrpc_nats_js *j, ackrpc_client *client,
                          const char *prefix, const char *service, uint32_t timeout_ms,
                          int verbose, int (*wait_stop)(void)) {
  consumer c = {.j = j,
                .client = client,
                .prefix = prefix,
                .timeout_ms = timeout_ms,
                .verbose = verbose};
  atomic_init(&c.stop, 0);
  char filter[512], text[256];
  if (service)
    snprintf(filter, sizeof filter, "%s.%s.*", prefix, service);
  else
    snprintf(filter, sizeof filter, "%s.>", prefix);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = j->stream;
  so.Config.Durable = j->durable;
  so.Config.AckPolicy = js_AckExplicit;
  so.Config.DeliverPolicy = js_DeliverAll;
  /* One message in flight: delivery in stream order, a Nak'ed message
   * before any later one. */
  so.Config.MaxAckPending = 1;
  so.Config.AckWait = ((int64_t)timeout_ms + ACK_WAIT_MARGIN_MS) * 1000000;
  natsStatus s = NATS_ERR;
  jsErrCode jerr = 0;
  for (int i = 0; i < SETUP_TRIES; i++) {
    jerr = 0;
    s = js_PullSubscribe(&c.sub, j->js, filter, j->durable, NULL, &so, &jerr);
    if (s == NATS_OK || !transient(s, jerr)) break;
    sleep_ms(500);
  }
  if (s != NATS_OK) {
    logf_("cannot consume %s from stream %s as %s: %s", filter, j->stream, j->durable,
          js_text(s, jerr, text, sizeof text));
    return -1;
  }
  pthread_t t;
  if (pthread_create(&t, NULL, consume, &c) != 0) {
    logf_("cannot start the consumer's thread");
    natsSubscription_Destroy(c.sub);
    return -1;
  }
  logf_("delivering %s from stream %s (durable consumer %s) to the local server",
        filter, j->stream, j->durable);
  logf_("ready");
  int sig = wait_stop();
  logf_("%s: stopping", strsignal(sig));
  atomic_store(&c.stop, 1);
  pthread_join(t, NULL);
  /* Not Unsubscribe: that would delete the durable consumer. */
  natsSubscription_Destroy(c.sub);
  return 0;
}
