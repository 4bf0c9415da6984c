/* File-system calls a program can only make through syscall() (getdents64, openat2)
 * and glibc's tmpfile(), which opens its file inside glibc.
 *
 * usage: fs_rawcalls BASE
 *   BASE is the top of the test tree (tests/fs_support.rs): "/" in a capsule on the
 *   test root, a native copy of the tree otherwise. The probe changes BASE/list
 *   (creates new1, removes b) and then expects, natively and in a capsule alike:
 *   - getdents64 lists . .. a c dir1 dir2 link new1, each once, with their types,
 *     in pieces through a small buffer, 0 at the end; lseek(fd, 0, SEEK_SET) lists
 *     again; lseek to a d_off resumes after that entry; a buffer too small for one
 *     record is EINVAL;
 *   - openat2 (skipped when the kernel has none) honours RESOLVE_BENEATH,
 *     RESOLVE_IN_ROOT, RESOLVE_NO_SYMLINKS, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_XDEV
 *     and rejects bad arguments as the kernel does; O_CREAT creates BASE/tmp/o2.txt;
 *   - tmpfile() gives a working, already unlinked file; its /proc/self/fd link
 *     (read with a raw readlink, not through any preloaded library) is printed as
 *     "tmpfile_host=..." for the harness to check where it lives.
 * Prints OK at the end when every check held.
 */
#include "probe.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

struct how {
    unsigned long long flags, mode, resolve;
};
#define R_NO_XDEV 0x01
#define R_NO_MAGICLINKS 0x02
#define R_NO_SYMLINKS 0x04
#define R_BENEATH 0x08
#define R_IN_ROOT 0x10

static char base[1024];

/* readlink as the kernel answers it, past any preloaded library. */
static long raw_readlink(const char *path, char *buf, size_t size) {
#if defined(__x86_64__)
    return raw_syscall3(SYS_readlink, (long)path, (long)buf, (long)size);
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = SYS_readlinkat;
    register long x0 __asm__("x0") = AT_FDCWD;
    register long x1 __asm__("x1") = (long)path;
    register long x2 __asm__("x2") = (long)buf;
    register long x3 __asm__("x3") = (long)size;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
#endif
}

static const char *at(const char *rel) {
    static char buf[4][PATH_MAX];
    static int n;
    char *out = buf[n++ % 4];
    snprintf(out, PATH_MAX, "%s%s%s", base, strcmp(base, "/") == 0 ? "" : "/", rel);
    return out;
}

/* Lists a directory descriptor with getdents64 in `chunk`-byte pieces into names[]
 * ("name:type"); returns the count, or -1 with errno. */
static int list(int fd, size_t chunk, char names[][64], int max) {
    char buf[4096];
    int n = 0;
    for (;;) {
        long got = syscall(SYS_getdents64, fd, buf, chunk);
        if (got < 0) return -1;
        if (got == 0) return n;
        for (long off = 0; off < got;) {
            unsigned short reclen = *(unsigned short *)(buf + off + 16);
            unsigned char type = *(unsigned char *)(buf + off + 18);
            const char *name = buf + off + 19;
            if (n < max) snprintf(names[n], 64, "%s:%d", name, type);
            n++;
            off += reclen;
        }
    }
}

static void check_listing(const char *what, char names[][64], int n) {
    static const char *const want[] = {".:4", "..:4", "a:8", "c:8", "dir1:4",
                                       "dir2:4", "link:10", "new1:8"};
    const int nwant = (int)(sizeof want / sizeof want[0]);
    if (n != nwant) fail("%s: %d entries, want %d", what, n, nwant);
    for (int i = 0; i < nwant; i++) {
        int seen = 0;
        for (int j = 0; j < n && j < 64; j++) seen += strcmp(names[j], want[i]) == 0;
        if (seen != 1) fail("%s: %s listed %d times", what, want[i], seen);
    }
    for (int j = 0; j < n && j < 64; j++)
        if (strncmp(names[j], ".wh.", 4) == 0) fail("%s: whiteout %s listed", what, names[j]);
}

