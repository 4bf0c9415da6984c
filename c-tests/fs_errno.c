/* The errors of the fs replica are the kernel's: the same errno for the same mistake,
 * whichever layer holds the file, and errno left alone on success; EROFS for every
 * write to a read-only capsule (no upper layer, or --read-only) or a ":ro" volume,
 * while reads and the host's /dev still work.
 *
 * usage: fs_errno --capsule | --native BASE  CHECK...
 *   rw            ENOENT ENOTDIR EEXIST EISDIR ENOTEMPTY EINVAL ENAMETOOLONG on /errno
 *   ro            every write to /errno fails with EROFS, reads work
 *   long          a capsule path of 3000 bytes works (the host path behind it is longer),
 *                 one over PATH_MAX is ENAMETOOLONG
 *   ro-new PATH   creating PATH (file or directory) fails with EROFS
 *   vol-rw DIR    DIR is a writable volume holding pre.txt "volume\n"
 *   vol-ro DIR    DIR is a read-only volume holding pre.txt "volume\n"
 *
 * The test tree (tests/fs_support.rs): errno/{file.txt "file\n", dir/inner,
 * emptydir/, link -> file.txt}.
 */
#include "probe.h"

#include <sys/time.h>

static void check_rw(void) {
    struct stat st;
    char buf[64];
    const char *file = P("/errno/file.txt");
    const char *dir = P("/errno/dir");
    const char *missing = P("/errno/missing");

    /* Success leaves errno alone, from either layer. */
    CHECK_FS("stat lower file", 0, stat(file, &st));
    CHECK_FS("access lower file", 0, access(file, R_OK));
    int fd;
    CHECK_FS("open lower file", 0, fd = open(file, O_RDONLY));
    if (fd >= 0) close(fd);
    CHECK_FS("create upper file", 0, fs_write(P("/errno/new.txt"), O_WRONLY | O_CREAT, "n\n"));
    CHECK_FS("stat upper file", 0, stat(P("/errno/new.txt"), &st));
    CHECK_FS("readlink lower", 0, readlink(P("/errno/link"), buf, sizeof buf));

    /* ENOENT */
    CHECK_FS("open missing", ENOENT, open(missing, O_RDONLY));
    CHECK_FS("stat missing", ENOENT, stat(missing, &st));
    CHECK_FS("lstat missing", ENOENT, lstat(missing, &st));
    CHECK_FS("access missing", ENOENT, access(missing, F_OK));
    CHECK_FS("create in a missing dir", ENOENT,
             open(P("/errno/nodir/x"), O_WRONLY | O_CREAT, 0644));
    CHECK_FS("mkdir in a missing dir", ENOENT, mkdir(P("/errno/nodir/x"), 0755));
    CHECK_FS("unlink missing", ENOENT, unlink(missing));
    CHECK_FS("rmdir missing", ENOENT, rmdir(missing));
    CHECK_FS("rename missing", ENOENT, rename(missing, P("/errno/x")));
    CHECK_FS("chdir missing", ENOENT, chdir(missing));
    CHECK_FS("chmod missing", ENOENT, chmod(missing, 0644));
    CHECK_FS("truncate missing", ENOENT, truncate(missing, 0));
    CHECK_FS("readlink missing", ENOENT, readlink(missing, buf, sizeof buf));
    CHECK_FS("link missing", ENOENT, link(missing, P("/errno/x")));
    CHECK_FS_PTR("opendir missing", ENOENT, opendir(missing));
    CHECK_FS_PTR("fopen missing", ENOENT, fopen(missing, "r"));
    CHECK_FS("open empty path", ENOENT, open("", O_RDONLY));

    /* ENOTDIR */
    CHECK_FS("open file/x", ENOTDIR, open(P("/errno/file.txt/x"), O_RDONLY));
    CHECK_FS("stat file/x", ENOTDIR, stat(P("/errno/file.txt/x"), &st));
    CHECK_FS("mkdir file/x", ENOTDIR, mkdir(P("/errno/file.txt/x"), 0755));
    CHECK_FS("open O_DIRECTORY of a file", ENOTDIR, open(file, O_RDONLY | O_DIRECTORY));
    CHECK_FS_PTR("opendir a file", ENOTDIR, opendir(file));
    CHECK_FS("chdir a file", ENOTDIR, chdir(file));
    CHECK_FS("rmdir a file", ENOTDIR, rmdir(file));
    CHECK_FS("rename dir over a file", ENOTDIR, rename(P("/errno/emptydir"), file));
    CHECK_FS("file/ with a slash", ENOTDIR, stat(P("/errno/file.txt/"), &st));

    /* EEXIST */
    CHECK_FS("O_EXCL on a lower file", EEXIST, open(file, O_WRONLY | O_CREAT | O_EXCL, 0644));
    CHECK_FS("O_EXCL on an upper file", EEXIST,
             open(P("/errno/new.txt"), O_WRONLY | O_CREAT | O_EXCL, 0644));
    CHECK_FS("O_EXCL on a symlink", EEXIST,
             open(P("/errno/link"), O_WRONLY | O_CREAT | O_EXCL, 0644));
    CHECK_FS("mkdir a lower dir", EEXIST, mkdir(dir, 0755));
    CHECK_FS("mkdir a lower file", EEXIST, mkdir(file, 0755));
    CHECK_FS("mkdir /", EEXIST, mkdir(P("/"), 0755));
    CHECK_FS("mkdir new", 0, mkdir(P("/errno/newdir"), 0755));
    CHECK_FS("mkdir it again", EEXIST, mkdir(P("/errno/newdir"), 0755));
    CHECK_FS("symlink over a lower file", EEXIST, symlink("x", file));
    CHECK_FS("link over a lower file", EEXIST, link(P("/errno/new.txt"), file));
    CHECK_FS("link over a lower dir entry", EEXIST, link(file, P("/errno/dir/inner")));

    /* EISDIR */
    CHECK_FS("open a dir O_WRONLY", EISDIR, open(dir, O_WRONLY));
    CHECK_FS("open a dir O_RDWR", EISDIR, open(dir, O_RDWR));
    CHECK_FS("open a dir O_CREAT", EISDIR, open(dir, O_WRONLY | O_CREAT, 0644));
    /* A link whose target ends in `/` names a directory: creating through it is
     * EISDIR, and nothing is created. */
    const char *slash_link = P("/errno/slash-link");
    CHECK_FS("symlink to a name with a trailing slash", 0, symlink("./not-yet/", slash_link));
    CHECK_FS("O_CREAT through a link ending in /", EISDIR,
             open(slash_link, O_WRONLY | O_CREAT, 0644));
    CHECK_FS("nothing made through it", ENOENT, stat(P("/errno/not-yet"), &st));
    CHECK_FS("remove the link", 0, unlink(slash_link));
    CHECK_FS("unlink a dir", EISDIR, unlink(dir));
    CHECK_FS("rename a file over a dir", EISDIR, rename(file, P("/errno/emptydir")));
    CHECK_FS("truncate a dir", EISDIR, truncate(dir, 0));
    fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        fail("open dir: %s", fs_errname(errno));
    } else {
        CHECK_FS("read a dir", EISDIR, read(fd, buf, sizeof buf));
        close(fd);
    }

    /* ENOTEMPTY, EINVAL, ENAMETOOLONG, ELOOP-free symlink checks */
    CHECK_FS("rmdir a non-empty lower dir", ENOTEMPTY, rmdir(dir));
    CHECK_FS("rename a dir over a non-empty dir", ENOTEMPTY, rename(P("/errno/newdir"), dir));
    CHECK_FS("rename a dir into itself", EINVAL, rename(dir, P("/errno/dir/sub")));
    CHECK_FS("rmdir .", EINVAL, rmdir(P("/errno/emptydir/.")));
    char longname[PATH_MAX + 64];
    snprintf(longname, sizeof longname, "%s/", P("/errno"));
    size_t len = strlen(longname);
    memset(longname + len, 'n', 300);
    longname[len + 300] = '\0';
    CHECK_FS("a 300-byte name", ENAMETOOLONG, open(longname, O_RDONLY));
    CHECK_FS("create a 300-byte name", ENAMETOOLONG, open(longname, O_WRONLY | O_CREAT, 0644));

    /* Nothing above changed the tree. */
    fs_expect_content("file.txt intact", file, "file\n");
    fs_expect_content("dir/inner intact", P("/errno/dir/inner"), "inner\n");
    fs_expect_stat("emptydir intact", P("/errno/emptydir"), S_IFDIR, -1);
}

