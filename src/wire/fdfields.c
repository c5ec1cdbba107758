/* fdfields.c: the descriptors of a message's ackrpc.Fd fields
 * (fdfields.h): the copy a sender encodes, the check and the binding a
 * receiver does. Works on any message through protobuf-c's descriptors: a
 * field is an Fd field if its message type is named "ackrpc.Fd" and has
 * the int32 field 1. */
#include "wire/fdfields.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_FDS 253 /* SCM_MAX_FD (docs/PROTOCOL.md §2.5) */
#define ALIGN(n) (((n) + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1))

/* The int32 field `fd` of ackrpc.Fd, or NULL if `desc` is not that type. */
static const ProtobufCFieldDescriptor *
fd_value(const ProtobufCMessageDescriptor *desc) {
  if (!desc || !desc->name || strcmp(desc->name, AKR_FD_TYPE) != 0) return NULL;
  const ProtobufCFieldDescriptor *v = protobuf_c_message_descriptor_get_field(desc, 1);
  if (!v || v->type != PROTOBUF_C_TYPE_INT32 || v->label == PROTOBUF_C_LABEL_REPEATED)
    return NULL;
  return v;
}

static const ProtobufCMessageDescriptor *fd_type(const ProtobufCFieldDescriptor *f) {
  if (f->type != PROTOBUF_C_TYPE_MESSAGE) return NULL;
  const ProtobufCMessageDescriptor *d = f->descriptor;
  return fd_value(d) ? d : NULL;
}

static int32_t *value_of(ProtobufCMessage *m) {
  return (int32_t *)(void *)((char *)m + fd_value(m->descriptor)->offset);
}

/* The Fd messages of field `f` of `msg`: *ret_arr[0..*ret_n). Returns 1 if
 * the field is singular, outside a oneof, and absent (required). */
static int slots(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                 ProtobufCMessage ***ret_arr, size_t *ret_n) {
  char *base = (char *)(uintptr_t)msg;
  if (f->label == PROTOBUF_C_LABEL_REPEATED) {
    *ret_n = *(size_t *)(void *)(base + f->quantifier_offset);
    *ret_arr = *(ProtobufCMessage ***)(void *)(base + f->offset);
    if (!*ret_arr) *ret_n = 0;
    return 0;
  }
  *ret_arr = (ProtobufCMessage **)(void *)(base + f->offset);
  *ret_n = **ret_arr != NULL;
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
    if (*(uint32_t *)(void *)(base + f->quantifier_offset) != f->id) *ret_n = 0;
    return 0;
  }
  return *ret_n == 0;
}

/* A walk over the Fd fields of a message: fd_walk_next() stops on each in
 * turn with its slots (arr[0..n)); `missing` is set for a singular field
 * that is absent. Returns 0 after the last. */
typedef struct fd_walk {
  const ProtobufCMessage *msg;
  unsigned next;
  const ProtobufCFieldDescriptor *f;
  ProtobufCMessage **arr;
  size_t n;
  int missing;
} fd_walk;

static int fd_walk_next(fd_walk *w) {
  const ProtobufCMessageDescriptor *d = w->msg ? w->msg->descriptor : NULL;
  while (d && w->next < d->n_fields) {
    const ProtobufCFieldDescriptor *f = &d->fields[w->next++];
    if (!fd_type(f)) continue;
    w->f = f;
    w->missing = slots(w->msg, f, &w->arr, &w->n);
    return 1;
  }
  return 0;
}

unsigned akr_fdfields_capacity(const ProtobufCMessageDescriptor *desc,
                               unsigned repeated_max) {
  unsigned n = 0;
  for (unsigned i = 0; desc && i < desc->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &desc->fields[i];
    if (!fd_type(f)) continue;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) return repeated_max;
    n++;
  }
  return n;
}

/* Counts the descriptors of `msg`; -1 with `why` for a problem. */
static long count_fds(const ProtobufCMessage *msg, int *ret_any, char *why,
                      size_t why_len) {
  const char *name = msg->descriptor->name;
  long n = 0;
  *ret_any = 0;
  for (fd_walk w = {.msg = msg}; fd_walk_next(&w);) {
    *ret_any = 1;
    if (w.missing) {
      snprintf(why, why_len, "field %s.%s (ackrpc.Fd) carries no descriptor", name,
               w.f->name);
      return -1;
    }
    for (size_t j = 0; j < w.n; j++) {
      if (!w.arr[j] || *value_of(w.arr[j]) < 0) {
        snprintf(why, why_len, "field %s.%s holds no descriptor (negative or NULL)",
                 name, w.f->name);
        return -1;
      }
    }
    n += (long)w.n;
  }
  return n;
}

