/* descset.c: the reflection set of a file's services (descset.h): the file
 * and every file it imports, transitively. */
#include "descset.h"

#include <stdlib.h>
#include <string.h>

static size_t file_index(const akrgen_request *request, const akrgen_file_proto *f) {
  for (size_t i = 0; i < request->n_proto_file; i++)
    if (request->proto_file[i] == f) return i;
  return request->n_proto_file;
}

/* Marks `f` and everything it imports in `want` (a flag per file of the
 * request). Each file is visited once. */
static void mark(const akrgen_request *request, const akrgen_file_proto *f,
                 unsigned char *want) {
  size_t i = file_index(request, f);
  if (i == request->n_proto_file || want[i]) return;
  want[i] = 1;
  for (size_t d = 0; d < f->n_dependency; d++)
    if (f->dependency[d])
      mark(request, akrgen_find_file(request, f->dependency[d]), want);
}

/* Serializes a copy of `f` (the request is not changed) without source code
 * info: reflection needs the schema, not the comments and spans. */
static akrgen_blob pack(const akrgen_file_proto *f) {
  akrgen_file_proto copy = *f;
  copy.source_code_info = NULL;
  akrgen_blob b = {xstrdup(f->name ? f->name : ""), NULL, 0};
  b.len = google__protobuf__file_descriptor_proto__get_packed_size(&copy);
  b.data = xmalloc(b.len ? b.len : 1);
  google__protobuf__file_descriptor_proto__pack(&copy, b.data);
  return b;
}

void akrgen_descset_collect(const akrgen_request *request,
                            const akrgen_file_proto *file, akrgen_model *model) {
  size_t n = request->n_proto_file;
  unsigned char *want = xmalloc(n ? n : 1);
  memset(want, 0, n ? n : 1);
  mark(request, file, want);
  model->files = xmalloc((n ? n : 1) * sizeof *model->files);
  model->n_files = 0;
  for (size_t i = 0; i < n; i++)
    if (want[i]) model->files[model->n_files++] = pack(request->proto_file[i]);
  free(want);
}
