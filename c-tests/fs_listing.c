/* Directory listings of the fs replica: a directory present in the lower and the upper
 * layer, with deletions, lists each visible name exactly once, never a whiteout or an
 * opaque marker, through every way programs read directories.
 *
 * usage: fs_listing --capsule | --native BASE            change /list and /many, check
 *        fs_listing --capsule | --native BASE --verify   check only (a later process)
 *        fs_listing --capsule | --native BASE --walk     glob and nftw of the changed tree
 *        fs_listing --capsule --premade                  upper layer prepared by the harness
 *        fs_listing --capsule | --native BASE --cache EXE
 *              what this process has seen of /list2 is not stale after another process
 *              (EXE, this program, started with --mutate) or a forked child changes it
 *
 * The test tree (tests/fs_support.rs): list/{a,b,c,dir1/inner,dir2/,link -> a},
 * many/f00..f49, list2/{keep,x,opq/{hidden1,hidden2}}.
 * --premade expects the harness to have put in the upper layer: list2/.wh.x,
 * list2/extra, list2/opq/.wh..wh..opq and list2/opq/only.
 */
#include "probe.h"

#include <glob.h>
#include <ftw.h>
#include <sys/wait.h>

/* The listing of /list after the changes. */
static const char *const list_after[] = {"a",    "c",     "dir1",   "link",
                                         "new1", "new3",  "newdir", "link2", NULL};
static const char *const dir1_after[] = {"inner", "sub", NULL};

static int count(const char *const *names) {
    int n = 0;
    while (names[n] != NULL) n++;
    return n;
}

static char many_after[64][8];
static const char *many_after_ptrs[64];

static void build_many_after(void) {
    int k = 0;
    for (int i = 0; i < 50; i++) {
        if (i >= 10 && i < 15) continue;
        snprintf(many_after[k], sizeof many_after[k], "f%02d", i);
        many_after_ptrs[k] = many_after[k];
        k++;
    }
    for (int i = 0; i < 3; i++) {
        snprintf(many_after[k], sizeof many_after[k], "g%02d", i);
        many_after_ptrs[k] = many_after[k];
        k++;
    }
    many_after_ptrs[k] = NULL;
}


/* The type a listed entry must have (0: not checked). */
static unsigned char want_type(const char *name) {
    if (strcmp(name, "dir1") == 0 || strcmp(name, "dir2") == 0 || strcmp(name, "newdir") == 0 ||
        strcmp(name, "sub") == 0 || strcmp(name, "opq") == 0 || strcmp(name, "dir") == 0)
        return DT_DIR;
    if (strcmp(name, "link") == 0 || strcmp(name, "link2") == 0) return DT_LNK;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return DT_DIR;
    return DT_REG;
}

static void check_types(const char *label, DIR *d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned char want = want_type(e->d_name);
        if (e->d_type != DT_UNKNOWN && e->d_type != want)
            fail("%s: %s has d_type %d, expected %d", label, e->d_name, e->d_type, want);
    }
}

/* Whether glob() and nftw() are checked too (--walk). */
static int with_walk;

