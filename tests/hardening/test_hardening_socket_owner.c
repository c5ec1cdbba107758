/* test_hardening_socket_owner.c: no other user can swap the server's files
 * (docs/SECURITY.md §3, "Socket ownership"; issue 11 items 6 and 7).
 *   - every directory on the way to the socket, not only its own, must
 *     belong to root or the server's uid and be writable by neither group
 *     nor others unless sticky: a group-writable directory (root:nogroup
 *     0770, where nobody could unlink the socket and bind an impostor), an
 *     ancestor another user owns or may write, and a symlink kept in such a
 *     directory are refused with E_UNSAFE_DIR, and the log names the
 *     directory;
 *   - PATH.lock must be a regular file of ours: a FIFO, a directory or
 *     another user's file there is refused (E_EXISTS) and left alone;
 *   - at stop the server removes only the files it created: a socket or
 *     lock put in their place, or the files in a directory moved into their
 *     place, are left alone, and its own are removed where they went.
 * Tests that need another owner (chown) run only as root, saying so
 * otherwise. Every directory a test makes is removed by the test. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hardening_support.h"

#define NOBODY 65534

static void hsown_teardown(void);
TestSuite(hsown, .init = hs_setup, .fini = hsown_teardown);

/* --- helpers ------------------------------------------------------------ */

static int exists(const char *p) {
  struct stat st;
  return lstat(p, &st) == 0;
}

static ino_t inode_of(const char *p) {
  struct stat st;
  return lstat(p, &st) == 0 ? st.st_ino : 0;
}

static const char *join(const char *dir, const char *name) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s/%s", dir, name);
  return fx_path(buf + strlen(fx_dir()) + 1);
}

static const char *mkdir_mode(const char *name, mode_t mode, uid_t uid, gid_t gid) {
  const char *p = fx_path(name);
  cr_assert_eq(mkdir(p, 0700), 0, "mkdir %s: %s", p, strerror(errno));
  if (uid != (uid_t)-1 || gid != (gid_t)-1) cr_assert_eq(chown(p, uid, gid), 0);
  cr_assert_eq(chmod(p, mode), 0);
  return p;
}

static int rm_one(const char *p, const struct stat *st, int type, struct FTW *f) {
  (void)st;
  (void)f;
  if (type == FTW_DP)
    rmdir(p);
  else
    unlink(p);
  return 0;
}

/* Removes what a test made under the fixture's directory. */
static void rm_tree(const char *p) {
  nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Also when a test failed half-way: the fixture removes only the top level
 * of its directory, so the directories a test made go first. */
static void hsown_teardown(void) {
  DIR *d = opendir(fx_dir());
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    char p[512];
    snprintf(p, sizeof p, "%s/%s", fx_dir(), e->d_name);
    rm_tree(p);
  }
  if (d) closedir(d);
  hs_teardown();
}

/* The log lines of a server start, for checking what it says. */
static char logged[2048];

static void capture(void *user, ackrpc_log_level level, const char *message) {
  (void)user;
  (void)level;
  size_t n = strlen(logged);
  snprintf(logged + n, sizeof logged - n, "%s\n", message);
}

static ackrpc_status try_start(const char *address) {
  logged[0] = 0;
  ackrpc_server_options o = {.address = address, .log = capture};
  ackrpc_server *s = NULL;
  ackrpc_status st = ackrpc_server_new(&o, &s);
  if (st == ACKRPC_OK) ackrpc_server_free(s);
  return st;
}

/* Refused as unsafe, nothing created, and the log names `dir`. */
static void assert_unsafe(const char *sock, const char *dir, const char *what) {
  ackrpc_status st = try_start(sock);
  cr_assert_eq(st, ACKRPC_E_UNSAFE_DIR, "%s: %s", what, ackrpc_status_name(st));
  char lock[512];
  snprintf(lock, sizeof lock, "%s.lock", sock);
  cr_assert(!exists(sock) && !exists(lock), "%s: files created", what);
  char needle[512];
  snprintf(needle, sizeof needle, "directory %s ", dir);
  cr_assert_not_null(strstr(logged, needle), "%s: the log does not name %s: %s", what,
                     dir, logged);
}

static gid_t nogroup(void) {
  struct group *gr = getgrnam("nogroup");
  if (!gr) gr = getgrnam("nobody");
  return gr ? gr->gr_gid : NOBODY;
}

