/* glibc's fts over the test tree (tests/fs_support.rs), natively and in a capsule:
 * the same walks must give the same answers, with each name once, no whiteouts,
 * and paths that are the caller's.
 *
 * usage: fs_fts BASE [--volume NAME]
 *   BASE is the top of the tree ("/" in a capsule on the test root). The probe
 *   changes BASE/list first (creates new1, removes b, makes newdir/inner2 and the
 *   link newdir/up -> ..), then checks:
 *   - a physical walk sorted by name: every entry, its fts_info, level, fts_path,
 *     fts_accpath (readable, same size as fts_statp says) and FTS_DP after children;
 *   - FTS_LOGICAL (links followed, newdir/up is FTS_DC with fts_cycle = list);
 *   - FTS_COMFOLLOW on a root that is a link; a missing root is FTS_NS;
 *   - FTS_SEEDOT, FTS_NOSTAT, fts_children (also FTS_NAMEONLY) and fts_set with
 *     FTS_SKIP, FTS_AGAIN and FTS_FOLLOW;
 *   - with --volume NAME, BASE/list/NAME is another mount: FTS_XDEV does not enter
 *     it (FTS_D then FTS_DP), a walk without FTS_XDEV does.
 * Prints OK when every check held.
 */
#include "probe.h"

#include <fcntl.h>
#include <fts.h>
#include <limits.h>
#include <sys/stat.h>

static char base[1024];
static char list[1100];

static int by_name(const FTSENT **a, const FTSENT **b) {
    return strcmp((*a)->fts_name, (*b)->fts_name);
}

static const char *info_name(int info) {
    static const char *const names[] = {"?",  "D",  "DC", "DEFAULT", "DNR", "DOT", "DP",
                                        "ERR", "F", "INIT", "NS",    "NSOK", "SL", "SLNONE"};
    return info >= 0 && info <= FTS_SLNONE ? names[info] : "?";
}

/* The path relative to BASE/list ("" for list itself). */
static const char *rel(const char *path) {
    size_t n = strlen(list);
    if (strncmp(path, list, n) != 0) return NULL;
    return path[n] == '/' ? path + n + 1 : path + n;
}

/* Walks BASE/list and returns "INFO level rel;" for each entry. */
static void walk(int options, char *out, size_t size, int check_paths) {
    char *argv[] = {list, NULL};
    FTS *fts = fts_open(argv, options, by_name);
    out[0] = 0;
    if (fts == NULL) {
        fail("fts_open(%#x): %s", options, strerror(errno));
        return;
    }
    FTSENT *p;
    while ((p = fts_read(fts)) != NULL) {
        const char *r = rel(p->fts_path);
        if (r == NULL) {
            fail("fts_path %s is not under %s", p->fts_path, list);
            continue;
        }
        if (strstr(p->fts_name, ".wh.") != NULL) fail("whiteout %s walked", p->fts_path);
        size_t len = strlen(out);
        snprintf(out + len, size - len, "%s %d %s;", info_name(p->fts_info), p->fts_level, r);
        if (check_paths && p->fts_info == FTS_F) {
            struct stat st;
            if (stat(p->fts_accpath, &st) != 0 || st.st_size != p->fts_statp->st_size)
                fail("fts_accpath %s: %s", p->fts_accpath, strerror(errno));
            if (strcmp(p->fts_name, strrchr(p->fts_path, '/') + 1) != 0)
                fail("fts_name %s of %s", p->fts_name, p->fts_path);
        }
        if (p->fts_info == FTS_DC && (p->fts_cycle == NULL || p->fts_cycle->fts_level != 0))
            fail("FTS_DC of %s: fts_cycle is not the list root", p->fts_path);
    }
    if (errno != 0) fail("fts_read ended with %s", strerror(errno));
    if (fts_close(fts) != 0) fail("fts_close: %s", strerror(errno));
}

static void expect(const char *what, const char *got, const char *want) {
    if (strcmp(got, want) != 0) fail("%s:\n  got  %s\n  want %s", what, got, want);
}

