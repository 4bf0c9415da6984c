/* Copy-on-write of the fs replica: every way of changing a file of the lower layer
 * changes the capsule's view (the lower layer itself is checked by the harness), and
 * copy-up keeps what it must (content, mode, times, symlinks as symlinks).
 *
 * usage: fs_cow --capsule | --native BASE [--xattr]
 *   --xattr: the tree's cow/xattr.txt and cow/xattr2.txt carry user.origin="lower"
 *
 * Works on /cow of the test tree (tests/fs_support.rs, populate_data):
 *   mode.txt "mode\n" 0754, times.txt "times\n" mtime 1000000000, append.txt "line1\n",
 *   trunc.txt, shrink.txt "0123456789\n", ftrunc.txt "abcdefghij\n", readonly.txt,
 *   gone.txt, gone2.txt, emptydir/, fulldir/{a,b,sub/c}, old.txt, target.txt,
 *   renamesrc.txt, linksrc.txt, utime.txt, sym -> mode.txt, sub/deep/, big.bin (1 MiB,
 *   byte i = (i*131+7) & 255), fopen.txt "abc\n", rw.txt "0123456789\n",
 *   lowerdir/{x,y}, fchmod.txt "fchmod\n", futimens.txt, chown.txt "chown\n",
 *   chownlink -> chown.txt, fchown.txt, nr-src.txt "nr-src\n", nr-dst.txt "nr-dst\n",
 *   xattr.txt, xattr2.txt.
 * Prints FAIL lines, then OK or FAILURES: N.
 */
#include "probe.h"

#include <stdint.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/xattr.h>

#define BIG_SIZE (1024 * 1024)

static unsigned char big_byte(long i) { return (unsigned char)((i * 131 + 7) & 255); }

static void expect_mtime(const char *label, const char *path, time_t want) {
    struct stat st;
    if (stat(path, &st) != 0)
        fail("%s: stat %s: %s", label, path, fs_errname(errno));
    else if (st.st_mtim.tv_sec != want)
        fail("%s: %s has mtime %lld, expected %lld", label, path, (long long)st.st_mtim.tv_sec,
             (long long)want);
}

static void expect_owner(const char *label, const char *path, int follow, uid_t uid) {
    struct stat st;
    int r = follow ? stat(path, &st) : lstat(path, &st);
    if (r != 0)
        fail("%s: stat %s: %s", label, path, fs_errname(errno));
    else if (st.st_uid != uid || st.st_gid != uid)
        fail("%s: %s owned by %u:%u, expected %u:%u", label, path, st.st_uid, st.st_gid, uid, uid);
}

static void expect_xattr(const char *label, const char *path, const char *name, const char *want) {
    char v[256];
    errno = 0;
    ssize_t n = getxattr(path, name, v, sizeof v - 1);
    if (want == NULL) {
        if (n >= 0 || errno != ENODATA)
            fail("%s: %s of %s: %zd %s, expected ENODATA", label, name, path, n, fs_errname(errno));
        return;
    }
    if (n < 0) {
        fail("%s: %s of %s: %s", label, name, path, fs_errname(errno));
        return;
    }
    v[n] = '\0';
    if (strcmp(v, want) != 0) fail("%s: %s of %s is \"%s\", expected \"%s\"", label, name, path, v, want);
}