/* --- item 6: a group-writable directory --------------------------------- */

HS_TEST(hsown, group_writable_directory_refused) {
  /* As root, the setting: root:nogroup 0770, where a member of
   * nogroup could unlink the socket and bind its own. Otherwise our own
   * directory, group-writable: the same rule. */
  int root = geteuid() == 0;
  const char *d =
      mkdir_mode("grp", 0770, root ? 0 : (uid_t)-1, root ? nogroup() : (gid_t)-1);
  const char *sock = join(d, "s.sock");
  assert_unsafe(sock, d, "a group-writable directory");
  cr_assert_not_null(strstr(logged, "its group"), "the reason is not given: %s",
                     logged);
  /* With the sticky bit, the group may no longer remove our files. */
  cr_assert_eq(chmod(d, 01770), 0);
  cr_assert_eq(try_start(sock), ACKRPC_OK);
  cr_assert(!exists(sock));
  rm_tree(d);
}

/* --- item 7: any directory on the way ----------------------------------- */

HS_TEST(hsown, unsafe_ancestor_directories_refused) {
  /* A directory that others may write, two levels above the socket; the
   * socket's own directory is ours and 0700. */
  const char *up = mkdir_mode("up", 0777, (uid_t)-1, (gid_t)-1);
  const char *srv = join(up, "srv");
  cr_assert_eq(mkdir(srv, 0700), 0);
  assert_unsafe(join(srv, "s.sock"), up, "a world-writable ancestor");
  cr_assert_eq(chmod(up, 0775), 0);
  assert_unsafe(join(srv, "s.sock"), up, "a group-writable ancestor");
  /* Sticky, like /tmp: safe. */
  cr_assert_eq(chmod(up, 01777), 0);
  cr_assert_eq(try_start(join(srv, "s.sock")), ACKRPC_OK);
  /* A symlink in a safe directory to a safe one is followed. */
  cr_assert_eq(symlink(srv, fx_path("link")), 0);
  cr_assert_eq(try_start(join(fx_path("link"), "s.sock")), ACKRPC_OK);
  cr_assert(!exists(join(srv, "s.sock")));
  /* A relative symlink whose target goes through an unsafe directory. */
  cr_assert_eq(chmod(up, 0777), 0);
  cr_assert_eq(symlink("up/srv", fx_path("rel")), 0);
  assert_unsafe(join(fx_path("rel"), "s.sock"), up,
                "a symlink through an unsafe ancestor");
  unlink(fx_path("rel"));
  unlink(fx_path("link"));
  rm_tree(up);

  if (geteuid() != 0) {
    printf("hardening: skipping the foreign-owner ancestors: needs root to chown\n");
    return;
  }
  /* An ancestor nobody owns (it could rename srv and put its own in its
   * place), and a symlink kept in it that points to a safe directory. */
  const char *theirs = mkdir_mode("theirs", 0755, NOBODY, nogroup());
  const char *mine = join(theirs, "mine");
  cr_assert_eq(mkdir(mine, 0700), 0);
  assert_unsafe(join(mine, "s.sock"), theirs, "an ancestor of another user");
  const char *safe = mkdir_mode("safe", 0700, (uid_t)-1, (gid_t)-1);
  cr_assert_eq(symlink(safe, join(theirs, "l")), 0);
  assert_unsafe(join(join(theirs, "l"), "s.sock"), theirs,
                "a symlink held by a directory of another user");
  rm_tree(theirs);
  rm_tree(safe);
}

/* --- item 7: the lock file must be a regular file of ours --------------- */

static int start_status(void *arg) {
  ackrpc_server_options o = {.address = arg, .log = ackrpc_log_discard};
  ackrpc_server *s = NULL;
  ackrpc_status st = ackrpc_server_new(&o, &s);
  if (st == ACKRPC_OK) ackrpc_server_free(s);
  return (int)st;
}

/* ackrpc_server_new() in a child, bounded in time: an open that blocks on
 * a FIFO must not hang the test. */
static ackrpc_status start_in_child(const char *sock) {
  pid_t pid = hs_fork(start_status, (void *)sock);
  int ws = 0;
  if (hs_wait(pid, 5000, &ws) != 0) {
    hs_kill(pid);
    cr_assert_fail("ackrpc_server_new() blocked for 5 s");
  }
  cr_assert(WIFEXITED(ws), "the start-up died: 0x%x", ws);
  return (ackrpc_status)WEXITSTATUS(ws);
}

