/* emit_files.h: the three emitters, one per generated file. Each prints
 * the whole file from a checked model and cannot fail. */
#ifndef AKRGEN_EMIT_FILES_H
#define AKRGEN_EMIT_FILES_H

#include "buf.h"
#include "model.h"

/* NAME.ackrpc.h (emit_header.c). */
void akrgen_emit_header(akrgen_buf *b, const akrgen_model *model);
/* NAME.ackrpc.c (emit_source.c). */
void akrgen_emit_source(akrgen_buf *b, const akrgen_model *model);
/* NAME.ackrpc-fuzz.c (emit_fuzz.c), with the parameter "fuzz". */
void akrgen_emit_fuzz(akrgen_buf *b, const akrgen_model *model);

#endif /* AKRGEN_EMIT_FILES_H */
