/* probe_loop: one of many copies running at the same time, each in its own capsule.
 *
 *   probe_loop READY GO MILLIS HOST UID OFFSET
 * Creates the file READY, waits (at most 60 s) until the file GO exists, then for
 * MILLIS milliseconds reads gethostname, uname, getuid, geteuid, getresuid and
 * CLOCK_REALTIME over and over, every read checked against HOST, UID and the kernel's
 * clock + OFFSET seconds (± 2 s). Prints "reads=N", "start=S end=E" (the kernel's
 * realtime at the start and end of the loop, in ns) and OK, or FAIL lines.
 */
#include "probe.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>

static long long raw_ns(void) {
    struct timespec ts = raw_clock(CLOCK_REALTIME);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 7) usage("probe_loop READY GO MILLIS HOST UID OFFSET");
    const char *ready = argv[1], *go = argv[2], *host = argv[4];
    long millis = atol(argv[3]), uid = atol(argv[5]);
    double offset = atof(argv[6]);

    int fd = open(ready, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fail("create %s: %s", ready, strerror(errno));
        return probe_finish();
    }
    close(fd);
    struct stat st;
    double give_up = raw_seconds(CLOCK_MONOTONIC) + 60;
    while (stat(go, &st) != 0) {
        if (raw_seconds(CLOCK_MONOTONIC) > give_up) {
            fail("%s never appeared", go);
            return probe_finish();
        }
        struct timespec pause = {0, 2 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }

    long long start = raw_ns(), end = start + millis * 1000000LL, now = start;
    long reads = 0;
    while (now < end && probe_failures < 5) {
        char name[256];
        struct utsname u;
        uid_t r, e, s;
        struct timespec ts;
        if (gethostname(name, sizeof name) != 0 || strcmp(name, host) != 0)
            fail("gethostname=%s expected %s", name, host);
        if (uname(&u) != 0 || strcmp(u.nodename, host) != 0)
            fail("uname nodename=%s expected %s", u.nodename, host);
        if ((long)getuid() != uid || (long)geteuid() != uid) fail("getuid=%u geteuid=%u", getuid(), geteuid());
        if (getresuid(&r, &e, &s) != 0 || (long)r != uid || (long)e != uid || (long)s != uid)
            fail("getresuid=%u,%u,%u", r, e, s);
        clock_gettime(CLOCK_REALTIME, &ts);
        now = raw_ns();
        double off = ts_seconds(ts) - (double)now / 1e9;
        if (off < offset - 2 || off > offset + 2) fail("realtime offset %.3f expected %.3f", off, offset);
        reads++;
    }
    printf("reads=%ld\nstart=%lld end=%lld\n", reads, start, now);
    return probe_finish();
}