static void check_ro(void) {
    struct stat st;
    char buf[64];
    const char *file = P("/errno/file.txt");
    const char *fresh = P("/errno/fresh");
    struct timespec ts[2] = {{1, 0}, {1, 0}};

    CHECK_FS("open O_WRONLY", EROFS, open(file, O_WRONLY));
    CHECK_FS("open O_RDWR", EROFS, open(file, O_RDWR));
    CHECK_FS("open O_TRUNC", EROFS, open(file, O_WRONLY | O_TRUNC));
    CHECK_FS("open O_APPEND", EROFS, open(file, O_WRONLY | O_APPEND));
    CHECK_FS("open O_CREAT new", EROFS, open(fresh, O_WRONLY | O_CREAT, 0644));
    CHECK_FS("creat", EROFS, creat(fresh, 0644));
    CHECK_FS_PTR("fopen w", EROFS, fopen(fresh, "w"));
    CHECK_FS_PTR("fopen a", EROFS, fopen(file, "a"));
    CHECK_FS("mkdir", EROFS, mkdir(fresh, 0755));
    CHECK_FS("rmdir", EROFS, rmdir(P("/errno/emptydir")));
    CHECK_FS("unlink", EROFS, unlink(file));
    CHECK_FS("rename", EROFS, rename(file, fresh));
    CHECK_FS("link", EROFS, link(file, fresh));
    CHECK_FS("symlink", EROFS, symlink("file.txt", fresh));
    CHECK_FS("chmod", EROFS, chmod(file, 0600));
    CHECK_FS("truncate", EROFS, truncate(file, 0));
    CHECK_FS("utimensat", EROFS, utimensat(AT_FDCWD, file, ts, 0));
    CHECK_FS("access W_OK", EROFS, access(file, W_OK));
    CHECK_FS("faccessat W_OK", EROFS, faccessat(AT_FDCWD, file, W_OK, 0));
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof tmpl, "%s", P("/tmp/capsule-probe-roXXXXXX"));
    CHECK_FS("mkstemp", EROFS, mkstemp(tmpl));
    int dfd = open(P("/errno"), O_RDONLY | O_DIRECTORY);
    if (dfd < 0) {
        fail("open /errno: %s", fs_errname(errno));
    } else {
        CHECK_FS("openat O_CREAT", EROFS, openat(dfd, "fresh", O_WRONLY | O_CREAT, 0644));
        CHECK_FS("mkdirat", EROFS, mkdirat(dfd, "fresh", 0755));
        CHECK_FS("unlinkat", EROFS, unlinkat(dfd, "file.txt", 0));
        CHECK_FS("renameat", EROFS, renameat(dfd, "file.txt", dfd, "fresh"));
        CHECK_FS("fchmodat", EROFS, fchmodat(dfd, "file.txt", 0600, 0));
        close(dfd);
    }
    int fd = open(file, O_RDONLY);
    if (fd < 0) {
        fail("open O_RDONLY in a read-only capsule: %s", fs_errname(errno));
    } else {
        CHECK_FS("fchmod", EROFS, fchmod(fd, 0600));
        CHECK_FS("futimens", EROFS, futimens(fd, ts));
        close(fd);
    }

    /* Reads still work, and the host's /dev. */
    fs_expect_content("read", file, "file\n");
    CHECK_FS("stat", 0, stat(file, &st));
    CHECK_FS("access R_OK", 0, access(file, R_OK));
    CHECK_FS("readlink", 0, readlink(P("/errno/link"), buf, sizeof buf));
    static const char *const errno_names[] = {"file.txt", "dir", "emptydir", "link", NULL};
    fs_expect_listing("listing", P("/errno"), errno_names);
    CHECK_FS("write /dev/null", 0, fs_write("/dev/null", O_WRONLY, "x"));
    fs_expect_absent("nothing created", fresh);
    fs_expect_content("file intact", file, "file\n");
    fs_expect_stat("mode intact", file, S_IFREG, 0644);
}

