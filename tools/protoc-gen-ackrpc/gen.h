/* gen.h: the code generator of protoc-gen-ackrpc: from protoc's
 * CodeGeneratorRequest to the contents of NAME.ackrpc.h, NAME.ackrpc.c and,
 * on request, NAME.ackrpc-fuzz.c. No I/O here (main.c reads and writes).
 *
 * Inside, two passes per .proto file: model.c turns the request into a
 * checked model of the file (model.h), or errors; emit_header.c,
 * emit_source.c and emit_fuzz.c each print one file from the model, with
 * the template printer of emit.c. */
#ifndef AKRGEN_GEN_H
#define AKRGEN_GEN_H

#include <stddef.h>

#include "protoc_plugin.pb-c.h"

typedef struct akrgen_file {
  char *name;    /* path relative to the output directory */
  char *content; /* NUL-terminated */
} akrgen_file;

typedef struct akrgen_output {
  akrgen_file *files;
  size_t n_files;
  /* Non-NULL if generation failed: one or more lines, each
   * "file.proto:LINE:COL: error: ..." (or "file.proto: error: ..." when protoc
   * sent no location); then files is empty. */
  char *error;
} akrgen_output;

/* Generates the files for every file_to_generate of `request`. Never fails
 * on bad input: it reports it in ret->error. Free with akrgen_output_free(). */
void akrgen_generate(const Akrgen__Plugin__CodeGeneratorRequest *request,
                     akrgen_output *ret);

void akrgen_output_free(akrgen_output *output);

#endif /* AKRGEN_GEN_H */
