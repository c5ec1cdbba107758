/* names.c: method names and metadata keys (names.h). */
#include "wire/names.h"

#include <string.h>

#include "ackrpc/common.h"

/* What each byte may be in a method name: an identifier's character, the
 * dot of a dotted package, the slash before the method; 0: none of them.
 * A table, because every call's name is checked twice (by the client as it
 * encodes, by the server as it admits). */
enum { ID = 1, DOT = 2, SLASH = 3 };
static const unsigned char name_class[256] = {
    ['.'] = DOT, ['/'] = SLASH, ['a'] = ID, ['b'] = ID, ['c'] = ID, ['d'] = ID,
    ['e'] = ID,  ['f'] = ID,    ['g'] = ID, ['h'] = ID, ['i'] = ID, ['j'] = ID,
    ['k'] = ID,  ['l'] = ID,    ['m'] = ID, ['n'] = ID, ['o'] = ID, ['p'] = ID,
    ['q'] = ID,  ['r'] = ID,    ['s'] = ID, ['t'] = ID, ['u'] = ID, ['v'] = ID,
    ['w'] = ID,  ['x'] = ID,    ['y'] = ID, ['z'] = ID, ['A'] = ID, ['B'] = ID,
    ['C'] = ID,  ['D'] = ID,    ['E'] = ID, ['F'] = ID, ['G'] = ID, ['H'] = ID,
    ['I'] = ID,  ['J'] = ID,    ['K'] = ID, ['L'] = ID, ['M'] = ID, ['N'] = ID,
    ['O'] = ID,  ['P'] = ID,    ['Q'] = ID, ['R'] = ID, ['S'] = ID, ['T'] = ID,
    ['U'] = ID,  ['V'] = ID,    ['W'] = ID, ['X'] = ID, ['Y'] = ID, ['Z'] = ID,
    ['0'] = ID,  ['1'] = ID,    ['2'] = ID, ['3'] = ID, ['4'] = ID, ['5'] = ID,
    ['6'] = ID,  ['7'] = ID,    ['8'] = ID, ['9'] = ID, ['_'] = ID};

int akr_method_name_valid(const char *name) {
  /* package.Service/Method: a non-empty dotted service name, one slash, a
   * non-empty method; identifiers of [A-Za-z0-9_]; a dot or the slash only
   * right after an identifier's character, no dot after the slash. */
  int slashes = 0, prev = DOT;
  size_t i = 0;
  for (; name[i] && i <= ACKRPC_MAX_METHOD_NAME; i++) {
    int c = name_class[(unsigned char)name[i]];
    if (c == ID) {
      prev = ID;
      continue;
    }
    if (c == 0 || prev != ID) return 0;
    if (c == SLASH ? ++slashes > 1 : slashes != 0) return 0;
    prev = c;
  }
  return i > 0 && i <= ACKRPC_MAX_METHOD_NAME && slashes == 1 && prev == ID;
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
