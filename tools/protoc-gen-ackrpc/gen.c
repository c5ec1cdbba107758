/* gen.c: one generation run: the plugin parameter, then for each file to
 * generate a model (model.c: every check happens there) and, if it has no
 * errors, the files of the three emitters (emit_*.c). */
#include "gen.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "emit_files.h"
#include "model.h"

static void add_file(akrgen_output *out, char *name, char *content) {
  out->files = xrealloc(out->files, (out->n_files + 1) * sizeof *out->files);
  out->files[out->n_files].name = name;
  out->files[out->n_files].content = content;
  out->n_files++;
}

/* Reads the comma-separated parameter; sets *fuzz for "fuzz", *tables for
 * "tables". Returns -1 after reporting an unknown one. */
static int parse_parameter(const char *param, int *fuzz, int *tables,
                           akrgen_buf *errors) {
  const char *p = param ? param : "";
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (n == 4 && strncmp(p, "fuzz", 4) == 0) {
      *fuzz = 1;
    } else if (n == 6 && strncmp(p, "tables", 6) == 0) {
      *tables = 1;
    } else if (n) {
      if (errors->len) buf_puts(errors, "\n");
      buf_printf(
          errors,
          "protoc-gen-ackrpc: error: unknown parameter '%.*s' (known: fuzz, tables)",
          (int)n, p);
      return -1;
    }
    p += n + (comma ? 1 : 0);
  }
  return 0;
}

/* The outputs of one checked model. */
static void emit_all(akrgen_output *out, const akrgen_model *m, int fuzz) {
  akrgen_buf b = {0};
  akrgen_emit_header(&b, m);
  add_file(out, xasprintf("%s.ackrpc.h", m->stem), buf_take(&b));
  akrgen_emit_source(&b, m);
  add_file(out, xasprintf("%s.ackrpc.c", m->stem), buf_take(&b));
  if (fuzz) {
    akrgen_emit_fuzz(&b, m);
    add_file(out, xasprintf("%s.ackrpc-fuzz.c", m->stem), buf_take(&b));
  }
}

void akrgen_generate(const Akrgen__Plugin__CodeGeneratorRequest *request,
                     akrgen_output *ret) {
  akrgen_buf errors = {0};
  akrgen_output out = {0};
  int fuzz = 0, tables = 0;
  if (parse_parameter(request->parameter, &fuzz, &tables, &errors) == 0) {
    /* Every file is checked, so that one run reports all the errors; once
     * there is one, nothing more is emitted. */
    for (size_t i = 0; i < request->n_file_to_generate; i++) {
      const char *name = request->file_to_generate[i];
      akrgen_model m;
      if (!name) continue;
      if (akrgen_model_build(request, name, &m, &errors) == 0 && !errors.len) {
        m.tables_only = tables;
        emit_all(&out, &m, fuzz && !tables);
      }
      akrgen_model_free(&m);
    }
  }
  if (errors.len) {
    akrgen_output_free(&out);
    out.error = buf_take(&errors);
  }
  *ret = out;
}

void akrgen_output_free(akrgen_output *output) {
  for (size_t i = 0; i < output->n_files; i++) {
    free(output->files[i].name);
    free(output->files[i].content);
  }
  free(output->files);
  free(output->error);
  memset(output, 0, sizeof *output);
}
