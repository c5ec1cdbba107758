/* budget.c: protobuf-c's allocator with a budget (budget.h). */
#include "mem/budget.h"

#include <stdlib.h>

static void *budget_alloc(void *data, size_t size) {
  akr_budget *b = data;
  if (size > b->left) {
    b->refused = 1;
    return NULL;
  }
  void *p = malloc(size);
  if (p) b->left -= size;
  return p;
}

static void budget_free(void *data, void *p) {
  (void)data;
  free(p);
}

void akr_budget_init(akr_budget *b, size_t bytes) {
  *b = (akr_budget){.pc = {budget_alloc, budget_free, b}, .left = bytes};
}
