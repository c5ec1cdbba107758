/* ackrpc/export.h: marks the symbols libackrpc exports.
 *
 * The library is built with hidden visibility; only declarations carrying
 * ACKRPC_EXPORT are part of the ABI (tests/abi checks the list). */
#ifndef ACKRPC_EXPORT_H
#define ACKRPC_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define ACKRPC_EXPORT __attribute__((visibility("default")))
#else
#define ACKRPC_EXPORT
#endif

#endif /* ACKRPC_EXPORT_H */