HS_TEST(hsown, fifo_directory_or_foreign_file_at_lock_path_refused) {
  const char *sock = fx_sock();
  const char *lock = fx_path("s.sock.lock");
  struct stat st;
  cr_assert_eq(mkfifo(lock, 0600), 0);
  ackrpc_status s = start_in_child(sock);
  cr_assert_eq(s, ACKRPC_E_EXISTS, "a FIFO at PATH.lock: %s", ackrpc_status_name(s));
  cr_assert(lstat(lock, &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO was removed");
  cr_assert(!exists(sock), "a socket was created with a FIFO for a lock");
  unlink(lock);

  cr_assert_eq(mkdir(lock, 0700), 0);
  s = start_in_child(sock);
  cr_assert_eq(s, ACKRPC_E_EXISTS, "a directory at PATH.lock: %s",
               ackrpc_status_name(s));
  cr_assert(lstat(lock, &st) == 0 && S_ISDIR(st.st_mode));
  cr_assert(!exists(sock));
  rmdir(lock);

  if (geteuid() == 0) {
    int fd = open(lock, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(chown(lock, NOBODY, nogroup()), 0);
    s = start_in_child(sock);
    cr_assert_eq(s, ACKRPC_E_EXISTS, "another user's file at PATH.lock: %s",
                 ackrpc_status_name(s));
    cr_assert(exists(lock) && !exists(sock));
    unlink(lock);
  }
  cr_assert_eq(start_in_child(sock), ACKRPC_OK, "with the way clear");
  cr_assert(!exists(sock) && !exists(lock));
}

/* --- item 7: at stop, only what the server created is removed ----------- */

/* A socket file at `p` that is not the server's (bound, not listening). */
static int impostor_at(const char *p) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(fd, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  cr_assert_lt(strlen(p), sizeof sa.sun_path);
  strcpy(sa.sun_path, p);
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0, "bind %s: %s", p,
               strerror(errno));
  return fd;
}

static void write_file(const char *p, const char *content) {
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  cr_assert_geq(fd, 0, "open %s: %s", p, strerror(errno));
  cr_assert_eq(write(fd, content, strlen(content)), (ssize_t)strlen(content));
  close(fd);
}

HS_TEST(hsown, stop_removes_only_its_own_files) {
  const char *sock = fx_sock();
  const char *lock = fx_path("s.sock.lock");
  ackrpc_server_options o = {.address = sock, .log = ackrpc_log_discard};
  hs_server *hs = hs_server_start(&o);
  /* Someone with the right to (root, or our uid by mistake) puts other
   * files in their place while the server runs. */
  cr_assert_eq(unlink(sock), 0);
  int other = impostor_at(sock);
  ino_t other_ino = inode_of(sock);
  cr_assert_eq(unlink(lock), 0);
  write_file(lock, "not the server's");
  ino_t lock_ino = inode_of(lock);
  hs_server_stop(hs);
  cr_assert_eq(inode_of(sock), other_ino,
               "the server removed a socket it did not create");
  cr_assert_eq(inode_of(lock), lock_ino, "the server removed a lock it did not create");
  close(other);
  unlink(sock);
  unlink(lock);

  /* Its directory moved away and another put in its place: the server
   * removes its own files where they went, through the directory it
   * checked, and leaves the new directory's alone. */
  const char *d = mkdir_mode("d", 0700, (uid_t)-1, (gid_t)-1);
  const char *moved = fx_path("d.moved");
  o.address = join(d, "s.sock");
  hs = hs_server_start(&o);
  cr_assert_eq(rename(d, moved), 0);
  cr_assert_eq(mkdir(d, 0700), 0);
  other = impostor_at(join(d, "s.sock"));
  write_file(join(d, "s.sock.lock"), "not the server's");
  hs_server_stop(hs);
  cr_assert(exists(join(d, "s.sock")) && exists(join(d, "s.sock.lock")),
            "the server removed files in a directory put in place of its own");
  cr_assert(!exists(join(moved, "s.sock")) && !exists(join(moved, "s.sock.lock")),
            "the server left its own files in its moved directory");
  close(other);
  rm_tree(d);
  rm_tree(moved);
}
