/* discovery.h: NATS's service API ("micro", ADR-32) for ackrpc-nats export
 * (docs/SCALE.md, "Discovery").
 *
 * Each exported ackrpc service is one NATS service: name = the service's
 * full name with dots as dashes ("ackrpc.test.Test" -> "ackrpc-test-Test"),
 * id = one random id per bridge process (all its services share it),
 * version = ackrpc's, endpoints = its methods (subject PREFIX.pkg.Service.
 * Method, the export's queue group). It answers $SRV.PING, $SRV.INFO and
 * $SRV.STATS, each also with .<name> and .<name>.<id>, with JSON of type
 * io.nats.micro.v1.{ping,info,stats}_response. STATS counts what the
 * bridge forwarded (nd_count()) and asks the local server's
 * ackrpc.reflection.Health/Check for each endpoint's `data.health`.
 *
 * Tool code, not part of libackrpc. Nothing here prints or exits. */
#ifndef ACKRPC_NATS_DISCOVERY_H
#define ACKRPC_NATS_DISCOVERY_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include <ackrpc/ackrpc.h>

typedef struct nd_discovery nd_discovery;

/* The micro name of an ackrpc service: dots become dashes. Returns 0, or
 * -1 if `service` holds a character the micro name pattern
 * ([A-Za-z0-9_-]+) refuses or does not fit in cap bytes. */
int nd_service_name(const char *service, char *out, size_t cap);

/* Starts discovery for `services` (n of them, full names, copied) on `nc`,
 * exported under subject `prefix` in queue group `queue` (both copied).
 * The methods of each service come from `client`'s server reflection
 * (ListServices); a service reflection does not describe gets one
 * endpoint "all" on PREFIX.<service>.*. `client` (borrowed, must outlive
 * the result, used from NATS's threads) also answers the health checks.
 * On success returns 0 and *ret (free with nd_stop()); else -1 with `why`
 * (cap bytes) saying what failed: a service name discovery cannot carry,
 * out of memory, or a subscription NATS refused. */
int nd_start(natsConnection *nc, ackrpc_client *client, const char *prefix,
             const char *queue, const char *const *services, size_t n,
             nd_discovery **ret, char *why, size_t cap);

/* The instance id (hex), the same for every service of this bridge. */
const char *nd_id(const nd_discovery *d);

/* Counts a request the bridge forwarded (or refused) for `method`
 * ("pkg.Service/Method"): `status` what it came to (ACKRPC_OK, a
 * canonical status, or a client error such as ACKRPC_E_NO_ACK: any but OK
 * counts as an error, with `message` (may be NULL) in last_error), `ns`
 * the time from the request's arrival to its answer. A method of no
 * exported service is not counted. Thread-safe; d may be NULL (no-op). */
void nd_count(nd_discovery *d, const char *method, ackrpc_status status,
              const char *message, uint64_t ns);

/* Drains the subscriptions (callbacks running or queued finish first) and
 * frees d; waits at most 2 s in all. If a drain cannot be confirmed in that
 * time (NATS gone), d is left allocated rather than freed under a callback
 * (the bridge is exiting). Call before the connection is destroyed. NULL
 * is fine. */
void nd_stop(nd_discovery *d);

#endif
