/* powerloss_vfs.h: a test SQLite VFS that simulates losing power.
 *
 * "powerloss" is a shim over SQLite's default VFS (unix). Each file it
 * opens by name is held in memory: reads and writes go to that image, and
 * only a sync (xSync) copies the file's image to the real file. So the real
 * files always hold exactly what was synced, and a process that dies
 * (_exit) loses every write that was not: what a power cut does to a disk
 * that honours fsync. The real file is written without fsync (the test
 * needs the page cache to survive a process, not the machine), which keeps
 * a crash point cheap.
 *
 * Crash points: every xSync, of any file, is counted. powerloss_vfs_crash_at(k)
 * makes the k-th sync from then on crash instead: the hook runs (default
 * _exit(POWERLOSS_EXIT)) before that sync copies anything, so the writes
 * it would have made durable are lost too. Running a scenario with k = 1,
 * 2, ... up to the number of syncs a whole run makes crashes it once at
 * every sync point.
 *
 * Anything a program opens through the VFS is covered: the database, its
 * WAL, and other files opened with the database's VFS (the outbox's
 * "-mark" file). Not modelled: a write torn in the middle, or reordered
 * with another write before the sync (all unsynced writes of all files are
 * lost together); lost directory entries (a file created and never synced
 * exists after the crash, empty); deletes (immediate and durable: SQLite
 * syncs before it deletes a WAL). Temporary files (no name) are passed
 * through untouched. Shared memory and locks are the real file's.
 *
 * Single process, any threads (one mutex around every file operation).
 * Nothing here prints. */
#ifndef POWERLOSS_VFS_H
#define POWERLOSS_VFS_H

#include <stdint.h>

#define POWERLOSS_VFS_NAME "powerloss"
#define POWERLOSS_EXIT 86 /* the default crash's exit status */

/* Registers the VFS over the current default VFS (once per process; later
 * calls only change make_default). make_default 1 makes it the default, so
 * that sqlite3_open_v2(..., NULL) uses it. Returns an SQLite code. */
int powerloss_vfs_register(int make_default);

/* Crash at the k-th sync from now (1: the next one); 0: never. */
void powerloss_vfs_crash_at(uint64_t k);

/* Syncs made since the VFS was registered (crashed ones not counted). */
uint64_t powerloss_vfs_syncs(void);

/* What a crash does instead of _exit(POWERLOSS_EXIT): fn(arg), which must
 * not return (or the sync fails with SQLITE_IOERR_FSYNC). NULL: the
 * default. */
void powerloss_vfs_on_crash(void (*fn)(void *), void *arg);

/* Copies up to n bytes at `off` of file `name` (its full path, as SQLite
 * opened it) as the program sees it now, synced or not, into buf. Returns
 * the number of bytes copied, or -1 if the VFS holds no image of that
 * file (then the file on disk is what the program would read). */
int powerloss_vfs_peek(const char *name, void *buf, int n, int64_t off);

/* Drops the images of files no handle has open (their unsynced writes are
 * lost, as at a crash): for a harness that deletes files behind SQLite's
 * back, or that forks a process that must start from the disk. */
void powerloss_vfs_forget(void);

#endif /* POWERLOSS_VFS_H */
