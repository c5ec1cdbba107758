/* main.c: protoc-gen-ackrpc, the protoc plugin that generates ackrpc's typed
 * stubs and handler tables (gen.c), and a helper mode for the build.
 *
 *   protoc --plugin=protoc-gen-ackrpc=PATH --ackrpc_out=[fuzz:]DIR x.proto
 *       the plugin: reads a CodeGeneratorRequest on stdin, writes a
 *       CodeGeneratorResponse on stdout. Input errors go into the response,
 *       which protoc prints as "--ackrpc_out: file.proto:LINE:COL: error: ...".
 *   protoc-gen-ackrpc --strip-services IN.pb OUT.pb
 *       copies a FileDescriptorSet without its services, so that protoc-c
 *       generates message code only (ackrpc_generate() uses it: protoc-c's
 *       own service code does not compile for methods that differ only in
 *       case, and ackrpc does not use it).
 *
 * Not here: what is generated (gen.c: a model of each file, model.c, printed
 * by one emitter per output file, emit_*.c) and where
 * (cmake/AckrpcGenerate.cmake).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "gen.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "protoc_plugin.pb-c.h"

/* protoc's descriptors are small; this bounds what we buffer from stdin. */
#define MAX_INPUT (256u * 1024 * 1024)

static const char usage[] =
    "usage: protoc --plugin=protoc-gen-ackrpc=PATH --ackrpc_out=[fuzz:]DIR FILE.proto\n"
    "       protoc-gen-ackrpc --strip-services IN.pb OUT.pb\n"
    "       protoc-gen-ackrpc --version | --help\n"
    "\n"
    "As a protoc plugin, writes NAME.ackrpc.h and NAME.ackrpc.c (and, with the\n"
    "parameter \"fuzz\", NAME.ackrpc-fuzz.c) for each FILE.proto, beside protoc-c's\n"
    "NAME.pb-c.h and NAME.pb-c.c. --strip-services copies a FileDescriptorSet\n"
    "(protoc --descriptor_set_out) without its services. Documentation:\n"
    "docs/GENERATOR.md of ackrpc; in CMake, use ackrpc_generate().\n";

/* Reads all of `f`; returns 0, or -1 with errno set (EFBIG: too large). */
static int read_all(FILE *f, akrgen_buf *b) {
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (b->len + n > MAX_INPUT) {
      errno = EFBIG;
      return -1;
    }
    buf_append(b, chunk, n);
  }
  return ferror(f) ? -1 : 0;
}

static int write_all(FILE *f, const uint8_t *data, size_t len) {
  if (len && fwrite(data, 1, len, f) != len) return -1;
  return fflush(f) == 0 ? 0 : -1;
}

static int run_plugin(void) {
  akrgen_buf in = {0};
  Akrgen__Plugin__CodeGeneratorResponse response =
      AKRGEN__PLUGIN__CODE_GENERATOR_RESPONSE__INIT;
  akrgen_output out = {0};
  Akrgen__Plugin__CodeGeneratorResponse__File *files = NULL;
  Akrgen__Plugin__CodeGeneratorResponse__File **file_ptrs = NULL;
  char *error = NULL;

  if (read_all(stdin, &in) < 0) {
    fprintf(stderr, "protoc-gen-ackrpc: reading stdin: %s\n", strerror(errno));
    buf_free(&in);
    return 1;
  }
  Akrgen__Plugin__CodeGeneratorRequest *request =
      akrgen__plugin__code_generator_request__unpack(NULL, in.len,
                                                     (const uint8_t *)in.data);
  buf_free(&in);
  if (!request) {
    /* Not from protoc (or corrupt): answer in the protocol all the same. */
    error = xstrdup("protoc-gen-ackrpc: error: the input is not a CodeGeneratorRequest "
                    "(this program is run by protoc; see --help)");
    response.error = error;
  } else {
    akrgen_generate(request, &out);
    if (out.error) {
      response.error = out.error;
    } else if (out.n_files) {
      files = xmalloc(out.n_files * sizeof *files);
      file_ptrs = xmalloc(out.n_files * sizeof *file_ptrs);
      for (size_t i = 0; i < out.n_files; i++) {
        akrgen__plugin__code_generator_response__file__init(&files[i]);
        files[i].name = out.files[i].name;
        files[i].content = out.files[i].content;
        file_ptrs[i] = &files[i];
      }
      response.n_file = out.n_files;
      response.file = file_ptrs;
    }
  }

  size_t len = akrgen__plugin__code_generator_response__get_packed_size(&response);
  uint8_t *packed = xmalloc(len);
  akrgen__plugin__code_generator_response__pack(&response, packed);
  int rc = write_all(stdout, packed, len);
  if (rc < 0)
    fprintf(stderr, "protoc-gen-ackrpc: writing stdout: %s\n", strerror(errno));
  free(packed);
  free(files);
  free(file_ptrs);
  free(error);
  akrgen_output_free(&out);
  if (request) akrgen__plugin__code_generator_request__free_unpacked(request, NULL);
  return rc < 0 ? 1 : 0;
}

static int strip_services(const char *in_path, const char *out_path) {
  FILE *in = fopen(in_path, "rb");
  akrgen_buf b = {0};
  if (!in || read_all(in, &b) < 0) {
    fprintf(stderr, "protoc-gen-ackrpc: %s: %s\n", in_path, strerror(errno));
    if (in) fclose(in);
    buf_free(&b);
    return 1;
  }
  fclose(in);
  Google__Protobuf__FileDescriptorSet *set =
      google__protobuf__file_descriptor_set__unpack(NULL, b.len,
                                                    (const uint8_t *)b.data);
  buf_free(&b);
  if (!set) {
    fprintf(stderr, "protoc-gen-ackrpc: %s: not a FileDescriptorSet\n", in_path);
    return 1;
  }
  /* Hide the services from the packer; restored before freeing. */
  size_t n = set->n_file;
  size_t *saved_n = xmalloc((n ? n : 1) * sizeof *saved_n);
  for (size_t i = 0; i < n; i++) {
    saved_n[i] = set->file[i]->n_service;
    set->file[i]->n_service = 0;
  }
  size_t len = google__protobuf__file_descriptor_set__get_packed_size(set);
  uint8_t *packed = xmalloc(len);
  google__protobuf__file_descriptor_set__pack(set, packed);
  for (size_t i = 0; i < n; i++)
    set->file[i]->n_service = saved_n[i];
  free(saved_n);
  google__protobuf__file_descriptor_set__free_unpacked(set, NULL);

  FILE *out = fopen(out_path, "wb");
  int rc = out ? write_all(out, packed, len) : -1;
  if (out && fclose(out) != 0) rc = -1;
  if (rc < 0) fprintf(stderr, "protoc-gen-ackrpc: %s: %s\n", out_path, strerror(errno));
  free(packed);
  return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc == 1) return run_plugin();
  if (argc == 2 && strcmp(argv[1], "--version") == 0) {
    printf("protoc-gen-ackrpc %s\n", AKRGEN_VERSION);
    return 0;
  }
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    fputs(usage, stdout);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "--strip-services") == 0)
    return strip_services(argv[2], argv[3]);
  fputs(usage, stderr);
  return 2;
}