/* A fresh ackrpc.Fd at `mem` holding `value`. */
static ProtobufCMessage *index_msg(void *mem, const ProtobufCMessageDescriptor *fd_desc,
                                   int32_t value) {
  protobuf_c_message_init(fd_desc, mem);
  ProtobufCMessage *m = mem;
  *value_of(m) = value;
  return m;
}

int akr_fdfields_pack(const ProtobufCMessage *msg, unsigned max, akr_fdfields_out *ret,
                      int *ret_nomem, char *why, size_t why_len) {
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  int any;
  *ret = (akr_fdfields_out){.msg = msg};
  *ret_nomem = 0;
  long n = count_fds(msg, &any, why, why_len);
  if (n < 0) return -1;
  if (n > (long)max) {
    snprintf(why, why_len, "%ld descriptors in the Fd fields of %s, at most %u", n,
             d->name, max);
    return -1;
  }
  if (n == 0) return 0;
  const ProtobufCMessageDescriptor *fd_desc = NULL;
  for (unsigned i = 0; !fd_desc && i < d->n_fields; i++)
    fd_desc = fd_type(&d->fields[i]);
  size_t fd_size = ALIGN(fd_desc->sizeof_message), root = ALIGN(d->sizeof_message);
  size_t nn = (size_t)n;
  char *mem =
      malloc(root + nn * fd_size + ALIGN(nn * sizeof(void *)) + nn * sizeof(int));
  if (!mem) {
    *ret_nomem = 1;
    snprintf(why, why_len, "no memory for the descriptor fields");
    return -1;
  }
  ProtobufCMessage *copy = (ProtobufCMessage *)(void *)mem;
  char *fds_at = mem + root;
  ProtobufCMessage **ptrs = (ProtobufCMessage **)(void *)(fds_at + nn * fd_size);
  int *fds = (int *)(void *)((char *)ptrs + ALIGN(nn * sizeof(void *)));
  memcpy(copy, msg, d->sizeof_message);
  size_t idx = 0;
  for (fd_walk w = {.msg = msg}; fd_walk_next(&w);) {
    if (!w.n) continue;
    int repeated = w.f->label == PROTOBUF_C_LABEL_REPEATED;
    ProtobufCMessage **out =
        repeated ? ptrs + idx
                 : (ProtobufCMessage **)(void *)((char *)copy + w.f->offset);
    if (repeated) *(ProtobufCMessage ***)(void *)((char *)copy + w.f->offset) = out;
    for (size_t j = 0; j < w.n; j++, idx++) {
      fds[idx] = *value_of(w.arr[j]);
      out[j] = index_msg(fds_at + idx * fd_size, fd_desc, (int32_t)idx);
    }
  }
  ret->msg = copy;
  ret->fds = fds;
  ret->n_fds = nn;
  ret->mem = mem;
  return 0;
}

void akr_fdfields_out_free(akr_fdfields_out *out) {
  if (!out) return;
  free(out->mem);
  *out = (akr_fdfields_out){0};
}

int akr_fdfields_bind(ProtobufCMessage *msg, const int *fds, size_t n, char *why,
                      size_t why_len) {
  const char *name = msg->descriptor->name;
  uint8_t used[MAX_FDS] = {0};
  if (n > MAX_FDS) {
    snprintf(why, why_len, "%zu descriptors, at most %d", n, MAX_FDS);
    return -1;
  }
  for (fd_walk w = {.msg = msg}; fd_walk_next(&w);) {
    if (w.missing) {
      snprintf(why, why_len, "field %s.%s (ackrpc.Fd) is missing", name, w.f->name);
      return -1;
    }
    for (size_t j = 0; j < w.n; j++) {
      int32_t v = w.arr[j] ? *value_of(w.arr[j]) : -1;
      if (v < 0 || (size_t)v >= n) {
        snprintf(why, why_len, "field %s.%s names descriptor %d, but %zu came", name,
                 w.f->name, (int)v, n);
        return -1;
      }
      if (used[v]++) {
        snprintf(why, why_len, "descriptor %d is named twice (field %s.%s)", (int)v,
                 name, w.f->name);
        return -1;
      }
    }
  }
  for (size_t i = 0; i < n; i++)
    if (!used[i]) {
      snprintf(why, why_len, "descriptor %zu is named by no field of %s", i, name);
      return -1;
    }
  for (fd_walk w = {.msg = msg}; fd_walk_next(&w);)
    for (size_t j = 0; j < w.n; j++)
      *value_of(w.arr[j]) = fds[*value_of(w.arr[j])];
  return 0;
}

void akr_fdfields_close(const ProtobufCMessage *msg, int reset) {
  for (fd_walk w = {.msg = msg}; fd_walk_next(&w);)
    for (size_t j = 0; j < w.n; j++) {
      int32_t *v = value_of(w.arr[j]);
      if (*v >= 0) close(*v);
      if (reset) *v = -1;
    }
}
