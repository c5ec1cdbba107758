/* descpool.h: a pool of protobuf descriptors for the ackrpc tool, built from
 * serialized FileDescriptorSets (protoc --descriptor_set_out, or later the
 * server's reflection), with every type reference resolved and the facts the
 * JSON codec needs precomputed (JSON names, presence, packing, map entries,
 * well-known types).
 *
 * Not here: where the bytes come from (descsource.c), the codec (jsoncodec.c).
 * The descriptors themselves are decoded with protobuf-c (descriptor.proto).
 * They may come from a server (reflection), so they are untrusted input: a
 * set's nesting is checked before protobuf-c (which recurses without a
 * limit) decodes it, and decoding has a memory budget.
 */
#ifndef AKRCLI_DESCPOOL_H
#define AKRCLI_DESCPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "google/protobuf/descriptor.pb-c.h"

typedef Google__Protobuf__FileDescriptorProto akrcli_file_proto;
typedef Google__Protobuf__DescriptorProto akrcli_msg_proto;
typedef Google__Protobuf__FieldDescriptorProto akrcli_field_proto;
typedef Google__Protobuf__EnumDescriptorProto akrcli_enum_proto;
typedef Google__Protobuf__ServiceDescriptorProto akrcli_service_proto;
typedef Google__Protobuf__MethodDescriptorProto akrcli_method_proto;

/* Field types: FieldDescriptorProto.Type's numbers. */
enum {
  AKRCLI_T_DOUBLE = 1,
  AKRCLI_T_FLOAT = 2,
  AKRCLI_T_INT64 = 3,
  AKRCLI_T_UINT64 = 4,
  AKRCLI_T_INT32 = 5,
  AKRCLI_T_FIXED64 = 6,
  AKRCLI_T_FIXED32 = 7,
  AKRCLI_T_BOOL = 8,
  AKRCLI_T_STRING = 9,
  AKRCLI_T_GROUP = 10,
  AKRCLI_T_MESSAGE = 11,
  AKRCLI_T_BYTES = 12,
  AKRCLI_T_UINT32 = 13,
  AKRCLI_T_ENUM = 14,
  AKRCLI_T_SFIXED32 = 15,
  AKRCLI_T_SFIXED64 = 16,
  AKRCLI_T_SINT32 = 17,
  AKRCLI_T_SINT64 = 18,
};

/* Well-known types with a special JSON form. */
typedef enum akrcli_wkt {
  AKRCLI_WKT_NONE = 0,
  AKRCLI_WKT_TIMESTAMP,
  AKRCLI_WKT_DURATION,
  AKRCLI_WKT_WRAPPER, /* DoubleValue … BytesValue: the value itself */
  AKRCLI_WKT_STRUCT,
  AKRCLI_WKT_VALUE,
  AKRCLI_WKT_LIST_VALUE,
  AKRCLI_WKT_FIELD_MASK,
} akrcli_wkt;

typedef struct akrcli_msg akrcli_msg;

typedef struct akrcli_enum {
  char *full_name; /* "pkg.Outer.E", no leading dot */
  const akrcli_enum_proto *proto;
  int closed;     /* a proto2 enum */
  int null_value; /* google.protobuf.NullValue: JSON null */
} akrcli_enum;

typedef struct akrcli_field {
  const akrcli_field_proto *proto;
  const char *name; /* as in the .proto */
  char *json_name;  /* lowerCamelCase, or the json_name option */
  uint32_t number;
  int type; /* AKRCLI_T_* */
  int repeated;
  int packed;             /* repeated scalar written packed */
  int required;           /* proto2 required */
  int presence;           /* singular field whose presence is tracked */
  int oneof;              /* index of a real (not synthetic) oneof, or -1 */
  const akrcli_msg *msg;  /* MESSAGE and GROUP fields */
  const akrcli_enum *enm; /* ENUM fields */
  int is_map;             /* repeated field of a map-entry message */
} akrcli_field;

struct akrcli_msg {
  char *full_name; /* "pkg.Outer.Inner", no leading dot */
  const akrcli_msg_proto *proto;
  const akrcli_file_proto *file;
  int proto3;
  int map_entry;
  akrcli_wkt wkt;
  akrcli_field *fields; /* declaration order */
  size_t n_fields;
  size_t *by_number; /* indexes into fields, sorted by number */
  size_t n_oneofs;   /* real oneofs (synthetic ones are left out) */
  const char **oneof_names;
};