static void change_tree(void) {
    char path[1200];
    snprintf(path, sizeof path, "%s/new1", list);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "new1\n", 5) != 5) fail("create %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    snprintf(path, sizeof path, "%s/b", list);
    if (unlink(path) != 0) fail("unlink %s: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/newdir", list);
    if (mkdir(path, 0755) != 0) fail("mkdir %s: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/newdir/inner2", list);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fail("create %s: %s", path, strerror(errno));
    else close(fd);
    snprintf(path, sizeof path, "%s/newdir/up", list);
    if (symlink("..", path) != 0) fail("symlink %s: %s", path, strerror(errno));
}

int main(int argc, char **argv) {
    if (argc != 2 && !(argc == 4 && strcmp(argv[2], "--volume") == 0))
        usage("fs_fts BASE [--volume NAME]");
    const char *volume = argc == 4 ? argv[3] : NULL;
    snprintf(base, sizeof base, "%s", argv[1]);
    /* This probe writes: only on the test tree (probe.h). */
    fs_base = strcmp(argv[1], "/") == 0 ? "" : argv[1];
    fs_require_test_root();
    snprintf(list, sizeof list, "%s%slist", base, strcmp(base, "/") == 0 ? "" : "/");
    change_tree();
    char got[8192];

    const char *physical =
        "D 0 ;F 1 a;F 1 c;D 1 dir1;F 2 dir1/inner;DP 1 dir1;D 1 dir2;DP 1 dir2;"
        "SL 1 link;F 1 new1;D 1 newdir;F 2 newdir/inner2;SL 2 newdir/up;DP 1 newdir;DP 0 ;";
    if (volume == NULL) {
        walk(FTS_PHYSICAL, got, sizeof got, 1);
        expect("physical walk", got, physical);
        walk(FTS_PHYSICAL | FTS_NOCHDIR, got, sizeof got, 1);
        expect("physical walk, FTS_NOCHDIR", got, physical);
        walk(FTS_PHYSICAL | FTS_XDEV, got, sizeof got, 1);
        expect("physical walk, FTS_XDEV", got, physical);
        walk(FTS_LOGICAL, got, sizeof got, 1);
        expect("logical walk", got,
               "D 0 ;F 1 a;F 1 c;D 1 dir1;F 2 dir1/inner;DP 1 dir1;D 1 dir2;DP 1 dir2;"
               "F 1 link;F 1 new1;D 1 newdir;F 2 newdir/inner2;DC 2 newdir/up;DP 1 newdir;DP 0 ;");
        walk(FTS_PHYSICAL | FTS_NOSTAT, got, sizeof got, 0);
        expect("FTS_NOSTAT walk", got,
               "D 0 ;NSOK 1 a;NSOK 1 c;D 1 dir1;NSOK 2 dir1/inner;DP 1 dir1;D 1 dir2;DP 1 dir2;"
               "NSOK 1 link;NSOK 1 new1;D 1 newdir;NSOK 2 newdir/inner2;NSOK 2 newdir/up;"
               "DP 1 newdir;DP 0 ;");
        walk(FTS_PHYSICAL | FTS_SEEDOT, got, sizeof got, 0);
        expect("FTS_SEEDOT walk", got,
               "D 0 ;DOT 1 .;DOT 1 ..;F 1 a;F 1 c;D 1 dir1;DOT 2 dir1/.;DOT 2 dir1/..;"
               "F 2 dir1/inner;DP 1 dir1;D 1 dir2;DOT 2 dir2/.;DOT 2 dir2/..;DP 1 dir2;"
               "SL 1 link;F 1 new1;D 1 newdir;DOT 2 newdir/.;DOT 2 newdir/..;"
               "F 2 newdir/inner2;SL 2 newdir/up;DP 1 newdir;DP 0 ;");
    } else {
        /* BASE/list/VOLUME is a mount of its own. */
        walk(FTS_PHYSICAL | FTS_XDEV, got, sizeof got, 0);
        char want[256];
        snprintf(want, sizeof want, "D 1 %s;DP 1 %s;", volume, volume);
        if (strstr(got, want) == NULL) fail("FTS_XDEV entered %s:\n  %s", volume, got);
        walk(FTS_PHYSICAL, got, sizeof got, 0);
        snprintf(want, sizeof want, "F 2 %s/", volume);
        if (strstr(got, want) == NULL) fail("a walk without FTS_XDEV skipped %s:\n  %s", volume, got);
        return probe_finish();
    }

    /* Roots: a link (followed with FTS_COMFOLLOW), a missing name, sorted. */
    char link[1200], missing[1200], a[1200];
    snprintf(link, sizeof link, "%s/link", list);
    snprintf(missing, sizeof missing, "%s/missing", list);
    snprintf(a, sizeof a, "%s/a", list);
    char *roots[] = {missing, link, a, NULL};
    for (int follow = 0; follow < 2; follow++) {
        FTS *fts = fts_open(roots, FTS_PHYSICAL | (follow ? FTS_COMFOLLOW : 0), by_name);
        FTSENT *p;
        got[0] = 0;
        while (fts != NULL && (p = fts_read(fts)) != NULL) {
            size_t len = strlen(got);
            snprintf(got + len, sizeof got - len, "%s %s %d;", info_name(p->fts_info), p->fts_name,
                     p->fts_info == FTS_NS ? p->fts_errno : 0);
        }
        char want[4096];
        /* A root's fts_name is its last component once it is read. */
        snprintf(want, sizeof want, "F a 0;%s link 0;NS missing %d;", follow ? "F" : "SL", ENOENT);
        expect(follow ? "roots with FTS_COMFOLLOW" : "roots", got, want);
        if (fts != NULL) fts_close(fts);
    }

    /* fts_children, FTS_NAMEONLY, and fts_set. */
    char *argv_list[] = {list, NULL};
    FTS *fts = fts_open(argv_list, FTS_PHYSICAL, by_name);
    FTSENT *p = fts ? fts_read(fts) : NULL;
    if (p == NULL || p->fts_info != FTS_D) {
        fail("fts_read of the list root");
        return probe_finish();
    }
    got[0] = 0;
    for (FTSENT *c = fts_children(fts, FTS_NAMEONLY); c != NULL; c = c->fts_link) {
        size_t len = strlen(got);
        snprintf(got + len, sizeof got - len, "%s %s;", info_name(c->fts_info), c->fts_name);
    }
    expect("fts_children FTS_NAMEONLY", got,
           "NSOK a;NSOK c;NSOK dir1;NSOK dir2;NSOK link;NSOK new1;NSOK newdir;");
    got[0] = 0;
    for (FTSENT *c = fts_children(fts, 0); c != NULL; c = c->fts_link) {
        size_t len = strlen(got);
        snprintf(got + len, sizeof got - len, "%s %s %d;", info_name(c->fts_info), c->fts_name,
                 c->fts_level);
    }
    expect("fts_children", got, "F a 1;F c 1;D dir1 1;D dir2 1;SL link 1;F new1 1;D newdir 1;");
    errno = 0;
    if (fts_children(fts, 77) != NULL || errno != EINVAL) fail("fts_children(77) is not EINVAL");
    got[0] = 0;
    int again = 0;
    while ((p = fts_read(fts)) != NULL) {
        size_t len = strlen(got);
        snprintf(got + len, sizeof got - len, "%s %s;", info_name(p->fts_info), rel(p->fts_path));
        if (p->fts_info == FTS_D && strcmp(p->fts_name, "dir1") == 0) fts_set(fts, p, FTS_SKIP);
        if (p->fts_info == FTS_D && strcmp(p->fts_name, "newdir") == 0) fts_set(fts, p, FTS_SKIP);
        if (p->fts_info == FTS_F && strcmp(p->fts_name, "a") == 0 && !again++)
            fts_set(fts, p, FTS_AGAIN);
        if (p->fts_info == FTS_SL && strcmp(p->fts_name, "link") == 0) fts_set(fts, p, FTS_FOLLOW);
    }
    expect("fts_read after fts_children, with fts_set", got,
           "F a;F a;F c;D dir1;DP dir1;D dir2;DP dir2;SL link;F link;F new1;D newdir;DP newdir;DP ;");
    errno = 0;
    if (fts_set(fts, NULL, 99) != 1 || errno != EINVAL) fail("fts_set(99) is not EINVAL");
    fts_close(fts);

    errno = 0;
    if (fts_open(argv_list, 0x10000, NULL) != NULL || errno != EINVAL)
        fail("fts_open with an unknown option is not EINVAL");
    return probe_finish();
}
