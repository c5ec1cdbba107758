/* descset.c: the reflection set of a file's services (descset.h).
 *
 * Which imports a file needs: those that define (or publicly re-export) a
 * type the file refers to: a field's type, an extension's extendee, a
 * method's request or reply. Public imports are always kept, since they
 * are part of what the file offers to its importers. Custom options are
 * already serialized in the options messages as extension fields, which a
 * reader that lacks their definition keeps as unknown fields: the file that
 * defines them is not needed to decode anything. */
#include "descset.h"

#include <stdlib.h>
#include <string.h>

typedef Google__Protobuf__DescriptorProto message_proto;
typedef Google__Protobuf__FieldDescriptorProto field_proto;

static size_t file_index(const akrgen_request *request, const akrgen_file_proto *f) {
  for (size_t i = 0; i < request->n_proto_file; i++)
    if (request->proto_file[i] == f) return i;
  return request->n_proto_file;
}

static const akrgen_file_proto *dependency(const akrgen_request *request,
                                           const akrgen_file_proto *f, size_t d) {
  return f->dependency[d] ? akrgen_find_file(request, f->dependency[d]) : NULL;
}

/* Nonzero if `f`, or a file it imports publicly (transitively), defines
 * `type`. `seen` (a flag per file of the request) makes each file looked at
 * once: a malformed request may have import cycles. */
static int provides(const akrgen_request *request, const akrgen_file_proto *f,
                    const char *type, unsigned char *seen) {
  size_t i = f ? file_index(request, f) : request->n_proto_file;
  if (i == request->n_proto_file || seen[i]) return 0;
  seen[i] = 1;
  if (akrgen_file_defines(f, type, 0)) return 1;
  for (size_t k = 0; k < f->n_public_dependency; k++) {
    int32_t d = f->public_dependency[k];
    if (d >= 0 && (size_t)d < f->n_dependency &&
        provides(request, dependency(request, f, (size_t)d), type, seen))
      return 1;
  }
  return 0;
}

/* What one file needs: a flag per entry of its dependency list. */
typedef struct needs {
  const akrgen_request *request;
  const akrgen_file_proto *file;
  unsigned char *keep;
  unsigned char *seen; /* for provides() */
} needs;

static void need_type(needs *n, const char *type) {
  if (!type || akrgen_file_defines(n->file, type, 0)) return;
  for (size_t d = 0; d < n->file->n_dependency; d++) {
    memset(n->seen, 0, n->request->n_proto_file);
    if (provides(n->request, dependency(n->request, n->file, d), type, n->seen)) {
      n->keep[d] = 1;
      return;
    }
  }
}

static void need_fields(needs *n, field_proto *const *fields, size_t count) {
  for (size_t i = 0; i < count; i++) {
    if (!fields[i]) continue;
    need_type(n, fields[i]->type_name);
    need_type(n, fields[i]->extendee);
  }
}

static void need_messages(needs *n, message_proto *const *msgs, size_t count) {
  for (size_t i = 0; i < count; i++) {
    const message_proto *m = msgs[i];
    if (!m) continue;
    need_fields(n, m->field, m->n_field);
    need_fields(n, m->extension, m->n_extension);
    need_messages(n, m->nested_type, m->n_nested_type);
  }
}

/* Returns a malloc'd flag per dependency of `f`: nonzero if it is kept. */
static unsigned char *needed_imports(const akrgen_request *request,
                                     const akrgen_file_proto *f) {
  needs n = {request, f, xmalloc(f->n_dependency ? f->n_dependency : 1),
             xmalloc(request->n_proto_file ? request->n_proto_file : 1)};
  memset(n.keep, 0, f->n_dependency ? f->n_dependency : 1);
  need_messages(&n, f->message_type, f->n_message_type);
  need_fields(&n, f->extension, f->n_extension);
  for (size_t s = 0; s < f->n_service; s++) {
    const Google__Protobuf__ServiceDescriptorProto *sv = f->service[s];
    for (size_t m = 0; sv && m < sv->n_method; m++) {
      if (!sv->method[m]) continue;
      need_type(&n, sv->method[m]->input_type);
      need_type(&n, sv->method[m]->output_type);
    }
  }
  for (size_t i = 0; i < f->n_public_dependency; i++) {
    int32_t d = f->public_dependency[i];
    if (d >= 0 && (size_t)d < f->n_dependency) n.keep[d] = 1;
  }
  for (size_t d = 0; d < f->n_dependency; d++)
    if (!dependency(request, f, d)) n.keep[d] = 0; /* not sent: cannot be served */
  free(n.seen);
  return n.keep;
}

