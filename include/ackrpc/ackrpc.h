/* ackrpc/ackrpc.h: the umbrella header: everything public in libackrpc.
 * The durable outbox is a library of its own: include <ackrpc/outbox.h>
 * and link libackrpc-outbox (ackrpc::outbox, pkg-config ackrpc-outbox). */
#ifndef ACKRPC_ACKRPC_H
#define ACKRPC_ACKRPC_H

#include <ackrpc/client.h>
#include <ackrpc/common.h>
#include <ackrpc/server.h>
#include <ackrpc/status.h>

#define ACKRPC_VERSION_MAJOR 0
#define ACKRPC_VERSION_MINOR 1
#define ACKRPC_VERSION_PATCH 0
#define ACKRPC_VERSION_STRING "0.1.0"
/* The protocol version this library speaks (byte 2 of every frame). */
#define ACKRPC_PROTOCOL_VERSION 1

#endif /* ACKRPC_ACKRPC_H */
