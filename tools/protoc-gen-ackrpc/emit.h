/* emit.h: what the three emitters share: a template printer with named
 * placeholders, the variables of a file, a service and a method, and the
 * pieces every generated file has (banner, policy comments).
 *
 * A template is C text in which "$name$" stands for the value of variable
 * `name`. The emitters (emit_header.c, emit_source.c, emit_fuzz.c) hold
 * their templates beside the code that chooses them; the values come from
 * the model, never from a template. */
#ifndef AKRGEN_EMIT_H
#define AKRGEN_EMIT_H

#include <stddef.h>

#include "buf.h"
#include "model.h"

#ifndef AKRGEN_VERSION
#error "AKRGEN_VERSION (the ackrpc version) must be defined by the build"
#endif

#define AKRGEN_MAX_VARS 24

typedef struct akrgen_var {
  const char *name;
  char *value;
} akrgen_var;

/* Named values for templates, owned (vars_free()). */
typedef struct akrgen_vars {
  size_t n;
  akrgen_var v[AKRGEN_MAX_VARS];
} akrgen_vars;

/* Sets (or replaces) `name`, a string literal, to the printf-style value. */
void vars_set(akrgen_vars *vars, const char *name, const char *fmt, ...)
    AKRGEN_PRINTF(3, 4);
void vars_free(akrgen_vars *vars);

/* The variables of a file: $proto$ (dir/name.proto), $stem$, $guard$. */
void vars_file(akrgen_vars *vars, const akrgen_model *model);
/* Of service number `s`: $P$ (prefix), $service$ (full name, as in a C
 * string), $s$, $n$ (its number of methods), $n_files$ (of the model). */
void vars_service(akrgen_vars *vars, const akrgen_model *model, size_t s);
/* Of method number `m` of service `s`: the service's, and $PM$ (prefix),
 * $M$ (name), $member$, $wire$ (full name, as in a C string), $i$ (m), $id$
 * ("s_m"), $Req$ and $Rep$ (C types), $req_proto$ and $rep_proto$ (.proto
 * names), $req_lower$ and $rep_lower$ (protoc-c's function prefixes). */
void vars_method(akrgen_vars *vars, const akrgen_model *model, size_t s, size_t m);

/* Appends `tmpl` with each "$name$" replaced by its value in `vars` ("$$"
 * is a '$'). A name that is not set is a bug of the generator: it aborts. */
void emit(akrgen_buf *b, const char *tmpl, const akrgen_vars *vars);

/* The opening comment of every generated file: the DO-NOT-EDIT banner,
 * naming the source and the generator's version, and what the file is. */
void emit_banner(akrgen_buf *b, const akrgen_model *model, const char *what);

/* "callers admitted: ..." (no comment markers; safe inside a comment). */
void emit_policy_comment(akrgen_buf *b, const akrgen_policy *policy);

#endif /* AKRGEN_EMIT_H */
