/* sensitive.c: the fields marked [(ackrpc.sensitive) = true]
 * (ackrpc/options.proto) that a file's services can carry: every message
 * type reachable from a method's request or reply type, through message
 * fields, in any file of the request. protobuf-c's descriptors do not keep
 * custom options, so the generated register functions hand these to the
 * server (ackrpc_server_add_sensitive_fields()). */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "names.h"
#include "proto.h"

/* Field number of the extension in proto/ackrpc/options.proto. */
#define SENSITIVE_FIELD 51722u
/* Message types walked per file, at most (a bound on hostile input). */
#define MAX_TYPES 4096

/* Whether the field's options set (ackrpc.sensitive) to true (a varint in
 * the options' unknown fields, since protobuf-c does not know the
 * extension; the last occurrence wins, as protobuf has it). */
static int is_sensitive(const Google__Protobuf__FieldDescriptorProto *f) {
  const ProtobufCMessage *o = (const ProtobufCMessage *)f->options;
  int on = 0;
  for (unsigned i = 0; o && i < o->n_unknown_fields; i++) {
    const ProtobufCMessageUnknownField *u = &o->unknown_fields[i];
    if (u->tag != SENSITIVE_FIELD || u->wire_type != PROTOBUF_C_WIRE_TYPE_VARINT)
      continue;
    on = 0;
    for (size_t k = 0; k < u->len; k++)
      if (u->data[k] & 0x7f) on = 1;
  }
  return on;
}

typedef struct walk {
  const akrgen_request *request;
  akrgen_model *model;
  char *seen[MAX_TYPES];
  size_t n_seen;
} walk;

static void visit(walk *w, const char *full) {
  if (!full || w->n_seen == MAX_TYPES) return;
  for (size_t i = 0; i < w->n_seen; i++)
    if (strcmp(w->seen[i], full) == 0) return;
  w->seen[w->n_seen++] = xstrdup(full);
  const Google__Protobuf__DescriptorProto *m = akrgen_find_message(w->request, full);
  if (!m) return;
  for (size_t i = 0; i < m->n_field; i++) {
    const Google__Protobuf__FieldDescriptorProto *f = m->field[i];
    if (!f) continue;
    if (is_sensitive(f) && f->has_number && f->number > 0) {
      akrgen_model *md = w->model;
      md->sensitive =
          xrealloc(md->sensitive, (md->n_sensitive + 1) * sizeof *md->sensitive);
      akrgen_sensitive *s = &md->sensitive[md->n_sensitive++];
      akrgen_type_names(full, &s->message);
      s->field = xstrdup(f->name ? f->name : "");
      s->number = (uint32_t)f->number;
    }
    if (f->has_type &&
        (f->type == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE ||
         f->type == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP))
      visit(w, f->type_name);
  }
}

static int by_type_and_number(const void *a, const void *b) {
  const akrgen_sensitive *x = a, *y = b;
  int c = strcmp(x->message.proto, y->message.proto);
  if (c) return c;
  return x->number < y->number ? -1 : x->number > y->number;
}

void akrgen_sensitive_collect(const akrgen_request *request, akrgen_model *model) {
  walk *w = xmalloc(sizeof *w);
  w->request = request;
  w->model = model;
  w->n_seen = 0;
  for (size_t s = 0; s < model->n_services; s++)
    for (size_t m = 0; m < model->services[s].n_methods; m++) {
      const akrgen_method *me = &model->services[s].methods[m];
      char *req = xasprintf(".%s", me->request.proto);
      char *rep = xasprintf(".%s", me->reply.proto);
      visit(w, req);
      visit(w, rep);
      free(req);
      free(rep);
    }
  for (size_t i = 0; i < w->n_seen; i++)
    free(w->seen[i]);
  free(w);
  if (model->n_sensitive > 1) /* qsort() wants a non-NULL array */
    qsort(model->sensitive, model->n_sensitive, sizeof *model->sensitive,
          by_type_and_number);
}
