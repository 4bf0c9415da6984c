/* Shared helpers of the capsule C probes.
 *
 * Every probe takes the values it expects as arguments, prints what it observed on
 * stdout ("FAIL: ..." lines for mismatches, "OK" at the end) and exits 0 only when all
 * checks held. The harness runs each probe natively with the host's values and under
 * the shim with the capsule's.
 *
 * raw_syscall*() issue the system call instruction directly, so that no preloaded
 * library can change what they report: they are the reference the libc calls are
 * compared against.
 */
#ifndef CAPSULE_PROBE_H
#define CAPSULE_PROBE_H

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Helpers a probe does not use must not trip -Wunused-function. */
#define PROBE_FN static __attribute__((unused))

static int probe_failures;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
PROBE_FN void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    probe_failures++;
}

/* Prints OK or the number of failures, and returns the exit status. */
PROBE_FN int probe_finish(void) {
    if (probe_failures == 0) {
        printf("OK\n");
        return 0;
    }
    printf("FAILURES: %d\n", probe_failures);
    return 1;
}

PROBE_FN void usage(const char *text) {
    fprintf(stderr, "usage: %s\n", text);
    exit(2);
}

#if defined(__x86_64__)
PROBE_FN long raw_syscall3(long n, long a, long b, long c) {
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
PROBE_FN long raw_syscall3(long n, long a, long b, long c) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}
#else
#error "raw_syscall3: add this architecture's system call instruction"
#endif

/* The kernel's clock, untouched by any preloaded library. */
PROBE_FN struct timespec raw_clock(clockid_t clock) {
    struct timespec ts = {0, 0};
    long r = raw_syscall3(SYS_clock_gettime, clock, (long)&ts, 0);
    if (r != 0) {
        fprintf(stderr, "raw clock_gettime(%d) failed: %ld\n", (int)clock, r);
        exit(3);
    }
    return ts;
}

PROBE_FN double ts_seconds(struct timespec ts) {
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

PROBE_FN double raw_seconds(clockid_t clock) {
    return ts_seconds(raw_clock(clock));
}

/* The kernel's host name, untouched by any preloaded library. */
PROBE_FN void raw_nodename(char *out, size_t size) {
    struct {
        char f[6][65];
    } u;
    memset(&u, 0, sizeof u);
    if (raw_syscall3(SYS_uname, (long)&u, 0, 0) != 0) {
        fprintf(stderr, "raw uname failed\n");
        exit(3);
    }
    snprintf(out, size, "%s", u.f[1]);
}

/* Name of an errno value, for messages and for arguments such as "EPERM". */
PROBE_FN const char *errno_name(int e) {
    switch (e) {
    case 0: return "0";
    case EPERM: return "EPERM";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case EBADF: return "EBADF";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    default: return "E?";
    }
}

/* Parses "ok"/"0" as 0 and an errno name as its value. */
PROBE_FN int parse_expect(const char *text) {
    if (strcmp(text, "ok") == 0 || strcmp(text, "0") == 0) return 0;
    static const int known[] = {EPERM, EINVAL, EFAULT, ENAMETOOLONG, ENOSYS, EBADF, ENOENT, EACCES};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(text, errno_name(known[i])) == 0) return known[i];
    fprintf(stderr, "unknown expectation %s\n", text);
    exit(2);
}

/* An errno value no call sets: a successful call must leave it alone. */
#define ERRNO_SENTINEL 7777

/* Runs `call` (an expression returning the call's result) with errno primed, and
 * checks the outcome against `want` (0 for success, else the errno expected):
 * success must not touch errno, failure must return -1 and set exactly that errno. */
#define CHECK_CALL(label, want, call)                                                      \
    do {                                                                                   \
        errno = ERRNO_SENTINEL;                                                            \
        long r_ = (long)(call);                                                            \
        int e_ = errno;                                                                    \
        if ((want) == 0) {                                                                 \
            if (r_ == -1)                                                                  \
                fail("%s: failed with %s (%d), expected success", label, errno_name(e_), e_); \
            else if (e_ != ERRNO_SENTINEL)                                                 \
                fail("%s: succeeded but changed errno to %d", label, e_);                  \
        } else if (r_ != -1 || e_ != (want)) {                                             \
            fail("%s: returned %ld errno %s (%d), expected -1 with %s", label, r_,         \
                 errno_name(e_), e_, errno_name(want));                                    \
        }                                                                                  \
    } while (0)

