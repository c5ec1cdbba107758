/* nats_harness.c: see nats_harness.h. */
#include "nats_harness.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "fixture.h"

static pid_t children[NH_MAX_CHILDREN];

const char *nh_find_nats_server(void) {
  static char found[512];
  const char *path = getenv("PATH");
  char dirs[2048];
  snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/usr/bin:/usr/local/bin", path ? path : "");
  for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d;
       d = strtok_r(NULL, ":", &save)) {
    snprintf(found, sizeof found, "%s/nats-server", d);
    if (access(found, X_OK) == 0) return found;
  }
  return NULL;
}

int nh_main(int argc, char *argv[]) {
  if (!nh_find_nats_server()) {
    printf("skipped: nats-server is not installed (scripts/deps.sh installs it)\n");
    return 77;
  }
  struct criterion_test_set *tests = criterion_initialize();
  int result = 0;
  if (criterion_handle_args(argc, argv, true)) result = !criterion_run_all_tests(tests);
  criterion_finalize(tests);
  return result;
}

int nh_start_child(char *const argv[], const char *log) {
  int slot = 0;
  while (slot < NH_MAX_CHILDREN && children[slot] > 0)
    slot++;
  cr_assert_lt(slot, NH_MAX_CHILDREN, "too many children");
  children[slot] = fx_spawn(argv, log);
  return slot;
}

pid_t nh_pid(int slot) {
  return slot >= 0 && slot < NH_MAX_CHILDREN ? children[slot] : 0;
}

int nh_wait_child(int slot, unsigned ms) {
  pid_t pid = nh_pid(slot);
  int status = 0;
  if (pid <= 0) return -1;
  for (unsigned i = 0; i <= ms / 10; i++) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      children[slot] = 0;
      return status;
    }
    if (i < ms / 10) fx_sleep_ms(10);
  }
  return -1;
}

int nh_signal_child(int slot, int sig) {
  pid_t pid = nh_pid(slot);
  if (pid <= 0) return -1;
  kill(pid, sig);
  int status = nh_wait_child(slot, 10000);
  if (status != -1) return status;
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  children[slot] = 0;
  return status;
}

int nh_stop_child(int slot) {
  return nh_signal_child(slot, SIGTERM);
}

void nh_kill_children(void) {
  for (int i = 0; i < NH_MAX_CHILDREN; i++)
    if (children[i] > 0) {
      kill(children[i], SIGKILL);
      waitpid(children[i], NULL, 0);
      children[i] = 0;
    }
}

char *nh_slurp(const char *path) {
  FILE *f = fopen(path, "re");
  if (!f) return NULL;
  enum { CAP = 1 << 20 };
  char *buf = calloc(1, CAP);
  if (buf) {
    size_t n = fread(buf, 1, CAP - 1, f);
    buf[n] = '\0';
  }
  fclose(f);
  return buf;
}

void nh_wait_for_text(const char *path, const char *what) {
  for (int i = 0; i < 1000; i++) {
    char *s = nh_slurp(path);
    int found = s && strstr(s, what);
    free(s);
    if (found) return;
    fx_sleep_ms(10);
  }
  char *s = nh_slurp(path);
  cr_assert_fail("no '%s' in %s within 10 s:\n%s", what, path, s ? s : "(no file)");
}

int nh_start_nats(const char *name, const char *conf, const char *const extra[],
                  char *url, size_t cap) {
  const char *bin = nh_find_nats_server();
  cr_assert_not_null(bin);
  char conf_path[512], log_path[512];
  snprintf(conf_path, sizeof conf_path, "%s/%s.conf", fx_dir(), name);
  snprintf(log_path, sizeof log_path, "%s/%s.log", fx_dir(), name);
  if (conf) {
    FILE *f = fopen(conf_path, "we");
    cr_assert_not_null(f);
    fputs(conf, f);
    fclose(f);
  }
  char *argv[40] = {(char *)bin,     "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir",
                    (char *)fx_dir()};
  int n = 7;
  if (conf) {
    argv[n++] = "-c";
    argv[n++] = conf_path;
  }
  for (int i = 0; extra && extra[i]; i++) {
    cr_assert_lt(n, 39, "too many nats-server arguments");
    argv[n++] = (char *)extra[i];
  }
  argv[n] = NULL;
  int slot = nh_start_child(argv, log_path);
  char ports[512];
  snprintf(ports, sizeof ports, "%s/nats-server_%d.ports", fx_dir(), (int)nh_pid(slot));
  nh_wait_for_text(ports, "://");
  char *s = nh_slurp(ports);
  const char *u = strstr(s, "nats://");
  if (!u) u = strstr(s, "tls://"); /* a server that requires TLS */
  cr_assert_not_null(u, "%s", s);
  size_t len = strcspn(u, "\"");
  cr_assert_lt(len, cap);
  memcpy(url, u, len);
  url[len] = '\0';
  free(s);
  return slot;
}

int nh_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(fd, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

void nh_stop_clean(int slot, const char *log) {
  int st = nh_stop_child(slot);
  char *s = nh_slurp(fx_path(log));
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: status %d:\n%s", log, st,
            s ? s : "");
  free(s);
}

void nh_metadata_value(const char *meta, const char *key, char *out, size_t cap) {
  char pat[80];
  snprintf(pat, sizeof pat, "%s=", key);
  out[0] = '\0';
  for (const char *p = meta; (p = strstr(p, pat)) != NULL; p++) {
    if (p != meta && p[-1] != ';') continue;
    p += strlen(pat);
    size_t o = 0;
    while (p[0] && p[1] && p[0] != ';' && o + 1 < cap) {
      unsigned v;
      sscanf(p, "%2x", &v);
      out[o++] = (char)v;
      p += 2;
    }
    out[o] = '\0';
    return;
  }
}

void nh_suite_fini(void) {
  nh_kill_children();
  fx_teardown();
}
