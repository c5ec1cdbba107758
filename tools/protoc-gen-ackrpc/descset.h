/* descset.h: the descriptors reflection serves for the services of a file
 * (akrgen_model.files). */
#ifndef AKRGEN_DESCSET_H
#define AKRGEN_DESCSET_H

#include "model.h"
#include "proto.h"

/* Fills model->files: `file` and the files needed to decode its messages,
 * transitively, in the request's order (protoc's: dependencies first), each
 * serialized without source code info and with only those imports listed.
 * An import that provides no type the file refers to (one made for custom
 * options, such as ackrpc/options.proto, which brings
 * google/protobuf/descriptor.proto) is left out, so the set stays small and
 * self-contained: every dependency a file lists is in the set. */
void akrgen_descset_collect(const akrgen_request *request,
                            const akrgen_file_proto *file, akrgen_model *model);

#endif /* AKRGEN_DESCSET_H */
