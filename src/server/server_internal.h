/* server_internal.h: the server's objects, shared by the files of
 * src/server (internal: not installed). docs/ARCHITECTURE.md draws them.
 *
 *   ackrpc_server  the listener, the loop's events, the registry, limits;
 *   akr_conn       one connection: its socket, buffers and session state
 *                  (conn.c); only the loop's thread touches it;
 *   ackrpc_call    one call: its request, deadline, reply and cache entry
 *                  (call.c); a handler may hold it on any thread, and it
 *                  may outlive its connection (and the server).
 *
 * A connection serves its calls one at a time: `conn->call` is the call
 * whose frame is being admitted, handled or answered. When the loop gives
 * up on a call a handler still holds (its deadline, the connection's end),
 * the two part by clearing one pointer each way; the call then lives on
 * its own references.
 *
 * Upward notifications go through the hook table below (the connection
 * does not know what a handler is); every other call between these files
 * goes downward: registry, policy, stats, reply cache < call < conn <
 * dispatch < accept < server (the life cycle). */
#ifndef AKR_SERVER_INTERNAL_H
#define AKR_SERVER_INTERNAL_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ackrpc/server.h"
#include "mem/arena.h"
#include "mem/spare.h"
#include "platform/address.h"
#include "platform/fdpass.h"
#include "platform/memfd.h"
#include "platform/handover.h"
#include "server/account.h"
#include "server/events.h"
#include "server/policy.h"
#include "server/registry.h"
#include "server/reply_cache.h"
#include "server/stats.h"
#include "wire/frame.h"
#include "wire/head.h"

typedef struct akr_conn akr_conn;
typedef struct akr_tap akr_tap;

enum akr_conn_state {
  AKR_CONN_READING, /* reading the next frame (or EOF) */
  AKR_CONN_BUSY,    /* a call is with its handler, or waits in the reply cache */
  AKR_CONN_WRITING, /* a reply is partly written; waiting for EV_WRITE */
  AKR_CONN_DONE,    /* close at the next chance */
};

/* What the connection reports upward (set by server.c). */
typedef struct akr_conn_hooks {
  /* The head of the frame at the read position is in (the whole frame if
   * `complete`): admit it (1), or answer it and return 0. */
  int (*admit)(akr_conn *conn, const akr_frame *frame, int complete);
  /* The admitted frame is complete: decode it and hand it to its handler. */
  void (*dispatch)(akr_conn *conn, const akr_frame *frame);
  /* The timer of a BUSY connection fired: its call's deadline, or the
   * reply cache's answer for a waiting call. */
  void (*expired)(akr_conn *conn);
  /* The connection was closed (it is freed after this returns). */
  void (*closed)(akr_conn *conn);
} akr_conn_hooks;

/* A reply on its way out, counted in the stats once it is written. */
typedef struct akr_reply_rec {
  akr_method_stats *stats; /* NULL: nothing to count */
  const char *method;
  uint32_t status;
  size_t bytes_in, bytes_out;
  uint64_t t_start_us; /* the request complete; 0: never dispatched */
  /* For the DEBUG line: whether the call was bridged, and its principal
   * (copied: the call may be gone when the line is written). */
  int bridged;
  char principal[ACKRPC_MAX_PRINCIPAL + 1];
} akr_reply_rec;

