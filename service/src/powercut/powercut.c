/*
 * powercut.so: an LD_PRELOAD shim that keeps, beside a data directory, the
 * state a power cut would leave of it.
 *
 * Model (as LazyFS's): a file's content is durable once fsync'ed (or
 * fdatasync'ed); a rename, link or unlink in the directory is durable once
 * the directory itself is fsync'ed. Everything else is lost in a cut.
 *
 * POWERCUT_DIR names the data directory (absolute), POWERCUT_SHADOW the
 * directory that mirrors its durable state: at every fsync of a file under
 * POWERCUT_DIR its current content is copied to the shadow (atomically);
 * renames, links and unlinks are queued and applied to the shadow at the
 * next fsync of the directory. After a SIGKILL, the harness replaces the
 * data directory with the shadow: that is what the disk would hold after a
 * power cut at that instant.
 *
 * Only flat directories are handled (the curator's data directory is).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MAX_PENDING 4096

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *fd_names[MAX_FDS]; /* base name of a file under DIR, "." for DIR */
static char dir[PATH_MAX], shadow[PATH_MAX];
static int enabled = -1;

enum op { OP_RENAME, OP_LINK, OP_UNLINK };
static struct { enum op op; char from[NAME_MAX + 1]; char to[NAME_MAX + 1]; } pending[MAX_PENDING];
static int npending;

static void init(void) {
    if (enabled >= 0) return;
    const char *d = getenv("POWERCUT_DIR"), *s = getenv("POWERCUT_SHADOW");
    if (!d || !s) { enabled = 0; return; }
    snprintf(dir, sizeof dir, "%s", d);
    snprintf(shadow, sizeof shadow, "%s", s);
    enabled = 1;
}

/* The base name of `path` if it names DIR itself (".") or an entry of it. */
static const char *under_dir(const char *path, char *buf, size_t len) {
    char full[PATH_MAX];
    if (!path) return NULL;
    if (path[0] == '/') snprintf(full, sizeof full, "%s", path);
    else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return NULL;
        snprintf(full, sizeof full, "%s/%s", cwd, path);
    }
    size_t n = strlen(dir);
    if (strncmp(full, dir, n) != 0) return NULL;
    if (full[n] == '\0' || (full[n] == '/' && full[n + 1] == '\0')) {
        snprintf(buf, len, ".");
        return buf;
    }
    if (full[n] != '/' || strchr(full + n + 1, '/')) return NULL;
    snprintf(buf, len, "%s", full + n + 1);
    return buf;
}

static ssize_t raw_read(int fd, void *b, size_t n) { return syscall(SYS_read, fd, b, n); }
static ssize_t raw_write(int fd, const void *b, size_t n) { return syscall(SYS_write, fd, b, n); }