static void check_ro_new(const char *path) {
    char label[PATH_MAX + 32];
    snprintf(label, sizeof label, "create %s", path);
    CHECK_FS(label, EROFS, open(path, O_WRONLY | O_CREAT | O_EXCL, 0644));
    snprintf(label, sizeof label, "mkdir %s", path);
    CHECK_FS(label, EROFS, mkdir(path, 0755));
    fs_expect_absent("nothing created", path);
}

#define LONG_PATH 3000

static void check_long(void) {
    /* A capsule path (BASE included when native) of LONG_PATH bytes. In a capsule the
     * host path behind it is longer by the layer's directory; the shim hands the kernel
     * host paths, so a capsule path can be at most PATH_MAX - 1 minus that length
     * (README: limits). 3000 bytes leaves room for any reasonable layer location. */
    static char path[PATH_MAX + 512], file[PATH_MAX + 512];
    char component[201];
    memset(component, 'd', 200);
    component[200] = '\0';
    snprintf(path, sizeof path, "%s", P("/errno/long"));
    CHECK_FS("mkdir /errno/long", 0, mkdir(path, 0755));
    int depth = 0;
    while (strlen(path) + 1 + 200 + 1 + 40 < LONG_PATH) {
        strcat(path, "/");
        strcat(path, component);
        CHECK_FS("mkdir a long path", 0, mkdir(path, 0755));
        depth++;
    }
    size_t pad = LONG_PATH - strlen(path) - 1;
    strcpy(file, path);
    strcat(file, "/");
    memset(file + strlen(file), 'f', pad);
    file[strlen(path) + 1 + pad] = '\0';
    if (strlen(file) != LONG_PATH) fail("long: built a %zu-byte path", strlen(file));
    CHECK_FS("create a long path", 0, fs_write(file, O_WRONLY | O_CREAT | O_EXCL, "long\n"));
    char buf[64];
    if (fs_read(file, buf, sizeof buf) < 0)
        fail("read a long path: %s", fs_errname(errno));
    else if (strcmp(buf, "long\n") != 0)
        fail("read a long path: \"%s\"", buf);
    struct stat st;
    CHECK_FS("stat a long path", 0, stat(file, &st));
    CHECK_FS("chdir into the long path", 0, chdir(path));
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL || strcmp(cwd, path) != 0)
        fail("getcwd in a long path: %s", getcwd(cwd, sizeof cwd) ? "wrong path" : fs_errname(errno));
    CHECK_FS("chdir /", 0, chdir(P("/")));
    CHECK_FS("unlink a long path", 0, unlink(file));
    while (strlen(file) < PATH_MAX + 8) strcat(file, "/ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
    CHECK_FS("a path over PATH_MAX", ENAMETOOLONG, open(file, O_RDONLY));
    for (; depth > 0; depth--) {
        CHECK_FS("rmdir a long path", 0, rmdir(path));
        *strrchr(path, '/') = '\0';
    }
    CHECK_FS("rmdir /errno/long", 0, rmdir(path));
}

