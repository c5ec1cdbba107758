/* synth.h: descriptors for methods registered without a service record
 * (internal: not installed). From the protobuf-c descriptors the methods
 * carry, it builds one google.protobuf.FileDescriptorProto per package,
 * "ackrpc-synth/<package>.proto", holding the services of that package and
 * every message and enum type of that package reachable from the methods'
 * types, and records one service per group of methods, so that reflection
 * serves them like generated ones.
 *
 * Not here: serving them (builtin.c), the records (registry.c). */
#ifndef AKR_SYNTH_H
#define AKR_SYNTH_H

#include "server/registry.h"

typedef struct akr_synth akr_synth;

/* Once (a later call with *synth set returns at once): synthesizes the
 * services of the methods no recorded service covers, records them in `reg`
 * and stores in *synth what they point to, which the caller frees with
 * akr_synth_free() after the registry. Loop thread (or before the loop
 * runs). Errors: E_NOMEM (nothing recorded, *synth untouched; a later call
 * tries again). */
ackrpc_status akr_synth_services(akr_registry *reg, akr_synth **synth);

/* Frees what akr_synth_services() made. NULL is fine. */
void akr_synth_free(akr_synth *synth);

#endif /* AKR_SYNTH_H */
