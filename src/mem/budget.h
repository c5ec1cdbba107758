/* budget.h: protobuf-c's allocator with a budget (internal: not installed).
 *
 * For decoding bytes from a peer into memory the caller frees later with
 * protobuf-c's default allocator (free()): what the decoder takes from
 * malloc() counts against `left` (protobuf-c frees only on failure), so a
 * message cannot make the process allocate without bound. Over the budget,
 * the allocation fails and `refused` is set, so the caller can tell "too
 * large" from "malformed". One decode at a time. */
#ifndef AKR_BUDGET_H
#define AKR_BUDGET_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

typedef struct akr_budget {
  ProtobufCAllocator pc; /* pass &budget->pc to protobuf-c */
  size_t left;
  int refused; /* an allocation was over the budget */
} akr_budget;

/* A budget of `bytes`. */
void akr_budget_init(akr_budget *budget, size_t bytes);

#endif /* AKR_BUDGET_H */
