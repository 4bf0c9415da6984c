/* probe_uts: the host and domain name as a program sees them.
 *
 *   probe_uts check HOST DOMAIN
 *       uname(), gethostname(), getdomainname() and syscall(SYS_uname) report HOST and
 *       DOMAIN; the other uname fields equal the kernel's; too-small buffers fail as
 *       glibc makes them fail.
 *   probe_uts sethostname NAME EXPECT [exec PROG ARGS...]
 *   probe_uts setdomainname NAME EXPECT [exec PROG ARGS...]
 *       the call returns EXPECT ("ok", "EPERM", "EINVAL"); on success the process then
 *       sees NAME; the kernel's host name is unchanged either way. With "exec", PROG
 *       is executed afterwards (it must see the new name too).
 *
 * set* refuse to run unless libcapsule.so interposes the call (the tests run as root).
 */
#include "probe.h"

#include <sys/utsname.h>

static void check_names(const char *host, const char *domain) {
    struct utsname u;
    CHECK_CALL("uname", 0, uname(&u));
    if (strcmp(u.nodename, host) != 0) fail("uname nodename=%s expected %s", u.nodename, host);
    if (strcmp(u.domainname, domain) != 0)
        fail("uname domainname=%s expected %s", u.domainname, domain);
    printf("nodename=%s\ndomainname=%s\n", u.nodename, u.domainname);

    struct {
        char f[6][65];
    } raw;
    memset(&raw, 0, sizeof raw);
    if (raw_syscall3(SYS_uname, (long)&raw, 0, 0) != 0) fail("raw uname failed");
    if (strcmp(u.sysname, raw.f[0]) != 0) fail("uname sysname=%s kernel says %s", u.sysname, raw.f[0]);
    if (strcmp(u.release, raw.f[2]) != 0) fail("uname release=%s kernel says %s", u.release, raw.f[2]);
    if (strcmp(u.version, raw.f[3]) != 0) fail("uname version=%s kernel says %s", u.version, raw.f[3]);
    if (strcmp(u.machine, raw.f[4]) != 0) fail("uname machine=%s kernel says %s", u.machine, raw.f[4]);

    struct utsname s;
    memset(&s, 0, sizeof s);
    CHECK_CALL("syscall(SYS_uname)", 0, syscall(SYS_uname, &s));
    if (strcmp(s.nodename, host) != 0) fail("syscall(SYS_uname) nodename=%s expected %s", s.nodename, host);
    if (strcmp(s.domainname, domain) != 0)
        fail("syscall(SYS_uname) domainname=%s expected %s", s.domainname, domain);
    if (strcmp(s.release, raw.f[2]) != 0) fail("syscall(SYS_uname) release=%s", s.release);

    char buf[256];
    memset(buf, 'x', sizeof buf);
    CHECK_CALL("gethostname", 0, gethostname(buf, sizeof buf));
    if (strcmp(buf, host) != 0) fail("gethostname=%s expected %s", buf, host);
    printf("gethostname=%s\n", buf);

    /* An exact-size buffer (name + NUL) works; one byte less fails with ENAMETOOLONG. */
    size_t len = strlen(host);
    CHECK_CALL("gethostname exact buffer", 0, gethostname(buf, len + 1));
    if (strcmp(buf, host) != 0) fail("gethostname(len+1)=%s expected %s", buf, host);
    CHECK_CALL("gethostname short buffer", ENAMETOOLONG, gethostname(buf, len));

    memset(buf, 'x', sizeof buf);
    CHECK_CALL("getdomainname", 0, getdomainname(buf, sizeof buf));
    if (strcmp(buf, domain) != 0) fail("getdomainname=%s expected %s", buf, domain);
    printf("getdomainname=%s\n", buf);
}

static int set_name(int domain, const char *name, int want, char **exec_argv) {
    const char *fn = domain ? "setdomainname" : "sethostname";
    size_t len = strlen(name);
    /* A name longer than the kernel accepts cannot change anything, even natively. */
    if (len <= 64) require_interposed(fn);

    char host_before[65], host_after[65];
    raw_nodename(host_before, sizeof host_before);
    char old[256];
    if (domain)
        getdomainname(old, sizeof old);
    else
        gethostname(old, sizeof old);

    if (domain)
        CHECK_CALL(fn, want, setdomainname(name, len));
    else
        CHECK_CALL(fn, want, sethostname(name, len));

    raw_nodename(host_after, sizeof host_after);
    if (strcmp(host_before, host_after) != 0) {
        fail("%s changed the REAL host name from %s to %s; restoring it", fn, host_before,
             host_after);
        raw_syscall3(SYS_sethostname, (long)host_before, (long)strlen(host_before), 0);
    }

    char now[256];
    struct utsname u;
    uname(&u);
    if (domain) {
        getdomainname(now, sizeof now);
        const char *expect = want == 0 ? name : old;
        if (strcmp(now, expect) != 0) fail("after %s getdomainname=%s expected %s", fn, now, expect);
        if (strcmp(u.domainname, expect) != 0)
            fail("after %s uname domainname=%s expected %s", fn, u.domainname, expect);
    } else {
        gethostname(now, sizeof now);
        const char *expect = want == 0 ? name : old;
        if (strcmp(now, expect) != 0) fail("after %s gethostname=%s expected %s", fn, now, expect);
        if (strcmp(u.nodename, expect) != 0)
            fail("after %s uname nodename=%s expected %s", fn, u.nodename, expect);
    }
    printf("%s=%s\n", domain ? "domainname" : "hostname", now);

    if (exec_argv != NULL && probe_failures == 0) {
        fflush(stdout);
        execv(exec_argv[0], exec_argv);
        fail("execv %s: %s", exec_argv[0], strerror(errno));
    }
    return probe_finish();
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "check") == 0) {
        check_names(argv[2], argv[3]);
        return probe_finish();
    }
    if (argc >= 4 && (strcmp(argv[1], "sethostname") == 0 || strcmp(argv[1], "setdomainname") == 0)) {
        char **exec_argv = NULL;
        if (argc >= 6 && strcmp(argv[4], "exec") == 0)
            exec_argv = &argv[5];
        else if (argc != 4)
            usage("probe_uts sethostname|setdomainname NAME EXPECT [exec PROG ARGS...]");
        return set_name(argv[1][3] == 'd', argv[2], parse_expect(argv[3]), exec_argv);
    }
    usage("probe_uts check HOST DOMAIN | sethostname NAME EXPECT | setdomainname NAME EXPECT");
    return 2;
}
