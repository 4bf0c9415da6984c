/* spawnbench.c - what starting a process costs.
 *
 *   spawnbench N PROG [ARGS...]
 *
 * Starts PROG (a path: no PATH search) N times, one after the other, with posix_spawn
 * and this process's own environment, and waits for each; prints the median and the
 * 90th percentile of the start-to-reaped times, in microseconds: "median_us p90_us".
 * N/10 untimed runs come first, to warm the page cache and the dynamic loader's
 * caches. Any run that does not exit with status 0 stops the benchmark with an error:
 * a failing program would be timed as fast.
 *
 * The timer is clock_gettime(CLOCK_MONOTONIC) issued with the system call instruction
 * itself, never through libc. run links this program statically, so an LD_PRELOAD in
 * its environment reaches only the children it starts, never spawnbench itself.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#include "raw_syscall.h"

static long long monotonic_ns(void)
{
    return raw_monotonic_ns("spawnbench");
}

/* Runs argv[0] once and returns how long it took, in nanoseconds. */
static long long run_once(char **argv, const char *phase, long run)
{
    pid_t pid;
    int status;
    long long start = monotonic_ns();
    int rc = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "spawnbench: posix_spawn %s: %s\n", argv[0], strerror(rc));
        exit(2);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("spawnbench: waitpid");
            exit(2);
        }
    }
    long long elapsed = monotonic_ns() - start;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return elapsed;
    if (WIFEXITED(status))
        fprintf(stderr, "spawnbench: %s %ld: %s exited with status %d\n", phase, run, argv[0],
                WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        fprintf(stderr, "spawnbench: %s %ld: %s was killed by signal %d (%s)\n", phase,
                run, argv[0], WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        fprintf(stderr, "spawnbench: %s %ld: %s ended with wait status %#x\n", phase,
                run, argv[0], (unsigned)status);
    exit(3);
}

static int by_value(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fputs("usage: spawnbench N PROG [ARGS...]\n", stderr);
        return 1;
    }
    char *end;
    long n = strtol(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || n <= 0) {
        fprintf(stderr, "spawnbench: N must be a positive integer, not '%s'\n", argv[1]);
        return 1;
    }
    char **child_argv = argv + 2;

    for (long i = 0; i < n / 10; i++)
        run_once(child_argv, "warm-up run", i + 1);

    long long *times = malloc((size_t)n * sizeof *times);
    if (times == NULL) {
        perror("spawnbench: malloc");
        return 2;
    }
    for (long i = 0; i < n; i++)
        times[i] = run_once(child_argv, "run", i + 1);
    qsort(times, (size_t)n, sizeof *times, by_value);

    double median = n % 2 ? (double)times[n / 2]
                          : ((double)times[n / 2 - 1] + (double)times[n / 2]) / 2.0;
    /* Nearest rank: the smallest time that at least 90% of the runs did not exceed. */
    long p90_rank = (n * 9 + 9) / 10;
    double p90 = (double)times[p90_rank - 1];
    printf("%.1f %.1f\n", median / 1000.0, p90 / 1000.0);
    free(times);
    return 0;
}
