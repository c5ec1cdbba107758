/* engine.h: the client's one protocol engine (internal: not installed).
 *
 * A link is one connection as the protocol sees it: calls queued in order,
 * their request frames going out, reply frames coming back and being matched
 * to the calls in order, deadlines, and what each way of failing means for
 * each call. Every client path drives a link: a one-shot call is a link that
 * half-closes after its one frame, a session a link kept between calls, an
 * asynchronous session a link with many calls in flight. So a failure has
 * one meaning, whichever way the caller came in.
 *
 * The engine does no I/O and reads no clock: bytes and events go in (a
 * connect that succeeded or failed, bytes written, bytes read, EOF, an
 * error, the time), results come out. io.c does the system calls for it;
 * the drivers (poll() in poll.c, libevent in async.c and async_session.c)
 * only wait for what akr_link_wait() says.
 *
 * Outcomes, decided here only:
 *   - connect refused or failed: E_CONNECT; the server's queue full until
 *     the earliest deadline: E_BUSY;
 *   - connected to a server that runs as a user the link does not trust
 *     (akr_link_connected()): E_SERVER_IDENTITY for every call queued, and
 *     the connection is dropped before a byte is written;
 *   - a frame not fully sent when the connection broke: E_SEND (a reply
 *     the server sent before closing, if one came, is the outcome instead);
 *     one whose deadline passed first: E_SEND_TIMEOUT;
 *   - a frame fully sent, then: the reply's status (ACKED); E_NO_ACK if the
 *     connection ended or broke first; E_ACK_TIMEOUT at the deadline;
 *     E_BAD_REPLY for a reply frame that is malformed, over max_reply, or
 *     whose OK body does not decode (or nests deeper than max_depth, or
 *     needs more decoding memory than result.c allows);
 *   - a call with an empty frame (len 0) completes, OK, as soon as the link
 *     is connected: that is how a session connects before its first call;
 *   - a frame not yet started when its connection ended stays queued and
 *     goes out on the next connection (nothing of it was sent). So does the
 *     call being sent when a kept connection turns out to have been closed
 *     by the server while idle (the first write or read fails before any
 *     call on it is outstanding): once per call.
 */
#ifndef AKR_CLIENT_ENGINE_H
#define AKR_CLIENT_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <protobuf-c/protobuf-c.h>

#include "ackrpc/client.h"
#include "platform/address.h"
#include "platform/fdpass.h"

#define AKR_LINK_IOV_MAX 64 /* pieces handed to one sendmsg() */

/* A call as the engine sees it. The caller owns it and its frame; the
 * engine links it into its queue from akr_link_push() until it is released
 * (see akr_link_pop()). */
typedef struct akr_ccall akr_ccall;
struct akr_ccall {
  /* Set by the caller before akr_link_push(). */
  const struct iovec *iov; /* the request frame, in pieces */
  size_t n_iov;
  size_t len;           /* bytes of the frame in all */
  uint64_t deadline_us; /* the call fails at this time (CLOCK_MONOTONIC) */
  uint32_t timeout_ms;  /* the deadline as a duration, for messages */
  const ProtobufCMessageDescriptor *reply_desc; /* NULL: keep the body's bytes */
  ackrpc_result *result;                        /* filled when the call completes */
  const int *fds; /* sent with the frame's first byte (borrowed) */
  size_t n_fds;
  unsigned max_reply_fds; /* accepted with the reply */
  /* The engine's. */
  akr_ccall *next;          /* in the queue */
  akr_ccall *next_done;     /* in the list akr_link_pop() returns */
  unsigned char sent;       /* every byte of the frame was sent */
  unsigned char completed;  /* its result is final */
  unsigned char released;   /* the engine holds it no more */
  unsigned char resent;     /* already sent again on a new connection */
  unsigned char memfd_read; /* the reply says the body memfd was taken */
  unsigned char on_done;    /* in the done list */
  /* The driver's. */
  unsigned char reported; /* the driver has reported its result */
};

