/* test_client_raw.c: ackrpc_client_call_raw(), the call for tools without
 * compiled types: serialized bytes in, the reply body's bytes out. */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

FX_SUITE(raw);

static uint8_t *pack(const ProtobufCMessage *m, size_t *ret_len) {
  *ret_len = protobuf_c_message_get_packed_size(m);
  uint8_t *b = malloc(*ret_len ? *ret_len : 1);
  cr_assert_not_null(b);
  protobuf_c_message_pack(m, b);
  return b;
}

FX_TEST(raw, bytes_in_bytes_out) {
  fx_server_start(&(ackrpc_server_options){.address = fx_sock()});
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "raw hello";
  size_t n;
  uint8_t *body = pack(&req.base, &n);
  ackrpc_result r = {0};
  ackrpc_status st = ackrpc_client_call_raw(c, FX_ECHO, body, n, NULL, &r);
  free(body);
  cr_assert_eq(st, ACKRPC_OK, "%s (%s)", ackrpc_status_name(st),
               r.message ? r.message : "");
  cr_assert_null(r.reply, "a raw call decodes nothing");
  cr_assert_not_null(r.reply_bytes);
  Ackrpc__Test__EchoReply *rep =
      ackrpc__test__echo_reply__unpack(NULL, r.reply_bytes_len, r.reply_bytes);
  cr_assert_not_null(rep, "the bytes are the reply message as the server sent it");
  cr_assert_str_eq(rep->text, "raw hello");
  cr_assert_str_eq(rep->method, FX_ECHO);
  ackrpc__test__echo_reply__free_unpacked(rep, NULL);
  ackrpc_result_clear(&r);
  cr_assert_null(r.reply_bytes, "cleared with the result");
}

FX_TEST(raw, error_status_keeps_its_body_and_server_errors_pass_through) {
  fx_server_start(&(ackrpc_server_options){.address = fx_sock()});
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  Ackrpc__Test__EchoRequest req = ACKRPC__TEST__ECHO_REQUEST__INIT;
  req.text = "with body";
  req.reply_status = ACKRPC_FAILED_PRECONDITION;
  req.reply_message = "not now";
  size_t n;
  uint8_t *body = pack(&req.base, &n);
  ackrpc_result r = {0};
  cr_assert_eq(ackrpc_client_call_raw(c, FX_ECHO, body, n, NULL, &r),
               ACKRPC_FAILED_PRECONDITION);
  cr_assert_str_eq(r.message, "not now");
  cr_assert_not_null(r.reply_bytes, "an error reply's body comes back too");
  ackrpc_result_clear(&r);
  /* Unknown method, and bytes that are not the request type. */
  cr_assert_eq(ackrpc_client_call_raw(c, "ackrpc.test.Test/Nope", body, n, NULL, &r),
               ACKRPC_UNIMPLEMENTED);
  ackrpc_result_clear(&r);
  const uint8_t junk[] = {0xff, 0xff, 0xff};
  cr_assert_eq(ackrpc_client_call_raw(c, FX_ECHO, junk, sizeof junk, NULL, &r),
               ACKRPC_INVALID_ARGUMENT);
  ackrpc_result_clear(&r);
  /* An empty body is the default request. */
  cr_assert_eq(ackrpc_client_call_raw(c, FX_ECHO, NULL, 0, NULL, NULL), ACKRPC_OK);
  free(body);
}

FX_TEST(raw, bad_arguments_send_nothing) {
  fx_server_start(&(ackrpc_server_options){.address = fx_sock()});
  ackrpc_client *c = fx_client(fx_sock(), 5000);
  ackrpc_result r = {0};
  cr_assert_eq(ackrpc_client_call_raw(c, "no-slash", NULL, 0, NULL, &r),
               ACKRPC_E_INVAL);
  cr_assert_not_null(r.message);
  ackrpc_result_clear(&r);
  cr_assert_eq(ackrpc_client_call_raw(c, NULL, NULL, 0, NULL, NULL), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_client_call_raw(c, FX_ECHO, NULL, 5, NULL, NULL), ACKRPC_E_INVAL);
  cr_assert_eq(ackrpc_client_call_raw(NULL, FX_ECHO, NULL, 0, NULL, NULL),
               ACKRPC_E_INVAL);
  cr_assert_eq(fx_handler_calls(), 0, "nothing reached the server");
}
