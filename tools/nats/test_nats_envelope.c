/* The envelope of ackrpc-nats (envelope.h): subjects and header encodings
 * round-trip, and the decoders refuse what the encoders never write. */
#include <criterion/criterion.h>
#include <string.h>

#include "envelope.h"

Test(nats_envelope, subject_round_trip) {
  char subject[64], method[64];
  cr_assert_eq(
      ackrpc_nats_subject("ackrpc", "pkg.sub.Mailbox/Put", subject, sizeof subject), 0);
  cr_assert_str_eq(subject, "ackrpc.pkg.sub.Mailbox.Put");
  cr_assert_eq(ackrpc_nats_method("ackrpc", subject, method, sizeof method), 0);
  cr_assert_str_eq(method, "pkg.sub.Mailbox/Put");
  cr_assert_eq(ackrpc_nats_subject("a.b", "Svc/M", subject, sizeof subject), 0);
  cr_assert_str_eq(subject, "a.b.Svc.M");
  cr_assert_eq(ackrpc_nats_method("a.b", subject, method, sizeof method), 0);
  cr_assert_str_eq(method, "Svc/M");
}

Test(nats_envelope, subject_refuses_bad_names) {
  char out[64];
  const char *bad_methods[] = {"Svc",     "/M",   "Svc/", "Svc/M/N", "a..b/M",
                               "Svc/M.x", "S*/M", "S/>",  ""};
  for (size_t i = 0; i < sizeof bad_methods / sizeof *bad_methods; i++)
    cr_assert_eq(ackrpc_nats_subject("ackrpc", bad_methods[i], out, sizeof out), -1,
                 "%s", bad_methods[i]);
  cr_assert_eq(ackrpc_nats_subject("", "Svc/M", out, sizeof out), -1);
  cr_assert_eq(ackrpc_nats_subject("a.>", "Svc/M", out, sizeof out), -1);
  /* "ackrpc.Svc.M" needs 13 bytes with its NUL. */
  cr_assert_eq(ackrpc_nats_subject("ackrpc", "Svc/M", out, 12), -1);
  cr_assert_eq(ackrpc_nats_subject("ackrpc", "Svc/M", out, 13), 0);

  const char *bad_subjects[] = {"ackrpc",        "ackrpc.",      "ackrpc.Svc",
                                "ackrpcx.Svc.M", "other.Svc.M",  "ackrpc.S..M",
                                "ackrpc.Svc.",   "ackrpc.Svc.*", "ackrpc.Svc.M "};
  for (size_t i = 0; i < sizeof bad_subjects / sizeof *bad_subjects; i++)
    cr_assert_eq(ackrpc_nats_method("ackrpc", bad_subjects[i], out, sizeof out), -1,
                 "%s", bad_subjects[i]);
  cr_assert_eq(ackrpc_nats_method("ackrpc", "ackrpc.Svc.M", out, 5), -1);
  cr_assert_eq(ackrpc_nats_method("ackrpc", "ackrpc.Svc.M", out, 6), 0);
  cr_assert_str_eq(out, "Svc/M");
}

Test(nats_envelope, base64_round_trip_every_length) {
  uint8_t in[40], back[40];
  char text[64];
  for (size_t i = 0; i < sizeof in; i++)
    in[i] = (uint8_t)(i * 37 + 200);
  for (size_t len = 0; len <= sizeof in; len++) {
    ackrpc_nats_b64_encode(in, len, text);
    cr_assert_eq(strlen(text), ackrpc_nats_b64_len(len));
    size_t n = 99;
    cr_assert_eq(ackrpc_nats_b64_decode(text, back, sizeof back, &n), 0, "len %zu",
                 len);
    cr_assert_eq(n, len);
    cr_assert_arr_eq(back, in, len);
  }
  ackrpc_nats_b64_encode((const uint8_t *)"foobar", 6, text);
  cr_assert_str_eq(text, "Zm9vYmFy"); /* RFC 4648 §10 */
  ackrpc_nats_b64_encode((const uint8_t *)"fo", 2, text);
  cr_assert_str_eq(text, "Zm8=");
}