/* How a link treats its connection. */
typedef enum akr_link_mode {
  AKR_LINK_ONE_SHOT, /* one call; half-close after its frame */
  AKR_LINK_SESSION,  /* kept between calls; a call whose deadline passes
                      * after it was sent drops the connection */
  AKR_LINK_PIPELINE, /* kept; a call whose deadline passes after it was
                      * sent stays in line so its late reply is dropped */
} akr_link_mode;

/* What a link takes from its client: where to connect, and what it
 * accepts from the server there. Each owner of links (client, session,
 * asynchronous call or session) keeps its own copy. */
typedef struct akr_link_conf {
  akr_address addr;
  size_t max_reply;   /* largest reply frame */
  unsigned max_depth; /* deepest nesting of a reply body */
  ackrpc_server_check server_check;
  uid_t server_uid;  /* for ACKRPC_SERVER_CHECK_UID */
  size_t memfd_min;  /* request bodies from this size go in a memfd; 0: never */
  int memfd_replies; /* reply bodies are taken in a memfd (§2.6) */
  /* What the client has learnt about whether the server takes request
   * bodies in a memfd (request.h), shared by every copy of the client's
   * conf (each takes a reference); NULL when memfd_min is 0. */
  struct akr_memo *memo;
} akr_link_conf;

typedef struct akr_link {
  const akr_link_conf *conf; /* borrowed: must outlive the link */
  akr_link_mode mode;
  int fd;     /* the connection; -1: none */
  int reused; /* a call has completed on this connection */
  int shut;   /* this side has half-closed */
  int broken; /* a write failed: read what is left, then drop */
  int broken_errno;
  const char *drop_why; /* not NULL: the engine wants the connection gone */
  uint64_t busy_until_us, busy_backoff_us; /* connect: the queue was full */
  akr_ccall *head, *tail;                  /* calls in order, oldest first */
  akr_ccall *cursor; /* the first call not fully sent; NULL: none */
  size_t cursor_off; /* bytes of it sent */
  uint64_t sent;     /* bytes sent on this connection */
  akr_ccall *done_head, *done_tail;
  /* Reply bytes: [in_off, in_len) of `in` are received, not yet parsed. */
  uint8_t *in;
  size_t in_off, in_len, in_cap;
  uint8_t *in_own; /* the initial buffer, not freed by the engine */
  size_t in_own_cap;
  size_t in_reserve; /* a kept link grows its buffer by this much more */
  uint64_t rx;       /* bytes read on this connection */
  akr_fdq fdq;       /* descriptors read, not yet matched to their reply */
  /* Called (if set) just before io.c closes the connection's descriptor,
   * so that an event loop forgets it first. */
  void (*before_close)(void *arg);
  void *before_close_arg;
} akr_link;

/* A link with no connection. `buffer` (may be NULL) is where replies are
 * read first; larger ones move to the heap. */
void akr_link_init(akr_link *link, const akr_link_conf *conf, akr_link_mode mode,
                   uint8_t *buffer, size_t buffer_len);

/* Frees what the link allocated. The connection must be closed first
 * (akr_io_close()); calls still queued are left as they are. */
void akr_link_free(akr_link *link);

/* Queues a call (its result is untouched until it completes). */
void akr_link_push(akr_link *link, akr_ccall *call);

/* Whether any call is queued and not completed. */
int akr_link_busy(const akr_link *link);

/* Completes calls whose deadline passed by `now_us`. */
void akr_link_tick(akr_link *link, uint64_t now_us);

/* What to do next, at `now_us` (after akr_link_tick()):
 *   AKR_WAIT_NONE:    nothing pending;
 *   AKR_WAIT_CONNECT: connect now (no connection, calls waiting);
 *   AKR_WAIT_IO:      wait for *ret_events (AKR_EV_*) on link->fd, or until
 *                     *ret_until_us, whichever comes first;
 *   AKR_WAIT_TIMER:   wait until *ret_until_us (the queue was full). */
typedef enum akr_wait {
  AKR_WAIT_NONE,
  AKR_WAIT_CONNECT,
  AKR_WAIT_IO,
  AKR_WAIT_TIMER
} akr_wait;
#define AKR_EV_READ 1
#define AKR_EV_WRITE 2
akr_wait akr_link_wait(const akr_link *link, uint64_t now_us, int *ret_events,
                       uint64_t *ret_until_us);

