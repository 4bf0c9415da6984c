/* probe_time: the clocks as a program sees them, against the kernel's own.
 *
 *   probe_time check OFFSET TOL
 *       clock_gettime on CLOCK_REALTIME, CLOCK_REALTIME_COARSE and CLOCK_TAI,
 *       gettimeofday, time, timespec_get and ftime are OFFSET seconds (± TOL) from the
 *       kernel's clock (read with a raw system call instruction); CLOCK_MONOTONIC,
 *       CLOCK_MONOTONIC_RAW, CLOCK_BOOTTIME and the CPU-time clocks are not shifted;
 *       the shifted clock runs on (a 100 ms sleep shows up); an unknown clock fails
 *       with EINVAL.
 *   probe_time at EPOCH TOL
 *       the realtime clock reads EPOCH seconds (± TOL).
 *   probe_time settime clock_settime|settimeofday DELTA EXPECT
 *       setting the realtime clock DELTA seconds ahead returns EXPECT ("ok", "EPERM");
 *       on success the process's clock moved by DELTA, in any case the kernel's did not.
 *       Refuses to run unless libcapsule.so interposes the call (the tests run as root).
 */
#include "probe.h"

#include <sys/time.h>
#include <sys/timeb.h>

#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* ftime */

static void near(const char *what, double got, double want, double tol) {
    if (got < want - tol || got > want + tol)
        fail("%s: %.3f, expected %.3f (tolerance %.3f)", what, got, want, tol);
}

static double libc_clock(clockid_t clock) {
    struct timespec ts = {0, 0};
    CHECK_CALL("clock_gettime", 0, clock_gettime(clock, &ts));
    return ts_seconds(ts);
}

static void check(double offset, double tol) {
    static const struct {
        clockid_t id;
        const char *name;
        int shifted;
    } clocks[] = {
        {CLOCK_REALTIME, "CLOCK_REALTIME", 1},
        {CLOCK_REALTIME_COARSE, "CLOCK_REALTIME_COARSE", 1},
        {CLOCK_TAI, "CLOCK_TAI", 1},
        {CLOCK_MONOTONIC, "CLOCK_MONOTONIC", 0},
        {CLOCK_MONOTONIC_COARSE, "CLOCK_MONOTONIC_COARSE", 0},
        {CLOCK_MONOTONIC_RAW, "CLOCK_MONOTONIC_RAW", 0},
        {CLOCK_BOOTTIME, "CLOCK_BOOTTIME", 0},
    };
    for (size_t i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        double got = libc_clock(clocks[i].id);
        double raw = raw_seconds(clocks[i].id);
        char what[64];
        snprintf(what, sizeof what, "%s - kernel", clocks[i].name);
        near(what, got - raw, clocks[i].shifted ? offset : 0.0, tol);
        if (clocks[i].id == CLOCK_REALTIME) printf("realtime_offset=%.3f\n", got - raw);
    }

    /* CPU-time clocks: the libc read lies between two kernel reads. */
    clockid_t cpu[] = {CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID};
    for (int i = 0; i < 2; i++) {
        double before = raw_seconds(cpu[i]);
        double got = libc_clock(cpu[i]);
        double after = raw_seconds(cpu[i]);
        if (got < before || got > after)
            fail("cpu clock %d: %.9f not within kernel reads %.9f..%.9f", i, got, before, after);
    }

    struct timeval tv;
    CHECK_CALL("gettimeofday", 0, gettimeofday(&tv, NULL));
    near("gettimeofday - kernel", (double)tv.tv_sec + tv.tv_usec / 1e6 - raw_seconds(CLOCK_REALTIME),
         offset, tol);
    struct timezone tz;
    CHECK_CALL("gettimeofday with tz", 0, gettimeofday(&tv, &tz));
    near("gettimeofday(tz) - kernel",
         (double)tv.tv_sec + tv.tv_usec / 1e6 - raw_seconds(CLOCK_REALTIME), offset, tol);

    time_t t_arg = 0;
    errno = ERRNO_SENTINEL;
    time_t t = time(&t_arg);
    if (errno != ERRNO_SENTINEL) fail("time changed errno");
    if (t != t_arg) fail("time returned %ld but stored %ld", (long)t, (long)t_arg);
    near("time - kernel", (double)t - raw_seconds(CLOCK_REALTIME), offset, tol + 1.0);
    near("time(NULL) - kernel", (double)time(NULL) - raw_seconds(CLOCK_REALTIME), offset, tol + 1.0);

    struct timespec ts;
    errno = ERRNO_SENTINEL;
    if (timespec_get(&ts, TIME_UTC) != TIME_UTC) fail("timespec_get did not return TIME_UTC");
    if (errno != ERRNO_SENTINEL) fail("timespec_get changed errno");
    near("timespec_get - kernel", ts_seconds(ts) - raw_seconds(CLOCK_REALTIME), offset, tol);

    struct timeb tb;
    CHECK_CALL("ftime", 0, ftime(&tb));
    near("ftime - kernel", (double)tb.time + tb.millitm / 1e3 - raw_seconds(CLOCK_REALTIME), offset,
         tol);

    /* The shifted clock runs at the kernel's pace. */
    double a = libc_clock(CLOCK_REALTIME);
    struct timespec pause = {0, 100 * 1000 * 1000};
    nanosleep(&pause, NULL);
    double b = libc_clock(CLOCK_REALTIME);
    if (b - a < 0.095 || b - a > 0.100 + tol) fail("realtime advanced %.3f s over a 100 ms sleep", b - a);

    struct timespec bad;
    CHECK_CALL("clock_gettime(unknown clock)", EINVAL, clock_gettime((clockid_t)4242, &bad));
}

