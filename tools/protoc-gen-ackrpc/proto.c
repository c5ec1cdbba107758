/* proto.c: lookups in protoc's descriptors (proto.h). protoc sends every
 * file a generated file depends on, so nothing here reads the disk; a
 * request may still be malformed (tests/gen feeds mutated ones), so every
 * pointer is checked. */
#include "proto.h"

#include <string.h>

/* Source-file paths of FileDescriptorProto (descriptor.proto): service = 6,
 * ServiceDescriptorProto.method = 2. */
#define PATH_SERVICE 6
#define PATH_METHOD 2
/* FileDescriptorProto.message_type = 4, DescriptorProto.nested_type = 3,
 * DescriptorProto.field = 2. */
#define PATH_MESSAGE 4
#define PATH_NESTED 3
#define PATH_FIELD 2
#define MAX_PATH 64

const akrgen_file_proto *akrgen_find_file(const akrgen_request *request,
                                          const char *name) {
  for (size_t i = 0; i < request->n_proto_file; i++) {
    const akrgen_file_proto *f = request->proto_file[i];
    if (f && f->name && strcmp(f->name, name) == 0) return f;
  }
  return NULL;
}

static int has_enum(Google__Protobuf__EnumDescriptorProto *const *enums, size_t n,
                    const char *rest) {
  for (size_t i = 0; i < n; i++)
    if (enums[i] && enums[i]->name && strcmp(enums[i]->name, rest) == 0) return 1;
  return 0;
}

/* Nonzero if `rest` (a dotted name below the package) names a message among
 * `msgs` or their nested types. */
static int has_type(Google__Protobuf__DescriptorProto *const *msgs, size_t n,
                    const char *rest, int messages_only) {
  for (size_t i = 0; i < n; i++) {
    const Google__Protobuf__DescriptorProto *m = msgs[i];
    if (!m || !m->name) continue;
    size_t len = strlen(m->name);
    if (strncmp(rest, m->name, len) != 0) continue;
    if (rest[len] == '\0') return 1;
    if (rest[len] != '.') continue;
    if (has_type(m->nested_type, m->n_nested_type, rest + len + 1, messages_only))
      return 1;
    if (!messages_only && has_enum(m->enum_type, m->n_enum_type, rest + len + 1))
      return 1;
  }
  return 0;
}

int akrgen_file_defines(const akrgen_file_proto *f, const char *full,
                        int messages_only) {
  if (!f || !full || full[0] != '.') return 0;
  const char *pkg = f->package ? f->package : "";
  const char *rest = full + 1;
  size_t plen = strlen(pkg);
  if (plen) {
    if (strncmp(rest, pkg, plen) != 0 || rest[plen] != '.') return 0;
    rest += plen + 1;
  }
  if (has_type(f->message_type, f->n_message_type, rest, messages_only)) return 1;
  return !messages_only && has_enum(f->enum_type, f->n_enum_type, rest);
}

int akrgen_message_exists(const akrgen_request *request, const char *full) {
  for (size_t i = 0; i < request->n_proto_file; i++)
    if (akrgen_file_defines(request->proto_file[i], full, 1)) return 1;
  return 0;
}

/* The message `rest` (a dotted name below the package) among `msgs` or
 * their nested types, or NULL. */
static const Google__Protobuf__DescriptorProto *
find_type(Google__Protobuf__DescriptorProto *const *msgs, size_t n, const char *rest) {
  for (size_t i = 0; i < n; i++) {
    const Google__Protobuf__DescriptorProto *m = msgs[i];
    if (!m || !m->name) continue;
    size_t len = strlen(m->name);
    if (strncmp(rest, m->name, len) != 0) continue;
    if (rest[len] == '\0') return m;
    if (rest[len] != '.') continue;
    const Google__Protobuf__DescriptorProto *in =
        find_type(m->nested_type, m->n_nested_type, rest + len + 1);
    if (in) return in;
  }
  return NULL;
}