/* True when `symbol` as the program calls it is defined by libcapsule.so, i.e. the
 * shim interposes it. Probes that would change host state (host name, clock) refuse
 * to run otherwise: the tests run as root, and the real call would change the host. */
PROBE_FN int interposed(const char *symbol) {
    void *addr = dlsym(RTLD_DEFAULT, symbol);
    Dl_info info;
    if (addr == NULL || dladdr(addr, &info) == 0 || info.dli_fname == NULL) return 0;
    return strstr(info.dli_fname, "libcapsule") != NULL;
}

PROBE_FN void require_interposed(const char *symbol) {
    if (!interposed(symbol)) {
        printf("REFUSED: %s is not interposed by libcapsule.so; calling it would change the host\n",
               symbol);
        exit(4);
    }
}

#endif

/* ------------------------------------------------------------------------------------
 * File-system probes (fs_*.c).
 *
 * An fs probe runs either in a capsule (`--capsule`: paths are capsule paths) or
 * natively on a plain copy of the capsule's lower tree (`--native BASE`: every capsule
 * path /x becomes BASE/x), with the same checks: the native run shows that the probe's
 * expectations are what the kernel does on a real, writable directory, the capsule run
 * that the replica does the same. Checks only a capsule can pass (no escape above its
 * `/`, absolute symlinks resolved inside the root, EROFS) run with `--capsule` only.
 * ------------------------------------------------------------------------------------ */
#ifndef CAPSULE_PROBE_FS
#define CAPSULE_PROBE_FS

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/types.h>

/* The prefix of every capsule path ("" in a capsule) and whether we run in one. */
static const char *fs_base __attribute__((unused)) = "";
static int fs_in_capsule __attribute__((unused)) = 1;

/* Host paths no returned path may contain (the root, the upper layer...). */
static const char *fs_hidden[8] __attribute__((unused));
static int fs_nhidden __attribute__((unused));

/* Parses `--capsule` or `--native BASE` at argv[1]; returns the index of the next
 * argument. */
PROBE_FN int fs_parse_mode(int argc, char **argv, const char *usage_text) {
    if (argc >= 2 && strcmp(argv[1], "--capsule") == 0) {
        fs_base = "";
        fs_in_capsule = 1;
        return 2;
    }
    if (argc >= 3 && strcmp(argv[1], "--native") == 0 && argv[2][0] == '/') {
        fs_base = argv[2];
        fs_in_capsule = 0;
        return 3;
    }
    usage(usage_text);
    return 0;
}

/* Probes that change the test tree refuse to run unless they see it (its /etc/hostname
 * reads "capsule-lower"): a shim that does not apply CAPSULE_ROOT would otherwise let
 * them change the host's / (the tests run as root). Exit status 4, like
 * require_interposed. */
PROBE_FN void fs_require_test_root(void);

/* BASE + capsule path, in one of 32 rotating buffers ("/" alone gives BASE itself). */
PROBE_FN const char *P(const char *capsule_path) {
    static char bufs[32][PATH_MAX];
    static int next;
    char *buf = bufs[next++ % 32];
    if (fs_base[0] != '\0' && strcmp(capsule_path, "/") == 0)
        snprintf(buf, PATH_MAX, "%s", fs_base);
    else
        snprintf(buf, PATH_MAX, "%s%s", fs_base, capsule_path);
    return buf;
}

PROBE_FN void fs_require_test_root(void) {
    char path[PATH_MAX], buf[64] = "";
    snprintf(path, sizeof path, "%s/etc/hostname", fs_base);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        if (fgets(buf, sizeof buf, f) == NULL) buf[0] = '\0';
        fclose(f);
    }
    if (strcmp(buf, "capsule-lower\n") != 0) {
        printf("REFUSED: %s does not read \"capsule-lower\": not on the test root, and "
               "this probe would change the host\n",
               path);
        exit(4);
    }
}

