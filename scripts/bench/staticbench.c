/* staticbench.c - what a system call of a statically linked program costs.
 *
 *   staticbench OP N PATH     OP one of stat, open, getuid, uname
 *   staticbench probe         prints "nodename=NAME uid=UID" (what the program sees)
 *
 * static-run links it with `cc -static`, so that no preloaded library can reach it: in
 * a capsule, every call it makes goes to the kernel and is caught (or not) there. Each
 * OP makes N calls of libc's wrapper (stat(PATH); open(PATH, O_RDONLY) then close;
 * getuid(); uname()) after N/10 untimed ones, and prints "OP NS" with NS the
 * nanoseconds per call (open: per open+close pair). Any failing call stops the
 * benchmark with an error: a failing call would be timed as fast.
 *
 * The timer is clock_gettime(CLOCK_MONOTONIC) issued with the system call instruction
 * itself, read once before and once after the N calls.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "raw_syscall.h"

static long long monotonic_ns(void)
{
    return raw_monotonic_ns("staticbench");
}

static void die(const char *op, const char *path)
{
    fprintf(stderr, "staticbench: %s %s: ", op, path);
    perror(NULL);
    exit(3);
}

/* One call of OP; the result is kept so that the compiler keeps the call. */
static long once(const char *op, const char *path)
{
    if (strcmp(op, "stat") == 0) {
        struct stat st;
        if (stat(path, &st) != 0)
            die(op, path);
        return (long)st.st_size;
    }
    if (strcmp(op, "open") == 0) {
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            die(op, path);
        close(fd);
        return fd;
    }
    if (strcmp(op, "getuid") == 0)
        return (long)getuid();
    if (strcmp(op, "uname") == 0) {
        struct utsname u;
        if (uname(&u) != 0)
            die(op, "");
        return u.nodename[0];
    }
    fprintf(stderr, "staticbench: unknown OP '%s' (stat, open, getuid, uname)\n", op);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "probe") == 0) {
        struct utsname u;
        if (uname(&u) != 0)
            die("uname", "");
        printf("nodename=%s uid=%ld\n", u.nodename, (long)getuid());
        return 0;
    }
    if (argc != 4) {
        fputs("usage: staticbench OP N PATH | staticbench probe\n", stderr);
        return 1;
    }
    const char *op = argv[1], *path = argv[3];
    char *end;
    long n = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || n <= 0) {
        fprintf(stderr, "staticbench: N must be a positive integer, not '%s'\n", argv[2]);
        return 1;
    }
    volatile long sink = 0;
    for (long i = 0; i < n / 10; i++)
        sink += once(op, path);
    long long start = monotonic_ns();
    for (long i = 0; i < n; i++)
        sink += once(op, path);
    long long elapsed = monotonic_ns() - start;
    (void)sink;
    printf("%s %.1f\n", op, (double)elapsed / (double)n);
    return 0;
}