static void getdents(void) {
    int made = open(at("list/new1"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (made < 0 || unlink(at("list/b")) != 0) {
        fail("cannot change list/: %s", strerror(errno));
        return;
    }
    close(made);
    int fd = open(at("list"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        fail("open list: %s", strerror(errno));
        return;
    }
    char names[64][64];
    int n = list(fd, 64, names, 64);
    if (n < 0) fail("getdents64: %s", strerror(errno));
    check_listing("getdents64 in 64-byte pieces", names, n);

    if (syscall(SYS_getdents64, fd, names, 64) != 0) fail("getdents64 after the end is not 0");
    if (lseek(fd, 0, SEEK_SET) != 0) fail("lseek 0: %s", strerror(errno));
    n = list(fd, 4096, names, 64);
    check_listing("getdents64 after lseek(0)", names, n);

    /* Resume at the d_off of the third entry: the rest follows, nothing twice. */
    char buf[4096];
    lseek(fd, 0, SEEK_SET);
    long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
    long off = 0;
    long long third_off = 0;
    int count = 0;
    char after[64][64];
    int nafter = 0;
    while (off < got) {
        unsigned short reclen = *(unsigned short *)(buf + off + 16);
        count++;
        if (count == 3) third_off = *(long long *)(buf + off + 8);
        if (count > 3 && nafter < 64) snprintf(after[nafter++], 64, "%s", buf + off + 19);
        off += reclen;
    }
    if (lseek(fd, third_off, SEEK_SET) != third_off) fail("lseek to d_off: %s", strerror(errno));
    got = syscall(SYS_getdents64, fd, buf, sizeof buf);
    int resumed = 0;
    for (off = 0; off < got; resumed++) {
        if (resumed >= nafter || strcmp(buf + off + 19, after[resumed]) != 0)
            fail("after lseek to d_off, entry %d is %s", resumed, buf + off + 19);
        off += *(unsigned short *)(buf + off + 16);
    }
    if (resumed != nafter) fail("after lseek to d_off: %d entries, want %d", resumed, nafter);

    lseek(fd, 0, SEEK_SET);
    errno = 0;
    if (syscall(SYS_getdents64, fd, buf, 8) != -1 || errno != EINVAL)
        fail("getdents64 with 8 bytes: errno %s, want EINVAL", errno_name(errno));
    close(fd);
}

static long openat2(int dirfd, const char *path, unsigned long long flags,
                    unsigned long long mode, unsigned long long resolve) {
    struct how how = {flags, mode, resolve};
    return syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* openat2 must fail with `want`, or succeed and read `content` when want is 0. */
static void o2(int dirfd, const char *path, unsigned long long resolve, int want,
               const char *content) {
    errno = 0;
    long fd = openat2(dirfd, path, O_RDONLY | O_CLOEXEC, 0, resolve);
    int e = fd < 0 ? errno : 0;
    if (e != want) {
        fail("openat2(%s, resolve %#llx): %s (%s), want %s", path, resolve,
             fd < 0 ? "failed" : "opened", e ? strerror(e) : "ok", want ? strerror(want) : "ok");
    } else if (fd >= 0 && content != NULL) {
        char buf[256] = {0};
        ssize_t n = read((int)fd, buf, sizeof buf - 1);
        if (n < 0 || strcmp(buf, content) != 0)
            fail("openat2(%s, resolve %#llx) read %s", path, resolve, buf);
    }
    if (fd >= 0) close((int)fd);
}

static void openat2_checks(void) {
    int basefd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    errno = 0;
    long probe = openat2(basefd, "etc/hostname", O_RDONLY | O_CLOEXEC, 0, 0);
    if (probe < 0 && errno == ENOSYS) {
        printf("openat2: not in this kernel, skipped\n");
        close(basefd);
        return;
    }
    if (probe < 0) fail("openat2 etc/hostname: %s", strerror(errno));
    else close((int)probe);
    const char *lower = "capsule-lower\n";

    o2(basefd, "etc/hostname", 0, 0, lower);
    o2(basefd, "etc/hostname", R_BENEATH, 0, lower);
    o2(basefd, "escape/up", R_BENEATH, EXDEV, NULL);
    o2(basefd, "etc/abs-hostname", R_BENEATH, EXDEV, NULL);
    o2(basefd, "/etc/hostname", R_BENEATH, EXDEV, NULL);
    o2(basefd, "paths/../etc/hostname", R_BENEATH, 0, lower);
    o2(basefd, "../etc/hostname", R_BENEATH, EXDEV, NULL);
    o2(basefd, "etc/abs-hostname", R_IN_ROOT, 0, lower);
    o2(basefd, "escape/up", R_IN_ROOT, 0, lower);
    o2(basefd, "/etc/hostname", R_IN_ROOT, 0, lower);
    o2(basefd, "../../etc/hostname", R_IN_ROOT, 0, lower);
    o2(basefd, "etc/link", R_NO_SYMLINKS, ELOOP, NULL);
    o2(basefd, "etc/hostname", R_NO_SYMLINKS, 0, lower);
    o2(basefd, "etc/link", R_IN_ROOT, 0, "lower data\n");

    /* A link itself, with O_PATH|O_NOFOLLOW, is allowed under RESOLVE_NO_SYMLINKS. */
    long fd = openat2(basefd, "etc/link", O_PATH | O_NOFOLLOW | O_CLOEXEC, 0, R_NO_SYMLINKS);
    if (fd < 0) fail("openat2 O_PATH|O_NOFOLLOW of a link, RESOLVE_NO_SYMLINKS: %s", strerror(errno));
    else close((int)fd);

    char magic[64];
    snprintf(magic, sizeof magic, "/proc/self/fd/%d/etc/hostname", basefd);
    o2(AT_FDCWD, magic, 0, 0, lower);
    o2(AT_FDCWD, magic, R_NO_MAGICLINKS, ELOOP, NULL);

    int rootfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    o2(rootfd, "proc/self/status", R_NO_XDEV, EXDEV, NULL);
    close(rootfd);

    /* Bad arguments. */
    struct how how = {O_RDONLY, 0, 0x1000};
    errno = 0;
    if (syscall(SYS_openat2, basefd, "etc/hostname", &how, sizeof how) != -1 || errno != EINVAL)
        fail("openat2 with an unknown resolve flag: %s, want EINVAL", errno_name(errno));
    how.resolve = 0;
    how.mode = 0644;
    errno = 0;
    if (syscall(SYS_openat2, basefd, "etc/hostname", &how, sizeof how) != -1 || errno != EINVAL)
        fail("openat2 with a mode and no O_CREAT: %s, want EINVAL", errno_name(errno));
    how.mode = 0;
    errno = 0;
    if (syscall(SYS_openat2, basefd, "etc/hostname", &how, 8) != -1 || errno != EINVAL)
        fail("openat2 with size 8: %s, want EINVAL", errno_name(errno));
    how.resolve = R_BENEATH | R_IN_ROOT;
    errno = 0;
    if (syscall(SYS_openat2, basefd, "etc/hostname", &how, sizeof how) != -1 || errno != EINVAL)
        fail("openat2 with BENEATH|IN_ROOT: %s, want EINVAL", errno_name(errno));

    /* Creation, beneath the base. */
    fd = openat2(basefd, "tmp/o2.txt", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600, R_BENEATH);
    if (fd < 0) {
        fail("openat2 O_CREAT tmp/o2.txt: %s", strerror(errno));
    } else {
        if (write((int)fd, "o2\n", 3) != 3) fail("write o2.txt");
        close((int)fd);
        struct stat st;
        if (stat(at("tmp/o2.txt"), &st) != 0 || (st.st_mode & 0777) != 0600 || st.st_size != 3)
            fail("tmp/o2.txt after openat2 O_CREAT: mode %o size %ld", st.st_mode & 0777,
                 (long)st.st_size);
    }
    close(basefd);
}

static void tmpfile_checks(void) {
    FILE *f = tmpfile();
    if (f == NULL) {
        fail("tmpfile: %s", strerror(errno));
        return;
    }
    if (fputs("temporary\n", f) < 0 || fflush(f) != 0) fail("tmpfile write");
    rewind(f);
    char buf[64] = {0};
    if (fgets(buf, sizeof buf, f) == NULL || strcmp(buf, "temporary\n") != 0)
        fail("tmpfile read back %s", buf);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_nlink != 0)
        fail("tmpfile: %lu links, want 0 (unlinked at once)", (unsigned long)st.st_nlink);
    char link[64], target[PATH_MAX] = {0};
    snprintf(link, sizeof link, "/proc/self/fd/%d", fileno(f));
    long n = raw_readlink(link, target, sizeof target - 1);
    if (n > 0) target[n] = 0;
    printf("tmpfile_host=%s\n", target);
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 2) usage("fs_rawcalls BASE");
    snprintf(base, sizeof base, "%s", argv[1]);
    /* This probe writes: only on the test tree (probe.h). */
    fs_base = strcmp(argv[1], "/") == 0 ? "" : argv[1];
    fs_require_test_root();
    getdents();
    openat2_checks();
    tmpfile_checks();
    return probe_finish();
}
