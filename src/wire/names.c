/* names.c: method names and metadata keys (names.h). */
#include "wire/names.h"

#include <string.h>

#include "ackrpc/common.h"

int akr_method_name_valid(const char *name) {
  /* package.Service/Method: a non-empty dotted service name, one slash, a
   * non-empty method; identifiers of [A-Za-z0-9_]; no empty dot segment. */
  size_t n = strnlen(name, ACKRPC_MAX_METHOD_NAME + 1);
  if (n == 0 || n > ACKRPC_MAX_METHOD_NAME) return 0;
  int slashes = 0;
  char prev = '.';
  for (size_t i = 0; i < n; i++) {
    char ch = name[i];
    int ident = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                (ch >= '0' && ch <= '9') || ch == '_';
    if (ch == '/') {
      if (++slashes > 1 || prev == '.' || prev == '/') return 0;
    } else if (ch == '.') {
      if (slashes || prev == '.' || prev == '/') return 0;
    } else if (!ident) {
      return 0;
    }
    prev = ch;
  }
  return slashes == 1 && prev != '/';
}

int akr_metadata_key_valid(const char *key, size_t len) {
  if (len == 0 || len > ACKRPC_MAX_METADATA_KEY) return 0;
  for (size_t i = 0; i < len; i++) {
    char ch = key[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
          ch == '_' || ch == '-'))
      return 0;
  }
  return 1;
}
