/* fdfields.c: descriptor fields (ackrpc.Fd, proto/ackrpc/fd.proto) in a
 * method's request and reply types: how many descriptors each carries,
 * and the refusals of what the runtime does not support. libackrpc finds
 * and translates only the Fd fields of the request or reply message
 * itself (wire/fdfields.c), so the generator refuses every other place an
 * Fd could hide: deeper in a message field, in a oneof, as a map value, as
 * the request or reply type itself. Anything refused here would otherwise
 * travel as a bare number, a descriptor silently lost. */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "proto.h"

#define FD_TYPE ".ackrpc.Fd"
/* Message types walked per method type, at most (a bound on hostile
 * input). */
#define MAX_TYPES 4096

typedef Google__Protobuf__FieldDescriptorProto field_proto;
typedef Google__Protobuf__DescriptorProto message_proto;

static int is_message(const field_proto *f) {
  return f->has_type &&
         (f->type == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE ||
          f->type == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP);
}

static int is_fd(const field_proto *f) {
  return is_message(f) && f->type_name && strcmp(f->type_name, FD_TYPE) == 0;
}

static int is_repeated(const field_proto *f) {
  return f->has_label &&
         f->label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED;
}

typedef struct walk {
  const akrgen_request *request;
  const akrgen_model *model;
  const akrgen_service *sv;
  const akrgen_method *me;
  const char *what; /* "request" or "reply" */
  const char *top;  /* its type, ".pkg.Msg" */
  akrgen_buf *errors;
  char *seen[MAX_TYPES];
  size_t n_seen;
} walk;

/* Where field `fi` of message `full` is, if this file defines it; else the
 * method's location. */
static akrgen_loc field_loc(const walk *w, const char *full, size_t fi) {
  const akrgen_file_proto *f = akrgen_find_file(w->request, w->model->proto_name);
  akrgen_loc loc = f ? akrgen_find_field_location(f, full, (int32_t)fi) : w->me->loc;
  return loc.line ? loc : w->me->loc;
}

/* Refuses any Fd field of `full`, which the method's type reaches through
 * a message field, then walks on. */
static void walk_deeper(walk *w, const char *full) {
  if (!full || w->n_seen == MAX_TYPES) return;
  for (size_t i = 0; i < w->n_seen; i++)
    if (strcmp(w->seen[i], full) == 0) return;
  w->seen[w->n_seen++] = xstrdup(full);
  const message_proto *m = akrgen_find_message(w->request, full);
  if (!m) return;
  int map_entry = m->options && m->options->has_map_entry && m->options->map_entry;
  for (size_t i = 0; i < m->n_field; i++) {
    const field_proto *f = m->field[i];
    if (!f) continue;
    if (is_fd(f))
      akrgen_error(w->errors, w->model->proto_name, field_loc(w, full, i),
                   "service %s method %s: field %s.%s: ackrpc.Fd %s is not supported "
                   "(only fields of the %s type %s itself may carry descriptors)",
                   w->sv->name, w->me->name, full + 1, f->name ? f->name : "",
                   map_entry ? "as a map value" : "inside a nested message", w->what,
                   w->top + 1);
    else if (is_message(f))
      walk_deeper(w, f->type_name);
  }
}

/* Counts the Fd fields of the method's `what` type `full` into *ret_n
 * (singular ones) and *ret_repeated, and refuses the unsupported. */
static void check_type(walk *w, const char *what, const char *full, unsigned *ret_n,
                       int *ret_repeated) {
  w->what = what;
  w->top = full;
  if (strcmp(full, FD_TYPE) == 0) {
    akrgen_error(
        w->errors, w->model->proto_name, w->me->loc,
        "service %s method %s: ackrpc.Fd as the %s type is not supported (make "
        "it a field of a message)",
        w->sv->name, w->me->name, what);
    return;
  }
  const message_proto *m = akrgen_find_message(w->request, full);
  if (!m) return;
  for (size_t i = 0; i < m->n_field; i++) {
    const field_proto *f = m->field[i];
    if (!f || !is_message(f)) continue;
    if (!is_fd(f)) {
      walk_deeper(w, f->type_name);
      continue;
    }
    if (f->has_oneof_index && !(f->has_proto3_optional && f->proto3_optional)) {
      akrgen_error(w->errors, w->model->proto_name, field_loc(w, full, i),
                   "service %s method %s: field %s.%s: ackrpc.Fd in a oneof is not "
                   "supported (use a repeated field for an optional descriptor)",
                   w->sv->name, w->me->name, full + 1, f->name ? f->name : "");
      continue;
    }
    if (is_repeated(f))
      *ret_repeated = 1;
    else
      (*ret_n)++;
  }
}

void akrgen_fdfields_check(const akrgen_request *request, const akrgen_model *model,
                           const akrgen_service *sv, akrgen_method *me,
                           const char *request_type, const char *reply_type,
                           akrgen_buf *errors) {
  walk *w = xmalloc(sizeof *w);
  memset(w, 0, sizeof *w);
  w->request = request;
  w->model = model;
  w->sv = sv;
  w->me = me;
  w->errors = errors;
  check_type(w, "request", request_type, &me->fds_in, &me->fds_in_repeated);
  /* The same type reached again from the reply is checked again. */
  for (size_t i = 0; i < w->n_seen; i++)
    free(w->seen[i]);
  w->n_seen = 0;
  check_type(w, "reply", reply_type, &me->fds_out, &me->fds_out_repeated);
  for (size_t i = 0; i < w->n_seen; i++)
    free(w->seen[i]);
  free(w);
}

int akrgen_model_has_fds(const akrgen_model *model, int want_in) {
  for (size_t s = 0; s < model->n_services; s++)
    for (size_t m = 0; m < model->services[s].n_methods; m++) {
      const akrgen_method *me = &model->services[s].methods[m];
      if (AKRGEN_FDS_IN(me) || (!want_in && AKRGEN_FDS_OUT(me))) return 1;
    }
  return 0;
}