/* Any errno's symbolic name. */
PROBE_FN const char *fs_errname(int e) {
    if (e == 0) return "0";
    if (e == ERRNO_SENTINEL) return "(unchanged)";
    const char *name = strerrorname_np(e);
    return name ? name : "E?";
}

/* CHECK_CALL with every errno named: `want` is 0 (success, errno left alone) or the
 * errno the call must fail with (and return -1). Evaluates to nothing. */
#define CHECK_FS(label, want, call)                                                        \
    do {                                                                                   \
        errno = ERRNO_SENTINEL;                                                            \
        long r_ = (long)(call);                                                            \
        int e_ = errno;                                                                    \
        if ((want) == 0) {                                                                 \
            if (r_ == -1)                                                                  \
                fail("%s: failed with %s, expected success", label, fs_errname(e_));       \
            else if (e_ != ERRNO_SENTINEL)                                                 \
                fail("%s: succeeded but changed errno to %s", label, fs_errname(e_));      \
        } else if (r_ != -1 || e_ != (want)) {                                             \
            fail("%s: returned %ld errno %s, expected -1 with %s", label, r_,              \
                 fs_errname(e_), fs_errname(want));                                        \
        }                                                                                  \
    } while (0)

/* Like CHECK_FS for calls returning a pointer (NULL on failure). */
#define CHECK_FS_PTR(label, want, call)                                                    \
    do {                                                                                   \
        errno = ERRNO_SENTINEL;                                                            \
        const void *p_ = (const void *)(call);                                             \
        int e_ = errno;                                                                    \
        if ((want) == 0) {                                                                 \
            if (p_ == NULL)                                                                \
                fail("%s: failed with %s, expected success", label, fs_errname(e_));       \
        } else if (p_ != NULL || e_ != (want)) {                                           \
            fail("%s: returned %p errno %s, expected NULL with %s", label, p_,             \
                 fs_errname(e_), fs_errname(want));                                        \
        }                                                                                  \
    } while (0)

/* Fails when `text` (a path the probe was given) contains a hidden host path. */
PROBE_FN void fs_check_hidden(const char *label, const char *text) {
    if (text == NULL) return;
    for (int i = 0; i < fs_nhidden; i++)
        if (fs_hidden[i][0] != '\0' && strstr(text, fs_hidden[i]) != NULL)
            fail("%s: %s reveals the host path %s", label, text, fs_hidden[i]);
}

/* Fails unless `got` is `want` (and reveals no hidden path). */
PROBE_FN void fs_expect_str(const char *label, const char *got, const char *want) {
    if (got == NULL)
        fail("%s: got nothing (%s), expected %s", label, fs_errname(errno), want);
    else if (strcmp(got, want) != 0)
        fail("%s: got \"%s\", expected \"%s\"", label, got, want);
    fs_check_hidden(label, got);
}

/* Reads everything from fd into buf (NUL-terminated); returns the length or -1. */
PROBE_FN long fs_read_fd(int fd, char *buf, size_t size) {
    size_t len = 0;
    while (len + 1 < size) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0) return -1;
        if (n == 0) break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return (long)len;
}

/* Reads a whole (small) file; returns the length or -1 with errno. */
PROBE_FN long fs_read(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    long n = fs_read_fd(fd, buf, size);
    int e = errno;
    close(fd);
    errno = e;
    return n;
}

