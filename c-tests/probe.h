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
