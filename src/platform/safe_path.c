/* safe_path.c: the walk that checks every directory on the way to a file the
 * server owns (safe_path.h). It resolves the path itself, one component at a
 * time from "/", the way the kernel does, so that it sees each directory a
 * lookup goes through, including the ones that hold symlinks; it does not
 * open or create anything but the final directory. */
#include "platform/safe_path.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SYMLINKS 40 /* as the kernel's own limit (ELOOP) */

/* A walk in progress: `done` is the directory reached so far (absolute, no
 * symlink in it, every directory on it checked); `todo` is what is left to
 * look up, components separated by '/'. */
typedef struct walk {
  char done[PATH_MAX];
  char todo[PATH_MAX];
  struct stat last; /* the stat of `done` */
  int symlinks;
  char *why;
} walk;

__attribute__((format(printf, 2, 3))) static void say(char *why, const char *fmt, ...) {
  if (!why) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, AKR_WHY_MAX, fmt, ap);
  va_end(ap);
}

/* The rule for one directory. */
static ackrpc_status check_dir(const char *dir, const struct stat *st, char *why) {
  if (!S_ISDIR(st->st_mode)) {
    errno = ENOTDIR;
    say(why, "%s is not a directory", dir);
    return ACKRPC_E_SYSTEM;
  }
  uid_t me = geteuid();
  if (st->st_uid != 0 && st->st_uid != me) {
    say(why, "directory %s belongs to uid %u, neither root nor the server's uid %u",
        dir, (unsigned)st->st_uid, (unsigned)me);
    return ACKRPC_E_UNSAFE_DIR;
  }
  if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX)) {
    say(why,
        "directory %s is writable by %s (mode %04o) without the sticky bit: "
        "another user could replace what it holds",
        dir, (st->st_mode & S_IWOTH) ? "others" : "its group",
        (unsigned)(st->st_mode & 07777));
    return ACKRPC_E_UNSAFE_DIR;
  }
  return ACKRPC_OK;
}

/* Puts `head`, '/', `tail` into w->todo (they may point into it). */
static ackrpc_status set_todo(walk *w, const char *head, const char *tail) {
  char buf[PATH_MAX];
  int n = snprintf(buf, sizeof buf, "%s/%s", head, tail);
  if (n < 0 || (size_t)n >= sizeof buf) {
    errno = ENAMETOOLONG;
    return ACKRPC_E_SYSTEM;
  }
  memcpy(w->todo, buf, (size_t)n + 1);
  return ACKRPC_OK;
}

/* Takes the next component off w->todo into `comp`; 0 when none is left. */
static int next_component(walk *w, char comp[NAME_MAX + 1], ackrpc_status *st) {
  const char *p = w->todo;
  while (*p == '/')
    p++;
  if (!*p) return 0;
  size_t n = strcspn(p, "/");
  if (n > NAME_MAX) {
    errno = ENAMETOOLONG;
    *st = ACKRPC_E_SYSTEM;
    return 0;
  }
  memcpy(comp, p, n);
  comp[n] = 0;
  memmove(w->todo, p + n, strlen(p + n) + 1);
  return 1;
}

/* Goes up one directory: `done` has no symlink in it, so its parent is the
 * prefix, which was checked on the way down. */
static ackrpc_status go_up(walk *w) {
  char *slash = strrchr(w->done, '/');
  if (slash == w->done)
    slash[1] = 0; /* "/x" -> "/", and "/" stays "/" */
  else
    *slash = 0;
  return lstat(w->done, &w->last) == 0 ? ACKRPC_OK : ACKRPC_E_SYSTEM;
}

/* Looks up `comp` in the directory reached: a directory is checked and
 * entered, a symlink is replaced by its target in what is left to do. */
static ackrpc_status step(walk *w, const char *comp) {
  if (strcmp(comp, ".") == 0) return ACKRPC_OK;
  if (strcmp(comp, "..") == 0) return go_up(w);
  char cand[PATH_MAX];
  int n = snprintf(cand, sizeof cand, "%s%s%s", w->done,
                   strcmp(w->done, "/") == 0 ? "" : "/", comp);
  if (n < 0 || (size_t)n >= sizeof cand) {
    errno = ENAMETOOLONG;
    return ACKRPC_E_SYSTEM;
  }
  struct stat st;
  if (lstat(cand, &st) != 0) {
    int e = errno;
    say(w->why, "%s: %s", cand, strerror(e));
    errno = e;
    return ACKRPC_E_SYSTEM;
  }
  if (S_ISLNK(st.st_mode)) {
    char target[PATH_MAX];
    ssize_t len = readlink(cand, target, sizeof target - 1);
    if (len < 0) return ACKRPC_E_SYSTEM;
    target[len] = 0;
    if (++w->symlinks > MAX_SYMLINKS) {
      errno = ELOOP;
      return ACKRPC_E_SYSTEM;
    }
    /* An absolute target starts again from "/", which was checked first;
     * a relative one goes on from the directory that holds the link. */
    if (target[0] == '/') {
      strcpy(w->done, "/");
      if (lstat("/", &w->last) != 0) return ACKRPC_E_SYSTEM;
    }
    return set_todo(w, target, w->todo);
  }
  ackrpc_status s = check_dir(cand, &st, w->why);
  if (s != ACKRPC_OK) return s;
  memcpy(w->done, cand, (size_t)n + 1);
  w->last = st;
  return ACKRPC_OK;
}

/* Walks `dir` (absolute or relative to the current directory) from "/". */
static ackrpc_status walk_dir(walk *w, const char *dir) {
  ackrpc_status s;
  if (dir[0] == '/') {
    s = set_todo(w, "", dir);
  } else {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return ACKRPC_E_SYSTEM;
    s = set_todo(w, cwd, dir);
  }
  if (s != ACKRPC_OK) return s;
  strcpy(w->done, "/");
  if (lstat("/", &w->last) != 0) return ACKRPC_E_SYSTEM;
  s = check_dir("/", &w->last, w->why);
  char comp[NAME_MAX + 1];
  while (s == ACKRPC_OK && next_component(w, comp, &s))
    s = step(w, comp);
  return s;
}

const char *akr_path_base(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

ackrpc_status akr_safe_dir_open(const char *path, int *ret_dir_fd, char *why) {
  const char *base = akr_path_base(path);
  if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
    return ACKRPC_E_ADDRESS;
  walk w = {.why = why};
  size_t dir_len = (size_t)(base - path);
  char dir[PATH_MAX];
  if (dir_len >= sizeof dir) return ACKRPC_E_ADDRESS;
  memcpy(dir, path, dir_len);
  dir[dir_len] = 0;
  ackrpc_status s = walk_dir(&w, dir_len ? dir : ".");
  if (s != ACKRPC_OK) return s;
  /* `done` has no symlink in it and only root or we can change any
   * directory on it: the directory opened is the one checked. Say so
   * anyway, cheaply, rather than assume it. */
  int fd = open(w.done, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ACKRPC_E_SYSTEM;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_dev != w.last.st_dev || st.st_ino != w.last.st_ino) {
    close(fd);
    say(why, "directory %s changed while it was checked", w.done);
    errno = EAGAIN;
    return ACKRPC_E_UNSAFE_DIR;
  }
  *ret_dir_fd = fd;
  return ACKRPC_OK;
}
