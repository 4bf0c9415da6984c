/* callbench.c - what one call costs, natively or with libcapsule.so preloaded.
 *
 *   callbench OP N      runs OP N/10+1 times to warm up (lazy binding, the shim's
 *                       first-call resolution, caches), then N times under the timer,
 *                       and prints "OP ns_per_call"
 *   callbench probe     prints what the process sees (host name, uid, clock skew), so
 *                       that a caller can check the capsule is really in effect
 *   callbench list      prints the OP names, one a line
 *
 * OPs, by what libcapsule.so does with them:
 *   gethostname getuid clock_gettime uname gettimeofday time
 *                              hooked, and translated (clock_gettime reads
 *                              CLOCK_REALTIME, which the capsule's offset moves)
 *   clock_gettime_monotonic    hooked, passes through (monotonic clocks stay real)
 *   syscall_getuid             libc's syscall(SYS_getuid), routed to the replica
 *   getpid                     not hooked: the cost of a plain call, for reference
 *
 * The timer is clock_gettime(CLOCK_MONOTONIC) issued with the system call instruction
 * itself (inline assembly), never through libc: neither the vDSO nor a preloaded
 * library that hooks clock_gettime() or syscall() can change what it measures.
 * Every result goes into a volatile sink so the compiler cannot drop a call.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "raw_syscall.h"

static struct timespec raw_clock(clockid_t clock)
{
    struct timespec ts = {0, 0};
    if (raw_syscall2(SYS_clock_gettime, clock, (long)&ts) != 0) {
        fprintf(stderr, "callbench: raw clock_gettime(%d) failed\n", (int)clock);
        exit(2);
    }
    return ts;
}

static long long monotonic_ns(void)
{
    struct timespec ts = raw_clock(CLOCK_MONOTONIC);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static volatile long sink;

static __attribute__((noreturn)) void fail(const char *call)
{
    perror(call);
    exit(2);
}

static void bench_gethostname(long n)
{
    char name[256];
    for (long i = 0; i < n; i++) {
        if (gethostname(name, sizeof name) != 0)
            fail("gethostname");
        sink += name[0];
    }
}

static void bench_getuid(long n)
{
    for (long i = 0; i < n; i++)
        sink += getuid();
}

static void bench_clock_gettime(long n)
{
    struct timespec ts;
    for (long i = 0; i < n; i++) {
        if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
            fail("clock_gettime");
        sink += ts.tv_nsec;
    }
}

static void bench_uname(long n)
{
    struct utsname u;
    for (long i = 0; i < n; i++) {
        if (uname(&u) != 0)
            fail("uname");
        sink += u.nodename[0];
    }
}

static void bench_gettimeofday(long n)
{
    struct timeval tv;
    for (long i = 0; i < n; i++) {
        if (gettimeofday(&tv, NULL) != 0)
            fail("gettimeofday");
        sink += tv.tv_usec;
    }
}

static void bench_time(long n)
{
    for (long i = 0; i < n; i++)
        sink += time(NULL);
}

static void bench_clock_gettime_monotonic(long n)
{
    struct timespec ts;
    for (long i = 0; i < n; i++) {
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
            fail("clock_gettime(CLOCK_MONOTONIC)");
        sink += ts.tv_nsec;
    }
}

static void bench_getpid(long n)
{
    for (long i = 0; i < n; i++)
        sink += getpid();
}

static void bench_syscall_getuid(long n)
{
    for (long i = 0; i < n; i++)
        sink += syscall(SYS_getuid);
}

struct bench {
    const char *name;
    void (*run)(long n);
};

static const struct bench benches[] = {
    {"gethostname", bench_gethostname},
    {"getuid", bench_getuid},
    {"clock_gettime", bench_clock_gettime},
    {"uname", bench_uname},
    {"gettimeofday", bench_gettimeofday},
    {"time", bench_time},
    {"clock_gettime_monotonic", bench_clock_gettime_monotonic},
    {"getpid", bench_getpid},
    {"syscall_getuid", bench_syscall_getuid},
};
#define NBENCHES (sizeof benches / sizeof benches[0])

/* One line of key=value pairs: what the libc calls report, against the kernel's own
 * wall clock read with the raw system call. */
static int probe(void)
{
    char host[256] = "";
    struct utsname u;
    struct timespec libc_now;
    if (gethostname(host, sizeof host) != 0)
        fail("gethostname");
    if (uname(&u) != 0)
        fail("uname");
    if (clock_gettime(CLOCK_REALTIME, &libc_now) != 0)
        fail("clock_gettime");
    struct timespec kernel_now = raw_clock(CLOCK_REALTIME);
    printf("hostname=%s nodename=%s uid=%ld syscall_uid=%ld skew_s=%lld\n", host,
           u.nodename, (long)getuid(), syscall(SYS_getuid),
           (long long)libc_now.tv_sec - (long long)kernel_now.tv_sec);
    return 0;
}

static __attribute__((noreturn)) void usage(void)
{
    fprintf(stderr, "usage: callbench OP N | callbench probe | callbench list\nOPs:");
    for (size_t i = 0; i < NBENCHES; i++)
        fprintf(stderr, " %s", benches[i].name);
    fputc('\n', stderr);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "probe") == 0)
        return probe();
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < NBENCHES; i++)
            puts(benches[i].name);
        return 0;
    }
    if (argc != 3)
        usage();
    char *end;
    long n = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || n <= 0) {
        fprintf(stderr, "callbench: N must be a positive integer, not '%s'\n", argv[2]);
        return 1;
    }
    for (size_t i = 0; i < NBENCHES; i++) {
        if (strcmp(benches[i].name, argv[1]) != 0)
            continue;
        benches[i].run(n / 10 + 1);
        long long start = monotonic_ns();
        benches[i].run(n);
        long long elapsed = monotonic_ns() - start;
        printf("%s %.1f\n", benches[i].name, (double)elapsed / (double)n);
        return 0;
    }
    fprintf(stderr, "callbench: unknown OP '%s'\n", argv[1]);
    usage();
}