/* Opens path with flags (and mode 0644 when creating) and writes text; 0 or -1. */
PROBE_FN int fs_write(const char *path, int flags, const char *text) {
    int fd = open(path, flags | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int e = errno;
    close(fd);
    if (n != (ssize_t)len) {
        errno = n < 0 ? e : EIO;
        return -1;
    }
    return 0;
}

/* Fails unless the file at path reads exactly `want`. */
PROBE_FN void fs_expect_content(const char *label, const char *path, const char *want) {
    static char buf[65536];
    if (fs_read(path, buf, sizeof buf) < 0)
        fail("%s: cannot read %s: %s", label, path, fs_errname(errno));
    else if (strcmp(buf, want) != 0)
        fail("%s: %s holds \"%s\", expected \"%s\"", label, path, buf, want);
}

/* Fails unless path does not exist (stat and lstat both ENOENT). */
PROBE_FN void fs_expect_absent(const char *label, const char *path) {
    struct stat st;
    char what[512];
    snprintf(what, sizeof what, "%s: stat %s", label, path);
    CHECK_FS(what, ENOENT, stat(path, &st));
    snprintf(what, sizeof what, "%s: lstat %s", label, path);
    CHECK_FS(what, ENOENT, lstat(path, &st));
}

/* Fails unless stat(path) succeeds with the file type `type` (S_IFREG, S_IFDIR...) and,
 * unless `mode` is -1, those permission bits. */
PROBE_FN void fs_expect_stat(const char *label, const char *path, mode_t type, int mode) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fail("%s: stat %s: %s", label, path, fs_errname(errno));
        return;
    }
    if ((st.st_mode & S_IFMT) != type)
        fail("%s: %s has type %o, expected %o", label, path, st.st_mode & S_IFMT, type);
    if (mode >= 0 && (int)(st.st_mode & 07777) != mode)
        fail("%s: %s has mode %04o, expected %04o", label, path, st.st_mode & 07777, mode);
}

/* qsort comparison of two `char *`. */
PROBE_FN int fs_cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

#define FS_MAX_NAMES 512

/* Compares a listing `got` (n names, "." and ".." included) with `want`
 * (NULL-terminated, without "." and ".."). */
PROBE_FN void fs_compare_names(const char *label, char **got, int n, const char *const *want) {
    int dot = 0, dotdot = 0;
    int nwant = 0;
    while (want[nwant] != NULL) nwant++;
    for (int i = 0; i < n; i++) {
        if (strcmp(got[i], ".") == 0) { dot++; continue; }
        if (strcmp(got[i], "..") == 0) { dotdot++; continue; }
        int count = 0;
        for (int j = 0; j < n; j++)
            if (strcmp(got[i], got[j]) == 0) count++;
        if (count != 1) fail("%s: %s listed %d times", label, got[i], count);
        if (strncmp(got[i], ".wh.", 4) == 0) fail("%s: a whiteout marker %s is listed", label, got[i]);
        int wanted = 0;
        for (int j = 0; j < nwant; j++)
            if (strcmp(got[i], want[j]) == 0) wanted = 1;
        if (!wanted) fail("%s: unexpected entry %s", label, got[i]);
    }
    if (dot != 1) fail("%s: \".\" listed %d times", label, dot);
    if (dotdot != 1) fail("%s: \"..\" listed %d times", label, dotdot);
    for (int j = 0; j < nwant; j++) {
        int found = 0;
        for (int i = 0; i < n; i++)
            if (strcmp(got[i], want[j]) == 0) found = 1;
        if (!found) fail("%s: missing entry %s", label, want[j]);
    }
}

/* Reads every name of an open directory stream (strdup'ed into names). */
PROBE_FN int fs_read_names(DIR *d, char **names, int max) {
    int n = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (n < max) names[n++] = strdup(e->d_name);
    }
    return n;
}

PROBE_FN void fs_free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
}

/* Lists path with opendir/readdir and compares with want (NULL-terminated). */
PROBE_FN void fs_expect_listing(const char *label, const char *path, const char *const *want) {
    DIR *d = opendir(path);
    if (d == NULL) {
        fail("%s: opendir %s: %s", label, path, fs_errname(errno));
        return;
    }
    char *names[FS_MAX_NAMES];
    int n = fs_read_names(d, names, FS_MAX_NAMES);
    closedir(d);
    fs_compare_names(label, names, n, want);
    fs_free_names(names, n);
}

#endif /* CAPSULE_PROBE_FS */