/* Every way of listing `dir` (a capsule path) gives exactly `want`. */
static void check_listing(const char *dir, const char *const *want) {
    char label[256];
    const char *path = P(dir);
    char *names[FS_MAX_NAMES];
    int n;

    /* opendir / readdir, d_type */
    snprintf(label, sizeof label, "readdir %s", dir);
    fs_expect_listing(label, path, want);
    DIR *d = opendir(path);
    if (d != NULL) {
        snprintf(label, sizeof label, "d_type %s", dir);
        check_types(label, d);
        closedir(d);
    }

    /* readdir64 */
    d = opendir(path);
    if (d == NULL) {
        fail("opendir %s: %s", dir, fs_errname(errno));
    } else {
        struct dirent64 *e;
        n = 0;
        while ((e = readdir64(d)) != NULL && n < FS_MAX_NAMES) names[n++] = strdup(e->d_name);
        snprintf(label, sizeof label, "readdir64 %s", dir);
        fs_compare_names(label, names, n, want);
        fs_free_names(names, n);

        /* rewinddir: the same names again. */
        rewinddir(d);
        n = fs_read_names(d, names, FS_MAX_NAMES);
        snprintf(label, sizeof label, "rewinddir %s", dir);
        fs_compare_names(label, names, n, want);
        fs_free_names(names, n);

        /* telldir / seekdir: back to the position after three entries. */
        rewinddir(d);
        if (count(want) + 2 < 5) {
            closedir(d);
            d = NULL;
        }
    }
    if (d != NULL) {
        struct dirent *e1;
        for (int i = 0; i < 3; i++) readdir(d);
        long pos = telldir(d);
        e1 = readdir(d);
        char fourth[256] = "";
        if (e1 != NULL) snprintf(fourth, sizeof fourth, "%s", e1->d_name);
        while (readdir(d) != NULL) {
        }
        seekdir(d, pos);
        e1 = readdir(d);
        if (e1 == NULL || strcmp(e1->d_name, fourth) != 0)
            fail("seekdir %s: read \"%s\" after seekdir, expected \"%s\"", dir,
                 e1 ? e1->d_name : "(end)", fourth);
        closedir(d);
    }

    /* scandir with alphasort: sorted, each once. */
    struct dirent **list = NULL;
    n = scandir(path, &list, NULL, alphasort);
    if (n < 0) {
        fail("scandir %s: %s", dir, fs_errname(errno));
    } else {
        for (int i = 0; i < n; i++) names[i] = list[i]->d_name;
        snprintf(label, sizeof label, "scandir %s", dir);
        fs_compare_names(label, names, n, want);
        for (int i = 1; i < n; i++)
            if (strcmp(list[i - 1]->d_name, list[i]->d_name) >= 0)
                fail("scandir %s: %s before %s", dir, list[i - 1]->d_name, list[i]->d_name);
        for (int i = 0; i < n; i++) free(list[i]);
        free(list);
    }

    /* scandir64 */
    struct dirent64 **list64 = NULL;
    n = scandir64(path, &list64, NULL, alphasort64);
    if (n < 0) {
        fail("scandir64 %s: %s", dir, fs_errname(errno));
    } else {
        for (int i = 0; i < n; i++) names[i] = list64[i]->d_name;
        snprintf(label, sizeof label, "scandir64 %s", dir);
        fs_compare_names(label, names, n, want);
        for (int i = 0; i < n; i++) free(list64[i]);
        free(list64);
    }

    /* fdopendir on an fd from open, and from openat relative to the parent. */
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL) {
        fail("open + fdopendir %s: %s", dir, fs_errname(errno));
        if (fd >= 0) close(fd);
    } else {
        n = fs_read_names(d, names, FS_MAX_NAMES);
        snprintf(label, sizeof label, "fdopendir(open) %s", dir);
        fs_compare_names(label, names, n, want);
        fs_free_names(names, n);
        closedir(d);
    }
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    const char *leaf = slash + 1;
    if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    int pfd = open(parent, O_RDONLY | O_DIRECTORY);
    fd = pfd < 0 ? -1 : openat(pfd, path + (leaf - parent), O_RDONLY | O_DIRECTORY);
    d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL) {
        fail("openat + fdopendir %s: %s", dir, fs_errname(errno));
        if (fd >= 0) close(fd);
    } else {
        n = fs_read_names(d, names, FS_MAX_NAMES);
        snprintf(label, sizeof label, "fdopendir(openat) %s", dir);
        fs_compare_names(label, names, n, want);
        fs_free_names(names, n);
        closedir(d);
    }
    if (pfd >= 0) close(pfd);

    if (!with_walk) return;
    /* glob, dot files included. */
    char pattern[PATH_MAX];
    snprintf(pattern, sizeof pattern, "%s/*", path);
    glob_t g;
    int r = glob(pattern, GLOB_PERIOD, NULL, &g);
    if (r != 0) {
        fail("glob %s: %d", pattern, r);
    } else {
        size_t skip = strlen(path) + 1;
        n = 0;
        for (size_t i = 0; i < g.gl_pathc && n < FS_MAX_NAMES; i++)
            names[n++] = g.gl_pathv[i] + skip;
        snprintf(label, sizeof label, "glob %s", dir);
        fs_compare_names(label, names, n, want);
        globfree(&g);
    }
}

/* nftw: the number of entries below `dir`, never a marker. */
static int nftw_count;
static int nftw_markers;
static int on_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    if (strncmp(path + ftw->base, ".wh.", 4) == 0) nftw_markers++;
    nftw_count++;
    return 0;
}

