/* test_gen_fuzz.c: the libFuzzer entry protoc-gen-ackrpc generates
 * (demo/store.ackrpc-fuzz.c, linked in), run on real request frames and on
 * garbage: each input must go through the server and end (no crash, no
 * hang). A replay, not fuzzing: with ACKRPC_GENERATE_FUZZ=ON and clang,
 * ackrpc_generate() builds the same entry as a libFuzzer binary. */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#include "demo/store.ackrpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs are run several times in one process: the entry keeps its server. */
static void run(const uint8_t *data, size_t size) {
  for (int i = 0; i < 3; i++)
    cr_assert_eq(LLVMFuzzerTestOneInput(data, size), 0);
}

Test(gen_fuzz, real_frames) {
  Demo__PutRequest put = DEMO__PUT_REQUEST__INIT;
  put.key = "k";
  uint8_t *frame = NULL;
  size_t len = fx_frame_request(&frame, "demo.Store/Put", 1000000, NULL, 0, &put.base);
  run(frame, len);
  /* Two frames: session mode. */
  uint8_t *two = malloc(2 * len);
  memcpy(two, frame, len);
  memcpy(two + len, frame, len);
  run(two, 2 * len);
  /* Cut short: never dispatched. */
  run(frame, len / 2);
  free(two);
  free(frame);
  len = fx_frame_request(&frame, "demo.Store/Nope", 1000000, NULL, 0, NULL);
  run(frame, len);
  free(frame);
}

Test(gen_fuzz, garbage) {
  uint8_t junk[1024];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (uint8_t)(i * 131 + 7);
  run(NULL, 0);
  run(junk, 1);
  run(junk, sizeof junk);
}
