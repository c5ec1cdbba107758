/* powerloss_vfs.c: the power-loss test VFS (powerloss_vfs.h).
 *
 * One image per file name, shared by every handle on it: `data` (size
 * bytes) is the file as the program sees it; the real file is the file as
 * the disk holds it. A sync writes the changed range [lo, hi) and the size
 * to the real file. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "powerloss_vfs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

typedef struct image {
  struct image *next;
  char *name;
  int refs;
  uint8_t *data;
  sqlite3_int64 size, cap;
  sqlite3_int64 lo, hi; /* changed since the last sync; lo >= hi: none */
  sqlite3_int64 real_size;
} image;

typedef struct pl_file {
  sqlite3_file base;
  image *img;         /* NULL: passed through (a temporary file) */
  sqlite3_file *real; /* the real VFS's file, szOsFile bytes */
} pl_file;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static sqlite3_vfs vfs;
static sqlite3_vfs *real_vfs;
static image *images;
static uint64_t syncs, crash_left;
static void (*crash_fn)(void *);
static void *crash_arg;

static image *find_image(const char *name) {
  for (image *i = images; i; i = i->next)
    if (strcmp(i->name, name) == 0) return i;
  return NULL;
}

static int reserve(image *i, sqlite3_int64 size) {
  if (size <= i->cap) return SQLITE_OK;
  sqlite3_int64 cap = i->cap ? i->cap : 4096;
  while (cap < size)
    cap *= 2;
  uint8_t *d = realloc(i->data, (size_t)cap);
  if (!d) return SQLITE_NOMEM; /* past `size`: zeroed when it is reached */
  i->data = d;
  i->cap = cap;
  return SQLITE_OK;
}

static void changed(image *i, sqlite3_int64 lo, sqlite3_int64 hi) {
  if (i->lo >= i->hi) {
    i->lo = lo;
    i->hi = hi;
    return;
  }
  if (lo < i->lo) i->lo = lo;
  if (hi > i->hi) i->hi = hi;
}

/* Loads the real file into a new image. */
static int load(image *i, sqlite3_file *real) {
  sqlite3_int64 size = 0;
  int rc = real->pMethods->xFileSize(real, &size);
  if (rc == SQLITE_OK) rc = reserve(i, size);
  if (rc == SQLITE_OK && size > 0)
    rc = real->pMethods->xRead(real, i->data, (int)size, 0);
  i->size = i->real_size = size;
  i->lo = i->hi = 0;
  return rc;
}

/* The image's changes to the real file: what a sync makes durable. */
static int flush(image *i, sqlite3_file *real) {
  int rc = SQLITE_OK;
  if (i->size < i->real_size) rc = real->pMethods->xTruncate(real, i->size);
  if (rc == SQLITE_OK && i->lo < i->hi) {
    sqlite3_int64 hi = i->hi < i->size ? i->hi : i->size;
    if (hi > i->lo)
      rc = real->pMethods->xWrite(real, i->data + i->lo, (int)(hi - i->lo), i->lo);
  }
  if (rc == SQLITE_OK) {
    i->real_size = i->size;
    i->lo = i->hi = 0;
  }
  return rc;
}

/* --- file methods ------------------------------------------------------ */

#define REAL(f) (((pl_file *)(f))->real)
#define IMG(f) (((pl_file *)(f))->img)

static int pl_close(sqlite3_file *f) {
  pl_file *p = (pl_file *)f;
  /* The image stays when its last handle closes: a later open of the name
   * must see the unsynced writes too, as it would in the page cache. */
  pthread_mutex_lock(&mu);
  if (p->img) p->img->refs--;
  pthread_mutex_unlock(&mu);
  int rc = p->real->pMethods ? p->real->pMethods->xClose(p->real) : SQLITE_OK;
  free(p->real);
  return rc;
}