Test(nats_envelope, base64_refuses_non_canonical_text) {
  uint8_t out[16];
  size_t n;
  const char *bad[] = {"Zm8",      "Zm8=Zm8=", "Z===", "=m8=", "Zm=8", "Zm9=",
                       "Zg==Zg==", "Zh==",     "Zm8*", "Zm 8", "Zm8\n"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_assert_eq(ackrpc_nats_b64_decode(bad[i], out, sizeof out, &n), -1, "%s", bad[i]);
  cr_assert_eq(ackrpc_nats_b64_decode("Zm9vYmFy", out, 5, &n), -1);
  cr_assert_eq(ackrpc_nats_b64_decode("Zm9vYmFy", out, 6, &n), 0);
}

Test(nats_envelope, hex_round_trip_and_refusals) {
  const uint8_t id[] = {0x00, 0x7f, 0x80, 0xff, 0x12, 0xab};
  char text[16];
  uint8_t back[8];
  size_t n;
  ackrpc_nats_hex_encode(id, sizeof id, text);
  cr_assert_str_eq(text, "007f80ff12ab");
  cr_assert_eq(ackrpc_nats_hex_decode(text, back, sizeof back, &n), 0);
  cr_assert_eq(n, sizeof id);
  cr_assert_arr_eq(back, id, sizeof id);
  cr_assert_eq(ackrpc_nats_hex_decode("abc", back, sizeof back, &n), -1);
  cr_assert_eq(ackrpc_nats_hex_decode("AB", back, sizeof back, &n), -1);
  cr_assert_eq(ackrpc_nats_hex_decode("0g", back, sizeof back, &n), -1);
  cr_assert_eq(ackrpc_nats_hex_decode("00112233", back, 3, &n), -1);
}

Test(nats_envelope, decimal_is_strict) {
  uint64_t v = 7;
  cr_assert_eq(ackrpc_nats_dec_decode("0", 10, &v), 0);
  cr_assert_eq(v, 0);
  cr_assert_eq(ackrpc_nats_dec_decode("4294967295", UINT32_MAX, &v), 0);
  cr_assert_eq(v, UINT32_MAX);
  cr_assert_eq(ackrpc_nats_dec_decode("18446744073709551615", UINT64_MAX, &v), 0);
  cr_assert_eq(v, UINT64_MAX);
  const char *bad[] = {"",   "00", "01", "-1",         "+1",
                       " 1", "1 ", "1x", "4294967296", "18446744073709551616"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    v = 7;
    cr_assert_eq(ackrpc_nats_dec_decode(bad[i], UINT32_MAX, &v), -1, "%s", bad[i]);
    cr_assert_eq(v, 7);
  }
  cr_assert_eq(ackrpc_nats_dec_decode("17", 16, &v), -1);
  cr_assert_eq(ackrpc_nats_dec_decode("16", 16, &v), 0);
  cr_assert_eq(ackrpc_nats_dec_decode("9", 5, &v), -1);
}

Test(nats_envelope, message_is_one_line_and_cut_at_a_character) {
  char out[8];
  cr_assert_eq(ackrpc_nats_message_clean("a\r\nb\tc", out, sizeof out), 6);
  cr_assert_str_eq(out, "a  b c");
  cr_assert_eq(ackrpc_nats_message_clean(NULL, out, sizeof out), 0);
  cr_assert_str_eq(out, "");
  /* "abcde" then U+00E9 (2 bytes) then "f": 7 bytes fit; the 2-byte
   * character at 5..6 fits whole, "f" is cut. */
  cr_assert_eq(ackrpc_nats_message_clean("abcde\xc3\xa9"
                                         "f",
                                         out, sizeof out),
               7);
  cr_assert_str_eq(out, "abcde\xc3\xa9");
  /* "abcdef" then U+00E9: it does not fit whole and is left out. */
  cr_assert_eq(ackrpc_nats_message_clean("abcdef\xc3\xa9", out, sizeof out), 6);
  cr_assert_str_eq(out, "abcdef");
}
