/* fsbench.c - what one file-system call costs, natively or in a capsule.
 *
 *   fsbench DIR setup     creates the fixtures in DIR (DIR itself too, if missing;
 *                         its parent must exist): DIR/file (100 bytes) and DIR/d50,
 *                         a directory of 50 empty files
 *   fsbench DIR OP N      runs OP on the fixtures N/10+1 times to warm up (lazy
 *                         binding, the shim's first-call resolution, its path cache),
 *                         then N times under the timer, and prints "OP ns_per_op"
 *   fsbench list          prints the OP names, one a line
 *
 * OPs (one op is one iteration of the loop):
 *   stat                  stat(DIR/file)
 *   open_close            open(DIR/file, O_RDONLY), close
 *   openat_fstat_close    openat(dirfd of DIR, "file", O_RDONLY), fstat, close; the
 *                         directory is opened once, before the loop
 *   readdir50             opendir(DIR/d50), readdir to the end, closedir
 *   access                access(DIR/file, R_OK)
 *   realpath              realpath(DIR/file, buf)
 *   create_write_unlink   open(DIR/cwu.tmp, O_CREAT|O_WRONLY|O_TRUNC), write 100
 *                         bytes, close, unlink
 *
 * Every op checks what it gets (the size of DIR/file, 50 names in DIR/d50, ...): a
 * capsule that answered wrongly, or failed, stops the benchmark with an error rather
 * than being timed as fast.
 *
 * The timer is clock_gettime(CLOCK_MONOTONIC) issued with the system call instruction
 * itself (raw_syscall.h), never through libc, as in callbench.c.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "raw_syscall.h"

#define FILE_SIZE 100
#define DIR_ENTRIES 50

static long long monotonic_ns(void)
{
    return raw_monotonic_ns("fsbench");
}

static volatile long sink;

/* The fixture paths, built once from DIR. */
static const char *dir;
static char file_path[PATH_MAX];
static char d50_path[PATH_MAX];
static char cwu_path[PATH_MAX];
static int dir_fd = -1;
static char payload[FILE_SIZE];

static __attribute__((noreturn)) void fail(const char *call, const char *path)
{
    fprintf(stderr, "fsbench: %s(%s): %s\n", call, path, strerror(errno));
    exit(2);
}

static __attribute__((noreturn)) void wrong(const char *what)
{
    fprintf(stderr, "fsbench: %s\n", what);
    exit(2);
}

static void build_path(char *buf, const char *name)
{
    int n = snprintf(buf, PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= PATH_MAX)
        wrong("DIR is too long");
}

static void bench_stat(long n)
{
    struct stat st;
    for (long i = 0; i < n; i++) {
        if (stat(file_path, &st) != 0)
            fail("stat", file_path);
        if (st.st_size != FILE_SIZE)
            wrong("stat: DIR/file has the wrong size");
        sink += st.st_ino;
    }
}

