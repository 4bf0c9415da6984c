/* One containment attempt per run, as an attacker in a capsule would try it:
 *
 *   fs_escape ACTION TARGET [DIR]
 *
 * TARGET is a lower-layer file, DIR a lower-layer directory. Each action prints one
 * line per call, "NAME rc=R errno=E" (E the errno name, "-" on success), plus what
 * the program observes through its own descriptors; no descriptor numbers or times
 * are printed, so the harness can compare the output with a native run on a copy
 * of the tree (the kernel's answers) and check the lower layer byte for byte.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

static void report(const char *name, long rc) {
    int e = errno;
    printf("%s rc=%ld errno=%s\n", name, rc < 0 ? -1 : rc, rc < 0 ? strerrorname_np(e) : "-");
    fflush(stdout);
}

/* An open's result: whether it gave a descriptor (numbers differ between runs). */
static void report_fd(const char *name, int fd) {
    report(name, fd < 0 ? -1 : 0);
}

static void show_fd(const char *name, int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) {
        report(name, -1);
        return;
    }
    printf("%s mode=%o uid=%u size=%lld\n", name, st.st_mode & 07777, st.st_uid,
           (long long)st.st_size);
}

static char *with_suffix(const char *path, const char *suffix) {
    static char buf[3][4096];
    static int next;
    char *out = buf[next++ % 3];
    snprintf(out, 4096, "%s%s", path, suffix);
    return out;
}

static int ro(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        report("open", fd);
        exit(1);
    }
    return fd;
}

/* An upper-layer file of the capsule (made in its /tmp), open for writing. */
static int upper_file(void) {
    char name[] = "/tmp/fs-escape-XXXXXX";
    int fd = mkstemp(name);
    if (fd < 0) {
        report("mkstemp", fd);
        exit(1);
    }
    unlink(name);
    return fd;
}

static void flags_twice(int fd) {
    int flags = 0;
    report("getflags", ioctl(fd, FS_IOC_GETFLAGS, &flags));
    flags |= FS_NODUMP_FL;
    report("setflags1", ioctl(fd, FS_IOC_SETFLAGS, &flags));
    flags |= FS_NOATIME_FL;
    report("setflags2", ioctl(fd, FS_IOC_SETFLAGS, &flags));
    int now = 0;
    report("getflags", ioctl(fd, FS_IOC_GETFLAGS, &now));
    printf("flags nodump=%d noatime=%d\n", !!(now & FS_NODUMP_FL), !!(now & FS_NOATIME_FL));
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: fs_escape ACTION TARGET [DIR]\n");
        return 2;
    }
    const char *a = argv[1], *t = argv[2], *dir = argc > 3 ? argv[3] : "/nonexistent";
    char link[64];

    if (!strcmp(a, "fchmod2")) { /* B: the second change must not reach the lower file */
        int fd = ro(t);
        report("fchmod1", fchmod(fd, 0600));
        report("fchmod2", fchmod(fd, 0640));
        show_fd("fd", fd);
    } else if (!strcmp(a, "fchown2")) {
        int fd = ro(t);
        report("fchown1", fchown(fd, 1234, 1234));
        report("fchown2", fchown(fd, 2345, 2345));
        show_fd("fd", fd);
    } else if (!strcmp(a, "futimens2")) {
        int fd = ro(t);
        struct timespec one[2] = {{5, 0}, {5, 0}}, two[2] = {{7, 0}, {7, 0}};
        report("futimens1", futimens(fd, one));
        report("futimens2", futimens(fd, two));
        struct stat st;
        fstat(fd, &st);
        printf("fd mtime=%lld\n", (long long)st.st_mtime);
    } else if (!strcmp(a, "fxattr2")) {
        int fd = ro(t);
        report("fsetxattr1", fsetxattr(fd, "user.first", "1", 1, 0));
        report("fsetxattr2", fsetxattr(fd, "user.second", "2", 1, 0));
        report("fremovexattr", fremovexattr(fd, "user.origin"));
        char list[256];
        long n = flistxattr(fd, list, sizeof list);
        report("flistxattr", n);
    } else if (!strcmp(a, "mixed")) { /* B: every kind of change through one descriptor */
        int fd = ro(t);
        struct timespec ts[2] = {{9, 0}, {9, 0}};
        report("fchmod", fchmod(fd, 0604));
        report("futimens", futimens(fd, ts));
        report("fsetxattr", fsetxattr(fd, "user.mixed", "m", 1, 0));
        report("fchmod", fchmod(fd, 0606));
        show_fd("fd", fd);
        char buf[16] = {0};
        report("pread", pread(fd, buf, sizeof buf - 1, 0));
        printf("content=%s", buf);
    } else if (!strcmp(a, "empty-path")) { /* B: *at calls naming the descriptor itself */
        int fd = ro(t);
        struct timespec ts[2] = {{6, 0}, {6, 0}};
        report("fchownat-empty", fchownat(fd, "", 1234, 1234, AT_EMPTY_PATH));
        report("fchmodat2-empty", syscall(SYS_fchmodat2, fd, "", 0600, AT_EMPTY_PATH));
        report("utimensat-empty", utimensat(fd, "", ts, AT_EMPTY_PATH));
        report("fchmodat2-empty", syscall(SYS_fchmodat2, fd, "", 0640, AT_EMPTY_PATH));
        show_fd("fd", fd);
    } else if (!strcmp(a, "ioctl-flags")) { /* G */
        flags_twice(ro(t));
    } else if (!strcmp(a, "fclose-reuse")) { /* C: a stale "safe" bit after fclose */
        FILE *f = fdopen(upper_file(), "w");
        int n = fileno(f);
        fclose(f);
        int fd = ro(t);
        printf("reused=%d\n", fd == n);
        report("fchmod", fchmod(fd, 0600));
    } else if (!strcmp(a, "closedir-reuse")) {
        DIR *d = opendir("/tmp");
        if (!d) {
            report("opendir", -1);
            return 1;
        }
        int n = dirfd(d);
        closedir(d);
        int fd = ro(t);
        printf("reused=%d\n", fd == n);
        report("fchmod", fchmod(fd, 0600));
    } else if (!strcmp(a, "dup2-over")) {
        int up = upper_file();
        int fd = ro(t);
        report("dup2", dup2(fd, up) < 0 ? -1 : 0);
        report("fchmod", fchmod(up, 0600));
    } else if (!strcmp(a, "close-range-reuse")) {
        int up = upper_file();
        report("close_range", close_range(up, up, 0));
        int fd = ro(t);
        printf("reused=%d\n", fd == up);
        report("fchmod", fchmod(fd, 0600));
    } else if (!strcmp(a, "magic-write")) { /* A, from C */
        int fd = ro(t);
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        int w = open(link, O_WRONLY | O_APPEND);
        report_fd("open-w", w);
        report("write", w < 0 ? -1 : write(w, "C\n", 2));
        snprintf(link, sizeof link, "/proc/thread-self/fd/%d", fd);
        report("truncate", truncate(link, 3));
        snprintf(link, sizeof link, "/dev/fd/%d", fd);
        report("chmod", chmod(link, 0611));
        struct timeval tv[2] = {{3, 0}, {3, 0}};
        report("utimes", utimes(link, tv));
        report("setxattr", setxattr(link, "user.magic", "y", 1, 0));
        report("removexattr", removexattr(link, "user.origin"));
        report("chown", chown(link, 1234, 1234));
        show_fd("fd", fd);
    } else if (!strcmp(a, "magic-dir")) { /* A: create in a lower directory */
        int d = open(dir, O_RDONLY | O_DIRECTORY);
        snprintf(link, sizeof link, "/proc/self/fd/%d/made-through-fd", d);
        int w = open(link, O_WRONLY | O_CREAT | O_EXCL, 0644);
        report_fd("create", w);
        snprintf(link, sizeof link, "/proc/self/fd/%d/inner", d);
        report("unlink-inner", unlink(link));
    } else if (!strcmp(a, "map-files")) { /* A: /proc/self/map_files (needs CAP_SYS_ADMIN) */
        int fd = ro(t);
        void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            report("mmap", -1);
            return 1;
        }
        snprintf(link, sizeof link, "/proc/self/map_files/%lx-%lx", (unsigned long)p,
                 (unsigned long)p + 4096);
        int w = open(link, O_RDWR);
        report_fd("open-rw", w);
        report("write", w < 0 ? -1 : pwrite(w, "M", 1, 0));
