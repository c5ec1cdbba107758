/* names.h: the names protoc-gen-ackrpc gives (docs/GENERATOR.md, "The
 * naming scheme"), the names protoc-c gives, which the generated code must
 * reproduce to use protoc-c's types, and the checks that keep ours valid and
 * distinct. */
#ifndef AKRGEN_NAMES_H
#define AKRGEN_NAMES_H

#include "buf.h"
#include "model.h"

/* protoc-c's names of the message type `full` (".pkg.Msg.Nested"). */
void akrgen_type_names(const char *full, akrgen_type *ret);

/* protoc-c's function prefix of a package ("acme.inventory.v1" gives
 * "acme__inventory__v1"; "" gives ""). */
char *akrgen_package_prefix(const char *package);

/* Nonzero if `s` cannot be a struct member in C11 or C++ (a keyword, an
 * alternative token) or may be a macro of a standard header. */
int akrgen_is_reserved(const char *s);

/* Why a service or method name is refused, or NULL if it is fine. */
const char *akrgen_bad_name(const char *s);

/* The include guard of the header generated for `proto_name`. */
char *akrgen_guard(const char *proto_name);

/* Reports, into `errors`, every pair of services or methods of `model` for
 * which the generator would emit the same name. */
void akrgen_check_collisions(const akrgen_model *model, akrgen_buf *errors);

#endif /* AKRGEN_NAMES_H */