static int pl_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off) {
  image *i = IMG(f);
  if (!i) return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
  pthread_mutex_lock(&mu);
  int rc = SQLITE_OK;
  sqlite3_int64 have = i->size - off;
  if (have >= n) {
    memcpy(buf, i->data + off, (size_t)n);
  } else {
    if (have < 0) have = 0;
    if (have) memcpy(buf, i->data + off, (size_t)have);
    memset((uint8_t *)buf + have, 0, (size_t)(n - have));
    rc = SQLITE_IOERR_SHORT_READ;
  }
  pthread_mutex_unlock(&mu);
  return rc;
}

static int pl_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off) {
  image *i = IMG(f);
  if (!i) return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
  pthread_mutex_lock(&mu);
  int rc = reserve(i, off + n);
  if (rc == SQLITE_OK) {
    if (off > i->size) memset(i->data + i->size, 0, (size_t)(off - i->size));
    memcpy(i->data + off, buf, (size_t)n);
    if (off + n > i->size) {
      changed(i, i->size < off ? i->size : off, off + n);
      i->size = off + n;
    } else {
      changed(i, off, off + n);
    }
  }
  pthread_mutex_unlock(&mu);
  return rc == SQLITE_NOMEM ? SQLITE_IOERR_NOMEM : rc;
}

static int pl_truncate(sqlite3_file *f, sqlite3_int64 size) {
  image *i = IMG(f);
  if (!i) return REAL(f)->pMethods->xTruncate(REAL(f), size);
  pthread_mutex_lock(&mu);
  int rc = reserve(i, size);
  if (rc == SQLITE_OK) {
    if (size > i->size) {
      memset(i->data + i->size, 0, (size_t)(size - i->size));
      changed(i, i->size, size);
    }
    i->size = size;
  }
  pthread_mutex_unlock(&mu);
  return rc == SQLITE_NOMEM ? SQLITE_IOERR_NOMEM : rc;
}

/* Counts the sync; 1 if it is the one to crash at. Under mu. */
static int crash_now(void) {
  if (crash_left && --crash_left == 0) return 1;
  syncs++;
  return 0;
}

static int pl_sync(sqlite3_file *f, int flags) {
  (void)flags;
  image *i = IMG(f);
  if (!i) return SQLITE_OK; /* a temporary file: nothing to keep */
  pthread_mutex_lock(&mu);
  if (crash_now()) {
    /* Power lost: nothing more reaches the disk, this sync included. */
    if (crash_fn) crash_fn(crash_arg);
    if (!crash_fn) _exit(POWERLOSS_EXIT);
    pthread_mutex_unlock(&mu);
    return SQLITE_IOERR_FSYNC;
  }
  int rc = flush(i, REAL(f));
  pthread_mutex_unlock(&mu);
  return rc;
}

static int pl_file_size(sqlite3_file *f, sqlite3_int64 *ret) {
  image *i = IMG(f);
  if (!i) return REAL(f)->pMethods->xFileSize(REAL(f), ret);
  pthread_mutex_lock(&mu);
  *ret = i->size;
  pthread_mutex_unlock(&mu);
  return SQLITE_OK;
}

