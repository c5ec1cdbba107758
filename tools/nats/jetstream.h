/* jetstream.h: durable delivery through a JetStream stream (docs/SCALE.md,
 * "Durable delivery (JetStream)").
 *
 *   import --jetstream STREAM  each call to the local socket is published
 *       into STREAM with its call id as Nats-Msg-Id, and answered OK only
 *       once JetStream's PubAck says it is stored (a duplicate too);
 *   export --jetstream STREAM --durable NAME  a durable pull consumer with
 *       explicit acks: each message becomes a local call with its call id
 *       and metadata, acked on JetStream only after the local server's OK.
 *
 * Tool code (libnats), never part of libackrpc. Nothing here exits. */
#ifndef ACKRPC_NATS_JETSTREAM_H
#define ACKRPC_NATS_JETSTREAM_H

#include <stdint.h>

#include <nats/nats.h>

#include <ackrpc/ackrpc.h>

typedef struct ackrpc_nats_js {
  const char *stream;      /* --jetstream; NULL: plain request/reply */
  const char *durable;     /* export: --durable */
  int create_stream;       /* import and export: --create-stream */
  int replicas;            /* for --create-stream (1 to 5) */
  const char *dead_letter; /* export: --dead-letter SUBJECT; NULL: none */
  jsCtx *js;               /* ackrpc_nats_js_setup()'s */
} ackrpc_nats_js;

/* Makes j->js on `nc` and checks that j->stream exists, creating it (all
 * subjects "PREFIX.>", j->replicas, file storage) when j->create_stream.
 * While JetStream is not ready (a cluster electing its leaders) it tries
 * again for up to 30 s. Returns 0, or -1 after logging why (then j->js may
 * be set: ackrpc_nats_js_close()). */
int ackrpc_nats_js_setup(natsConnection *nc, ackrpc_nats_js *j, const char *prefix);

/* Whether `subject` may be a dead-letter subject for an export with
 * `prefix`: a literal NATS subject (1 to 255 bytes, dot-separated non-empty
 * tokens of printable ASCII, no wildcard) outside PREFIX.> (which the
 * export consumes). 0, or -1 with the reason in why[0..cap). */
int ackrpc_nats_js_dead_letter_ok(const char *subject, const char *prefix, char *why,
                                  size_t cap);

/* export, after ackrpc_nats_js_setup(), with j->dead_letter set: checks that
 * a stream stores j->dead_letter, creating stream "STREAM_DEAD" (that
 * subject only, j->replicas, file storage) when none does and
 * j->create_stream. Tries again while JetStream is not ready (up to 30 s).
 * Returns 0, or -1 after logging why. */
int ackrpc_nats_js_dead_letter_setup(ackrpc_nats_js *j);

/* Releases j->js (NULL is fine). */
void ackrpc_nats_js_close(ackrpc_nats_js *j);

/* import: publishes `msg` (the envelope of `call`: subject, body, headers,
 * as a plain import would send it; owned by the caller) into the stream
 * with its Ackrpc-Call-Id as Nats-Msg-Id, waiting up to `timeout_ms` for
 * the PubAck, and answers `call` (from this thread): OK with an empty body
 * once stored (or already stored: a duplicate within the stream's window),
 * DEADLINE_EXCEEDED when no PubAck came in time (it may be stored: a retry
 * with the call id is stored once), UNAVAILABLE when JetStream refused or
 * could not be reached, INVALID_ARGUMENT for a message without a call id.
 * The Ackrpc-Timeout-Ms header is removed from `msg`: a stored message has
 * no caller waiting for it. */
void ackrpc_nats_js_import_one(const ackrpc_nats_js *j, ackrpc_call *call, natsMsg *msg,
                               int64_t timeout_ms, int verbose);

/* export: consumes durable consumer j->durable of the stream (created if
 * missing: pull, AckPolicy explicit, MaxAckPending 1, filter "PREFIX.>" or
 * "PREFIX.SERVICE.*" when `service` is not NULL) on a thread of its own,
 * delivering each message to `client` as a raw call with its call id and
 * metadata (deadline: `timeout_ms` per attempt) and acking it (AckSync)
 * only after an OK. A retryable answer (UNAVAILABLE, DEADLINE_EXCEEDED,
 * RESOURCE_EXHAUSTED, ABORTED) or a call not delivered or not acked is
 * Nak'ed with a backoff (0.1 s doubling to 5 s, by delivery count); any
 * other status, and a message that is not an ackrpc envelope with a call
 * id, is terminated (Term) and logged. With j->dead_letter, such a message
 * is first published to that subject (its body, its headers but
 * JetStream's own Nats-*, and the Ackrpc-Dead-* headers of envelope.h;
 * Nats-Msg-Id "STREAM-SEQ", so a redelivery is stored once within the
 * dead-letter stream's duplicate window) and terminated only after the
 * PubAck. While it may yet be stored (no responders, no PubAck in time,
 * the connection moving) it is Nak'ed (5 s) and kept; refused for good
 * there (too large, a full stream) it is terminated, logged. Calls
 * `wait_stop()` on this thread; when it returns, stops after the message in
 * hand and returns 0, or -1 if the consumer could not be set up (logged). */
int ackrpc_nats_js_export(const ackrpc_nats_js *j, ackrpc_client *client,
                          const char *prefix, const char *service, uint32_t timeout_ms,
                          int verbose, int (*wait_stop)(void));

#endif