static void check_volume(const char *dir, int writable) {
    char path[PATH_MAX], sub[PATH_MAX], label[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/pre.txt", dir);
    fs_expect_content("volume read", path, "volume\n");
    /* Paths in a volume are capsule paths too. */
    char buf[PATH_MAX];
    char *r = realpath(path, buf);
    fs_expect_str("realpath in a volume", r, path);
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, buf, sizeof buf - 1);
        buf[n < 0 ? 0 : n] = '\0';
        fs_expect_str("/proc/self/fd of a volume file", n < 0 ? NULL : buf, path);
        close(fd);
    }
    char saved[PATH_MAX];
    if (getcwd(saved, sizeof saved) == NULL) saved[0] = '\0';
    CHECK_FS("chdir into a volume", 0, chdir(dir));
    fs_expect_str("getcwd in a volume", getcwd(buf, sizeof buf), dir);
    fs_expect_content("relative path in a volume", "pre.txt", "volume\n");
    if (saved[0] != '\0' && chdir(saved) != 0) fail("chdir back: %s", fs_errname(errno));
    snprintf(path, sizeof path, "%s/probe-%s.txt", dir, writable ? "rw" : "ro");
    snprintf(sub, sizeof sub, "%s/probe-dir", dir);
    if (writable) {
        snprintf(label, sizeof label, "create in volume %s", dir);
        CHECK_FS(label, 0, fs_write(path, O_WRONLY | O_CREAT | O_EXCL, "written\n"));
        fs_expect_content("volume write", path, "written\n");
        CHECK_FS("mkdir in volume", 0, mkdir(sub, 0755));
        CHECK_FS("rmdir in volume", 0, rmdir(sub));
        snprintf(path, sizeof path, "%s/pre.txt", dir);
        CHECK_FS("append in volume", 0, fs_write(path, O_WRONLY | O_APPEND, "appended\n"));
        fs_expect_content("volume append", path, "volume\nappended\n");
    } else {
        snprintf(label, sizeof label, "create in read-only volume %s", dir);
        CHECK_FS(label, EROFS, open(path, O_WRONLY | O_CREAT | O_EXCL, 0644));
        CHECK_FS("mkdir in read-only volume", EROFS, mkdir(sub, 0755));
        snprintf(path, sizeof path, "%s/pre.txt", dir);
        CHECK_FS("open O_WRONLY in read-only volume", EROFS, open(path, O_WRONLY));
        CHECK_FS("unlink in read-only volume", EROFS, unlink(path));
        CHECK_FS("chmod in read-only volume", EROFS, chmod(path, 0600));
        CHECK_FS("access W_OK in read-only volume", EROFS, access(path, W_OK));
        fs_expect_content("read-only volume intact", path, "volume\n");
    }
}

int main(int argc, char **argv) {
    const char *use = "fs_errno --capsule | --native BASE  (rw | ro | long | ro-new PATH | "
                      "vol-rw DIR | vol-ro DIR)...";
    int i = fs_parse_mode(argc, argv, use);
    umask(022);
    if (i >= argc) usage(use);
    while (i < argc) {
        const char *check = argv[i++];
        if (strcmp(check, "rw") == 0) {
            fs_require_test_root();
            check_rw();
        } else if (strcmp(check, "ro") == 0) {
            fs_require_test_root();
            check_ro();
        } else if (strcmp(check, "long") == 0) {
            fs_require_test_root();
            check_long();
        } else if (i < argc && strcmp(check, "ro-new") == 0) {
            check_ro_new(argv[i++]);
        } else if (i < argc && strcmp(check, "vol-rw") == 0) {
            check_volume(argv[i++], 1);
        } else if (i < argc && strcmp(check, "vol-ro") == 0) {
            check_volume(argv[i++], 0);
        } else {
            usage(use);
        }
    }
    return probe_finish();
}