/* Copies DIR/name to SHADOW/name through a temporary file. */
static void copy_to_shadow(const char *name) {
    char src[PATH_MAX], tmp[PATH_MAX], dst[PATH_MAX];
    snprintf(src, sizeof src, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.powercut-tmp", shadow);
    snprintf(dst, sizeof dst, "%s/%s", shadow, name);
    int in = syscall(SYS_openat, AT_FDCWD, src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return;
    int out = syscall(SYS_openat, AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) { syscall(SYS_close, in); return; }
    char buf[65536];
    ssize_t r;
    while ((r = raw_read(in, buf, sizeof buf)) > 0) {
        ssize_t off = 0;
        while (off < r) {
            ssize_t w = raw_write(out, buf + off, r - off);
            if (w <= 0) break;
            off += w;
        }
    }
    syscall(SYS_close, in);
    syscall(SYS_close, out);
    syscall(SYS_renameat, AT_FDCWD, tmp, AT_FDCWD, dst);
}

static void shadow_path(char *out, size_t len, const char *name) {
    snprintf(out, len, "%s/%s", shadow, name);
}

/* The directory was fsync'ed: its pending entry changes become durable. */
static void apply_pending(void) {
    char a[PATH_MAX], b[PATH_MAX];
    for (int i = 0; i < npending; i++) {
        shadow_path(a, sizeof a, pending[i].from);
        switch (pending[i].op) {
        case OP_RENAME:
            shadow_path(b, sizeof b, pending[i].to);
            syscall(SYS_renameat, AT_FDCWD, a, AT_FDCWD, b);
            break;
        case OP_LINK:
            shadow_path(b, sizeof b, pending[i].to);
            syscall(SYS_linkat, AT_FDCWD, a, AT_FDCWD, b, 0);
            break;
        case OP_UNLINK:
            syscall(SYS_unlinkat, AT_FDCWD, a, 0);
            break;
        }
    }
    npending = 0;
}

static void remember_fd(int fd, const char *path) {
    char name[NAME_MAX + 1];
    init();
    if (fd < 0 || fd >= MAX_FDS || enabled != 1) return;
    const char *n = under_dir(path, name, sizeof name);
    pthread_mutex_lock(&lock);
    free(fd_names[fd]);
    fd_names[fd] = n ? strdup(n) : NULL;
    pthread_mutex_unlock(&lock);
}

static void queue(enum op op, const char *from, const char *to) {
    char f[NAME_MAX + 1], t[NAME_MAX + 1];
    init();
    if (enabled != 1) return;
    const char *fn = under_dir(from, f, sizeof f);
    const char *tn = to ? under_dir(to, t, sizeof t) : NULL;
    if (!fn || (to && !tn)) return;
    pthread_mutex_lock(&lock);
    if (npending < MAX_PENDING) {
        pending[npending].op = op;
        snprintf(pending[npending].from, sizeof pending[npending].from, "%s", fn);
        snprintf(pending[npending].to, sizeof pending[npending].to, "%s", tn ? tn : "");
        npending++;
    }
    pthread_mutex_unlock(&lock);
}

static void synced(int fd) {
    init();
    if (enabled != 1 || fd < 0 || fd >= MAX_FDS) return;
    pthread_mutex_lock(&lock);
    const char *name = fd_names[fd];
    if (name) {
        if (strcmp(name, ".") == 0) apply_pending();
        else copy_to_shadow(name);
    }
    pthread_mutex_unlock(&lock);
}

#define REAL(ret, name, ...) \
    static ret (*real_##name)(__VA_ARGS__); \
    if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name);

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    REAL(int, open, const char *, int, ...);
    va_list ap; va_start(ap, flags); mode_t m = mode_arg(flags, ap); va_end(ap);
    int fd = real_open(path, flags, m);
    remember_fd(fd, path);
    return fd;
}
int open64(const char *path, int flags, ...) {
    REAL(int, open64, const char *, int, ...);
    va_list ap; va_start(ap, flags); mode_t m = mode_arg(flags, ap); va_end(ap);
    int fd = real_open64(path, flags, m);
    remember_fd(fd, path);
    return fd;
}
int openat(int dirfd, const char *path, int flags, ...) {
    REAL(int, openat, int, const char *, int, ...);
    va_list ap; va_start(ap, flags); mode_t m = mode_arg(flags, ap); va_end(ap);
    int fd = real_openat(dirfd, path, flags, m);
    if (dirfd == AT_FDCWD || path[0] == '/') remember_fd(fd, path);
    return fd;
}
int openat64(int dirfd, const char *path, int flags, ...) {
    REAL(int, openat64, int, const char *, int, ...);
    va_list ap; va_start(ap, flags); mode_t m = mode_arg(flags, ap); va_end(ap);
    int fd = real_openat64(dirfd, path, flags, m);
    if (dirfd == AT_FDCWD || path[0] == '/') remember_fd(fd, path);
    return fd;
}
int fsync(int fd) {
    REAL(int, fsync, int);
    int r = real_fsync(fd);
    if (r == 0) synced(fd);
    return r;
}
int fdatasync(int fd) {
    REAL(int, fdatasync, int);
    int r = real_fdatasync(fd);
    if (r == 0) synced(fd);
    return r;
}
int rename(const char *from, const char *to) {
    REAL(int, rename, const char *, const char *);
    int r = real_rename(from, to);
    if (r == 0) queue(OP_RENAME, from, to);
    return r;
}
int renameat(int fd1, const char *from, int fd2, const char *to) {
    REAL(int, renameat, int, const char *, int, const char *);
    int r = real_renameat(fd1, from, fd2, to);
    if (r == 0 && fd1 == AT_FDCWD && fd2 == AT_FDCWD) queue(OP_RENAME, from, to);
    return r;
}
int link(const char *from, const char *to) {
    REAL(int, link, const char *, const char *);
    int r = real_link(from, to);
    if (r == 0) queue(OP_LINK, from, to);
    return r;
}
int linkat(int fd1, const char *from, int fd2, const char *to, int flags) {
    REAL(int, linkat, int, const char *, int, const char *, int);
    int r = real_linkat(fd1, from, fd2, to, flags);
    if (r == 0 && fd1 == AT_FDCWD && fd2 == AT_FDCWD) queue(OP_LINK, from, to);
    return r;
}
int unlink(const char *path) {
    REAL(int, unlink, const char *);
    int r = real_unlink(path);
    if (r == 0) queue(OP_UNLINK, path, NULL);
    return r;
}
int close(int fd) {
    REAL(int, close, int);
    if (fd >= 0 && fd < MAX_FDS && enabled == 1) {
        pthread_mutex_lock(&lock);
        free(fd_names[fd]);
        fd_names[fd] = NULL;
        pthread_mutex_unlock(&lock);
    }
    return real_close(fd);
}
