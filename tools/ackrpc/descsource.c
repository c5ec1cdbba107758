/* descsource.c: where the ackrpc tool's descriptors come from.
 *
 *   --descriptor-set FILE   a FileDescriptorSet (protoc --include_imports
 *                           --descriptor_set_out=FILE ...)
 *   --proto FILE [-I DIR]   runs protoc on FILE to make one (protoc is needed
 *                           for this option only)
 *   neither                 the server's reflection service
 *                           (ackrpc.reflection.Reflection/FileContainingSymbol,
 *                           reflect.c): the FileDescriptorProtos of the
 *                           services concerned, with their imports, added to
 *                           the pool as one FileDescriptorSet. A server that
 *                           does not offer it: exit 78. */
#include "cli.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

const char akrcli_desc_help[] =
    "Descriptors (default: asked of the server at SOCKET, by reflection):\n"
    "  -D, --descriptor-set FILE  a FileDescriptorSet, as made by\n"
    "                             protoc --include_imports --descriptor_set_out=FILE\n"
    "  -P, --proto FILE           a .proto file; runs protoc (a run-time dependency\n"
    "                             of this option only; $ACKRPC_PROTOC overrides)\n"
    "  -I, --import-path DIR      protoc's import path for --proto (each FILE's own\n"
    "                             directory is searched after these)\n"
    "Each option may be repeated.\n";

const char akrcli_exit_help[] =
    "Exit status:\n"
    "  0      OK\n"
    "  1-16   the server answered this canonical status (3 INVALID_ARGUMENT,\n"
    "         5 NOT_FOUND, 12 UNIMPLEMENTED, 14 UNAVAILABLE, ...); 2 also for a\n"
    "         code this tool does not know; 12 also for no such method\n"
    "  64     usage error\n"
    "  65     bad input: JSON that does not parse or does not fit the message,\n"
    "         a type that is not in the descriptors, a method served without\n"
    "         descriptors\n"
    "  66     a file could not be read, or protoc failed\n"
    "  69     not delivered (could not connect, server busy, send failed):\n"
    "         safe to retry\n"
    "  70     internal error\n"
    "  75     sent, but no well-formed reply (none, or an OK reply that does\n"
    "         not decode with the descriptors): outcome unknown; retry only\n"
    "         with the same --call-id\n"
    "  76     the descriptors the server sent do not decode\n"
    "  77     the server runs as another user than it should (--server-uid):\n"
    "         nothing was sent to it\n"
    "  78     the server does not offer the built-in service needed\n"
    "         (reflection, health, stats: turned off, or an older server)\n";

int akrcli_descopts_take(akrcli_descopts *d, const char *cmd, int opt,
                         const char *arg) {
  const char **list;
  size_t *n, max;
  switch (opt) {
  case AKRCLI_OPT_DESCSET:
    list = d->sets, n = &d->n_sets, max = AKRCLI_MAX_DESC_FILES;
    break;
  case AKRCLI_OPT_PROTO:
    list = d->protos, n = &d->n_protos, max = AKRCLI_MAX_DESC_FILES;
    break;
  case AKRCLI_OPT_INCLUDE:
    list = d->includes, n = &d->n_includes, max = AKRCLI_MAX_INCLUDES;
    break;
  default: return 0;
  }
  if (*n >= max) {
    fprintf(stderr, "%s %s: too many -%c options (at most %zu)\n", AKRCLI_PROG, cmd,
            opt, max);
    return -1;
  }
  list[(*n)++] = arg;
  return 1;
}

int akrcli_read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) return -1;
  size_t cap = 4096, len = 0;
  uint8_t *b = malloc(cap);
  int err = 0;
  while (b) {
    if (len == cap - 1) {
      if (cap - 1 >= max + 1) {
        err = EFBIG;
        break;
      }
      uint8_t *nb = realloc(b, cap * 2);
      if (!nb) {
        err = ENOMEM;
        break;
      }
      b = nb;
      cap *= 2;
    }
    size_t n = fread(b + len, 1, cap - 1 - len, f);
    len += n;
    if (len > max) {
      err = EFBIG;
      break;
    }
    if (n == 0) {
      if (ferror(f)) err = EIO;
      break;
    }
  }
  if (!b) err = ENOMEM;
  if (f != stdin) fclose(f);
  if (err) {
    free(b);
    errno = err;
    return -1;
  }
  b[len] = '\0';
  *ret = b;
  *ret_len = len;
  return 0;
}

