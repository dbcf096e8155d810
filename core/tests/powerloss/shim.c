/*
 * The power-loss harness's write recorder (core/tests/it/powerloss.rs), loaded
 * with LD_PRELOAD into the process under test. For every file and directory
 * under $SV_PL_DIR it appends to $SV_PL_LOG what the process did to it:
 * opens (and whether they created the file), writes with their offset and
 * bytes, truncations, fsync/fdatasync (a begin record before the call and an
 * end record after it returns: only writes logged before the begin are
 * covered, and only if the end was reached), renames, unlinks and mkdirs,
 * each once the real call succeeded. The harness rebuilds from the log what
 * a power cut at any point could have left on disk.
 *
 * Record framing (shared with the harness and the process's own ACK
 * records): one byte kind, a u32 little-endian payload length, the payload.
 * Each record is one write(2) on an O_APPEND descriptor, so records from
 * several threads never interleave.
 *
 * Each call and its record happen under one lock, so the log's order is
 * the order the calls took effect in (two threads writing the same file, a
 * write racing a truncation); an fsync itself runs outside it, between its
 * begin and end records. sv_pl_stop() takes the lock and exits the process
 * at once, so the log ends with every call that reached the files, and
 * nothing else.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 65536

static char dir[PATH_MAX];
static size_t dir_len;
static int log_fd = -1;
static unsigned char tracked[MAX_FD]; /* 1: a file, 2: a directory */
static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t sync_ids;
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;

#define ENTER pthread_mutex_lock(&gate)
#define LEAVE pthread_mutex_unlock(&gate)

/* Stops the process between two calls: no call is half logged. */
void sv_pl_stop(void) {
  pthread_mutex_lock(&gate);
  _exit(0);
}

#define REAL(ret, name, args) static ret(*real_##name) args
REAL(int, open, (const char *, int, ...));
REAL(int, open64, (const char *, int, ...));
REAL(int, openat, (int, const char *, int, ...));
REAL(int, openat64, (int, const char *, int, ...));
REAL(int, close, (int));
REAL(ssize_t, write, (int, const void *, size_t));
REAL(ssize_t, pwrite, (int, const void *, size_t, off_t));
REAL(ssize_t, pwrite64, (int, const void *, size_t, off64_t));
REAL(ssize_t, writev, (int, const struct iovec *, int));
REAL(int, ftruncate, (int, off_t));
REAL(int, ftruncate64, (int, off64_t));
REAL(int, fsync, (int));
REAL(int, fdatasync, (int));
REAL(int, rename, (const char *, const char *));
REAL(int, renameat, (int, const char *, int, const char *));
REAL(int, unlink, (const char *));
REAL(int, unlinkat, (int, const char *, int));
REAL(int, mkdir, (const char *, mode_t));
REAL(int, rmdir, (const char *));

#define LOAD(name) real_##name = dlsym(RTLD_NEXT, #name)

