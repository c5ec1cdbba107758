/* test_utf8.c: unit tests of the UTF-8 check (src/wire/utf8.c).
 *
 * The validator: every boundary of Unicode's table of well-formed
 * sequences, each kind of ill-formed one (overlong, surrogate, above
 * U+10FFFF, truncated, stray continuation), a bad byte at every offset
 * around the eight-byte ASCII path, and all 1-, 2- and 3-byte inputs (and
 * the 4-byte ones that begin F0..F4) against an independent decoder. The
 * walk: a bad string in each place protobuf-c can hold one (singular,
 * repeated, oneof, submessage, repeated submessage, map key and value,
 * deeper nesting), reported with its field; proto2 strings left alone;
 * bytes never checked; types without strings; the depth bound. Messages
 * come from tests/proto/utf8.proto and utf8_legacy.proto. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ackrpc/wire.pb-c.h"
#include "pieces.pb-c.h"
#include "strict.pb-c.h"
#include "utf8.pb-c.h"
#include "utf8_legacy.pb-c.h"
#include "wire/utf8.h"

/* --- the validator ------------------------------------------------------ */

static int valid(const char *s) {
  return akr_utf8_valid(s, strlen(s));
}

Test(utf8, boundaries_accepted) {
  static const char *const ok[] = {
      "",
      "plain ASCII, longer than eight bytes",
      "\x7f",
      "\xc2\x80",         /* U+0080 */
      "\xdf\xbf",         /* U+07FF */
      "\xe0\xa0\x80",     /* U+0800 */
      "\xed\x9f\xbf",     /* U+D7FF */
      "\xee\x80\x80",     /* U+E000 */
      "\xef\xbf\xbf",     /* U+FFFF */
      "\xf0\x90\x80\x80", /* U+10000 */
      "\xf4\x8f\xbf\xbf", /* U+10FFFF */
      "gr\xc3\xbc\xc3\x9f Gott, \xe2\x82\xac 5, \xf0\x9f\x98\x80 and more ASCII",
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
    cr_assert(valid(ok[i]), "refused: case %zu", i);
  /* A NUL is U+0000: valid (it is the length that says where a string ends). */
  cr_assert(akr_utf8_valid("a\0b", 3));
}

Test(utf8, ill_formed_refused) {
  static const char *const bad[] = {
      "\x80",                     /* continuation byte alone */
      "\xbf",                     /* */
      "\xc0\x80",                 /* overlong NUL */
      "\xc1\xbf",                 /* overlong U+007F */
      "\xe0\x80\x80",             /* overlong 3-byte */
      "\xe0\x9f\xbf",             /* overlong U+07FF */
      "\xf0\x80\x80\x80",         /* overlong 4-byte */
      "\xf0\x8f\xbf\xbf",         /* overlong U+FFFF */
      "\xed\xa0\x80",             /* U+D800 */
      "\xed\xbf\xbf",             /* U+DFFF */
      "\xed\xa0\x80\xed\xb0\x80", /* a surrogate pair in CESU-8 */
      "\xf4\x90\x80\x80",         /* U+110000 */
      "\xf5\x80\x80\x80",         /* lead byte beyond F4 */
      "\xf8\x88\x80\x80\x80",
      "\xfe",
      "\xff",
      "\xc2", /* truncated */
      "\xe0\xa0",
      "\xf0\x90\x80",
      "\xc2\x41", /* a continuation that is not one */
      "\xe1\x80\x41",
      "\xf1\x80\x80\xc0",
      "abc\xe2\x82", /* truncated after ASCII */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_assert(!valid(bad[i]), "accepted: case %zu", i);
}

/* The eight-byte ASCII path must not step over a bad byte, nor read past
 * the end: one bad byte at each offset of buffers of each length. */
Test(utf8, bad_byte_at_every_offset) {
  char buf[40];
  for (size_t len = 1; len <= sizeof buf; len++) {
    for (size_t at = 0; at < len; at++) {
      char *b = malloc(len); /* exactly len: ASan sees an overread */
      cr_assert_not_null(b);
      memset(b, 'a', len);
      b[at] = (char)0xff;
      cr_assert(!akr_utf8_valid(b, len), "0xff at %zu of %zu accepted", at, len);
      b[at] = 'z';
      cr_assert(akr_utf8_valid(b, len));
      if (at + 2 <= len) { /* a 2-byte character straddling any word edge */
        b[at] = (char)0xc3;
        b[at + 1] = (char)0xa9;
        cr_assert(akr_utf8_valid(b, len), "U+00E9 at %zu of %zu refused", at, len);
        cr_assert(!akr_utf8_valid(b, at + 1), "truncated at the end accepted");
      }
      free(b);
    }
  }
}

/* An independent reading of RFC 3629: decode the code point, then judge
 * it. Returns the sequence's length, 0 if ill-formed. */
static size_t reference(const uint8_t *s, size_t left) {
  size_t n;
  uint32_t cp;
  if (s[0] < 0x80) return 1;
  if ((s[0] & 0xe0) == 0xc0)
    n = 2, cp = s[0] & 0x1f;
  else if ((s[0] & 0xf0) == 0xe0)
    n = 3, cp = s[0] & 0x0f;
  else if ((s[0] & 0xf8) == 0xf0)
    n = 4, cp = s[0] & 0x07;
  else
    return 0;
  if (left < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

static int reference_valid(const uint8_t *s, size_t len) {
  for (size_t i = 0; i < len;) {
    size_t n = reference(s + i, len - i);
    if (!n) return 0;
    i += n;
  }
  return 1;
}

Test(utf8, agrees_with_a_reference_decoder) {
  uint8_t b[4];
  unsigned long checked = 0, accepted = 0;
  for (uint32_t v = 0; v < 1u << 24; v++) { /* every 1-, 2- and 3-byte input */
    b[0] = (uint8_t)(v >> 16), b[1] = (uint8_t)(v >> 8), b[2] = (uint8_t)v;
    for (size_t len = 1; len <= 3; len++) {
      if (len < 3 && (v & ((1u << (8 * (3 - len))) - 1))) continue; /* once each */
      int got = akr_utf8_valid(b, len), want = reference_valid(b, len);
      cr_assert_eq(got, want, "%02x %02x %02x (len %zu): got %d", b[0], b[1], b[2], len,
                   got);
      checked++, accepted += (unsigned long)got;
    }
  }
  for (uint32_t v = 0; v < 1u << 24; v++) { /* 4-byte inputs led by F0..F4 */
    b[0] = (uint8_t)(0xf0 + (v >> 21) % 5), b[1] = (uint8_t)(v >> 13);
    b[2] = (uint8_t)(v >> 5), b[3] = (uint8_t)(v << 3 | v >> 18);
    cr_assert_eq(akr_utf8_valid(b, 4), reference_valid(b, 4), "%02x %02x %02x %02x",
                 b[0], b[1], b[2], b[3]);
  }
  cr_assert_gt(accepted, 60000, "%lu of %lu accepted", accepted, checked);
}

/* --- the walk ----------------------------------------------------------- */

#define BAD "ok\xc0\xafok" /* overlong '/' */

/* A Tree with a valid string in every place, nested one level. */
typedef struct tree_parts {
  Ackrpc__Utf8__Tree tree, child;
  Ackrpc__Utf8__Leaf one, m0, m1, m2, in_oneof, leaf_val;
  Ackrpc__Utf8__Leaf *many[3];
  char *tags[2];
  Ackrpc__Utf8__Tree__AttrsEntry attr;
  Ackrpc__Utf8__Tree__AttrsEntry *attrs[1];
  Ackrpc__Utf8__Tree__LeavesEntry leaf;
  Ackrpc__Utf8__Tree__LeavesEntry *leaves[1];
  uint8_t raw[2];
} tree_parts;

static void tree_init(tree_parts *t) {
  ackrpc__utf8__tree__init(&t->tree);
  ackrpc__utf8__tree__init(&t->child);
  Ackrpc__Utf8__Leaf *leaves[] = {&t->one, &t->m0,       &t->m1,
                                  &t->m2,  &t->in_oneof, &t->leaf_val};
  for (size_t i = 0; i < sizeof leaves / sizeof *leaves; i++) {
    ackrpc__utf8__leaf__init(leaves[i]);
    leaves[i]->text = "caf\xc3\xa9";
  }
  t->tree.name = "tree";
  t->tags[0] = "a", t->tags[1] = "\xe2\x9c\x93";
  t->tree.n_tags = 2, t->tree.tags = t->tags;
  t->tree.choice_case = ACKRPC__UTF8__TREE__CHOICE_LABEL;
  t->tree.label = "label";
  t->tree.one = &t->one;
  t->many[0] = &t->m0, t->many[1] = &t->m1, t->many[2] = &t->m2;
  t->tree.n_many = 3, t->tree.many = t->many;
  ackrpc__utf8__tree__attrs_entry__init(&t->attr);
  t->attr.key = "k", t->attr.value = "v";
  t->attrs[0] = &t->attr;
  t->tree.n_attrs = 1, t->tree.attrs = t->attrs;
  ackrpc__utf8__tree__leaves_entry__init(&t->leaf);
  t->leaf.key = 7, t->leaf.value = &t->leaf_val;
  t->leaves[0] = &t->leaf;
  t->tree.n_leaves = 1, t->tree.leaves = t->leaves;
  t->raw[0] = 0xff, t->raw[1] = 0xc0; /* bytes: never checked */
  t->tree.raw.data = t->raw, t->tree.raw.len = 2;
  t->child.name = "child";
  t->child.choice_case = ACKRPC__UTF8__TREE__CHOICE_LEAF;
  t->child.leaf = &t->in_oneof;
  t->tree.child = &t->child;
}

/* Checks msg, expecting `field` of type `type` to be reported (NULL: OK). */
static void expect(const ProtobufCMessage *msg, const char *type, const char *field) {
  akr_utf8_error e = {0};
  int rc = akr_check_utf8(msg, 100, &e);
  if (!field) {
    cr_assert_eq(rc, 0, "refused: %s in %s.%s", e.what, e.message->name, e.field->name);
    return;
  }
  cr_assert_eq(rc, -1, "%s.%s: bad string accepted", type, field);
  cr_assert_str_eq(e.message->name, type);
  cr_assert_str_eq(e.field->name, field);
  cr_assert_str_eq(e.what, "invalid UTF-8");
}

Test(utf8, every_place_checked) {
  tree_parts t;
  tree_init(&t);
  expect(&t.tree.base, NULL, NULL);
  const char *T = "ackrpc.utf8.Tree", *L = "ackrpc.utf8.Leaf";
  struct {
    char **slot;
    const char *type, *field;
  } places[] = {
      {&t.tree.name, T, "name"},
      {&t.tags[1], T, "tags"},
      {&t.tree.label, T, "label"},
      {&t.one.text, L, "text"},
      {&t.m2.text, L, "text"},
      {&t.attr.key, "ackrpc.utf8.Tree.AttrsEntry", "key"},
      {&t.attr.value, "ackrpc.utf8.Tree.AttrsEntry", "value"},
      {&t.leaf_val.text, L, "text"},
      {&t.child.name, T, "name"},
      {&t.in_oneof.text, L, "text"},
  };
  for (size_t i = 0; i < sizeof places / sizeof *places; i++) {
    char *was = *places[i].slot;
    *places[i].slot = BAD;
    expect(&t.tree.base, places[i].type, places[i].field);
    *places[i].slot = was;
  }
  expect(&t.tree.base, NULL, NULL);
}

/* Only the oneof member its case names is read: another member's pointer
 * is the same storage, and may not be a string at all. */
Test(utf8, oneof_case_decides) {
  tree_parts t;
  tree_init(&t);
  t.tree.choice_case = ACKRPC__UTF8__TREE__CHOICE_NUMBER;
  t.tree.number = 0xc0c0c0c0u;
  expect(&t.tree.base, NULL, NULL);
  t.tree.choice_case = ACKRPC__UTF8__TREE__CHOICE__NOT_SET;
  expect(&t.tree.base, NULL, NULL);
}

/* The realistic path: bytes off the wire, decoded by protobuf-c (which
 * packs and unpacks invalid UTF-8 without a word), then checked. */
Test(utf8, decoded_from_wire) {
  tree_parts t;
  tree_init(&t);
  t.m1.text = "\xed\xa0\x80"; /* U+D800 */
  size_t len = ackrpc__utf8__tree__get_packed_size(&t.tree);
  uint8_t *buf = malloc(len);
  cr_assert_not_null(buf);
  ackrpc__utf8__tree__pack(&t.tree, buf);
  Ackrpc__Utf8__Tree *back = ackrpc__utf8__tree__unpack(NULL, len, buf);
  cr_assert_not_null(back, "protobuf-c refused it: then this check would be moot");
  expect(&back->base, "ackrpc.utf8.Leaf", "text");
  cr_assert_eq(back->many[1]->text[0], (char)0xed);
  ackrpc__utf8__tree__free_unpacked(back, NULL);
  free(buf);
}

Test(utf8, proto2_strings_left_alone_proto3_inside_checked) {
  Ackrpc__Utf8__Legacy l = ACKRPC__UTF8__LEGACY__INIT;
  Ackrpc__Utf8__Leaf leaf = ACKRPC__UTF8__LEAF__INIT;
  char *tags[] = {BAD};
  l.name = BAD;
  l.n_tags = 1, l.tags = tags;
  expect(&l.base, NULL, NULL);
  leaf.text = BAD;
  l.leaf = &leaf;
  expect(&l.base, "ackrpc.utf8.Leaf", "text");
  /* Repeated fields only: proto2 or proto3, nobody can tell; checked. */
  Ackrpc__Utf8__OnlyRepeated r = ACKRPC__UTF8__ONLY_REPEATED__INIT;
  r.n_tags = 1, r.tags = tags;
  expect(&r.base, "ackrpc.utf8.OnlyRepeated", "tags");
}

Test(utf8, which_types_have_strings) {
  cr_assert(!akr_message_has_strings(&ackrpc__utf8__numbers__descriptor));
  cr_assert(akr_message_has_strings(&ackrpc__utf8__leaf__descriptor));
  cr_assert(akr_message_has_strings(&ackrpc__utf8__tree__descriptor));
  cr_assert(akr_message_has_strings(&ackrpc__utf8__outer__descriptor), "below only");
  cr_assert(akr_message_has_strings(&ackrpc__utf8__legacy__descriptor), "via Leaf");
  cr_assert(akr_message_has_strings(&ackrpc__utf8__only_repeated__descriptor));
  cr_assert(!akr_message_has_strings(&ackrpc__test__strict__descriptor), "proto2");
  cr_assert(!akr_message_has_strings(&ackrpc__pieces__mixed__descriptor), "proto2");
  cr_assert(akr_message_has_strings(&ackrpc__wire__request_head__descriptor));
}

Test(utf8, strings_below_only) {
  Ackrpc__Utf8__Outer o = ACKRPC__UTF8__OUTER__INIT;
  Ackrpc__Utf8__Leaf leaf = ACKRPC__UTF8__LEAF__INIT;
  expect(&o.base, NULL, NULL);
  leaf.text = BAD;
  o.leaf = &leaf;
  expect(&o.base, "ackrpc.utf8.Leaf", "text");
}

/* Nesting beyond max_depth is refused with the field that holds it, even
 * with no bad string: the walk's recursion is bounded whatever it is
 * given. */
Test(utf8, depth_bounded) {
  Ackrpc__Utf8__Tree chain[6];
  for (int i = 0; i < 6; i++) {
    ackrpc__utf8__tree__init(&chain[i]);
    chain[i].child = i < 5 ? &chain[i + 1] : NULL;
  }
  akr_utf8_error e = {0};
  cr_assert_eq(akr_check_utf8(&chain[0].base, 6, &e), 0, "6 deep, max 6");
  cr_assert_eq(akr_check_utf8(&chain[0].base, 5, &e), -1, "6 deep, max 5");
  cr_assert_str_eq(e.field->name, "child");
  cr_assert_str_eq(e.what, "nesting deeper than allowed");
  /* A submessage without strings below is not entered: not counted. */
  Ackrpc__Utf8__Numbers n[3];
  for (int i = 0; i < 3; i++) {
    ackrpc__utf8__numbers__init(&n[i]);
    n[i].next = i < 2 ? &n[i + 1] : NULL;
  }
  chain[5].numbers = &n[0];
  cr_assert_eq(akr_check_utf8(&chain[0].base, 6, &e), 0);
}