/* Marks `f` and what it needs in `keep` (per file of the request: its
 * needed_imports(), or NULL while not wanted). Each file is visited once. */
static void mark(const akrgen_request *request, const akrgen_file_proto *f,
                 unsigned char **keep) {
  size_t i = file_index(request, f);
  if (i == request->n_proto_file || keep[i]) return;
  keep[i] = needed_imports(request, f);
  for (size_t d = 0; d < f->n_dependency; d++)
    if (keep[i][d]) mark(request, dependency(request, f, d), keep);
}

/* Maps `indexes` (into the old dependency list) through `to_new`, dropping
 * those of removed imports; returns how many are left in *ret. */
static size_t remap(const int32_t *indexes, size_t n, const int32_t *to_new,
                    size_t n_deps, int32_t **ret) {
  size_t k = 0;
  *ret = xmalloc((n ? n : 1) * sizeof **ret);
  for (size_t i = 0; i < n; i++)
    if (indexes[i] >= 0 && (size_t)indexes[i] < n_deps && to_new[indexes[i]] >= 0)
      (*ret)[k++] = to_new[indexes[i]];
  return k;
}

/* Serializes a copy of `f` (the request is not changed) without source code
 * info and with only the imports `keep` flags. */
static akrgen_blob pack(const akrgen_file_proto *f, const unsigned char *keep) {
  akrgen_file_proto copy = *f;
  size_t n = f->n_dependency;
  int32_t *to_new = xmalloc((n ? n : 1) * sizeof *to_new);
  copy.source_code_info = NULL;
  copy.dependency = xmalloc((n ? n : 1) * sizeof *copy.dependency);
  copy.n_dependency = 0;
  for (size_t d = 0; d < n; d++) {
    to_new[d] = keep[d] ? (int32_t)copy.n_dependency : -1;
    if (keep[d]) copy.dependency[copy.n_dependency++] = f->dependency[d];
  }
  copy.n_public_dependency = remap(f->public_dependency, f->n_public_dependency, to_new,
                                   n, &copy.public_dependency);
  copy.n_weak_dependency =
      remap(f->weak_dependency, f->n_weak_dependency, to_new, n, &copy.weak_dependency);
  akrgen_blob b = {xstrdup(f->name ? f->name : ""), NULL, 0};
  b.len = google__protobuf__file_descriptor_proto__get_packed_size(&copy);
  b.data = xmalloc(b.len ? b.len : 1);
  google__protobuf__file_descriptor_proto__pack(&copy, b.data);
  free(copy.dependency);
  free(copy.public_dependency);
  free(copy.weak_dependency);
  free(to_new);
  return b;
}

void akrgen_descset_collect(const akrgen_request *request,
                            const akrgen_file_proto *file, akrgen_model *model) {
  size_t n = request->n_proto_file;
  unsigned char **keep = xmalloc((n ? n : 1) * sizeof *keep);
  memset(keep, 0, (n ? n : 1) * sizeof *keep);
  mark(request, file, keep);
  model->files = xmalloc((n ? n : 1) * sizeof *model->files);
  model->n_files = 0;
  for (size_t i = 0; i < n; i++) {
    if (!keep[i]) continue;
    model->files[model->n_files++] = pack(request->proto_file[i], keep[i]);
    free(keep[i]);
  }
  free(keep);
}