struct akr_conn {
  ackrpc_server *server;
  int fd;
  enum akr_conn_state state;
  short watching; /* the interest of `io`: 0, EV_READ or EV_WRITE */
  ackrpc_peer peer;
  /* Input: bytes [in_off, in_len) of `in` are unread frames. */
  uint8_t *in;
  size_t in_off, in_len, in_cap; /* from malloc below AKR_SPARE_MIN, else a
                                  * block of the spare store (spare.h) */
  int eof;
  int drained;               /* the last read left the socket empty */
  int head_done;             /* the current frame's head is admitted */
  int in_released;           /* the current frame's bytes were let go */
  size_t frame_len;          /* the current frame's length, once known */
  uint64_t read_deadline_us; /* 0: not started */
  unsigned calls_done;
  int corked;        /* another complete frame follows the one being served */
  uint64_t rx;       /* bytes read on the connection */
  uint64_t frame_at; /* where the current frame starts, counted as rx */
  akr_fdq fdq;       /* descriptors read, not yet claimed by their frame */
  /* Output, in order: out[out_off, out_len) (local answers, and replies
   * to pipelined frames sent together), then the rest of wcall's reply,
   * written from the call's own buffer. */
  uint8_t *out;
  size_t out_off, out_len, out_cap;
  ackrpc_call *wcall;
  size_t wcall_off;
  int close_after_write;
  akr_reply_rec rec; /* of the reply being written */
  /* For the statistics of the frame being served: its method once the head
   * named a known one (NULL: not counted) and when it was complete. */
  const akr_method_entry *stat_m;
  uint64_t t_start_us;
  ackrpc_call *call; /* being admitted, handled or waited for; NULL: none */
  /* Lists: open connections; those waiting for a frame, oldest first. */
  akr_conn *prev, *next;
  akr_conn *pend_prev, *pend_next;
  int pending;
  uint64_t pending_since_us;
  /* Its uid's record (NULL: refused at the uid limit, not counted), and
   * what it holds: its input buffer (in_charged bytes of it) and its calls
   * in progress, those the loop gave up on included (account.h). */
  akr_uid_rec *uacct;
  akr_acct acct;
  size_t in_charged;
  ackrpc_call *acct_calls;
  int bridge; /* the peer passes the server's bridges policy */
  /* Last: a reused connection object is cleared up to here (the events are
   * assigned afresh). */
  struct event io; /* read or write interest, per `watching` */
  struct event timer;
};

struct ackrpc_call {
  ackrpc_server *server;
  akr_conn *conn; /* NULL once parted from its connection (loop thread only) */
  ackrpc_peer peer;
  akr_arena arena;
  akr_request req; /* the head, decoded into the arena */
  const akr_method_entry *method;
  /* Bridged: on a connection from a bridge; its principal (NUL-terminated,
   * in the arena), NULL when anonymous or local. */
  int bridged;
  const char *principal;
  ProtobufCMessage *request;
  size_t frame_len;
  uint64_t t_start_us; /* the request complete */
  uint64_t deadline_us;
  atomic_int answered; /* the call has been answered (or is being) */
  atomic_int held;     /* the handler has not replied yet */
  atomic_int refs;     /* the connection's, the handler's */
  /* The reply, encoded by whoever answered. */
  uint8_t *out;
  size_t out_len, out_cap;
  uint32_t reply_status;
  akr_fd_batch fds;       /* the request's descriptors (entries -1 once taken) */
  akr_fd_batch reply_fds; /* the reply's, the library's to close */
  const uint8_t *map;     /* the request body's memfd, mapped (memfd.h) */
  size_t map_len;
  int memfd_read; /* the request's body memfd was taken: say so */
  /* The reply cache (reply_cache.h): the in-flight entry this call owns,
   * or the one it waits on (rc_wait); rc_ready is set when its answer is
   * in `out` (1) or when there is none (2). */
  akr_rc_entry *rc_entry;
  akr_rc_waiter rc_wait;
  uint8_t digest[AKR_RC_DIGEST_LEN]; /* the request's (reply cache on) */
  int has_digest;
  int waiting; /* a repeat waiting for the first call with its id */
  int rc_ready;
  /* The account (account.h): counted from admission to the last
   * reference, against its uid, the server and, while it is open, the
   * connection it came on (listed there by acct_prev/acct_next). */
  int accounted;
  size_t charged;
  akr_uid_rec *uacct;
  akr_conn *acct_conn;
  ackrpc_call *acct_prev, *acct_next;
  ackrpc_call *next; /* replies queued from other threads; the pool */
};

typedef struct akr_cleanup {
  void (*fn)(void *);
  void *data;
} akr_cleanup;