const Google__Protobuf__DescriptorProto *
akrgen_find_message(const akrgen_request *request, const char *full) {
  if (!full || full[0] != '.') return NULL;
  for (size_t i = 0; i < request->n_proto_file; i++) {
    const akrgen_file_proto *f = request->proto_file[i];
    if (!f) continue;
    const char *pkg = f->package ? f->package : "", *rest = full + 1;
    size_t plen = strlen(pkg);
    if (plen) {
      if (strncmp(rest, pkg, plen) != 0 || rest[plen] != '.') continue;
      rest += plen + 1;
    }
    const Google__Protobuf__DescriptorProto *m =
        find_type(f->message_type, f->n_message_type, rest);
    if (m) return m;
  }
  return NULL;
}

/* Where the element at source path path[0..len) starts, from protoc's
 * source code info; {0, 0} if it is not there. */
static akrgen_loc location_at(const Google__Protobuf__SourceCodeInfo *info,
                              const int32_t *path, size_t len) {
  akrgen_loc loc = {0, 0};
  for (size_t i = 0; i < info->n_location; i++) {
    const Google__Protobuf__SourceCodeInfo__Location *l = info->location[i];
    if (!l || l->n_path != len || l->n_span < 3) continue;
    if (memcmp(l->path, path, len * sizeof *path) != 0) continue;
    if (l->span[0] < 0 || l->span[0] >= INT32_MAX || l->span[1] < 0 ||
        l->span[1] >= INT32_MAX)
      return loc;
    loc.line = l->span[0] + 1;
    loc.col = l->span[1] + 1;
    return loc;
  }
  return loc;
}

akrgen_loc akrgen_find_location(const akrgen_file_proto *f, int32_t service,
                                int32_t method) {
  akrgen_loc loc = {0, 0};
  const Google__Protobuf__SourceCodeInfo *info = f->source_code_info;
  if (!info) return loc;
  int32_t path[4] = {PATH_SERVICE, service, PATH_METHOD, method};
  return location_at(info, path, method < 0 ? 2 : 4);
}

/* Appends to path[0..*n) the path of `rest` (a dotted name below the
 * package) among `msgs`; returns 1 if found. */
static int message_path(Google__Protobuf__DescriptorProto *const *msgs, size_t n,
                        const char *rest, int32_t kind, int32_t *path, size_t *len) {
  for (size_t i = 0; i < n && *len + 2 <= MAX_PATH - 2; i++) {
    const Google__Protobuf__DescriptorProto *m = msgs[i];
    if (!m || !m->name) continue;
    size_t nl = strlen(m->name);
    if (strncmp(rest, m->name, nl) != 0 || (rest[nl] != '\0' && rest[nl] != '.'))
      continue;
    path[(*len)++] = kind;
    path[(*len)++] = (int32_t)i;
    if (rest[nl] == '\0') return 1;
    if (message_path(m->nested_type, m->n_nested_type, rest + nl + 1, PATH_NESTED, path,
                     len))
      return 1;
    *len -= 2;
  }
  return 0;
}

akrgen_loc akrgen_find_field_location(const akrgen_file_proto *f, const char *full,
                                      int32_t field) {
  akrgen_loc loc = {0, 0};
  int32_t path[MAX_PATH];
  size_t len = 0;
  if (!f || !full || full[0] != '.' || !f->source_code_info) return loc;
  const char *pkg = f->package ? f->package : "", *rest = full + 1;
  size_t plen = strlen(pkg);
  if (plen) {
    if (strncmp(rest, pkg, plen) != 0 || rest[plen] != '.') return loc;
    rest += plen + 1;
  }
  if (!message_path(f->message_type, f->n_message_type, rest, PATH_MESSAGE, path, &len))
    return loc;
  path[len++] = PATH_FIELD;
  path[len++] = field;
  return location_at(f->source_code_info, path, len);
}
