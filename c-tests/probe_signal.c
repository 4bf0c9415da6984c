/* probe_signal: hooked calls from a signal handler that interrupts hooked calls.
 *
 *   probe_signal HOST UID OFFSET
 * A 200 µs interval timer's SIGALRM handler calls gethostname, getuid, geteuid,
 * clock_gettime and time while the main thread calls the same functions in a loop
 * for half a second; every read is checked against HOST, UID and the kernel's clock +
 * OFFSET seconds (± 2 s). A deadlock is caught by the harness's timeout.
 */
#include "probe.h"

#include <signal.h>
#include <sys/time.h>

static const char *want_host;
static long want_uid;
static double want_offset;
static volatile sig_atomic_t handler_runs, handler_bad;
/* Which reads went wrong in the handler: hostname, uid, clock_gettime, time. */
static volatile sig_atomic_t bad_host, bad_uid, bad_clock, bad_time;

/* Async-signal-safe: no stdio, no allocation. Returns 1 when every read held. */
static int read_ok(int in_handler) {
    int ok = 1;
    char host[256];
    if (gethostname(host, sizeof host) != 0 || strcmp(host, want_host) != 0) {
        ok = 0;
        if (in_handler) bad_host++;
    }
    if ((long)getuid() != want_uid || (long)geteuid() != want_uid) {
        ok = 0;
        if (in_handler) bad_uid++;
    }
    struct timespec ts;
    double off = clock_gettime(CLOCK_REALTIME, &ts) == 0 ? ts_seconds(ts) - raw_seconds(CLOCK_REALTIME) : 1e18;
    if (off < want_offset - 2 || off > want_offset + 2) {
        ok = 0;
        if (in_handler) bad_clock++;
    }
    double t = (double)time(NULL) - raw_seconds(CLOCK_REALTIME);
    if (t < want_offset - 3 || t > want_offset + 3) {
        ok = 0;
        if (in_handler) bad_time++;
    }
    return ok;
}

static void on_alarm(int sig) {
    (void)sig;
    int saved = errno;
    handler_runs++;
    if (!read_ok(1)) handler_bad++;
    errno = saved;
}

int main(int argc, char **argv) {
    if (argc != 4) usage("probe_signal HOST UID OFFSET");
    want_host = argv[1];
    want_uid = atol(argv[2]);
    want_offset = atof(argv[3]);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval timer = {{0, 200}, {0, 200}};
    setitimer(ITIMER_REAL, &timer, NULL);

    long reads = 0, bad = 0;
    double end = raw_seconds(CLOCK_MONOTONIC) + 0.5;
    while (raw_seconds(CLOCK_MONOTONIC) < end) {
        if (!read_ok(0)) bad++;
        reads++;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);

    printf("reads=%ld bad=%ld handler_runs=%d handler_bad=%d\n", reads, bad, (int)handler_runs,
           (int)handler_bad);
    if (bad > 0) fail("%ld of %ld reads in main were wrong", bad, reads);
    if (handler_bad > 0)
        fail("%d of %d rounds of reads in the signal handler were wrong (gethostname %d, getuid %d, "
             "clock_gettime %d, time %d)",
             (int)handler_bad, (int)handler_runs, (int)bad_host, (int)bad_uid, (int)bad_clock,
             (int)bad_time);
    if (handler_runs < 10) fail("the signal handler ran only %d times", (int)handler_runs);
    return probe_finish();
}
