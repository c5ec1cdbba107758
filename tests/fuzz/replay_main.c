/* replay_main.c: a main() for fuzz targets without libFuzzer.
 *
 * Runs LLVMFuzzerTestOneInput once on each file named on the command line,
 * and on each regular file inside each directory named (not recursively).
 * It lets any compiler (gcc too) build a fuzz target and lets ctest replay
 * the committed corpus on every build, so a regression seed fails the test
 * suite. It does no fuzzing of its own.
 *
 * Exit status: 0 when every input ran (a broken property aborts instead),
 * 1 when an input could not be read or there were no inputs at all. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return -1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  while (buf) {
    len += fread(buf + len, 1, cap - len, f);
    if (len < cap) break;
    uint8_t *bigger = realloc(buf, cap * 2);
    if (!bigger) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = bigger;
    cap *= 2;
  }
  int failed = !buf || ferror(f);
  fclose(f);
  if (failed) {
    fprintf(stderr, "%s: cannot read\n", path);
    free(buf);
    return -1;
  }
  /* Exactly `len` bytes on the heap, so that a read past the input shows
   * under AddressSanitizer as it would under libFuzzer. */
  uint8_t *exact = malloc(len ? len : 1);
  if (!exact) {
    free(buf);
    return -1;
  }
  if (len) memcpy(exact, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

static int run_dir(const char *dir, size_t *count) {
  DIR *d = opendir(dir);
  if (!d) {
    perror(dir);
    return -1;
  }
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    size_t n = strlen(dir) + strlen(e->d_name) + 2;
    char *path = malloc(n);
    if (!path) {
      rc = -1;
      break;
    }
    snprintf(path, n, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      if (run_file(path) == 0)
        (*count)++;
      else
        rc = -1;
    }
    free(path);
  }
  closedir(d);
  return rc;
}

int main(int argc, char **argv) {
  size_t count = 0;
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      rc = 1;
    } else if (S_ISDIR(st.st_mode)) {
      if (run_dir(argv[i], &count) != 0) rc = 1;
    } else if (run_file(argv[i]) == 0) {
      count++;
    } else {
      rc = 1;
    }
  }
  printf("replayed %zu inputs\n", count);
  if (count == 0) {
    fprintf(stderr, "no inputs: usage: %s FILE_OR_DIR...\n", argv[0]);
    return 1;
  }
  return rc;
}