static void check_nftw(const char *dir, int want) {
    nftw_count = 0;
    nftw_markers = 0;
    if (nftw(P(dir), on_entry, 16, FTW_PHYS) != 0)
        fail("nftw %s: %s", dir, fs_errname(errno));
    if (nftw_count != want)
        fail("nftw %s: %d entries, expected %d", dir, nftw_count, want);
    if (nftw_markers != 0) fail("nftw %s: %d whiteout markers seen", dir, nftw_markers);
}

static void change(void) {
    static const char *const list_before[] = {"a", "b", "c", "dir1", "dir2", "link", NULL};
    check_listing("/list", list_before);
    CHECK_FS("create new1", 0, fs_write(P("/list/new1"), O_WRONLY | O_CREAT | O_EXCL, "1\n"));
    CHECK_FS("create new2", 0, fs_write(P("/list/new2"), O_WRONLY | O_CREAT | O_EXCL, "2\n"));
    CHECK_FS("rename new2 new3", 0, rename(P("/list/new2"), P("/list/new3")));
    CHECK_FS("mkdir newdir", 0, mkdir(P("/list/newdir"), 0755));
    CHECK_FS("unlink b", 0, unlink(P("/list/b")));
    CHECK_FS("rmdir dir2", 0, rmdir(P("/list/dir2")));
    CHECK_FS("write c", 0, fs_write(P("/list/c"), O_WRONLY | O_APPEND, "more\n"));
    CHECK_FS("symlink link2", 0, symlink("c", P("/list/link2")));
    CHECK_FS("mkdir dir1/sub", 0, mkdir(P("/list/dir1/sub"), 0755));
    /* Removed and created again: listed once. */
    CHECK_FS("unlink a", 0, unlink(P("/list/a")));
    CHECK_FS("create a again", 0, fs_write(P("/list/a"), O_WRONLY | O_CREAT | O_EXCL, "A\n"));

    for (int i = 10; i < 15; i++) {
        char name[32];
        snprintf(name, sizeof name, "/many/f%02d", i);
        CHECK_FS("unlink many/fNN", 0, unlink(P(name)));
    }
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "/many/g%02d", i);
        CHECK_FS("create many/gNN", 0, fs_write(P(name), O_WRONLY | O_CREAT | O_EXCL, "g\n"));
    }
}

static void verify(void) {
    check_listing("/list", list_after);
    check_listing("/list/dir1", dir1_after);
    static const char *const newdir[] = {NULL};
    check_listing("/list/newdir", newdir);
    check_listing("/many", many_after_ptrs);
    if (count(many_after_ptrs) != 48) fail("many: expected list has %d names", count(many_after_ptrs));
    /* /list itself, 8 entries, dir1's 2, nothing in newdir */
    if (with_walk) check_nftw("/list", 1 + count(list_after) + count(dir1_after));
    fs_expect_content("a created again", P("/list/a"), "A\n");
    fs_expect_content("c written", P("/list/c"), "c\nmore\n");
    fs_expect_absent("b removed", P("/list/b"));
    fs_expect_absent("dir2 removed", P("/list/dir2"));
}

static void premade(void) {
    static const char *const list2[] = {"keep", "extra", "opq", NULL};
    static const char *const opq[] = {"only", NULL};
    check_listing("/list2", list2);
    check_listing("/list2/opq", opq);
    fs_expect_absent("whiteout hides x", P("/list2/x"));
    fs_expect_absent("opaque dir hides hidden1", P("/list2/opq/hidden1"));
    fs_expect_absent("the whiteout itself", P("/list2/.wh.x"));
    fs_expect_absent("the opaque marker itself", P("/list2/opq/.wh..wh..opq"));
    fs_expect_content("keep", P("/list2/keep"), "keep\n");
    fs_expect_content("extra", P("/list2/extra"), "extra\n");
    if (with_walk) check_nftw("/list2", 5);
}

