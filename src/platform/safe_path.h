/* safe_path.h: the check that no other user can replace a file the server
 * owns (its socket, its lock, its control socket) by changing a directory
 * on the way to it. Internal: not installed; docs/SECURITY.md §3.
 *
 * The rule is OpenSSH's StrictModes walk, applied to every directory a
 * lookup of the path goes through, from "/" down: each must belong to root
 * or to the server's effective uid, and be writable by neither its group nor
 * others unless it has the sticky bit (like /tmp). A symlink on the way is
 * followed (/var/run -> /run is normal), and the directory that holds it is
 * one of the directories checked, as is every directory its target goes
 * through. Once every directory on the way passes, only root and the server
 * can change what the path names, so the answer stays true. */
#ifndef AKR_SAFE_PATH_H
#define AKR_SAFE_PATH_H

#include <stddef.h>

#include "ackrpc/status.h"

/* The size of a reason buffer: a sentence naming the directory and what is
 * wrong with it. */
#define AKR_WHY_MAX 320

/* Checks every directory on the way to the file `path` names (a relative
 * path starts from the current directory) and opens the one that holds it.
 * On OK, *ret_dir_fd is an O_PATH, close-on-exec descriptor of that
 * directory (the caller closes it); files in it are then reached through it
 * (openat, fstatat, unlinkat), so that what is removed later is in the
 * directory that was checked. On failure *ret_dir_fd is untouched, and if
 * `why` is not NULL it receives a sentence (AKR_WHY_MAX bytes at most)
 * naming the directory and the reason.
 * Errors: E_UNSAFE_DIR (a directory on the way belongs to another user or is
 * writable by its group or others without the sticky bit), E_ADDRESS (the
 * path names no file: empty, or ends in "/", "." or ".."), E_SYSTEM (a
 * lookup failed, errno set: ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG...). */
ackrpc_status akr_safe_dir_open(const char *path, int *ret_dir_fd, char *why);

/* The last component of `path`: what the file is called in the directory
 * akr_safe_dir_open() opened. Points into `path`. */
const char *akr_path_base(const char *path);

#endif /* AKR_SAFE_PATH_H */