struct ackrpc_server {
  ackrpc_server_options opt; /* defaults filled in */
  char *address_text;
  akr_address addr;
  struct event_base *base;
  int own_base;
  const akr_conn_hooks *hooks;
  akr_registry registry;
  struct akr_synth *synth; /* the services made for reflection (synth.h) */
  akr_policy *policy;      /* server-wide, checked at accept */
  akr_policy *bridges;     /* peers that vouch for a principal (NULL: none) */
  uid_t euid;
  akr_cleanup *cleanups;
  size_t n_cleanups;
  akr_events events; /* counted and rate-limited (core.c) */
  /* Accepting (accept.c). */
  akr_listener lst; /* the listening socket and the path lock */
  struct event *accept_ev;
  int accepting;
  struct event *resume_timer;
  akr_uid_rec **uids; /* per peer uid (account.c) */
  size_t n_uids, uids_cap;
  akr_uid_rec *uid_spare;
  akr_acct acct; /* everything connections and calls hold */
  /* Connections (conn.c). Those whose next request is not complete are
   * also listed oldest first: under pressure the oldest is dropped to admit
   * a new one, so idle or trickling peers cannot starve real calls. */
  akr_conn *conns;
  size_t n_conns;
  akr_conn *pend_head, *pend_tail;
  size_t n_pending;
  akr_conn *conn_pool;
  size_t n_conn_pool;
  ackrpc_call *call_pool;
  size_t n_call_pool;
  akr_spare spare;           /* large buffers kept for the next large call */
  struct event *spare_timer; /* unmaps them once unasked for */
  akr_reply_cache *cache;    /* NULL: no reply cache (the default) */
  uint64_t replay_store_hits, replay_store_refused; /* opt.reply_lookup's */
  struct akr_tap *tap;                              /* NULL: nobody captures (tap.h) */
  struct akr_redact_set *redact; /* the sensitive fields (redact.h); NULL: none */
  /* Replies made on other threads, handed to the loop (dispatch.c). */
  int wake_fd;
  struct event *wake_ev;
  pthread_mutex_t mu; /* guards done_head/done_tail and closed */
  ackrpc_call *done_head, *done_tail;
  int closed;
  /* The life cycle (server.c). */
  struct event *drain_timer;
  int stopping, finished;
  atomic_int stop_requested;
  atomic_int refs; /* the owner's, plus one per live call object */
  uint64_t created_us;
  int inherited;   /* the listening socket came from systemd */
  int handed_over; /* the listening socket went to a successor */
  akr_ctl ctl;     /* the handover control socket (platform/handover.c) */
  struct event *ctl_ev;
  akr_ctl_peer ctl_peer; /* a successor's exchange in progress */
  struct event *ctl_peer_ev;
};

/* Logs a line if `level` passes the server's threshold (printf-style). */
void akr_slog(ackrpc_server *server, ackrpc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Counts an event a peer caused and logs it, at most
 * AKR_EVENT_LINES_PER_S lines a second per kind (events.h). The line is
 * "event=NAME " followed by the formatted text. */
void akr_event(ackrpc_server *server, akr_event_kind kind, ackrpc_log_level level,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Drops a reference to the server; the last one frees what is left of it
 * (core.c). */
void akr_server_unref(ackrpc_server *server);

/* --- Hooks into the server for tests, fuzz targets and the built-in
 * services. --- */

/* Serves an already connected stream socket (e.g. one end of a
 * socketpair) as if it had been accepted; the server owns `fd` afterwards.
 * Returns 0, or -1 if the server is stopping. Loop thread only. */
int akr_server_adopt(ackrpc_server *server, int fd);

/* Whether the server still accepts: not stopping, not handed over. */
int akr_server_serving(const ackrpc_server *server);

/* Microseconds since ackrpc_server_new(). */
uint64_t akr_server_uptime_us(const ackrpc_server *server);

/* Bytes of large buffers kept for the next large call (spare.h). Loop
 * thread only. */
size_t akr_server_spare_bytes(const ackrpc_server *server);

#endif /* AKR_SERVER_INTERNAL_H */
