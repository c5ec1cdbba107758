/* proto.h: looking things up in protoc's descriptors (the
 * FileDescriptorProtos of a CodeGeneratorRequest), for the model. */
#ifndef AKRGEN_PROTO_H
#define AKRGEN_PROTO_H

#include <stdint.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "model.h"
#include "protoc_plugin.pb-c.h"

typedef Google__Protobuf__FileDescriptorProto akrgen_file_proto;
typedef Akrgen__Plugin__CodeGeneratorRequest akrgen_request;

/* The request's file named `name`, or NULL. */
const akrgen_file_proto *akrgen_find_file(const akrgen_request *request,
                                          const char *name);

/* Nonzero if `f` defines the message (or, unless messages_only, the enum)
 * `full` (".pkg.Msg.Nested"). */
int akrgen_file_defines(const akrgen_file_proto *f, const char *full,
                        int messages_only);

/* The message `full` (".pkg.Msg.Nested") as some file of the request
 * defines it, or NULL. */
const Google__Protobuf__DescriptorProto *
akrgen_find_message(const akrgen_request *request, const char *full);

/* Nonzero if some file of the request defines the message `full`. */
int akrgen_message_exists(const akrgen_request *request, const char *full);

/* Where service `service` (and, if method >= 0, its method `method`)
 * starts in `f`, from protoc's source code info. */
akrgen_loc akrgen_find_location(const akrgen_file_proto *f, int32_t service,
                                int32_t method);

/* Where the field at index `field` (its place in the message's field list) of
 * in the message's field list) of the message `full` (".pkg.Msg.Nested")
 * is in `f`, if `f` defines it and
 * has source code info; {0, 0} otherwise. */
akrgen_loc akrgen_find_field_location(const akrgen_file_proto *f, const char *full,
                                      int32_t field);

#endif /* AKRGEN_PROTO_H */
