/* Paths in the fs replica are capsule paths everywhere: relative paths, "..", chdir,
 * fchdir, getcwd, the *at() calls with directory descriptors, AT_EMPTY_PATH, O_PATH,
 * realpath, /proc/self/{cwd,fd/N,exe,root}, descriptors and working directory inherited
 * across exec; and no way out: ".." above "/", symbolic links (relative or absolute,
 * old or new), /proc/self/cwd and /proc/self/root, symlink loops.
 *
 * usage: fs_paths --capsule | --native BASE  EXE START [HIDDEN...]
 *   EXE     this program's path as the capsule sees it (for /proc/self/exe and exec)
 *   START   the working directory the program must start in (capsule path), or "-"
 *   HIDDEN  host paths (the root, the upper layer) that no answer may contain
 *
 * The test tree (tests/fs_support.rs): etc/hostname "capsule-lower\n",
 * etc/link -> /var/lib/app/data.txt, etc/abs-hostname -> /etc/hostname,
 * var/lib/app/{data.txt "lower data\n", other.txt}, secret "root secret\n",
 * escape/{up -> ../../../../../../../../etc/hostname, abs -> /secret, dotdot -> ..,
 * rootlink -> /}, loop/{a -> b, b -> a, self -> self}, paths/{rel.txt "rel\n",
 * dir/file.txt "file\n", dir/sub/}, tmp/.
 */
#include "probe.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#define HOSTNAME_TEXT "capsule-lower\n"

static char cwd_buf[PATH_MAX];

static const char *cwd(void) {
    char *r = getcwd(cwd_buf, sizeof cwd_buf);
    fs_check_hidden("getcwd", r);
    return r;
}

static void expect_cwd(const char *label, const char *want) {
    fs_expect_str(label, cwd(), want);
}

/* readlink into a static buffer (NULL on failure). */
static const char *link_of(const char *path) {
    static char buf[PATH_MAX];
    ssize_t n = readlink(path, buf, sizeof buf - 1);
    if (n < 0) return NULL;
    buf[n] = '\0';
    fs_check_hidden(path, buf);
    return buf;
}

static const char *fd_link(int fd) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return link_of(path);
}

static void expect_realpath(const char *label, const char *path, const char *want) {
    char buf[PATH_MAX];
    errno = 0;
    char *r = realpath(path, buf);
    fs_expect_str(label, r, want);
    /* The allocating form too. */
    char *m = realpath(path, NULL);
    fs_expect_str(label, m, want);
    free(m);
}

/* The child after exec: descriptor `fd` (the parent's /var/lib/app) and the working
 * directory /paths/dir were inherited. */
static int child(int argc, char **argv, int i) {
    if (argc < i + 2) usage("fs_paths MODE --child FD FAILURES [HIDDEN...]");
    int fd = atoi(argv[i]);
    probe_failures = atoi(argv[i + 1]);
    for (int k = i + 2; k < argc && fs_nhidden < 8; k++) fs_hidden[fs_nhidden++] = argv[k];
    fs_expect_str("inherited fd after exec: /proc/self/fd", fd_link(fd), P("/var/lib/app"));
    int f = openat(fd, "data.txt", O_RDONLY);
    char buf[256];
    if (f < 0 || fs_read_fd(f, buf, sizeof buf) < 0)
        fail("openat(inherited fd, data.txt): %s", fs_errname(errno));
    else if (strcmp(buf, "lower data\n") != 0)
        fail("openat(inherited fd, data.txt) read \"%s\"", buf);
    if (f >= 0) close(f);
    expect_cwd("cwd inherited across exec", P("/paths/dir"));
    fs_expect_content("relative path after exec", "file.txt", "file\n");
    return probe_finish();
}