__attribute__((constructor)) static void init(void) {
  LOAD(open); LOAD(open64); LOAD(openat); LOAD(openat64); LOAD(close);
  LOAD(write); LOAD(pwrite); LOAD(pwrite64); LOAD(writev);
  LOAD(ftruncate); LOAD(ftruncate64); LOAD(fsync); LOAD(fdatasync);
  LOAD(rename); LOAD(renameat); LOAD(unlink); LOAD(unlinkat); LOAD(mkdir); LOAD(rmdir);
  const char *d = getenv("SV_PL_DIR"), *l = getenv("SV_PL_LOG");
  if (!d || !l) return;
  snprintf(dir, sizeof dir, "%s", d);
  dir_len = strlen(dir);
  log_fd = real_open(l, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

/* One record: kind, then the parts concatenated as its payload. */
static void emit(char kind, const void *a, size_t an, const void *b, size_t bn) {
  if (log_fd < 0) return;
  size_t n = 5 + an + bn;
  unsigned char stack[4096], *buf = n <= sizeof stack ? stack : malloc(n);
  if (!buf) abort();
  uint32_t len = (uint32_t)(an + bn);
  buf[0] = (unsigned char)kind;
  memcpy(buf + 1, &len, 4);
  if (an) memcpy(buf + 5, a, an);
  if (bn) memcpy(buf + 5 + an, b, bn);
  size_t done = 0;
  while (done < n) {
    ssize_t w = real_write(log_fd, buf + done, n - done);
    if (w <= 0) abort(); /* a lost record would make the harness lie */
    done += (size_t)w;
  }
  if (buf != stack) free(buf);
}

/* The absolute path of `path` relative to `dirfd`, in `out`. */
static int resolve(int dirfd, const char *path, char *out) {
  if (path[0] == '/' ) { snprintf(out, PATH_MAX, "%s", path); return 1; }
  char base[PATH_MAX];
  if (dirfd == AT_FDCWD) {
    if (!getcwd(base, sizeof base)) return 0;
  } else {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, base, sizeof base - 1);
    if (n < 0) return 0;
    base[n] = 0;
  }
  size_t bl = strlen(base), pl = strlen(path);
  if (bl + 1 + pl >= PATH_MAX) return 0;
  memcpy(out, base, bl);
  out[bl] = '/';
  memcpy(out + bl + 1, path, pl + 1);
  return 1;
}

static int ours(const char *abs) {
  return log_fd >= 0 && strncmp(abs, dir, dir_len) == 0 &&
         (abs[dir_len] == '/' || abs[dir_len] == 0);
}

/* 'O': fd (u32), created (u8), truncated (u8), dsync (u8), directory (u8), path. */
static int after_open(int fd, const char *abs, int flags, int existed) {
  if (fd < 0 || fd >= MAX_FD || !ours(abs)) return fd;
  struct stat st;
  int is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
  unsigned char head[8];
  uint32_t f = (uint32_t)fd;
  memcpy(head, &f, 4);
  head[4] = !existed;
  head[5] = (flags & O_TRUNC) && existed;
  head[6] = (flags & (O_DSYNC | O_SYNC)) != 0;
  head[7] = is_dir;
  tracked[fd] = is_dir ? 2 : 1;
  emit('O', head, 8, abs, strlen(abs));
  return fd;
}

static int do_open_(int dirfd, const char *path, int flags, mode_t mode, int at) {
  char abs[PATH_MAX];
  int track = log_fd >= 0 && resolve(dirfd, path, abs) && ours(abs);
  struct stat st;
  int existed = track ? stat(abs, &st) == 0 : 1;
  int fd = at ? real_openat(dirfd, path, flags, mode) : real_open(path, flags, mode);
  return track ? after_open(fd, abs, flags, existed) : fd;
}

static int do_open(int dirfd, const char *path, int flags, mode_t mode, int at) {
  ENTER;
  int r = do_open_(dirfd, path, flags, mode, at);
  LEAVE;
  return r;
}

#define MODE_ARG(flags) \
  mode_t mode = 0; \
  if ((flags) & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }

int open(const char *path, int flags, ...) { MODE_ARG(flags); return do_open(AT_FDCWD, path, flags, mode, 0); }
int open64(const char *path, int flags, ...) { MODE_ARG(flags); return do_open(AT_FDCWD, path, flags, mode, 0); }
int openat(int d, const char *path, int flags, ...) { MODE_ARG(flags); return do_open(d, path, flags, mode, 1); }
int openat64(int d, const char *path, int flags, ...) { MODE_ARG(flags); return do_open(d, path, flags, mode, 1); }
int creat(const char *path, mode_t mode) { return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, 0); }
int creat64(const char *path, mode_t mode) { return creat(path, mode); }

int close(int fd) {
  ENTER;
  int r = real_close(fd);
  if (fd >= 0 && fd < MAX_FD && tracked[fd]) {
    tracked[fd] = 0;
    uint32_t f = (uint32_t)fd;
    emit('X', &f, 4, NULL, 0);
  }
  LEAVE;
  return r;
}

/* 'W': fd (u32), offset (u64), bytes. */
static void logged_write(int fd, uint64_t off, const void *data, size_t n) {
  unsigned char head[12];
  uint32_t f = (uint32_t)fd;
  memcpy(head, &f, 4);
  memcpy(head + 4, &off, 8);
  emit('W', head, 12, data, n);
}

static int is_tracked(int fd) { return fd >= 0 && fd < MAX_FD && tracked[fd] == 1; }

ssize_t write(int fd, const void *buf, size_t n) {
  if (!is_tracked(fd)) return real_write(fd, buf, n);
  ENTER;
  off_t before = lseek(fd, 0, SEEK_CUR);
  int append = (fcntl(fd, F_GETFL) & O_APPEND) != 0;
  ssize_t w = real_write(fd, buf, n);
  if (w > 0) {
    uint64_t off = append ? (uint64_t)(lseek(fd, 0, SEEK_CUR) - w) : (uint64_t)before;
    logged_write(fd, off, buf, (size_t)w);
  }
  LEAVE;
  return w;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  ENTER;
  ssize_t w = real_pwrite(fd, buf, n, off);
  if (w > 0 && is_tracked(fd)) logged_write(fd, (uint64_t)off, buf, (size_t)w);
  LEAVE;
  return w;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
  ENTER;
  ssize_t w = real_pwrite64(fd, buf, n, off);
  if (w > 0 && is_tracked(fd)) logged_write(fd, (uint64_t)off, buf, (size_t)w);
  LEAVE;
  return w;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  if (!is_tracked(fd)) return real_writev(fd, iov, cnt);
  ENTER;
  off_t before = lseek(fd, 0, SEEK_CUR);
  ssize_t w = real_writev(fd, iov, cnt);
  ssize_t left = w;
  uint64_t off = (uint64_t)before;
  for (int i = 0; i < cnt && left > 0; i++) {
    size_t part = iov[i].iov_len < (size_t)left ? iov[i].iov_len : (size_t)left;
    logged_write(fd, off, iov[i].iov_base, part);
    off += part;
    left -= (ssize_t)part;
  }
  LEAVE;
  return w;
}