static void at(double epoch, double tol) {
    double now = libc_clock(CLOCK_REALTIME);
    printf("realtime=%.3f\n", now);
    near("CLOCK_REALTIME", now, epoch, tol);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    near("gettimeofday", (double)tv.tv_sec + tv.tv_usec / 1e6, epoch, tol);
    near("time", (double)time(NULL), epoch, tol + 1.0);
}

/* How far the kernel's realtime clock is from its monotonic clock: changes only when
 * someone sets the host clock. */
static double host_clock_setting(void) {
    return raw_seconds(CLOCK_REALTIME) - raw_seconds(CLOCK_MONOTONIC);
}

static void settime(const char *how, double delta, int want) {
    int use_tod = strcmp(how, "settimeofday") == 0;
    if (!use_tod && strcmp(how, "clock_settime") != 0) usage("probe_time settime clock_settime|settimeofday DELTA EXPECT");
    require_interposed(how);

    double host_before = host_clock_setting();
    double offset_before = libc_clock(CLOCK_REALTIME) - raw_seconds(CLOCK_REALTIME);
    double target = libc_clock(CLOCK_REALTIME) + delta;
    if (use_tod) {
        struct timeval tv = {(time_t)target, (suseconds_t)((target - (double)(time_t)target) * 1e6)};
        CHECK_CALL("settimeofday", want, settimeofday(&tv, NULL));
    } else {
        struct timespec ts = {(time_t)target, (long)((target - (double)(time_t)target) * 1e9)};
        CHECK_CALL("clock_settime(CLOCK_REALTIME)", want, clock_settime(CLOCK_REALTIME, &ts));
    }
    double host_after = host_clock_setting();
    if (host_after - host_before > 0.5 || host_after - host_before < -0.5)
        fail("the HOST clock moved by %.3f s", host_after - host_before);
    double offset_after = libc_clock(CLOCK_REALTIME) - raw_seconds(CLOCK_REALTIME);
    printf("offset_before=%.3f offset_after=%.3f\n", offset_before, offset_after);
    near("offset change", offset_after - offset_before, want == 0 ? delta : 0.0, 1.0);

    if (!use_tod) {
        struct timespec ts = {1, 0};
        CHECK_CALL("clock_settime(CLOCK_MONOTONIC)", EINVAL, clock_settime(CLOCK_MONOTONIC, &ts));
    }
    double host_end = host_clock_setting();
    if (host_end - host_before > 0.5 || host_end - host_before < -0.5)
        fail("the HOST clock moved by %.3f s", host_end - host_before);
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "check") == 0)
        check(atof(argv[2]), atof(argv[3]));
    else if (argc == 4 && strcmp(argv[1], "at") == 0)
        at(atof(argv[2]), atof(argv[3]));
    else if (argc == 5 && strcmp(argv[1], "settime") == 0)
        settime(argv[2], atof(argv[3]), parse_expect(argv[4]));
    else
        usage("probe_time check OFFSET TOL | at EPOCH TOL | settime clock_settime|settimeofday DELTA EXPECT");
    return probe_finish();
}