#ifdef SYS_chmod
    } else if (!strcmp(a, "syscalls")) { /* L: raw path numbers (x86-64 has them all) */
        struct timeval tv[2] = {{4, 0}, {4, 0}};
        struct stat st;
        report("SYS_stat", syscall(SYS_stat, t, &st));
        printf("stat mode=%o size=%lld\n", st.st_mode & 07777, (long long)st.st_size);
        report("SYS_access-W", syscall(SYS_access, t, W_OK));
        report("SYS_chmod", syscall(SYS_chmod, t, 0600));
        report("SYS_fchmodat2", syscall(SYS_fchmodat2, AT_FDCWD, t, 0604, 0));
        report("SYS_chown", syscall(SYS_chown, t, 1234, 1234));
        report("SYS_truncate", syscall(SYS_truncate, t, 2));
        report("SYS_utimes", syscall(SYS_utimes, t, tv));
        report("SYS_setxattr", syscall(SYS_setxattr, t, "user.raw", "r", 1, 0));
        report("SYS_removexattr", syscall(SYS_removexattr, t, "user.origin"));
        report("SYS_link", syscall(SYS_link, t, with_suffix(t, ".hard")));
        report("SYS_symlink", syscall(SYS_symlink, t, with_suffix(t, ".sym")));
        report("SYS_mkdir", syscall(SYS_mkdir, with_suffix(t, ".d"), 0755));
        report("SYS_rename", syscall(SYS_rename, with_suffix(t, ".hard"), with_suffix(t, ".moved")));
        report("SYS_unlink", syscall(SYS_unlink, with_suffix(t, ".moved")));
        report("SYS_rmdir", syscall(SYS_rmdir, with_suffix(t, ".d")));
        report("SYS_mknod-fifo", syscall(SYS_mknod, with_suffix(t, ".fifo"), S_IFIFO | 0644, 0));
        int fd = ro(t);
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        long w = syscall(SYS_open, link, O_WRONLY | O_APPEND);
        report_fd("SYS_open-magic-w", (int)w);
        report("write", w < 0 ? -1 : write((int)w, "S\n", 2));
        w = syscall(SYS_openat, AT_FDCWD, link, O_WRONLY | O_APPEND);
        report_fd("SYS_openat-magic-w", (int)w);
        report("SYS_fchmod", syscall(SYS_fchmod, fd, 0606));
        int flags = 0;
        report("SYS_ioctl-getflags", syscall(SYS_ioctl, fd, FS_IOC_GETFLAGS, &flags));
        flags |= FS_NODUMP_FL;
        report("SYS_ioctl-setflags", syscall(SYS_ioctl, fd, FS_IOC_SETFLAGS, &flags));
        report("SYS_stat", syscall(SYS_stat, t, &st));
        printf("stat mode=%o size=%lld\n", st.st_mode & 07777, (long long)st.st_size);
#endif
    } else {
        fprintf(stderr, "fs_escape: unknown action %s\n", a);
        return 2;
    }
    return 0;
}