/* 'T': fd (u32), length (u64). */
static void logged_truncate(int fd, uint64_t len) {
  unsigned char head[12];
  uint32_t f = (uint32_t)fd;
  memcpy(head, &f, 4);
  memcpy(head + 4, &len, 8);
  emit('T', head, 12, NULL, 0);
}

int ftruncate(int fd, off_t len) {
  ENTER;
  int r = real_ftruncate(fd, len);
  if (r == 0 && is_tracked(fd)) logged_truncate(fd, (uint64_t)len);
  LEAVE;
  return r;
}

int ftruncate64(int fd, off64_t len) {
  ENTER;
  int r = real_ftruncate64(fd, len);
  if (r == 0 && is_tracked(fd)) logged_truncate(fd, (uint64_t)len);
  LEAVE;
  return r;
}

/* 'S' before the call and 'E' after it succeeded: fd (u32), sync id (u64). */
static int logged_sync(int fd, int (*call)(int)) {
  if (fd < 0 || fd >= MAX_FD || !tracked[fd]) return call(fd);
  pthread_mutex_lock(&sync_lock);
  uint64_t id = ++sync_ids;
  pthread_mutex_unlock(&sync_lock);
  unsigned char head[12];
  uint32_t f = (uint32_t)fd;
  memcpy(head, &f, 4);
  memcpy(head + 4, &id, 8);
  ENTER;
  emit('S', head, 12, NULL, 0);
  LEAVE;
  int r = call(fd);
  ENTER;
  if (r == 0) emit('E', head, 12, NULL, 0);
  LEAVE;
  return r;
}

int fsync(int fd) { return logged_sync(fd, real_fsync); }
int fdatasync(int fd) { return logged_sync(fd, real_fdatasync); }

/* 'R': from and to, NUL-separated. */
static void logged_rename(const char *from, const char *to) {
  emit('R', from, strlen(from) + 1, to, strlen(to));
}

int rename(const char *from, const char *to) {
  char a[PATH_MAX], b[PATH_MAX];
  ENTER;
  int r = real_rename(from, to);
  if (r == 0 && resolve(AT_FDCWD, from, a) && resolve(AT_FDCWD, to, b) && (ours(a) || ours(b)))
    logged_rename(a, b);
  LEAVE;
  return r;
}

int renameat(int fd1, const char *from, int fd2, const char *to) {
  char a[PATH_MAX], b[PATH_MAX];
  int ok = resolve(fd1, from, a) && resolve(fd2, to, b);
  ENTER;
  int r = real_renameat(fd1, from, fd2, to);
  if (r == 0 && ok && (ours(a) || ours(b))) logged_rename(a, b);
  LEAVE;
  return r;
}

/* 'U': a path removed (file or directory). */
int unlink(const char *path) {
  char a[PATH_MAX];
  int ok = resolve(AT_FDCWD, path, a);
  ENTER;
  int r = real_unlink(path);
  if (r == 0 && ok && ours(a)) emit('U', a, strlen(a), NULL, 0);
  LEAVE;
  return r;
}

int unlinkat(int d, const char *path, int flags) {
  char a[PATH_MAX];
  int ok = resolve(d, path, a);
  ENTER;
  int r = real_unlinkat(d, path, flags);
  if (r == 0 && ok && ours(a)) emit('U', a, strlen(a), NULL, 0);
  LEAVE;
  return r;
}

int rmdir(const char *path) {
  char a[PATH_MAX];
  int ok = resolve(AT_FDCWD, path, a);
  ENTER;
  int r = real_rmdir(path);
  if (r == 0 && ok && ours(a)) emit('U', a, strlen(a), NULL, 0);
  LEAVE;
  return r;
}

/* 'M': a directory made. */
int mkdir(const char *path, mode_t mode) {
  char a[PATH_MAX];
  int ok = resolve(AT_FDCWD, path, a);
  ENTER;
  int r = real_mkdir(path, mode);
  if (r == 0 && ok && ours(a)) emit('M', a, strlen(a), NULL, 0);
  LEAVE;
  return r;
}
