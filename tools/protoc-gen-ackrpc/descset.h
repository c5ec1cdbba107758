/* descset.h: the descriptors reflection serves for the services of a file
 * (akrgen_model.files). */
#ifndef AKRGEN_DESCSET_H
#define AKRGEN_DESCSET_H

#include "model.h"
#include "proto.h"

/* Fills model->files: `file` and every file it imports, transitively, in
 * the request's order (protoc's: dependencies first), each serialized
 * without source code info, so that each service is self-contained:
 * imports such as google/protobuf/empty.proto have no services, hence no
 * generated code of their own to carry them. */
void akrgen_descset_collect(const akrgen_request *request,
                            const akrgen_file_proto *file, akrgen_model *model);

#endif /* AKRGEN_DESCSET_H */