int main(int argc, char **argv) {
    int i = fs_parse_mode(argc, argv,
                          "fs_paths --capsule | --native BASE EXE START [HIDDEN...] "
                          "| MODE --child FD FAILURES [HIDDEN...]");
    fs_require_test_root();
    if (i < argc && strcmp(argv[i], "--child") == 0) return child(argc, argv, i + 1);
    if (argc < i + 2) usage("fs_paths --capsule | --native BASE EXE START [HIDDEN...]");
    const char *exe = argv[i];
    const char *start = argv[i + 1];
    for (int k = i + 2; k < argc && fs_nhidden < 8; k++) fs_hidden[fs_nhidden++] = argv[k];
    char buf[PATH_MAX];
    struct stat st, st2;

    /* Where the program started. */
    if (strcmp(start, "-") != 0) expect_cwd("starting directory", P(start));
    fs_check_hidden("starting /proc/self/cwd", link_of("/proc/self/cwd"));

    /* Relative paths, "." and "..". */
    CHECK_FS("chdir /paths", 0, chdir(P("/paths")));
    expect_cwd("getcwd after chdir", P("/paths"));
    fs_expect_content("relative", "rel.txt", "rel\n");
    fs_expect_content("relative in a subdir", "dir/file.txt", "file\n");
    fs_expect_content("./dir/../", "./dir/../rel.txt", "rel\n");
    fs_expect_content("dir/sub/../../", "dir/sub/../../rel.txt", "rel\n");
    fs_expect_stat("relative dir", "dir/sub", S_IFDIR, -1);
    CHECK_FS("chdir dir/sub", 0, chdir("dir/sub"));
    expect_cwd("getcwd in dir/sub", P("/paths/dir/sub"));
    CHECK_FS("chdir ..", 0, chdir(".."));
    expect_cwd("getcwd after ..", P("/paths/dir"));
    CHECK_FS("chdir ../..", 0, chdir("../.."));
    expect_cwd("getcwd after ../..", P("/"));
    CHECK_FS("chdir back", 0, chdir(P("/paths")));
    CHECK_FS("chdir missing", ENOENT, chdir("missing"));
    expect_cwd("failed chdir leaves cwd", P("/paths"));
    /* getcwd with a buffer too small. */
    CHECK_FS_PTR("getcwd, 2-byte buffer", ERANGE, getcwd(buf, 2));

    /* /proc/self/cwd */
    fs_expect_str("/proc/self/cwd", link_of("/proc/self/cwd"), P("/paths"));
    fs_expect_content("through /proc/self/cwd", "/proc/self/cwd/rel.txt", "rel\n");

    /* *at() with directory descriptors. */
    int lib = open(P("/var/lib"), O_RDONLY | O_DIRECTORY);
    int tmp = open(P("/tmp"), O_RDONLY | O_DIRECTORY);
    if (lib < 0 || tmp < 0) {
        fail("open /var/lib, /tmp: %s", fs_errname(errno));
        return probe_finish();
    }
    fs_expect_str("/proc/self/fd of a dir fd", fd_link(lib), P("/var/lib"));
    int f = openat(lib, "app/data.txt", O_RDONLY);
    if (f < 0 || fs_read_fd(f, buf, sizeof buf) < 0 || strcmp(buf, "lower data\n") != 0)
        fail("openat(lib, app/data.txt): %s \"%s\"", fs_errname(errno), f < 0 ? "" : buf);
    if (f >= 0) {
        fs_expect_str("/proc/self/fd of openat", fd_link(f), P("/var/lib/app/data.txt"));
        close(f);
    }
    if (fstatat(lib, "app", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
        fail("fstatat(lib, app): %s", fs_errname(errno));
    CHECK_FS("mkdirat", 0, mkdirat(lib, "newdir", 0755));
    fs_expect_stat("made by mkdirat", P("/var/lib/newdir"), S_IFDIR, 0755);
    f = openat(lib, "newdir/f", O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (f < 0 || write(f, "f\n", 2) != 2) fail("openat O_CREAT: %s", fs_errname(errno));
    if (f >= 0) close(f);
    CHECK_FS("renameat", 0, renameat(lib, "newdir/f", tmp, "moved"));
    fs_expect_content("renameat target", P("/tmp/moved"), "f\n");
    fs_expect_absent("renameat source", P("/var/lib/newdir/f"));
    CHECK_FS("linkat", 0, linkat(tmp, "moved", lib, "newdir/hard", 0));
    fs_expect_content("linkat", P("/var/lib/newdir/hard"), "f\n");
    CHECK_FS("symlinkat", 0, symlinkat("../app/data.txt", lib, "newdir/sl"));
    ssize_t n = readlinkat(lib, "newdir/sl", buf, sizeof buf - 1);
    buf[n < 0 ? 0 : n] = '\0';
    fs_expect_str("readlinkat", n < 0 ? NULL : buf, "../app/data.txt");
    fs_expect_content("through symlinkat's link", P("/var/lib/newdir/sl"), "lower data\n");
    CHECK_FS("fchmodat", 0, fchmodat(lib, "newdir/hard", 0600, 0));
    fs_expect_stat("fchmodat", P("/tmp/moved"), S_IFREG, 0600);
    CHECK_FS("faccessat", 0, faccessat(lib, "app/data.txt", R_OK, 0));
    CHECK_FS("faccessat missing", ENOENT, faccessat(lib, "app/missing", F_OK, 0));
    CHECK_FS("unlinkat file", 0, unlinkat(lib, "newdir/hard", 0));
    CHECK_FS("unlinkat symlink", 0, unlinkat(lib, "newdir/sl", 0));
    CHECK_FS("unlinkat dir", 0, unlinkat(lib, "newdir", AT_REMOVEDIR));
    fs_expect_absent("unlinkat", P("/var/lib/newdir"));
    CHECK_FS("unlinkat in tmp", 0, unlinkat(tmp, "moved", 0));
    /* An absolute path ignores the descriptor; AT_FDCWD is the working directory. */
    f = openat(tmp, P("/etc/hostname"), O_RDONLY);
    if (f < 0 || fs_read_fd(f, buf, sizeof buf) < 0 || strcmp(buf, HOSTNAME_TEXT) != 0)
        fail("openat(fd, absolute): %s \"%s\"", fs_errname(errno), f < 0 ? "" : buf);
    if (f >= 0) close(f);
    f = openat(AT_FDCWD, "rel.txt", O_RDONLY);
    if (f < 0 || fs_read_fd(f, buf, sizeof buf) < 0 || strcmp(buf, "rel\n") != 0)
        fail("openat(AT_FDCWD, rel.txt): %s", fs_errname(errno));
    if (f >= 0) close(f);
    f = openat(lib, "../../etc/hostname", O_RDONLY);
    if (f < 0 || fs_read_fd(f, buf, sizeof buf) < 0 || strcmp(buf, HOSTNAME_TEXT) != 0)
        fail("openat(lib, ../../etc/hostname): %s \"%s\"", fs_errname(errno), f < 0 ? "" : buf);
    if (f >= 0) close(f);

    /* AT_EMPTY_PATH and O_PATH. */
    f = open(P("/var/lib/app/data.txt"), O_RDONLY);
    if (f < 0) {
        fail("open data.txt: %s", fs_errname(errno));
    } else {
        if (fstat(f, &st) != 0 || fstatat(f, "", &st2, AT_EMPTY_PATH) != 0)
            fail("fstatat AT_EMPTY_PATH: %s", fs_errname(errno));
        else if (st.st_ino != st2.st_ino || st2.st_size != 11 || !S_ISREG(st2.st_mode))
            fail("fstatat AT_EMPTY_PATH: ino %lu size %lld", (unsigned long)st2.st_ino,
                 (long long)st2.st_size);
        struct statx sx;
        if (statx(f, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx) != 0 || sx.stx_size != 11)
            fail("statx AT_EMPTY_PATH: %s size %llu", fs_errname(errno),
                 (unsigned long long)sx.stx_size);
        close(f);
    }
    int op = open(P("/var/lib/app"), O_PATH | O_DIRECTORY);
    if (op < 0) {
        fail("open O_PATH: %s", fs_errname(errno));
    } else {
        fs_expect_str("/proc/self/fd of O_PATH", fd_link(op), P("/var/lib/app"));
        f = openat(op, "data.txt", O_RDONLY);
        if (f < 0 || fs_read_fd(f, buf, sizeof buf) < 0 || strcmp(buf, "lower data\n") != 0)
            fail("openat(O_PATH fd, data.txt): %s", fs_errname(errno));
        if (f >= 0) close(f);
        if (fstatat(op, "", &st, AT_EMPTY_PATH) != 0 || !S_ISDIR(st.st_mode))
            fail("fstatat(O_PATH fd, \"\", AT_EMPTY_PATH): %s", fs_errname(errno));
        CHECK_FS("fchdir to O_PATH fd", 0, fchdir(op));
        expect_cwd("getcwd after fchdir(O_PATH)", P("/var/lib/app"));
        fs_expect_content("relative after fchdir", "data.txt", "lower data\n");
        close(op);
    }
    op = open(P("/etc/link"), O_PATH | O_NOFOLLOW);
    if (op < 0 || fstatat(op, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISLNK(st.st_mode))
        fail("O_PATH|O_NOFOLLOW on a symlink: %s", fs_errname(errno));
    if (op >= 0) close(op);

    /* fchdir to a directory descriptor. */
    CHECK_FS("fchdir", 0, fchdir(lib));
    expect_cwd("getcwd after fchdir", P("/var/lib"));
    fs_expect_content("relative after fchdir", "app/data.txt", "lower data\n");
    fs_expect_str("/proc/self/cwd after fchdir", link_of("/proc/self/cwd"), P("/var/lib"));

    /* realpath */
    expect_realpath("realpath . and ..", P("/var/lib/app/../app/./data.txt"),
                    P("/var/lib/app/data.txt"));
    expect_realpath("realpath relative", "app/other.txt", P("/var/lib/app/other.txt"));
    expect_realpath("realpath .", ".", P("/var/lib"));
    expect_realpath("realpath relative symlink", P("/cow/sym"), P("/cow/mode.txt"));
    CHECK_FS_PTR("realpath missing", ENOENT, realpath(P("/paths/missing/x"), buf));
    char *canon = canonicalize_file_name(P("/paths/dir/sub/.."));
    fs_expect_str("canonicalize_file_name", canon, P("/paths/dir"));
    free(canon);

    /* Symlink loops. */
    CHECK_FS("open loop", ELOOP, open(P("/loop/a"), O_RDONLY));
    CHECK_FS("stat loop", ELOOP, stat(P("/loop/a"), &st));
    CHECK_FS("stat self loop", ELOOP, stat(P("/loop/self"), &st));
    CHECK_FS("lstat loop", 0, lstat(P("/loop/a"), &st));
    CHECK_FS_PTR("realpath loop", ELOOP, realpath(P("/loop/b"), buf));

    /* /proc/self/fd/N of a file the capsule has just copied up: its capsule path. */
    f = open(P("/paths/rel.txt"), O_RDWR | O_APPEND);
    if (f < 0) {
        fail("open rel.txt O_RDWR: %s", fs_errname(errno));
    } else {
        if (write(f, "more\n", 5) != 5) fail("write rel.txt: %s", fs_errname(errno));
        fs_expect_str("/proc/self/fd of a copied-up file", fd_link(f), P("/paths/rel.txt"));
        char self[64];
        snprintf(self, sizeof self, "/proc/self/fd/%d", f);
        fs_expect_content("reopened through /proc/self/fd", self, "rel\nmore\n");
        close(f);
    }
    DIR *d = opendir(P("/paths/dir"));
    if (d == NULL)
        fail("opendir /paths/dir: %s", fs_errname(errno));
    else {
        fs_expect_str("/proc/self/fd of a DIR", fd_link(dirfd(d)), P("/paths/dir"));
        closedir(d);
    }

    /* /proc/self/exe */
    fs_expect_str("/proc/self/exe", link_of("/proc/self/exe"), exe);

    /* /proc, /dev, /sys are the host's. */
    fs_expect_stat("/dev/null", "/dev/null", S_IFCHR, -1);
    if (stat("/dev/null", &st) == 0 && st.st_rdev != makedev(1, 3))
        fail("/dev/null is not the null device");
    CHECK_FS("write /dev/null", 0, fs_write("/dev/null", O_WRONLY, "x"));
    static char status[8192];
    if (fs_read("/proc/self/status", status, sizeof status) < 0 || strstr(status, "Pid:") == NULL)
        fail("/proc/self/status: %s", fs_errname(errno));
    fs_expect_stat("/sys/kernel", "/sys/kernel", S_IFDIR, -1);

    if (fs_in_capsule) {
        /* ".." never goes above "/". */
        CHECK_FS("chdir /", 0, chdir("/"));
        CHECK_FS("chdir .. from /", 0, chdir(".."));
        expect_cwd("getcwd after .. from /", "/");
        CHECK_FS("chdir ../../.. from /", 0, chdir("../../.."));
        expect_cwd("getcwd after ../../.. from /", "/");
        fs_expect_content("../ from /", "../../../etc/hostname", HOSTNAME_TEXT);
        fs_expect_content("/../../", "/../../../etc/hostname", HOSTNAME_TEXT);
        if (stat("/", &st) != 0 || stat("/..", &st2) != 0 || st.st_ino != st2.st_ino ||
            st.st_dev != st2.st_dev)
            fail("/.. is not /");
        int root = open("/", O_RDONLY | O_DIRECTORY);
        f = root < 0 ? -1 : openat(root, "..", O_RDONLY | O_DIRECTORY);
        if (f < 0 || fstat(f, &st2) != 0 || st2.st_ino != st.st_ino)
            fail("openat(/, ..) is not /");
        if (f >= 0) {
            fs_expect_str("/proc/self/fd of openat(/, ..)", fd_link(f), "/");
            close(f);
        }
        if (root >= 0) close(root);
        CHECK_FS("chdir /var/lib/app", 0, chdir("/var/lib/app"));
        fs_expect_content("many .. from /var/lib/app", "../../../../../../../../../etc/hostname",
                          HOSTNAME_TEXT);
        f = openat(lib, "../../../../../../../etc/hostname", O_RDONLY);
        if (f < 0 || fs_read_fd(f, buf, sizeof buf) < 0 || strcmp(buf, HOSTNAME_TEXT) != 0)
            fail("openat(lib, many ..): %s \"%s\"", fs_errname(errno), f < 0 ? "" : buf);
        if (f >= 0) close(f);
        expect_realpath("realpath many ..", "../../../../../../../etc/hostname", "/etc/hostname");

        /* Symbolic links: absolute ones resolve inside the root, relative ones stop at /. */
        fs_expect_content("absolute symlink", "/etc/link", "lower data\n");
        fs_expect_content("absolute symlink to /etc", "/etc/abs-hostname", HOSTNAME_TEXT);
        fs_expect_content("relative symlink climbing out", "/escape/up", HOSTNAME_TEXT);
        fs_expect_content("absolute symlink to /secret", "/escape/abs", "root secret\n");
        fs_expect_content("symlink to ..", "/escape/dotdot/etc/hostname", HOSTNAME_TEXT);
        fs_expect_content("symlink to /", "/escape/rootlink/etc/hostname", HOSTNAME_TEXT);
        fs_expect_content("symlink to / then ..", "/escape/rootlink/../../etc/hostname",
                          HOSTNAME_TEXT);
        fs_expect_str("readlink keeps the target", link_of("/escape/abs"), "/secret");
        expect_realpath("realpath absolute symlink", "/etc/link", "/var/lib/app/data.txt");
        expect_realpath("realpath climbing symlink", "/escape/up", "/etc/hostname");
        expect_realpath("realpath symlink to /", "/escape/rootlink", "/");
        expect_realpath("realpath symlink to / then ..", "/escape/rootlink/..", "/");
        CHECK_FS("chdir through symlink to /", 0, chdir("/escape/rootlink"));
        expect_cwd("getcwd through symlink to /", "/");
        CHECK_FS("chdir /escape/dotdot/..", 0, chdir("/escape/dotdot/.."));
        expect_cwd("getcwd /escape/dotdot/..", "/");
        /* New links made in the capsule. */
        CHECK_FS("symlink absolute", 0, symlink("/secret", "/paths/newabs"));
        fs_expect_content("new absolute symlink", "/paths/newabs", "root secret\n");
        CHECK_FS("symlink climbing", 0,
                 symlink("../../../../../../../../etc/hostname", "/paths/newup"));
        fs_expect_content("new climbing symlink", "/paths/newup", HOSTNAME_TEXT);
        CHECK_FS("symlink to /", 0, symlink("/", "/paths/newroot"));
        fs_expect_content("new symlink to / then ..", "/paths/newroot/../etc/hostname",
                          HOSTNAME_TEXT);

        /* /proc/self/root and /proc/self/cwd are no way out either. */
        fs_expect_str("/proc/self/root", link_of("/proc/self/root"), "/");
        fs_expect_content("through /proc/self/root", "/proc/self/root/etc/hostname",
                          HOSTNAME_TEXT);
        fs_expect_content("through /proc/self/root/..", "/proc/self/root/../etc/hostname",
                          HOSTNAME_TEXT);
        CHECK_FS("chdir /var/lib/app again", 0, chdir("/var/lib/app"));
        fs_expect_content("through /proc/self/cwd and many ..",
                          "/proc/self/cwd/../../../../../../../etc/hostname", HOSTNAME_TEXT);
        expect_realpath("realpath /proc/self/cwd", "/proc/self/cwd", "/var/lib/app");
    }

    /* The working directory and a descriptor survive exec. */
    int keep = open(P("/var/lib/app"), O_RDONLY | O_DIRECTORY); /* no O_CLOEXEC */
    if (keep < 0 || chdir(P("/paths/dir")) != 0) {
        fail("before exec: %s", fs_errname(errno));
        return probe_finish();
    }
    char fdnum[16], failures[16];
    snprintf(fdnum, sizeof fdnum, "%d", keep);
    snprintf(failures, sizeof failures, "%d", probe_failures);
    char *args[16];
    int k = 0;
    args[k++] = (char *)exe;
    if (fs_in_capsule) {
        args[k++] = "--capsule";
    } else {
        args[k++] = "--native";
        args[k++] = (char *)fs_base;
    }
    args[k++] = "--child";
    args[k++] = fdnum;
    args[k++] = failures;
    for (int h = 0; h < fs_nhidden && k < 15; h++) args[k++] = (char *)fs_hidden[h];
    args[k] = NULL;
    fflush(stdout);
    execv(exe, args);
    fail("execv %s: %s", exe, fs_errname(errno));
    return probe_finish();
}
