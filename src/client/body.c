/* body.c: request bodies built in a sealed memfd (ackrpc_body,
 * include/ackrpc/client.h; docs/PROTOCOL.md §2.6). */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "client/request.h"
#include "platform/memfd.h"

struct ackrpc_body {
  int fd;
  uint8_t *map; /* NULL once sealed */
  size_t len;
  int sealed;
};

ackrpc_status ackrpc_body_new(size_t len, ackrpc_body **ret_body) {
  if (!ret_body || !len || len > UINT32_MAX) return ACKRPC_E_INVAL;
  ackrpc_body *b = calloc(1, sizeof *b);
  if (!b) return ACKRPC_E_NOMEM;
  if (akr_memfd_create(len, &b->fd, &b->map) != 0) {
    free(b);
    return ACKRPC_E_SYSTEM;
  }
  b->len = len;
  *ret_body = b;
  return ACKRPC_OK;
}

uint8_t *ackrpc_body_data(ackrpc_body *b) {
  return b ? b->map : NULL;
}

size_t ackrpc_body_len(const ackrpc_body *b) {
  return b ? b->len : 0;
}

ackrpc_status ackrpc_body_seal(ackrpc_body *b) {
  if (!b) return ACKRPC_E_INVAL;
  if (b->sealed) return ACKRPC_OK;
  int e = akr_memfd_seal(b->fd, b->map, b->len);
  b->map = NULL; /* unmapped either way */
  if (e) return ACKRPC_E_SYSTEM;
  b->sealed = 1;
  return ACKRPC_OK;
}

ackrpc_status ackrpc_body_from_message(const ProtobufCMessage *m, ackrpc_body **ret) {
  size_t len = m ? protobuf_c_message_get_packed_size(m) : 0;
  if (!ret || !len || len > UINT32_MAX) return ACKRPC_E_INVAL;
  ackrpc_body *b = calloc(1, sizeof *b);
  if (!b) return ACKRPC_E_NOMEM;
  int e = akr_memfd_pack(m, len, &b->fd);
  if (e) {
    free(b);
    return e == ENOMEM ? ACKRPC_E_NOMEM : ACKRPC_E_SYSTEM;
  }
  b->len = len;
  b->sealed = 1;
  *ret = b;
  return ACKRPC_OK;
}

ackrpc_body *ackrpc_body_free(ackrpc_body *b) {
  if (!b) return NULL;
  akr_memfd_unmap(b->map, b->len);
  close(b->fd);
  free(b);
  return NULL;
}

int akr_body_sealed(const ackrpc_body *b) {
  return b && b->sealed;
}

int akr_body_fd(const ackrpc_body *b) {
  return b->fd;
}