/* Run by --cache in another process: changes /list2. */
static void mutate(void) {
    CHECK_FS("mutate: unlink x", 0, unlink(P("/list2/x")));
    CHECK_FS("mutate: create new", 0,
             fs_write(P("/list2/new"), O_WRONLY | O_CREAT | O_EXCL, "new\n"));
    CHECK_FS("mutate: rewrite keep", 0,
             fs_write(P("/list2/keep"), O_WRONLY | O_TRUNC, "changed\n"));
    CHECK_FS("mutate: mkdir dir", 0, mkdir(P("/list2/dir"), 0755));
    CHECK_FS("mutate: unlink opq/hidden1", 0, unlink(P("/list2/opq/hidden1")));
}

static void cache(const char *exe) {
    static const char *const before[] = {"keep", "x", "opq", NULL};
    static const char *const opq_before[] = {"hidden1", "hidden2", NULL};
    struct stat st;
    /* Look at everything first (whatever the shim remembers of it). */
    check_listing("/list2", before);
    check_listing("/list2/opq", opq_before);
    CHECK_FS("stat x", 0, stat(P("/list2/x"), &st));
    CHECK_FS("stat new (missing)", ENOENT, stat(P("/list2/new"), &st));
    CHECK_FS("stat dir (missing)", ENOENT, stat(P("/list2/dir"), &st));
    fs_expect_content("keep before", P("/list2/keep"), "keep\n");

    /* Another program of the capsule changes it. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        char *args[6];
        int k = 0;
        args[k++] = (char *)exe;
        if (fs_in_capsule) {
            args[k++] = "--capsule";
        } else {
            args[k++] = "--native";
            args[k++] = (char *)fs_base;
        }
        args[k++] = "--mutate";
        args[k] = NULL;
        execv(exe, args);
        printf("FAIL: exec %s: %s\n", exe, fs_errname(errno));
        _exit(1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("the --mutate process failed (status %d)", status);

    static const char *const after[] = {"keep", "opq", "new", "dir", NULL};
    static const char *const opq_after[] = {"hidden2", NULL};
    check_listing("/list2", after);
    check_listing("/list2/opq", opq_after);
    fs_expect_absent("x removed by another process", P("/list2/x"));
    fs_expect_absent("opq/hidden1 removed by another process", P("/list2/opq/hidden1"));
    fs_expect_stat("dir made by another process", P("/list2/dir"), S_IFDIR, 0755);
    fs_expect_content("new made by another process", P("/list2/new"), "new\n");
    fs_expect_content("keep rewritten by another process", P("/list2/keep"), "changed\n");

    /* A forked child (a copy of this process and of what the shim remembers). */
    CHECK_FS("stat dir", 0, stat(P("/list2/dir"), &st));
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        int bad = 0;
        if (rmdir(P("/list2/dir")) != 0) bad = 1;
        if (fs_write(P("/list2/forked"), O_WRONLY | O_CREAT | O_EXCL, "forked\n") != 0) bad = 1;
        if (unlink(P("/list2/opq/hidden2")) != 0) bad = 1;
        _exit(bad);
    }
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("the forked child's changes failed (status %d)", status);
    static const char *const after_fork[] = {"keep", "opq", "new", "forked", NULL};
    static const char *const opq_empty[] = {NULL};
    check_listing("/list2", after_fork);
    check_listing("/list2/opq", opq_empty);
    fs_expect_absent("dir removed by a forked child", P("/list2/dir"));
    fs_expect_content("made by a forked child", P("/list2/forked"), "forked\n");
    CHECK_FS("rmdir the emptied opq", 0, rmdir(P("/list2/opq")));
    fs_expect_absent("opq removed", P("/list2/opq"));
}

int main(int argc, char **argv) {
    int i = fs_parse_mode(argc, argv,
                          "fs_listing --capsule | --native BASE [--verify | --walk | --premade "
                          "[--walk]]");
    fs_require_test_root();
    build_many_after();
    if (i + 1 < argc && strcmp(argv[i + 1], "--walk") == 0) with_walk = 1;
    if (i < argc && strcmp(argv[i], "--mutate") == 0) {
        mutate();
    } else if (i + 1 < argc && strcmp(argv[i], "--cache") == 0) {
        cache(argv[i + 1]);
    } else if (i < argc && strcmp(argv[i], "--premade") == 0) {
        premade();
    } else if (i < argc && strcmp(argv[i], "--verify") == 0) {
        verify();
    } else if (i < argc && strcmp(argv[i], "--walk") == 0) {
        with_walk = 1;
        verify();
    } else {
        change();
        verify();
    }
    return probe_finish();
}
