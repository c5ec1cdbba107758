/* names.h: the checks on names that travel in frames (internal: not
 * installed): method names and metadata keys (docs/PROTOCOL.md). */
#ifndef AKR_NAMES_H
#define AKR_NAMES_H

#include <stddef.h>

/* Checks a method name: "pkg.Service/Method" with [A-Za-z0-9_] and dots, at
 * most ACKRPC_MAX_METHOD_NAME bytes. Nonzero if valid. */
int akr_method_name_valid(const char *name);
/* Checks a metadata key: 1..64 of [a-z0-9._-]. Nonzero if valid. */
int akr_metadata_key_valid(const char *key, size_t len);

#endif /* AKR_NAMES_H */
