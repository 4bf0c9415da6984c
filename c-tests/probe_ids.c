/* probe_ids: the process identity as a program sees it, and how it can change it.
 *
 *   probe_ids OP...
 * Each OP is checked in order:
 *   uids:R,E,S        getuid, geteuid, getresuid (and their syscall() forms) report R,E,S
 *   gids:R,E,S        getgid, getegid, getresgid (and their syscall() forms) report R,E,S
 *   groups:G1,G2,...  getgroups reports exactly these (in any order; "groups:" for none);
 *                     getgroups(0) counts them; a buffer one too small fails with EINVAL
 *   fsuid:N fsgid:N   setfsuid(-1)/setfsgid(-1) report the current filesystem id N
 *   setuid:U:EXPECT setgid:G:EXPECT seteuid:U:EXPECT setegid:G:EXPECT
 *   setreuid:R,E:EXPECT setregid:R,E:EXPECT setresuid:R,E,S:EXPECT setresgid:R,E,S:EXPECT
 *   setgroups:G1,G2,...:EXPECT
 *                     the call returns EXPECT: "ok" or an errno name such as EPERM
 *                     (-1 as an id means "unchanged")
 *   setfsuid:U:PREV setfsgid:G:PREV
 *                     the call returns PREV (the previous filesystem id)
 *   exec              the rest of the OPs are checked by a fresh copy of this program
 *                     started with execv (ids after exec follow the kernel's rules)
 * Prints "OK" and exits 0 when every OP held.
 */
#include "probe.h"

#include <grp.h>
#include <sys/fsuid.h>
#include <sys/types.h>

/* Parses up to `max` comma-separated ids (-1 allowed); returns how many. */
static int parse_ids(const char *text, long *out, int max) {
    int n = 0;
    const char *p = text;
    if (*p == '\0') return 0;
    while (n < max) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno != 0) {
            fprintf(stderr, "bad id list: %s\n", text);
            exit(2);
        }
        out[n++] = v;
        if (*end == '\0') return n;
        if (*end != ',') {
            fprintf(stderr, "bad id list: %s\n", text);
            exit(2);
        }
        p = end + 1;
    }
    fprintf(stderr, "too many ids: %s\n", text);
    exit(2);
}

static void need(int got, int want, const char *op) {
    if (got != want) {
        fprintf(stderr, "%s: expected %d ids\n", op, want);
        exit(2);
    }
}

static int cmp_gid(const void *a, const void *b) {
    gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;
    return x < y ? -1 : x > y;
}

static void check_uids(const char *op, long *want) {
    uid_t r = 12345, e = 12345, s = 12345;
    CHECK_CALL("getresuid", 0, getresuid(&r, &e, &s));
    if ((long)getuid() != want[0]) fail("%s: getuid=%u", op, getuid());
    if ((long)geteuid() != want[1]) fail("%s: geteuid=%u", op, geteuid());
    if ((long)r != want[0] || (long)e != want[1] || (long)s != want[2])
        fail("%s: getresuid=%u,%u,%u", op, r, e, s);
    if (syscall(SYS_getuid) != want[0]) fail("%s: syscall(SYS_getuid)=%ld", op, syscall(SYS_getuid));
    if (syscall(SYS_geteuid) != want[1]) fail("%s: syscall(SYS_geteuid)=%ld", op, syscall(SYS_geteuid));
    r = e = s = 12345;
    CHECK_CALL("syscall(SYS_getresuid)", 0, syscall(SYS_getresuid, &r, &e, &s));
    if ((long)r != want[0] || (long)e != want[1] || (long)s != want[2])
        fail("%s: syscall(SYS_getresuid)=%u,%u,%u", op, r, e, s);
    printf("uids=%u,%u,%u\n", r, e, s);
}

static void check_gids(const char *op, long *want) {
    gid_t r = 12345, e = 12345, s = 12345;
    CHECK_CALL("getresgid", 0, getresgid(&r, &e, &s));
    if ((long)getgid() != want[0]) fail("%s: getgid=%u", op, getgid());
    if ((long)getegid() != want[1]) fail("%s: getegid=%u", op, getegid());
    if ((long)r != want[0] || (long)e != want[1] || (long)s != want[2])
        fail("%s: getresgid=%u,%u,%u", op, r, e, s);
    if (syscall(SYS_getgid) != want[0]) fail("%s: syscall(SYS_getgid)=%ld", op, syscall(SYS_getgid));
    if (syscall(SYS_getegid) != want[1]) fail("%s: syscall(SYS_getegid)=%ld", op, syscall(SYS_getegid));
    r = e = s = 12345;
    CHECK_CALL("syscall(SYS_getresgid)", 0, syscall(SYS_getresgid, &r, &e, &s));
    if ((long)r != want[0] || (long)e != want[1] || (long)s != want[2])
        fail("%s: syscall(SYS_getresgid)=%u,%u,%u", op, r, e, s);
    printf("gids=%u,%u,%u\n", r, e, s);
}