static void bench_open_close(long n)
{
    for (long i = 0; i < n; i++) {
        int fd = open(file_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            fail("open", file_path);
        sink += fd;
        if (close(fd) != 0)
            fail("close", file_path);
    }
}

static void bench_openat_fstat_close(long n)
{
    struct stat st;
    for (long i = 0; i < n; i++) {
        int fd = openat(dir_fd, "file", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            fail("openat", "file");
        if (fstat(fd, &st) != 0)
            fail("fstat", "file");
        if (st.st_size != FILE_SIZE)
            wrong("fstat: DIR/file has the wrong size");
        sink += st.st_ino;
        if (close(fd) != 0)
            fail("close", "file");
    }
}

static void bench_readdir50(long n)
{
    for (long i = 0; i < n; i++) {
        DIR *d = opendir(d50_path);
        if (d == NULL)
            fail("opendir", d50_path);
        int names = 0;
        struct dirent *e;
        errno = 0;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                names++;
            sink += e->d_name[0];
        }
        if (errno != 0)
            fail("readdir", d50_path);
        if (closedir(d) != 0)
            fail("closedir", d50_path);
        if (names != DIR_ENTRIES) {
            fprintf(stderr, "fsbench: readdir(%s): %d names, not %d\n", d50_path, names,
                    DIR_ENTRIES);
            exit(2);
        }
    }
}

static void bench_access(long n)
{
    for (long i = 0; i < n; i++) {
        if (access(file_path, R_OK) != 0)
            fail("access", file_path);
        sink += i;
    }
}

static void bench_realpath(long n)
{
    char resolved[PATH_MAX];
    for (long i = 0; i < n; i++) {
        if (realpath(file_path, resolved) == NULL)
            fail("realpath", file_path);
        size_t len = strlen(resolved);
        if (len < 5 || strcmp(resolved + len - 5, "/file") != 0)
            wrong("realpath: the result does not end in /file");
        sink += resolved[1];
    }
}

static void bench_create_write_unlink(long n)
{
    for (long i = 0; i < n; i++) {
        int fd = open(cwu_path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            fail("open(O_CREAT)", cwu_path);
        if (write(fd, payload, sizeof payload) != (ssize_t)sizeof payload)
            fail("write", cwu_path);
        if (close(fd) != 0)
            fail("close", cwu_path);
        if (unlink(cwu_path) != 0)
            fail("unlink", cwu_path);
        sink += fd;
    }
}

struct bench {
    const char *name;
    void (*run)(long n);
};

static const struct bench benches[] = {
    {"stat", bench_stat},
    {"open_close", bench_open_close},
    {"openat_fstat_close", bench_openat_fstat_close},
    {"readdir50", bench_readdir50},
    {"access", bench_access},
    {"realpath", bench_realpath},
    {"create_write_unlink", bench_create_write_unlink},
};
#define NBENCHES (sizeof benches / sizeof benches[0])

static void write_file(const char *path, size_t size)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        fail("open(O_CREAT)", path);
    if (size > 0 && write(fd, payload, size) != (ssize_t)size)
        fail("write", path);
    if (close(fd) != 0)
        fail("close", path);
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        fail("mkdir", path);
}

static int setup(void)
{
    make_dir(dir);
    write_file(file_path, FILE_SIZE);
    make_dir(d50_path);
    for (int i = 0; i < DIR_ENTRIES; i++) {
        char path[PATH_MAX];
        int len = snprintf(path, sizeof path, "%s/f%02d", d50_path, i);
        if (len < 0 || len >= (int)sizeof path)
            wrong("DIR is too long");
        write_file(path, 0);
    }
    if (unlink(cwu_path) != 0 && errno != ENOENT)
        fail("unlink", cwu_path);
    return 0;
}

static __attribute__((noreturn)) void usage(void)
{
    fprintf(stderr, "usage: fsbench DIR OP N | fsbench DIR setup | fsbench list\nOPs:");
    for (size_t i = 0; i < NBENCHES; i++)
        fprintf(stderr, " %s", benches[i].name);
    fputc('\n', stderr);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < NBENCHES; i++)
            puts(benches[i].name);
        return 0;
    }
    if (argc != 3 && argc != 4)
        usage();
    dir = argv[1];
    if (*dir == '\0')
        usage();
    memset(payload, 'x', sizeof payload);
    build_path(file_path, "file");
    build_path(d50_path, "d50");
    build_path(cwu_path, "cwu.tmp");
    if (argc == 3) {
        if (strcmp(argv[2], "setup") != 0)
            usage();
        return setup();
    }

    char *end;
    long n = strtol(argv[3], &end, 10);
    if (*argv[3] == '\0' || *end != '\0' || n <= 0) {
        fprintf(stderr, "fsbench: N must be a positive integer, not '%s'\n", argv[3]);
        return 1;
    }
    for (size_t i = 0; i < NBENCHES; i++) {
        if (strcmp(benches[i].name, argv[2]) != 0)
            continue;
        dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
            fail("open(O_DIRECTORY)", dir);
        benches[i].run(n / 10 + 1);
        long long start = monotonic_ns();
        benches[i].run(n);
        long long elapsed = monotonic_ns() - start;
        printf("%s %.1f\n", benches[i].name, (double)elapsed / (double)n);
        return 0;
    }
    fprintf(stderr, "fsbench: unknown OP '%s'\n", argv[2]);
    usage();
}
