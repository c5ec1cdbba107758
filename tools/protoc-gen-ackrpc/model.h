/* model.h: what protoc-gen-ackrpc knows of one .proto file once it has
 * checked it: plain C structs (names, types, policies, the reflection set),
 * built from protoc's CodeGeneratorRequest by akrgen_model_build(). The
 * emitters (emit_*.c) print files from a model and never look at the
 * request; the model never prints code.
 *
 * Every string and array is owned by the model (akrgen_model_free()). */
#ifndef AKRGEN_MODEL_H
#define AKRGEN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "protoc_plugin.pb-c.h"

/* A position in the .proto file, 1-based; 0 if protoc sent none. */
typedef struct akrgen_loc {
  int line, col;
} akrgen_loc;

/* A message type, with the names protoc-c gives it. */
typedef struct akrgen_type {
  char *proto; /* "pkg.Msg.Nested", as in the .proto */
  char *c;     /* protoc-c's struct type: "Pkg__Msg__Nested" */
  char *lower; /* protoc-c's function prefix: "pkg__msg__nested" (then
                  __descriptor, __free_unpacked) */
} akrgen_type;

/* An ackrpc.CallerPolicy from ackrpc/options.proto. */
typedef struct akrgen_policy {
  int same_uid;
  uint32_t *uids;
  size_t n_uids;
  uint32_t *gids;
  size_t n_gids;
  char **groups;
  size_t n_groups;
} akrgen_policy;

/* A field marked [(ackrpc.sensitive) = true]. */
typedef struct akrgen_sensitive {
  akrgen_type message; /* its message type */
  char *field;         /* its name */
  uint32_t number;
} akrgen_sensitive;

typedef struct akrgen_method {
  char *name;      /* M, verbatim */
  char *member;    /* its handler member: M, or M_ if M is a C/C++ keyword */
  char *full_name; /* "pkg.S/M", the wire name */
  char *prefix;    /* "P__S_M", of every generated name of the method */
  akrgen_type request, reply;
  int policy; /* index in akrgen_model.policies (its own, else its
                 service's), or -1 for none */
  /* ackrpc.Fd fields of the request and the reply type (fdfields.c):
   * singular ones, and whether there is a repeated one. */
  unsigned fds_in, fds_out;
  int fds_in_repeated, fds_out_repeated;
  akrgen_loc loc;
} akrgen_method;

typedef struct akrgen_service {
  char *name;      /* S, verbatim */
  char *full_name; /* "pkg.S" */
  char *prefix;    /* "P__S" */
  akrgen_method *methods;
  size_t n_methods; /* at least 1 */
  akrgen_loc loc;
} akrgen_service;

/* One serialized google.protobuf.FileDescriptorProto. */
typedef struct akrgen_blob {
  char *name; /* "dir/name.proto" */
  uint8_t *data;
  size_t len;
} akrgen_blob;

typedef struct akrgen_model {
  /* With the parameter "tables": only the tables (method tables, service
   * records, reflection descriptors), no functions: for code that registers
   * the methods its own way (libackrpc's built-in services). */
  int tables_only;
  char *proto_name; /* "dir/name.proto" */
  char *stem;       /* "dir/name": the outputs are stem.ackrpc.h, ... */
  char *guard;      /* the header's include guard */
  akrgen_service *services;
  size_t n_services;
  akrgen_policy *policies; /* each decoded option, in .proto order */
  size_t n_policies;
  /* The sensitive fields of every message type the services' methods
   * reach (in this file or an imported one), sorted by type and number. */
  akrgen_sensitive *sensitive;
  size_t n_sensitive;
  /* What reflection serves for the services (descset.c): this file and the
   * files needed to decode its messages, dependencies first. Empty if the
   * file has no services. */
  akrgen_blob *files;
  size_t n_files;
} akrgen_model;

/* Builds the model of `proto_name`, one of request->file_to_generate.
 * Returns 0, or -1 after appending one line per problem to `errors`
 * ("file.proto:LINE:COL: error: ..."); *ret is then partly built. Either
 * way, free it with akrgen_model_free(). */
int akrgen_model_build(const Akrgen__Plugin__CodeGeneratorRequest *request,
                       const char *proto_name, akrgen_model *ret, akrgen_buf *errors);

void akrgen_model_free(akrgen_model *model);

/* Fills model->sensitive (sensitive.c). */
void akrgen_sensitive_collect(const Akrgen__Plugin__CodeGeneratorRequest *request,
                              akrgen_model *model);

/* Counts the ackrpc.Fd fields of the method's request and reply types
 * (".pkg.Msg") into `me` and reports the unsupported ones (fdfields.c). */
void akrgen_fdfields_check(const Akrgen__Plugin__CodeGeneratorRequest *request,
                           const akrgen_model *model, const akrgen_service *sv,
                           akrgen_method *me, const char *request_type,
                           const char *reply_type, akrgen_buf *errors);

/* Whether a method passes descriptors (in its request or its reply). */
#define AKRGEN_FDS_IN(me) ((me)->fds_in || (me)->fds_in_repeated)
#define AKRGEN_FDS_OUT(me) ((me)->fds_out || (me)->fds_out_repeated)

/* Whether some method of the model passes descriptors in its request
 * (want_in) or in either message. */
int akrgen_model_has_fds(const akrgen_model *model, int want_in);

/* Appends "file:LINE:COL: error: ..." (or "file: error: ..." without a
 * location) as a new line of `errors`. */
void akrgen_error(akrgen_buf *errors, const char *file, akrgen_loc loc, const char *fmt,
                  ...) AKRGEN_PRINTF(4, 5);

#endif /* AKRGEN_MODEL_H */
