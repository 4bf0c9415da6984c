/* What a statically linked program sees when it makes its system calls with the
 * `syscall` instruction itself (no libc wrapper, nothing a preloaded library can
 * interpose), plus libc's clock_gettime/gettimeofday/time, which a static glibc answers
 * from the vDSO without any system call.
 *
 * usage: raw_syscalls BASE
 *   BASE is prefixed to every path: "" in a capsule on its own root (tests/backstop.rs
 *   builds the probe with `cc -static` and installs it in the root as /bin/raw_syscalls),
 *   a native copy of that root otherwise. The probe expects BASE/etc/note and
 *   BASE/etc/old (files), BASE/data/a and BASE/data/b (files), and changes the tree:
 *   creates BASE/data/created ("raw bytes\n", mode 0640) and BASE/rawdir (0750),
 *   removes BASE/etc/old, renames BASE/data/b to BASE/rawdir/b.
 *
 * Prints KEY=VALUE lines (a failed call prints its value as -ERRNO), the harness
 * compares them with the capsule's settings or the host's, then OK when every call
 * succeeded (FAILURES: N otherwise; exit 1).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>

#if !defined(__x86_64__)
#error "raw_syscalls: the inline system calls are written for x86-64"
#endif

static long raw4(long n, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

static int failures;

/* Prints KEY=VALUE for a call's result; a negative one counts as a failure unless
 * `want_error` says it is the expected answer. */
static long report(const char *key, long ret, long want_error) {
    printf("%s=%ld\n", key, ret);
    if (ret < 0 && ret != want_error) {
        failures++;
    }
    return ret;
}

static char base[1024];

static const char *at(const char *rel) {
    static char buf[4][2048];
    static int n;
    char *out = buf[n++ % 4];
    snprintf(out, 2048, "%s%s", base, rel);
    return out;
}

static void print_date(const char *key, time_t secs) {
    struct tm tm;
    char text[32];
    gmtime_r(&secs, &tm);
    strftime(text, sizeof text, "%Y-%m-%d", &tm);
    printf("%s=%s\n", key, text);
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in directory `path`, read with raw getdents64, sorted, comma-separated. */
static void list(const char *key, const char *path) {
    long fd = raw4(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0) {
        report(key, fd, 0);
        return;
    }
    static char buf[8192];
    static char names[64][256];
    char *sorted[64];
    int count = 0;
    for (;;) {
        long got = raw4(SYS_getdents64, fd, (long)buf, sizeof buf, 0);
        if (got < 0) {
            report(key, got, 0);
            raw4(SYS_close, fd, 0, 0, 0);
            return;
        }
        if (got == 0) {
            break;
        }
        for (long off = 0; off < got;) {
            /* struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name. */
            unsigned short reclen;
            memcpy(&reclen, buf + off + 16, sizeof reclen);
            const char *name = buf + off + 19;
            if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && count < 64) {
                snprintf(names[count], sizeof names[count], "%s", name);
                sorted[count] = names[count];
                count++;
            }
            off += reclen;
        }
    }
    raw4(SYS_close, fd, 0, 0, 0);
    qsort(sorted, count, sizeof sorted[0], by_name);
    printf("%s=", key);
    for (int i = 0; i < count; i++) {
        printf("%s%s", i ? "," : "", sorted[i]);
    }
    printf("\n");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: raw_syscalls BASE\n");
        return 2;
    }
    snprintf(base, sizeof base, "%s", argv[1]);
    setvbuf(stdout, NULL, _IONBF, 0);

    /* Identity and host name. */
    report("uid", raw4(SYS_getuid, 0, 0, 0, 0), 0);
    report("euid", raw4(SYS_geteuid, 0, 0, 0, 0), 0);
    report("gid", raw4(SYS_getgid, 0, 0, 0, 0), 0);
    struct utsname u;
    if (report("uname", raw4(SYS_uname, (long)&u, 0, 0, 0), 0) == 0) {
        printf("nodename=%s\nsysname=%s\nrelease=%s\n", u.nodename, u.sysname, u.release);
    }

    /* The clock: the system call, and libc's vDSO paths. */
    struct timespec ts;
    if (report("clock_gettime", raw4(SYS_clock_gettime, CLOCK_REALTIME, (long)&ts, 0, 0),
               0) == 0) {
        print_date("raw_date", ts.tv_sec);
    }
    struct timespec vts;
    if (report("vdso_clock_gettime", clock_gettime(CLOCK_REALTIME, &vts), 0) == 0) {
        print_date("vdso_date", vts.tv_sec);
    }
    struct timeval tv;
    if (report("vdso_gettimeofday", gettimeofday(&tv, NULL), 0) == 0) {
        print_date("gettimeofday_date", tv.tv_sec);
    }
    print_date("time_date", time(NULL));

    /* Reading a file of the root. */
    struct stat st;
    if (report("note_stat",
               raw4(SYS_newfstatat, AT_FDCWD, (long)at("/etc/note"), (long)&st, 0), 0) == 0) {
        printf("note_size=%ld\n", (long)st.st_size);
    }
    long fd = report("note_open", raw4(SYS_openat, AT_FDCWD, (long)at("/etc/note"), O_RDONLY, 0),
                     0);
    if (fd >= 0) {
        char text[256] = {0};
        long got = report("note_read", raw4(SYS_read, fd, (long)text, sizeof text - 1, 0), 0);
        if (got > 0) {
            text[strcspn(text, "\n")] = 0;
            printf("note=%s\n", text);
        }
        raw4(SYS_close, fd, 0, 0, 0);
    }

    /* Changing the tree. */
    fd = report("create",
                raw4(SYS_openat, AT_FDCWD, (long)at("/data/created"),
                     O_CREAT | O_WRONLY | O_TRUNC, 0640),
                0);
    if (fd >= 0) {
        report("write", raw4(SYS_write, fd, (long)"raw bytes\n", 10, 0), 0);
        raw4(SYS_close, fd, 0, 0, 0);
    }
    if (report("created_stat",
               raw4(SYS_newfstatat, AT_FDCWD, (long)at("/data/created"), (long)&st, 0), 0) == 0) {
        printf("created_size=%ld\ncreated_mode=%o\n", (long)st.st_size, st.st_mode & 07777);
    }
    report("mkdir", raw4(SYS_mkdirat, AT_FDCWD, (long)at("/rawdir"), 0750, 0), 0);
    report("unlink", raw4(SYS_unlinkat, AT_FDCWD, (long)at("/etc/old"), 0, 0), 0);
    report("old_stat", raw4(SYS_newfstatat, AT_FDCWD, (long)at("/etc/old"), (long)&st, 0), -2);
    report("rename",
           raw4(SYS_renameat, AT_FDCWD, (long)at("/data/b"), AT_FDCWD, (long)at("/rawdir/b")), 0);
    list("data", at("/data"));
    list("rawdir", at("/rawdir"));

    if (failures) {
        printf("FAILURES: %d\n", failures);
        return 1;
    }
    printf("OK\n");
    return 0;
}