/* --- Events, reported by io.c --- */

/* What io.c learnt about the server of a new connection. */
typedef struct akr_peer {
  int cred_errno; /* 0: `uid` is known (SO_PEERCRED); else why not */
  uid_t uid;      /* the server's effective uid when it called listen() */
  uid_t self;     /* this process's effective uid */
  /* 0: `owner` is known; else why not (ENODATA: not looked up). */
  int owner_errno;
  uid_t owner; /* who owns the socket's directory (the socket file, when
                * the directory is sticky): see akr_link_wants_owner() */
  int owner_is_file;
} akr_peer;

/* Whether akr_link_connected() needs peer->owner to judge this server (the
 * default check, a path address, and a server that is neither root nor
 * this process's user): the caller looks it up only then. */
int akr_link_wants_owner(const akr_link *link, const akr_peer *peer);

/* A connection was made to a server described by `peer`. If the link does
 * not trust it (conf->server_check), every queued call fails with
 * E_SERVER_IDENTITY and the engine wants the connection dropped
 * (akr_link_wants_drop()): nothing is sent on it. */
void akr_link_connected(akr_link *link, int fd, const akr_peer *peer);
/* Connecting failed with `err` (EAGAIN: the server's queue is full). */
void akr_link_connect_failed(akr_link *link, int err, uint64_t now_us);

/* The pieces to send next: up to `max` entries of iov; returns how many
 * (0: nothing to send). A frame with descriptors goes out alone from its
 * first byte, with ret_fds and ret_n_fds set (else NULL and 0): the pieces
 * then end with that frame (docs/PROTOCOL.md §2.5). */
size_t akr_link_output(const akr_link *link, struct iovec *iov, size_t max,
                       const int **ret_fds, size_t *ret_n_fds);
/* `n` bytes of the output were sent. */
void akr_link_wrote(akr_link *link, size_t n);
/* Whether the link wants the connection half-closed now (every frame of a
 * one-shot link is sent); set link->shut once it is. */
static inline int akr_link_wants_shut(const akr_link *l) {
  return l->mode == AKR_LINK_ONE_SHOT && l->fd >= 0 && !l->shut && !l->broken &&
         l->head && !l->cursor;
}
/* Sending failed with `err`: what the server may have answered is still
 * to be read (akr_link_input() ...), then akr_link_closed(). */
void akr_link_write_failed(akr_link *link, int err);

/* Where to read reply bytes: *ret_room bytes at *ret_buf. -1 if no memory
 * for them (the calls waiting for them have failed then). */
int akr_link_input(akr_link *link, uint8_t **ret_buf, size_t *ret_room);
/* Whether reading should go on: a call still waits for a reply (or, after a
 * failed write, there may be one). */
static inline int akr_link_wants_read(const akr_link *l) {
  return l->fd >= 0 && !l->drop_why && (l->broken || l->head != NULL);
}
/* How many descriptors a read may bring: the most any queued call takes. */
unsigned akr_link_max_fds(const akr_link *link);
/* `n` > 0 bytes were read into the input (the descriptors read with them
 * are in link->fdq, tagged from link->rx): complete replies are matched to
 * their calls. */
void akr_link_read(akr_link *link, size_t n);

/* The connection ended (EOF, read error `err`, or after a failed write) and
 * the caller has closed its descriptor: the calls are settled as the header
 * says and the link has no connection. `err` 0: EOF. */
void akr_link_closed(akr_link *link, int err);
/* Whether the engine wants the connection dropped now (a malformed reply
 * stream, or a call abandoned mid-frame): the caller closes it and calls
 * akr_link_closed(link, 0). */
static inline int akr_link_wants_drop(const akr_link *l) {
  return l->fd >= 0 && l->drop_why != NULL;
}

/* The calls with news since the last pop, in order: each has `completed`
 * set when its result is final (the driver reports it once, keeping track
 * in `reported`) and `released` once the engine no longer holds it (the
 * driver may free it then). Returns a list linked by next_done, or NULL;
 * walk it before calling into the engine again. */
akr_ccall *akr_link_pop(akr_link *link);

#endif /* AKR_CLIENT_ENGINE_H */