static void check_groups(const char *op, long *want, int n) {
    gid_t got[128];
    errno = ERRNO_SENTINEL;
    int count = getgroups(0, NULL);
    if (count != n) fail("%s: getgroups(0, NULL)=%d expected %d (errno %d)", op, count, n, errno);
    CHECK_CALL("getgroups", 0, getgroups(128, got));
    count = getgroups(128, got);
    if (count != n) {
        fail("%s: getgroups(128)=%d expected %d", op, count, n);
    } else {
        gid_t expect[128];
        for (int i = 0; i < n; i++) expect[i] = (gid_t)want[i];
        qsort(got, n, sizeof(gid_t), cmp_gid);
        qsort(expect, n, sizeof(gid_t), cmp_gid);
        for (int i = 0; i < n; i++)
            if (got[i] != expect[i]) fail("%s: group %d is %u expected %u", op, i, got[i], expect[i]);
    }
    if (n >= 2) CHECK_CALL("getgroups(too small)", EINVAL, getgroups(n - 1, got));
    printf("groups=");
    count = getgroups(128, got);
    for (int i = 0; i < count; i++) printf("%s%u", i ? "," : "", got[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    if (argc < 2) usage("probe_ids OP... (see the source)");
    for (int i = 1; i < argc; i++) {
        char op[512];
        snprintf(op, sizeof op, "%s", argv[i]);
        if (strcmp(op, "exec") == 0) {
            if (probe_failures > 0) break; /* the new program would not report them */
            fflush(stdout);
            argv[i] = argv[0];
            execv("/proc/self/exe", &argv[i]);
            fail("execv: %s", strerror(errno));
            break;
        }
        char *name = op;
        char *arg = strchr(op, ':');
        if (arg == NULL) usage("probe_ids OP... (see the source)");
        *arg++ = '\0';
        char *expect = strchr(arg, ':');
        if (expect != NULL) *expect++ = '\0';
        long ids[128];
        int n = parse_ids(arg, ids, 128);
        int want = 0;
        if (expect != NULL && strncmp(name, "setfs", 5) != 0) want = parse_expect(expect);

        if (strcmp(name, "uids") == 0) {
            need(n, 3, argv[i]);
            check_uids(argv[i], ids);
        } else if (strcmp(name, "gids") == 0) {
            need(n, 3, argv[i]);
            check_gids(argv[i], ids);
        } else if (strcmp(name, "groups") == 0) {
            check_groups(argv[i], ids, n);
        } else if (strcmp(name, "fsuid") == 0 || strcmp(name, "fsgid") == 0) {
            need(n, 1, argv[i]);
            int cur = name[2] == 'u' ? setfsuid((uid_t)-1) : setfsgid((gid_t)-1);
            if (cur != ids[0]) fail("%s: current is %d", argv[i], cur);
        } else if (expect == NULL) {
            usage("set* OPs need :EXPECT");
        } else if (strcmp(name, "setfsuid") == 0 || strcmp(name, "setfsgid") == 0) {
            need(n, 1, argv[i]);
            long prev = strtol(expect, NULL, 10);
            int got = name[5] == 'u' ? setfsuid((uid_t)ids[0]) : setfsgid((gid_t)ids[0]);
            if (got != prev) fail("%s: returned %d", argv[i], got);
        } else if (strcmp(name, "setuid") == 0) {
            need(n, 1, argv[i]);
            CHECK_CALL(argv[i], want, setuid((uid_t)ids[0]));
        } else if (strcmp(name, "setgid") == 0) {
            need(n, 1, argv[i]);
            CHECK_CALL(argv[i], want, setgid((gid_t)ids[0]));
        } else if (strcmp(name, "seteuid") == 0) {
            need(n, 1, argv[i]);
            CHECK_CALL(argv[i], want, seteuid((uid_t)ids[0]));
        } else if (strcmp(name, "setegid") == 0) {
            need(n, 1, argv[i]);
            CHECK_CALL(argv[i], want, setegid((gid_t)ids[0]));
        } else if (strcmp(name, "setreuid") == 0) {
            need(n, 2, argv[i]);
            CHECK_CALL(argv[i], want, setreuid((uid_t)ids[0], (uid_t)ids[1]));
        } else if (strcmp(name, "setregid") == 0) {
            need(n, 2, argv[i]);
            CHECK_CALL(argv[i], want, setregid((gid_t)ids[0], (gid_t)ids[1]));
        } else if (strcmp(name, "setresuid") == 0) {
            need(n, 3, argv[i]);
            CHECK_CALL(argv[i], want, setresuid((uid_t)ids[0], (uid_t)ids[1], (uid_t)ids[2]));
        } else if (strcmp(name, "setresgid") == 0) {
            need(n, 3, argv[i]);
            CHECK_CALL(argv[i], want, setresgid((gid_t)ids[0], (gid_t)ids[1], (gid_t)ids[2]));
        } else if (strcmp(name, "setgroups") == 0) {
            gid_t list[128];
            for (int k = 0; k < n; k++) list[k] = (gid_t)ids[k];
            CHECK_CALL(argv[i], want, setgroups((size_t)n, list));
        } else {
            fprintf(stderr, "unknown OP %s\n", argv[i]);
            return 2;
        }
    }
    return probe_finish();
}