int main(int argc, char **argv) {
    int argi = fs_parse_mode(argc, argv, "fs_cow --capsule | --native BASE [--xattr]");
    int xattrs = argi < argc && strcmp(argv[argi], "--xattr") == 0;
    umask(022);
    fs_require_test_root();
    char buf[4096];
    struct stat st;
    time_t start = time(NULL);

    /* Writing in place (O_RDWR, no truncation): new content, mode kept. */
    int fd = open(P("/cow/mode.txt"), O_RDWR);
    if (fd < 0) {
        fail("open mode.txt O_RDWR: %s", fs_errname(errno));
    } else {
        if (pwrite(fd, "MODE", 4, 0) != 4) fail("pwrite mode.txt: %s", fs_errname(errno));
        /* The same descriptor reads what it wrote. */
        if (pread(fd, buf, 5, 0) != 5 || memcmp(buf, "MODE\n", 5) != 0)
            fail("pread mode.txt after pwrite: got \"%.5s\"", buf);
        close(fd);
    }
    fs_expect_content("O_RDWR write", P("/cow/mode.txt"), "MODE\n");
    fs_expect_stat("copy-up keeps the mode", P("/cow/mode.txt"), S_IFREG, 0754);
    if (stat(P("/cow/mode.txt"), &st) != 0 || st.st_mtim.tv_sec < start - 5 ||
        st.st_mtim.tv_sec > time(NULL) + 5)
        fail("writing mode.txt did not set its mtime to now: %lld", (long long)st.st_mtim.tv_sec);

    /* chmod copies up content and times. */
    CHECK_FS("chmod times.txt", 0, chmod(P("/cow/times.txt"), 0600));
    fs_expect_stat("chmod", P("/cow/times.txt"), S_IFREG, 0600);
    fs_expect_content("chmod keeps content", P("/cow/times.txt"), "times\n");
    expect_mtime("copy-up keeps mtime", P("/cow/times.txt"), 1000000000);

    /* fchmod and futimens through a descriptor opened read-only: the capsule's file
     * changes (copied up), never the lower one. */
    fd = open(P("/cow/fchmod.txt"), O_RDONLY);
    if (fd < 0) {
        fail("open fchmod.txt: %s", fs_errname(errno));
    } else {
        CHECK_FS("fchmod on an O_RDONLY fd", 0, fchmod(fd, 0600));
        close(fd);
    }
    fs_expect_stat("fchmod", P("/cow/fchmod.txt"), S_IFREG, 0600);
    fs_expect_content("fchmod keeps content", P("/cow/fchmod.txt"), "fchmod\n");
    fd = open(P("/cow/futimens.txt"), O_RDONLY);
    if (fd < 0) {
        fail("open futimens.txt: %s", fs_errname(errno));
    } else {
        struct timespec ft[2] = {{1200000000, 0}, {1200000000, 0}};
        CHECK_FS("futimens on an O_RDONLY fd", 0, futimens(fd, ft));
        close(fd);
    }
    expect_mtime("futimens", P("/cow/futimens.txt"), 1200000000);

    /* O_APPEND, O_TRUNC. */
    CHECK_FS("O_APPEND", 0, fs_write(P("/cow/append.txt"), O_WRONLY | O_APPEND, "line2\n"));
    fs_expect_content("O_APPEND", P("/cow/append.txt"), "line1\nline2\n");
    CHECK_FS("O_TRUNC", 0, fs_write(P("/cow/trunc.txt"), O_WRONLY | O_TRUNC, "new\n"));
    fs_expect_content("O_TRUNC", P("/cow/trunc.txt"), "new\n");

    /* truncate() and ftruncate(). */
    CHECK_FS("truncate 4", 0, truncate(P("/cow/shrink.txt"), 4));
    fs_expect_content("truncate", P("/cow/shrink.txt"), "0123");
    CHECK_FS("truncate 8", 0, truncate(P("/cow/shrink.txt"), 8));
    if (stat(P("/cow/shrink.txt"), &st) != 0 || st.st_size != 8)
        fail("truncate to 8: size %lld", (long long)st.st_size);
    fd = open(P("/cow/ftrunc.txt"), O_RDWR);
    if (fd < 0) {
        fail("open ftrunc.txt O_RDWR: %s", fs_errname(errno));
    } else {
        CHECK_FS("ftruncate", 0, ftruncate(fd, 3));
        close(fd);
    }
    fs_expect_content("ftruncate", P("/cow/ftrunc.txt"), "abc");

    /* Reading does not copy up (the harness checks the upper layer). */
    fs_expect_content("read-only open", P("/cow/readonly.txt"), "read only\n");

    /* One descriptor: write, seek, read back, fstat. */
    fd = open(P("/cow/rw.txt"), O_RDWR);
    if (fd < 0) {
        fail("open rw.txt: %s", fs_errname(errno));
    } else {
        if (lseek(fd, 10, SEEK_SET) != 10 || write(fd, "!+\n", 3) != 3)
            fail("write rw.txt at 10: %s", fs_errname(errno));
        if (lseek(fd, 0, SEEK_SET) != 0 || fs_read_fd(fd, buf, sizeof buf) != 13 ||
            strcmp(buf, "0123456789!+\n") != 0)
            fail("rw.txt read back through its descriptor: \"%s\"", buf);
        if (fstat(fd, &st) != 0 || st.st_size != 13)
            fail("fstat rw.txt: size %lld", (long long)st.st_size);
        CHECK_FS("fsync rw.txt", 0, fsync(fd));
        close(fd);
    }
    fs_expect_content("rw.txt", P("/cow/rw.txt"), "0123456789!+\n");

    /* unlink: gone, everywhere; then created again. */
    CHECK_FS("unlink gone.txt", 0, unlink(P("/cow/gone.txt")));
    fs_expect_absent("unlinked", P("/cow/gone.txt"));
    CHECK_FS("open unlinked", ENOENT, open(P("/cow/gone.txt"), O_RDONLY));
    CHECK_FS("access unlinked", ENOENT, access(P("/cow/gone.txt"), F_OK));
    CHECK_FS("unlink twice", ENOENT, unlink(P("/cow/gone.txt")));
    CHECK_FS("re-create with O_EXCL", 0,
             fs_write(P("/cow/gone.txt"), O_WRONLY | O_CREAT | O_EXCL, "reborn\n"));
    fs_expect_content("re-created", P("/cow/gone.txt"), "reborn\n");
    fs_expect_stat("re-created mode", P("/cow/gone.txt"), S_IFREG, 0644);
    CHECK_FS("unlink gone2.txt", 0, unlink(P("/cow/gone2.txt")));
    fs_expect_absent("unlinked gone2", P("/cow/gone2.txt"));

    /* rmdir of a merged directory with entries: ENOTEMPTY. */
    CHECK_FS("rmdir fulldir", ENOTEMPTY, rmdir(P("/cow/fulldir")));
    /* rmdir + mkdir of an empty lower directory: a new, empty one. */
    CHECK_FS("rmdir emptydir", 0, rmdir(P("/cow/emptydir")));
    fs_expect_absent("removed dir", P("/cow/emptydir"));
    CHECK_FS("mkdir emptydir", 0, mkdir(P("/cow/emptydir"), 0750));
    fs_expect_stat("re-created dir", P("/cow/emptydir"), S_IFDIR, 0750);
    static const char *const none[] = {NULL};
    fs_expect_listing("re-created dir is empty", P("/cow/emptydir"), none);
    /* Emptied one entry at a time, removed, re-created: lower entries stay hidden. */
    CHECK_FS("unlink fulldir/a", 0, unlink(P("/cow/fulldir/a")));
    CHECK_FS("rmdir fulldir (b, sub left)", ENOTEMPTY, rmdir(P("/cow/fulldir")));
    CHECK_FS("unlink fulldir/b", 0, unlink(P("/cow/fulldir/b")));
    CHECK_FS("unlink fulldir/sub/c", 0, unlink(P("/cow/fulldir/sub/c")));
    CHECK_FS("rmdir fulldir/sub", 0, rmdir(P("/cow/fulldir/sub")));
    CHECK_FS("rmdir emptied fulldir", 0, rmdir(P("/cow/fulldir")));
    fs_expect_absent("removed fulldir", P("/cow/fulldir"));
    CHECK_FS("mkdir fulldir", 0, mkdir(P("/cow/fulldir"), 0755));
    fs_expect_listing("re-created fulldir is empty", P("/cow/fulldir"), none);
    fs_expect_absent("old entry stays hidden", P("/cow/fulldir/a"));
    fs_expect_absent("old subdir stays hidden", P("/cow/fulldir/sub"));
    CHECK_FS("create in re-created dir", 0,
             fs_write(P("/cow/fulldir/new"), O_WRONLY | O_CREAT | O_EXCL, "n\n"));
    static const char *const only_new[] = {"new", NULL};
    fs_expect_listing("re-created fulldir", P("/cow/fulldir"), only_new);

    /* rename of lower files. */
    CHECK_FS("rename old -> new", 0, rename(P("/cow/old.txt"), P("/cow/new.txt")));
    fs_expect_absent("rename source", P("/cow/old.txt"));
    fs_expect_content("rename target", P("/cow/new.txt"), "old\n");
    CHECK_FS("rename over a lower file", 0, rename(P("/cow/renamesrc.txt"), P("/cow/target.txt")));
    fs_expect_absent("replacing rename source", P("/cow/renamesrc.txt"));
    fs_expect_content("replaced", P("/cow/target.txt"), "renamesrc\n");
    CHECK_FS("mkdir moved", 0, mkdir(P("/cow/moved"), 0755));
    CHECK_FS("rename into a new dir", 0, rename(P("/cow/new.txt"), P("/cow/moved/new.txt")));
    fs_expect_content("moved", P("/cow/moved/new.txt"), "old\n");
    fs_expect_absent("moved away", P("/cow/new.txt"));

    /* rename of a lower directory: works, or EXDEV and nothing changed. */
    int dir_renamed = 0;
    errno = 0;
    if (rename(P("/cow/lowerdir"), P("/cow/lowerdir2")) == 0) {
        dir_renamed = 1;
        fs_expect_absent("renamed dir source", P("/cow/lowerdir"));
        fs_expect_content("renamed dir x", P("/cow/lowerdir2/x"), "x\n");
        fs_expect_content("renamed dir y", P("/cow/lowerdir2/y"), "y\n");
    } else if (errno != EXDEV) {
        fail("rename of a lower directory: %s, expected success or EXDEV", fs_errname(errno));
    } else {
        fs_expect_content("dir after EXDEV", P("/cow/lowerdir/x"), "x\n");
        fs_expect_absent("no target after EXDEV", P("/cow/lowerdir2"));
    }

    /* link: both names are one file. */
    CHECK_FS("link", 0, link(P("/cow/linksrc.txt"), P("/cow/linkdst.txt")));
    fs_expect_content("link target", P("/cow/linkdst.txt"), "linksrc\n");
    struct stat a, b;
    if (stat(P("/cow/linksrc.txt"), &a) != 0 || stat(P("/cow/linkdst.txt"), &b) != 0)
        fail("stat linked files: %s", fs_errname(errno));
    else if (a.st_ino != b.st_ino || a.st_dev != b.st_dev || a.st_nlink != 2 || b.st_nlink != 2)
        fail("linked files: ino %lu/%lu nlink %lu/%lu, expected one inode with 2 links",
             (unsigned long)a.st_ino, (unsigned long)b.st_ino, (unsigned long)a.st_nlink,
             (unsigned long)b.st_nlink);
    CHECK_FS("append through the link", 0,
             fs_write(P("/cow/linkdst.txt"), O_WRONLY | O_APPEND, "more\n"));
    fs_expect_content("written through the other name", P("/cow/linksrc.txt"), "linksrc\nmore\n");

    /* A lower symlink copied up is still a symlink. */
    CHECK_FS("rename a lower symlink", 0, rename(P("/cow/sym"), P("/cow/sym2")));
    if (lstat(P("/cow/sym2"), &st) != 0 || !S_ISLNK(st.st_mode))
        fail("renamed symlink is not a symlink (%s)", fs_errname(errno));
    ssize_t n = readlink(P("/cow/sym2"), buf, sizeof buf - 1);
    buf[n < 0 ? 0 : n] = '\0';
    fs_expect_str("readlink renamed symlink", n < 0 ? NULL : buf, "mode.txt");
    fs_expect_content("through the renamed symlink", P("/cow/sym2"), "MODE\n");
    CHECK_FS("symlink", 0, symlink("trunc.txt", P("/cow/newlink")));
    n = readlink(P("/cow/newlink"), buf, sizeof buf - 1);
    buf[n < 0 ? 0 : n] = '\0';
    fs_expect_str("readlink new symlink", n < 0 ? NULL : buf, "trunc.txt");
    fs_expect_content("through the new symlink", P("/cow/newlink"), "new\n");

    /* utimensat on a lower file. */
    struct timespec times[2] = {{1234567890, 0}, {1234567890, 500000000}};
    CHECK_FS("utimensat", 0, utimensat(AT_FDCWD, P("/cow/utime.txt"), times, 0));
    if (stat(P("/cow/utime.txt"), &st) != 0 || st.st_mtim.tv_sec != 1234567890 ||
        st.st_mtim.tv_nsec != 500000000)
        fail("utimensat: mtime %lld.%09ld", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    fs_expect_content("utimensat keeps content", P("/cow/utime.txt"), "utime\n");

    /* New files and directories inside directories that only the lower layer has. */
    CHECK_FS("create in a lower-only dir", 0,
             fs_write(P("/cow/sub/deep/new.txt"), O_WRONLY | O_CREAT | O_EXCL, "deep\n"));
    fs_expect_content("deep file", P("/cow/sub/deep/new.txt"), "deep\n");
    CHECK_FS("mkdir in a lower-only dir", 0, mkdir(P("/cow/sub/deep/a"), 0755));
    CHECK_FS("mkdir nested", 0, mkdir(P("/cow/sub/deep/a/b"), 0755));
    fs_expect_stat("nested dir", P("/cow/sub/deep/a/b"), S_IFDIR, 0755);

    /* A 1 MiB file, one byte changed in the middle: every other byte copied. */
    fd = open(P("/cow/big.bin"), O_RDWR);
    if (fd < 0) {
        fail("open big.bin: %s", fs_errname(errno));
    } else {
        if (pwrite(fd, "X", 1, 500000) != 1) fail("pwrite big.bin: %s", fs_errname(errno));
        close(fd);
    }
    static unsigned char big[BIG_SIZE + 16];
    fd = open(P("/cow/big.bin"), O_RDONLY);
    long got = fd < 0 ? -1 : fs_read_fd(fd, (char *)big, sizeof big);
    if (fd >= 0) close(fd);
    if (got != BIG_SIZE) {
        fail("big.bin: read %ld bytes, expected %d", got, BIG_SIZE);
    } else {
        long bad = -1;
        for (long i = 0; i < BIG_SIZE && bad < 0; i++)
            if (big[i] != (i == 500000 ? 'X' : big_byte(i))) bad = i;
        if (bad >= 0) fail("big.bin differs at byte %ld", bad);
    }

    /* stdio. */
    FILE *f = fopen(P("/cow/fopen.txt"), "a");
    if (f == NULL) {
        fail("fopen a: %s", fs_errname(errno));
    } else {
        fputs("def\n", f);
        if (fclose(f) != 0) fail("fclose a: %s", fs_errname(errno));
    }
    fs_expect_content("fopen a", P("/cow/fopen.txt"), "abc\ndef\n");
    f = fopen(P("/cow/fopen.txt"), "r+");
    if (f == NULL) {
        fail("fopen r+: %s", fs_errname(errno));
    } else {
        fputs("ABC", f);
        if (fclose(f) != 0) fail("fclose r+: %s", fs_errname(errno));
    }
    fs_expect_content("fopen r+", P("/cow/fopen.txt"), "ABC\ndef\n");
    f = fopen(P("/cow/fopen-new.txt"), "w");
    if (f == NULL) {
        fail("fopen w: %s", fs_errname(errno));
    } else {
        fputs("fresh\n", f);
        if (fclose(f) != 0) fail("fclose w: %s", fs_errname(errno));
    }
    fs_expect_content("fopen w", P("/cow/fopen-new.txt"), "fresh\n");

    /* mkstemp in a lower directory. */
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof tmpl, "%s", P("/tmp/capsule-probe-cowXXXXXX"));
    fd = mkstemp(tmpl);
    if (fd < 0) {
        fail("mkstemp: %s", fs_errname(errno));
    } else {
        if (write(fd, "tmp\n", 4) != 4) fail("write mkstemp file: %s", fs_errname(errno));
        close(fd);
        fs_expect_content("mkstemp file", tmpl, "tmp\n");
        fs_expect_stat("mkstemp mode", tmpl, S_IFREG, 0600);
        CHECK_FS("unlink mkstemp file", 0, unlink(tmpl));
        fs_expect_absent("mkstemp file removed", tmpl);
    }

    /* O_CREAT without O_EXCL on an existing lower file opens it. */
    fd = open(P("/cow/readonly.txt"), O_RDONLY | O_CREAT, 0600);
    if (fd < 0) {
        fail("O_CREAT on an existing file: %s", fs_errname(errno));
    } else {
        if (fs_read_fd(fd, buf, sizeof buf) < 0 || strcmp(buf, "read only\n") != 0)
            fail("O_CREAT on an existing file read \"%s\"", buf);
        close(fd);
    }

    /* mkfifo and mknod of a FIFO in a lower directory. */
    CHECK_FS("mkfifo", 0, mkfifo(P("/cow/fifo"), 0640));
    fs_expect_stat("mkfifo", P("/cow/fifo"), S_IFIFO, 0640);
    CHECK_FS("mknod S_IFIFO", 0, mknod(P("/cow/fifo2"), S_IFIFO | 0600, 0));
    fs_expect_stat("mknod", P("/cow/fifo2"), S_IFIFO, 0600);

    /* chown, lchown, fchown of lower names (the tests run as the real root). */
    if (geteuid() == 0) {
        CHECK_FS("chown", 0, chown(P("/cow/chown.txt"), 1, 1));
        expect_owner("chown", P("/cow/chown.txt"), 1, 1);
        fs_expect_content("chown keeps content", P("/cow/chown.txt"), "chown\n");
        CHECK_FS("lchown", 0, lchown(P("/cow/chownlink"), 2, 2));
        expect_owner("lchown: the link", P("/cow/chownlink"), 0, 2);
        expect_owner("lchown: not the target", P("/cow/chownlink"), 1, 1);
        fd = open(P("/cow/fchown.txt"), O_RDONLY);
        if (fd < 0) {
            fail("open fchown.txt: %s", fs_errname(errno));
        } else {
            CHECK_FS("fchown on an O_RDONLY fd", 0, fchown(fd, 3, 3));
            close(fd);
        }
        expect_owner("fchown", P("/cow/fchown.txt"), 1, 3);
    }

    /* Extended attributes: copy-up keeps them; new ones belong to the capsule's copy. */
    if (xattrs) {
        expect_xattr("lower xattr", P("/cow/xattr.txt"), "user.origin", "lower");
        CHECK_FS("setxattr", 0, setxattr(P("/cow/xattr.txt"), "user.capsule", "yes", 3, 0));
        expect_xattr("set xattr", P("/cow/xattr.txt"), "user.capsule", "yes");
        expect_xattr("copy-up keeps xattrs", P("/cow/xattr.txt"), "user.origin", "lower");
        CHECK_FS("removexattr", 0, removexattr(P("/cow/xattr2.txt"), "user.origin"));
        expect_xattr("removed xattr", P("/cow/xattr2.txt"), "user.origin", NULL);
        fs_expect_content("xattr2 content", P("/cow/xattr2.txt"), "xattr2\n");
    }

    /* renameat2 RENAME_NOREPLACE (mv uses it): EEXIST onto an existing lower name; a
     * new name works, or ENOSYS/EINVAL tells the caller to fall back. */
    errno = 0;
    int r = renameat2(AT_FDCWD, P("/cow/nr-src.txt"), AT_FDCWD, P("/cow/nr-dst.txt"),
                      RENAME_NOREPLACE);
    if (r != -1 || (errno != EEXIST && errno != ENOSYS && errno != EINVAL))
        fail("renameat2 NOREPLACE onto a lower name: %d %s, expected EEXIST (or ENOSYS/EINVAL)",
             r, fs_errname(errno));
    fs_expect_content("NOREPLACE target intact", P("/cow/nr-dst.txt"), "nr-dst\n");
    fs_expect_content("NOREPLACE source intact", P("/cow/nr-src.txt"), "nr-src\n");
    errno = 0;
    int noreplace_renamed = renameat2(AT_FDCWD, P("/cow/nr-src.txt"), AT_FDCWD,
                                      P("/cow/nr-new.txt"), RENAME_NOREPLACE) == 0;
    if (noreplace_renamed) {
        fs_expect_absent("NOREPLACE source", P("/cow/nr-src.txt"));
        fs_expect_content("NOREPLACE new name", P("/cow/nr-new.txt"), "nr-src\n");
    } else if (errno != ENOSYS && errno != EINVAL) {
        fail("renameat2 NOREPLACE to a new name: %s", fs_errname(errno));
    }

    /* The shim's own descriptors survive closefrom and close_range. */
    closefrom(3);
    fs_expect_content("read after closefrom", P("/cow/mode.txt"), "MODE\n");
    CHECK_FS("create after closefrom", 0,
             fs_write(P("/cow/after-close.txt"), O_WRONLY | O_CREAT | O_EXCL, "ac\n"));
    CHECK_FS("close_range", 0, close_range(3, ~0U, 0));
    fs_expect_content("copy-up after close_range", P("/cow/rw.txt"), "0123456789!+\n");
    CHECK_FS("append after close_range", 0,
             fs_write(P("/cow/after-close.txt"), O_WRONLY | O_APPEND, "ac2\n"));
    fs_expect_content("after close_range", P("/cow/after-close.txt"), "ac\nac2\n");
    fs_expect_absent("whiteout after close_range", P("/cow/gone2.txt"));

    /* The whole directory, each name once, none of the removed ones. */
    const char *final[] = {"mode.txt",     "times.txt",    "append.txt",  "trunc.txt",
                           "shrink.txt",   "ftrunc.txt",   "readonly.txt", "rw.txt",
                           "gone.txt",     "emptydir",     "fulldir",     "target.txt",
                           "moved",        "linksrc.txt",  "linkdst.txt", "sym2",
                           "newlink",      "utime.txt",    "sub",         "big.bin",
                           "fopen.txt",    "fopen-new.txt", "fchmod.txt",  "futimens.txt",
                           "fifo",         "fifo2",        "chown.txt",   "chownlink",
                           "fchown.txt",   "nr-dst.txt",   "xattr.txt",   "xattr2.txt",
                           "after-close.txt",
                           noreplace_renamed ? "nr-new.txt" : "nr-src.txt",
                           dir_renamed ? "lowerdir2" : "lowerdir", NULL};
    fs_expect_listing("final /cow", P("/cow"), final);
    return probe_finish();
}