static int pl_lock(sqlite3_file *f, int l) {
  return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int pl_unlock(sqlite3_file *f, int l) {
  return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int pl_check_reserved(sqlite3_file *f, int *ret) {
  return REAL(f)->pMethods->xCheckReservedLock(REAL(f), ret);
}

static int pl_file_control(sqlite3_file *f, int op, void *arg) {
  /* Size hints and chunks would grow the real file behind the image. */
  if (IMG(f) && (op == SQLITE_FCNTL_SIZE_HINT || op == SQLITE_FCNTL_CHUNK_SIZE))
    return SQLITE_OK;
  if (op == SQLITE_FCNTL_VFSNAME) {
    *(char **)arg = sqlite3_mprintf("%s", POWERLOSS_VFS_NAME);
    return SQLITE_OK;
  }
  return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int pl_sector_size(sqlite3_file *f) {
  return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int pl_device_characteristics(sqlite3_file *f) {
  return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int pl_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp) {
  return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, pp);
}
static int pl_shm_lock(sqlite3_file *f, int off, int n, int flags) {
  return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void pl_shm_barrier(sqlite3_file *f) {
  REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int pl_shm_unmap(sqlite3_file *f, int del) {
  return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static const sqlite3_io_methods io = {
    .iVersion = 2, /* shared memory, no mmap: every read comes through xRead */
    .xClose = pl_close,
    .xRead = pl_read,
    .xWrite = pl_write,
    .xTruncate = pl_truncate,
    .xSync = pl_sync,
    .xFileSize = pl_file_size,
    .xLock = pl_lock,
    .xUnlock = pl_unlock,
    .xCheckReservedLock = pl_check_reserved,
    .xFileControl = pl_file_control,
    .xSectorSize = pl_sector_size,
    .xDeviceCharacteristics = pl_device_characteristics,
    .xShmMap = pl_shm_map,
    .xShmLock = pl_shm_lock,
    .xShmBarrier = pl_shm_barrier,
    .xShmUnmap = pl_shm_unmap,
};

/* --- VFS methods ------------------------------------------------------- */

static int attach_image(pl_file *p, const char *name) {
  image *i = find_image(name);
  if (!i) {
    i = calloc(1, sizeof *i);
    if (!i || !(i->name = strdup(name))) {
      free(i);
      return SQLITE_NOMEM;
    }
    int rc = load(i, p->real);
    if (rc != SQLITE_OK) {
      free(i->data);
      free(i->name);
      free(i);
      return rc;
    }
    i->next = images;
    images = i;
  }
  i->refs++;
  p->img = i;
  return SQLITE_OK;
}

static int pl_open(sqlite3_vfs *v, sqlite3_filename name, sqlite3_file *f, int flags,
                   int *ret_flags) {
  (void)v;
  pl_file *p = (pl_file *)f;
  memset(p, 0, sizeof *p);
  p->real = calloc(1, (size_t)real_vfs->szOsFile);
  if (!p->real) return SQLITE_NOMEM;
  int rc = real_vfs->xOpen(real_vfs, name, p->real, flags, ret_flags);
  if (rc == SQLITE_OK && name && !(flags & SQLITE_OPEN_DELETEONCLOSE)) {
    pthread_mutex_lock(&mu);
    rc = attach_image(p, name);
    pthread_mutex_unlock(&mu);
  }
  if (rc != SQLITE_OK) {
    if (p->real->pMethods) p->real->pMethods->xClose(p->real);
    free(p->real);
    p->real = NULL;
    return rc;
  }
  p->base.pMethods = &io;
  return SQLITE_OK;
}

static int pl_delete(sqlite3_vfs *v, const char *name, int sync_dir) {
  (void)v;
  pthread_mutex_lock(&mu);
  for (image **pp = &images; *pp; pp = &(*pp)->next) {
    image *i = *pp;
    if (strcmp(i->name, name) == 0 && i->refs == 0) {
      *pp = i->next;
      free(i->data);
      free(i->name);
      free(i);
      break;
    }
  }
  pthread_mutex_unlock(&mu);
  return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int pl_access(sqlite3_vfs *v, const char *name, int flags, int *ret) {
  (void)v;
  if (flags == SQLITE_ACCESS_EXISTS) {
    pthread_mutex_lock(&mu);
    image *i = find_image(name);
    int known = i != NULL;
    if (i) *ret = i->size > 0; /* as the unix VFS: an empty file is none */
    pthread_mutex_unlock(&mu);
    if (known) return SQLITE_OK;
  }
  return real_vfs->xAccess(real_vfs, name, flags, ret);
}

static int pl_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out) {
  (void)v;
  return real_vfs->xFullPathname(real_vfs, name, n, out);
}
static void *pl_dlopen(sqlite3_vfs *v, const char *name) {
  (void)v;
  return real_vfs->xDlOpen(real_vfs, name);
}
static void pl_dlerror(sqlite3_vfs *v, int n, char *out) {
  (void)v;
  real_vfs->xDlError(real_vfs, n, out);
}
static void (*pl_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void) {
  (void)v;
  return real_vfs->xDlSym(real_vfs, h, sym);
}
static void pl_dlclose(sqlite3_vfs *v, void *h) {
  (void)v;
  real_vfs->xDlClose(real_vfs, h);
}
static int pl_randomness(sqlite3_vfs *v, int n, char *out) {
  (void)v;
  return real_vfs->xRandomness(real_vfs, n, out);
}
static int pl_sleep(sqlite3_vfs *v, int us) {
  (void)v;
  return real_vfs->xSleep(real_vfs, us);
}
static int pl_current_time(sqlite3_vfs *v, double *ret) {
  (void)v;
  return real_vfs->xCurrentTime(real_vfs, ret);
}
static int pl_last_error(sqlite3_vfs *v, int n, char *out) {
  (void)v;
  return real_vfs->xGetLastError(real_vfs, n, out);
}
static int pl_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *ret) {
  (void)v;
  return real_vfs->xCurrentTimeInt64(real_vfs, ret);
}

int powerloss_vfs_register(int make_default) {
  pthread_mutex_lock(&mu);
  if (!real_vfs) {
    sqlite3_initialize();
    real_vfs = sqlite3_vfs_find(NULL);
    if (!real_vfs) {
      pthread_mutex_unlock(&mu);
      return SQLITE_ERROR;
    }
    vfs = (sqlite3_vfs){.iVersion = 2,
                        .szOsFile = (int)sizeof(pl_file),
                        .mxPathname = real_vfs->mxPathname,
                        .zName = POWERLOSS_VFS_NAME,
                        .xOpen = pl_open,
                        .xDelete = pl_delete,
                        .xAccess = pl_access,
                        .xFullPathname = pl_full_pathname,
                        .xDlOpen = pl_dlopen,
                        .xDlError = pl_dlerror,
                        .xDlSym = pl_dlsym,
                        .xDlClose = pl_dlclose,
                        .xRandomness = pl_randomness,
                        .xSleep = pl_sleep,
                        .xCurrentTime = pl_current_time,
                        .xGetLastError = pl_last_error,
                        .xCurrentTimeInt64 = pl_current_time_int64};
  }
  pthread_mutex_unlock(&mu);
  return sqlite3_vfs_register(&vfs, make_default);
}

void powerloss_vfs_crash_at(uint64_t k) {
  pthread_mutex_lock(&mu);
  crash_left = k;
  pthread_mutex_unlock(&mu);
}

uint64_t powerloss_vfs_syncs(void) {
  pthread_mutex_lock(&mu);
  uint64_t n = syncs;
  pthread_mutex_unlock(&mu);
  return n;
}

void powerloss_vfs_on_crash(void (*fn)(void *), void *arg) {
  pthread_mutex_lock(&mu);
  crash_fn = fn;
  crash_arg = arg;
  pthread_mutex_unlock(&mu);
}

void powerloss_vfs_forget(void) {
  pthread_mutex_lock(&mu);
  for (image **pp = &images; *pp;) {
    image *i = *pp;
    if (i->refs) {
      pp = &i->next;
      continue;
    }
    *pp = i->next;
    free(i->data);
    free(i->name);
    free(i);
  }
  pthread_mutex_unlock(&mu);
}

int powerloss_vfs_peek(const char *name, void *buf, int n, int64_t off) {
  pthread_mutex_lock(&mu);
  image *i = find_image(name);
  int got = -1;
  if (i) {
    sqlite3_int64 have = i->size - off;
    got = have <= 0 ? 0 : have < n ? (int)have : n;
    if (got) memcpy(buf, i->data + off, (size_t)got);
  }
  pthread_mutex_unlock(&mu);
  return got;
}
