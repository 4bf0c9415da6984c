/* probe_errno: hooked calls leave errno as the real calls would.
 *
 *   probe_errno
 * Each successful call below must leave errno untouched (it is primed with a value no
 * call sets), and each failing one must return -1 with the errno the kernel or glibc
 * gives: gethostname into a short buffer (ENAMETOOLONG), clock_gettime on an unknown
 * clock (EINVAL), getgroups with a negative size (EINVAL), setuid(-1), seteuid(-1),
 * setgid(-1) and setegid(-1) (EINVAL). Works with any identity, host name and clock.
 */
#include "probe.h"

#include <grp.h>
#include <sys/time.h>
#include <sys/utsname.h>

int main(void) {
    struct utsname u;
    char buf[256];
    uid_t r, e, s;
    gid_t g[256];
    struct timespec ts;
    struct timeval tv;

    CHECK_CALL("uname", 0, uname(&u));
    CHECK_CALL("gethostname", 0, gethostname(buf, sizeof buf));
    CHECK_CALL("getdomainname", 0, getdomainname(buf, sizeof buf));
    CHECK_CALL("getuid", 0, getuid());
    CHECK_CALL("geteuid", 0, geteuid());
    CHECK_CALL("getgid", 0, getgid());
    CHECK_CALL("getegid", 0, getegid());
    CHECK_CALL("getresuid", 0, getresuid(&r, &e, &s));
    CHECK_CALL("getresgid", 0, getresgid(&r, &e, &s));
    CHECK_CALL("getgroups(0)", 0, getgroups(0, NULL));
    CHECK_CALL("getgroups", 0, getgroups(256, g));
    CHECK_CALL("clock_gettime", 0, clock_gettime(CLOCK_REALTIME, &ts));
    CHECK_CALL("clock_gettime(MONOTONIC)", 0, clock_gettime(CLOCK_MONOTONIC, &ts));
    CHECK_CALL("gettimeofday", 0, gettimeofday(&tv, NULL));
    CHECK_CALL("time", 0, time(NULL));
    CHECK_CALL("timespec_get", 0, timespec_get(&ts, TIME_UTC) == TIME_UTC ? 0 : -1);
    CHECK_CALL("syscall(SYS_getuid)", 0, syscall(SYS_getuid));
    CHECK_CALL("syscall(SYS_uname)", 0, syscall(SYS_uname, &u));

    gethostname(buf, sizeof buf);
    CHECK_CALL("gethostname(short buffer)", ENAMETOOLONG, gethostname(buf, 1));
    CHECK_CALL("clock_gettime(unknown clock)", EINVAL, clock_gettime((clockid_t)4242, &ts));
    volatile int negative = -1; /* hidden from the compiler, which would refuse it */
    CHECK_CALL("getgroups(-1)", EINVAL, getgroups(negative, g));
    CHECK_CALL("setuid(-1)", EINVAL, setuid((uid_t)-1));
    CHECK_CALL("seteuid(-1)", EINVAL, seteuid((uid_t)-1));
    CHECK_CALL("setgid(-1)", EINVAL, setgid((gid_t)-1));
    CHECK_CALL("setegid(-1)", EINVAL, setegid((gid_t)-1));
    CHECK_CALL("syscall(SYS_close, -1)", EBADF, syscall(SYS_close, -1));
    return probe_finish();
}