typedef struct akrcli_method {
  char *wire_name; /* "pkg.Service/Method" */
  const akrcli_method_proto *proto;
  const akrcli_msg *input;
  const akrcli_msg *output;
} akrcli_method;

typedef struct akrcli_service {
  char *full_name; /* "pkg.Service" */
  const akrcli_service_proto *proto;
  const akrcli_file_proto *file;
  akrcli_method *methods;
  size_t n_methods;
} akrcli_service;

typedef struct akrcli_pool {
  Google__Protobuf__FileDescriptorSet **sets; /* owned (protobuf-c) */
  size_t n_sets;
  const akrcli_file_proto **files; /* unique by name, in order of addition */
  size_t n_files;
  akrcli_msg *msgs;
  size_t n_msgs;
  akrcli_enum *enums;
  size_t n_enums;
  akrcli_service *services;
  size_t n_services;
  int built;
} akrcli_pool;

/* Limits on what a pool accepts. */
#define AKRCLI_MAX_DESCRIPTOR_SET (64u * 1024 * 1024) /* bytes of one set */
#define AKRCLI_MAX_POOL_SETS 64
/* Deepest nesting of messages in a set, the set counting as 1 (a file is 2,
 * its top-level messages 3, each nested type one more): protoc's own
 * recursion limit. */
#define AKRCLI_MAX_DESCRIPTOR_DEPTH 100u
/* Memory a set may take once decoded: descriptors decode into large
 * structs (an empty nested type, 2 wire bytes, is ~200 bytes). */
#define AKRCLI_DESCRIPTOR_DECODE_BUDGET(len) (64 * (size_t)(len) + (4u << 20))

/* Adds a serialized FileDescriptorSet. A file whose name is already in the
 * pool is skipped (the first one wins). Returns 0, or -1 with a message in
 * err (errlen bytes): also for a set over AKRCLI_MAX_DESCRIPTOR_SET bytes,
 * nested deeper than AKRCLI_MAX_DESCRIPTOR_DEPTH, or needing more than
 * AKRCLI_DESCRIPTOR_DECODE_BUDGET to decode. Add every set before
 * akrcli_pool_build(). */
int akrcli_pool_add_set(akrcli_pool *pool, const uint8_t *data, size_t len, char *err,
                        size_t errlen);

/* Indexes the types and resolves every reference. Returns 0, or -1 with a
 * message (e.g. a type that no file defines: build the set with
 * --include_imports). */
int akrcli_pool_build(akrcli_pool *pool, char *err, size_t errlen);

/* Frees what the pool owns and zeroes it. */
void akrcli_pool_clear(akrcli_pool *pool);

/* Lookups by full name, with or without a leading dot; NULL if absent. */
const akrcli_msg *akrcli_pool_message(const akrcli_pool *pool, const char *name);
const akrcli_enum *akrcli_pool_enum(const akrcli_pool *pool, const char *name);
const akrcli_service *akrcli_pool_service(const akrcli_pool *pool, const char *name);
/* "pkg.Service/Method" or "pkg.Service.Method". */
const akrcli_method *akrcli_pool_method(const akrcli_pool *pool, const char *name);

/* The field of `msg` with this number, or NULL. */
const akrcli_field *akrcli_msg_field_by_number(const akrcli_msg *msg, uint32_t number);
/* The field whose JSON name or .proto name is `key` (len bytes), or NULL. */
const akrcli_field *akrcli_msg_field_by_key(const akrcli_msg *msg, const char *key,
                                            size_t len);

/* The name of the enum value `number`, or NULL (first name for aliases). */
const char *akrcli_enum_name(const akrcli_enum *e, int32_t number);
/* Looks up a value by name; returns 0 and sets *ret_number, or -1. */
int akrcli_enum_number(const akrcli_enum *e, const char *name, int32_t *ret_number);

/* The .proto keyword of a scalar type ("int32", …), or NULL for message,
 * group and enum. */
const char *akrcli_type_keyword(int type);

#endif /* AKRCLI_DESCPOOL_H */
