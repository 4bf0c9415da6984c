/* probe_syscall: what programs that call syscall(2) directly see.
 *
 *   probe_syscall HOST UID EUID SUID GID OFFSET TOL
 *       syscall(SYS_uname) reports HOST; SYS_getuid/SYS_geteuid/SYS_getresuid report
 *       UID, EUID, SUID and SYS_getgid/SYS_getegid/SYS_getresgid report GID;
 *       SYS_clock_gettime(CLOCK_REALTIME), SYS_gettimeofday and SYS_time are OFFSET
 *       seconds (± TOL) from the kernel's clock while SYS_clock_gettime(CLOCK_MONOTONIC)
 *       is not; other numbers pass through unchanged: SYS_getpid, a six-argument
 *       SYS_mmap, a failing SYS_close (EBADF) and an unknown number (ENOSYS).
 */
#include "probe.h"

#include <sys/mman.h>
#include <sys/time.h>
#include <sys/utsname.h>

static void near(const char *what, double got, double want, double tol) {
    if (got < want - tol || got > want + tol)
        fail("%s: %.3f, expected %.3f (tolerance %.3f)", what, got, want, tol);
}

int main(int argc, char **argv) {
    if (argc != 8) usage("probe_syscall HOST UID EUID SUID GID OFFSET TOL");
    const char *host = argv[1];
    long uid = atol(argv[2]), euid = atol(argv[3]), suid = atol(argv[4]), gid = atol(argv[5]);
    double offset = atof(argv[6]), tol = atof(argv[7]);

    struct utsname u;
    memset(&u, 0, sizeof u);
    CHECK_CALL("syscall(SYS_uname)", 0, syscall(SYS_uname, &u));
    if (strcmp(u.nodename, host) != 0) fail("SYS_uname nodename=%s expected %s", u.nodename, host);
    printf("nodename=%s\n", u.nodename);

    long r;
    CHECK_CALL("syscall(SYS_getuid)", 0, r = syscall(SYS_getuid));
    if (r != uid) fail("SYS_getuid=%ld expected %ld", r, uid);
    CHECK_CALL("syscall(SYS_geteuid)", 0, r = syscall(SYS_geteuid));
    if (r != euid) fail("SYS_geteuid=%ld expected %ld", r, euid);
    CHECK_CALL("syscall(SYS_getgid)", 0, r = syscall(SYS_getgid));
    if (r != gid) fail("SYS_getgid=%ld expected %ld", r, gid);
    CHECK_CALL("syscall(SYS_getegid)", 0, r = syscall(SYS_getegid));
    if (r != gid) fail("SYS_getegid=%ld expected %ld", r, gid);
    uid_t ru = 9, eu = 9, su = 9;
    CHECK_CALL("syscall(SYS_getresuid)", 0, syscall(SYS_getresuid, &ru, &eu, &su));
    if (ru != uid || eu != euid || su != suid)
        fail("SYS_getresuid=%u,%u,%u expected %ld,%ld,%ld", ru, eu, su, uid, euid, suid);
    gid_t rg = 9, eg = 9, sg = 9;
    CHECK_CALL("syscall(SYS_getresgid)", 0, syscall(SYS_getresgid, &rg, &eg, &sg));
    if (rg != gid || eg != gid || sg != gid) fail("SYS_getresgid=%u,%u,%u expected %ld", rg, eg, sg, gid);
    printf("uids=%u,%u,%u gid=%u\n", ru, eu, su, rg);

    struct timespec ts;
    CHECK_CALL("syscall(SYS_clock_gettime)", 0, syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts));
    double off = ts_seconds(ts) - raw_seconds(CLOCK_REALTIME);
    printf("realtime_offset=%.3f\n", off);
    near("SYS_clock_gettime(CLOCK_REALTIME) - kernel", off, offset, tol);
    CHECK_CALL("syscall(SYS_clock_gettime, MONOTONIC)", 0, syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts));
    near("SYS_clock_gettime(CLOCK_MONOTONIC) - kernel", ts_seconds(ts) - raw_seconds(CLOCK_MONOTONIC), 0,
         tol);
    CHECK_CALL("syscall(SYS_clock_gettime, bad clock)", EINVAL, syscall(SYS_clock_gettime, 4242, &ts));

    struct timeval tv;
    CHECK_CALL("syscall(SYS_gettimeofday)", 0, syscall(SYS_gettimeofday, &tv, NULL));
    near("SYS_gettimeofday - kernel", (double)tv.tv_sec + tv.tv_usec / 1e6 - raw_seconds(CLOCK_REALTIME),
         offset, tol);
#ifdef SYS_time
    time_t t = 0;
    long tr;
    CHECK_CALL("syscall(SYS_time)", 0, tr = syscall(SYS_time, &t));
    if (tr != (long)t) fail("SYS_time returned %ld but stored %ld", tr, (long)t);
    near("SYS_time - kernel", (double)tr - raw_seconds(CLOCK_REALTIME), offset, tol + 1.0);
#endif

    /* Pass-through. */
    CHECK_CALL("syscall(SYS_getpid)", 0, r = syscall(SYS_getpid));
    if (r != getpid() || r != raw_syscall3(SYS_getpid, 0, 0, 0)) fail("SYS_getpid=%ld, getpid=%d", r, getpid());
    void *map;
    CHECK_CALL("syscall(SYS_mmap)", 0,
               (map = (void *)syscall(SYS_mmap, NULL, 8192, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) == MAP_FAILED ? -1 : 0);
    if (map != MAP_FAILED) {
        memset(map, 0xab, 8192);
        if (((unsigned char *)map)[8191] != 0xab) fail("mmap'd memory not writable");
        CHECK_CALL("syscall(SYS_munmap)", 0, syscall(SYS_munmap, map, 8192));
    }
    CHECK_CALL("syscall(SYS_close, -1)", EBADF, syscall(SYS_close, -1));
    CHECK_CALL("syscall(100000)", ENOSYS, syscall(100000, 1, 2, 3));
    return probe_finish();
}