static int add_set_file(const char *cmd, const char *path, akrcli_pool *pool) {
  uint8_t *data;
  size_t len;
  char err[512];
  if (akrcli_read_file(path, AKRCLI_MAX_DESCRIPTOR_SET, &data, &len) < 0) {
    fprintf(stderr, "%s %s: cannot read %s: %s\n", AKRCLI_PROG, cmd, path,
            errno == EFBIG ? "larger than the limit (64 MiB)" : strerror(errno));
    return AKRCLI_EXIT_NOINPUT;
  }
  int rc = akrcli_pool_add_set(pool, data, len, err, sizeof err);
  free(data);
  if (rc < 0) {
    fprintf(stderr, "%s %s: %s: %s\n", AKRCLI_PROG, cmd, path, err);
    return AKRCLI_EXIT_NOINPUT;
  }
  return 0;
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Runs protoc on the --proto files into a temporary descriptor set. */
static int run_protoc(const char *cmd, const akrcli_descopts *d, akrcli_pool *pool) {
  const char *tmpdir = getenv("TMPDIR");
  if (!tmpdir || !*tmpdir) tmpdir = "/tmp";
  char out[4096];
  if ((size_t)snprintf(out, sizeof out, "%s/ackrpc-desc-XXXXXX", tmpdir) >=
      sizeof out) {
    fprintf(stderr, "%s %s: TMPDIR is too long\n", AKRCLI_PROG, cmd);
    return AKRCLI_EXIT_NOINPUT;
  }
  int fd = mkstemp(out);
  if (fd < 0) {
    fprintf(stderr, "%s %s: cannot create a temporary file in %s: %s\n", AKRCLI_PROG,
            cmd, tmpdir, strerror(errno));
    return AKRCLI_EXIT_NOINPUT;
  }
  close(fd);

  const char *protoc = getenv("ACKRPC_PROTOC");
  if (!protoc || !*protoc) protoc = "protoc";
  size_t max_args = 5 + 2 * AKRCLI_MAX_DESC_FILES + AKRCLI_MAX_INCLUDES + 1;
  char **argv = calloc(max_args, sizeof *argv);
  char **owned = calloc(max_args, sizeof *owned);
  size_t n = 0, n_owned = 0;
  int rc = AKRCLI_EXIT_SOFTWARE;
  if (!argv || !owned) goto out;
  size_t outlen = strlen(out) + sizeof "--descriptor_set_out=";
  char *outarg = malloc(outlen);
  if (!outarg) goto out;
  snprintf(outarg, outlen, "--descriptor_set_out=%s", out);
  owned[n_owned++] = outarg;
  argv[n++] = (char *)protoc;
  argv[n++] = "--include_imports";
  argv[n++] = outarg;
  for (size_t i = 0; i < d->n_includes; i++) {
    size_t l = strlen(d->includes[i]) + 3;
    char *a = malloc(l);
    if (!a) goto out;
    snprintf(a, l, "-I%s", d->includes[i]);
    owned[n_owned++] = argv[n++] = a;
  }
  {
    /* Then each file's own directory, so that FILE is found whatever -I
     * says (protoc maps a file with the first directory that holds it). */
    for (size_t i = 0; i < d->n_protos; i++) {
      const char *slash = strrchr(d->protos[i], '/');
      size_t dl = slash ? (size_t)(slash - d->protos[i]) : 1;
      char *a = malloc(dl + 3);
      if (!a) goto out;
      snprintf(a, dl + 3, "-I%.*s", (int)dl, slash ? d->protos[i] : ".");
      if (slash == d->protos[i]) snprintf(a, 4, "-I/");
      owned[n_owned++] = argv[n++] = a;
    }
  }
#ifdef AKRCLI_PROTO_DIR
  /* Where ackrpc/options.proto is installed (imported by annotated files). */
  if (is_dir(AKRCLI_PROTO_DIR "/ackrpc")) argv[n++] = "-I" AKRCLI_PROTO_DIR;
#endif
  for (size_t i = 0; i < d->n_protos; i++)
    argv[n++] = (char *)d->protos[i];
  argv[n] = NULL;

  pid_t pid;
  int err = posix_spawnp(&pid, protoc, NULL, NULL, argv, environ);
  if (err) {
    fprintf(stderr,
            "%s %s: cannot run %s: %s (--proto needs protoc: Debian package "
            "protobuf-compiler; or pass --descriptor-set)\n",
            AKRCLI_PROG, cmd, protoc, strerror(err));
    rc = AKRCLI_EXIT_NOINPUT;
    goto out;
  }
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "%s %s: waitpid: %s\n", AKRCLI_PROG, cmd, strerror(errno));
      goto out;
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "%s %s: protoc failed on the --proto files (see above)\n",
            AKRCLI_PROG, cmd);
    rc = AKRCLI_EXIT_NOINPUT;
    goto out;
  }
  rc = add_set_file(cmd, out, pool);
out:
  if (rc == AKRCLI_EXIT_SOFTWARE)
    fprintf(stderr, "%s %s: out of memory\n", AKRCLI_PROG, cmd);
  unlink(out);
  for (size_t i = 0; owned && i < n_owned; i++)
    free(owned[i]);
  free(owned);
  free(argv);
  return rc;
}

int akrcli_load_descriptors(const char *cmd, const akrcli_descopts *d,
                            const akrcli_server *srv, const char *symbol,
                            akrcli_pool *pool) {
  int rc;
  if (d->n_sets == 0 && d->n_protos == 0) {
    if (!srv->socket) {
      fprintf(stderr,
              "%s %s: no descriptors: pass SOCKET (a server's reflection), "
              "--descriptor-set FILE or --proto FILE\n",
              AKRCLI_PROG, cmd);
      return AKRCLI_EXIT_USAGE;
    }
    if ((rc = akrcli_reflect_files(cmd, srv, symbol, pool)) != 0) return rc;
  }
  for (size_t i = 0; i < d->n_sets; i++)
    if ((rc = add_set_file(cmd, d->sets[i], pool)) != 0) return rc;
  if (d->n_protos && (rc = run_protoc(cmd, d, pool)) != 0) return rc;
  char err[512];
  if (akrcli_pool_build(pool, err, sizeof err) < 0) {
    fprintf(stderr, "%s %s: bad descriptors: %s\n", AKRCLI_PROG, cmd, err);
    return AKRCLI_EXIT_NOINPUT;
  }
  return 0;
}
