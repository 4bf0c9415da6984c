/* A system call made with the instruction itself, so that no preloaded library
 * (which may hook clock_gettime and syscall()) can distort the benchmarks' timer. */
#ifndef CAPSULE_BENCH_RAW_SYSCALL_H
#define CAPSULE_BENCH_RAW_SYSCALL_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>

static long raw_syscall2(long number, long a1, long a2)
{
#if defined(__x86_64__)
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(number), "D"(a1), "S"(a2)
                     : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = number;
    register long x0 __asm__("x0") = a1;
    register long x1 __asm__("x1") = a2;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1) : "memory");
    return x0;
#else
#error "raw_syscall2: only x86_64 and aarch64 are supported"
#endif
}

/* CLOCK_MONOTONIC in nanoseconds, read with raw_syscall2; a refusal ends the program
 * (status 2) with a line naming `program`. */
static __attribute__((unused)) long long raw_monotonic_ns(const char *program)
{
    struct timespec ts = {0, 0};
    if (raw_syscall2(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&ts) != 0) {
        fprintf(stderr, "%s: raw clock_gettime(CLOCK_MONOTONIC) failed\n", program);
        exit(2);
    }
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#endif
