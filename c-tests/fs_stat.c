/* Every generation of stat agrees in the fs replica, for lower files, copied-up files,
 * new upper files, symlinks, directories and deleted files: stat/lstat/fstat/fstatat,
 * the LFS *64 names, statx, and the __xstat family that binaries built against glibc
 * before 2.33 call (bound here to the old versioned symbols, as those binaries are);
 * access/faccessat/euidaccess answer from the capsule's view.
 *
 * usage: fs_stat --capsule | --native BASE
 *
 * The test tree (tests/fs_support.rs): stat/{file.txt "stat file\n" (10 bytes, 0640,
 * mtime 1111111111), dir/, link -> file.txt, gone.txt}.
 */
#include "probe.h"

#include <sys/sysmacros.h>

#if defined(__x86_64__)
#define OLD_STAT_VER 1
#define OLD_GLIBC "GLIBC_2.2.5"
#define OLD_GLIBC_AT "GLIBC_2.4"
#elif defined(__aarch64__)
#define OLD_STAT_VER 0
#define OLD_GLIBC "GLIBC_2.17"
#define OLD_GLIBC_AT "GLIBC_2.17"
#else
#error "fs_stat: add this architecture's _STAT_VER and base glibc version"
#endif

/* What a binary linked against glibc < 2.33 calls for stat, lstat, fstat, fstatat. */
extern int old_xstat(int ver, const char *path, struct stat *buf);
extern int old_lxstat(int ver, const char *path, struct stat *buf);
extern int old_fxstat(int ver, int fd, struct stat *buf);
extern int old_fxstatat(int ver, int dirfd, const char *path, struct stat *buf, int flags);
extern int old_xstat64(int ver, const char *path, struct stat64 *buf);
extern int old_lxstat64(int ver, const char *path, struct stat64 *buf);
__asm__(".symver old_xstat, __xstat@" OLD_GLIBC);
__asm__(".symver old_lxstat, __lxstat@" OLD_GLIBC);
__asm__(".symver old_fxstat, __fxstat@" OLD_GLIBC);
__asm__(".symver old_fxstatat, __fxstatat@" OLD_GLIBC_AT);
__asm__(".symver old_xstat64, __xstat64@" OLD_GLIBC);
__asm__(".symver old_lxstat64, __lxstat64@" OLD_GLIBC);

struct seen {
    const char *how;
    int ok;
    int err;
    unsigned long long ino, dev, size, nlink;
    unsigned mode;
    long long mtime;
};

#define MAX_SEEN 16

static int nseen;
static struct seen seen[MAX_SEEN];

static void from_stat(const char *how, int r, const struct stat *st) {
    struct seen *s = &seen[nseen++];
    memset(s, 0, sizeof *s);
    s->how = how;
    s->ok = r == 0;
    s->err = r == 0 ? 0 : errno;
    if (r == 0) {
        s->ino = st->st_ino;
        s->dev = st->st_dev;
        s->size = (unsigned long long)st->st_size;
        s->nlink = st->st_nlink;
        s->mode = st->st_mode;
        s->mtime = st->st_mtim.tv_sec;
    }
}

static void from_stat64(const char *how, int r, const struct stat64 *st) {
    struct stat s;
    memset(&s, 0, sizeof s);
    if (r == 0) {
        s.st_ino = st->st_ino;
        s.st_dev = st->st_dev;
        s.st_size = st->st_size;
        s.st_nlink = st->st_nlink;
        s.st_mode = st->st_mode;
        s.st_mtim = st->st_mtim;
    }
    from_stat(how, r, &s);
}

static void from_statx(const char *how, int r, const struct statx *sx) {
    struct stat s;
    memset(&s, 0, sizeof s);
    if (r == 0) {
        s.st_ino = sx->stx_ino;
        s.st_dev = makedev(sx->stx_dev_major, sx->stx_dev_minor);
        s.st_size = (off_t)sx->stx_size;
        s.st_nlink = sx->stx_nlink;
        s.st_mode = sx->stx_mode;
        s.st_mtim.tv_sec = sx->stx_mtime.tv_sec;
    }
    from_stat(how, r, &s);
}

/* Every form of stat on `cpath`; `follow` for the forms that follow a last symlink
 * (stat, fstatat 0, statx 0, __xstat), else the forms that do not (lstat...). */
static void collect(const char *cpath, int follow) {
    const char *path = P(cpath);
    struct stat st;
    struct stat64 st64;
    struct statx sx;
    nseen = 0;
    int nf = follow ? 0 : AT_SYMLINK_NOFOLLOW;
    errno = 0;
    if (follow) {
        from_stat("stat", stat(path, &st), &st);
        from_stat64("stat64", stat64(path, &st64), &st64);
        from_stat("__xstat", old_xstat(OLD_STAT_VER, path, &st), &st);
        from_stat64("__xstat64", old_xstat64(OLD_STAT_VER, path, &st64), &st64);
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            from_stat("fstat", fstat(fd, &st), &st);
            from_stat("__fxstat", old_fxstat(OLD_STAT_VER, fd, &st), &st);
            from_stat("fstatat AT_EMPTY_PATH", fstatat(fd, "", &st, AT_EMPTY_PATH), &st);
            from_statx("statx AT_EMPTY_PATH",
                       statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx), &sx);
            close(fd);
        } else {
            int e = errno;
            from_stat("open for fstat", -1, &st);
            seen[nseen - 1].err = e;
        }
    } else {
        from_stat("lstat", lstat(path, &st), &st);
        from_stat64("lstat64", lstat64(path, &st64), &st64);
        from_stat("__lxstat", old_lxstat(OLD_STAT_VER, path, &st), &st);
        from_stat64("__lxstat64", old_lxstat64(OLD_STAT_VER, path, &st64), &st64);
    }
    from_stat(follow ? "fstatat" : "fstatat NOFOLLOW", fstatat(AT_FDCWD, path, &st, nf), &st);
    from_stat64(follow ? "fstatat64" : "fstatat64 NOFOLLOW",
                fstatat64(AT_FDCWD, path, &st64, nf), &st64);
    from_stat(follow ? "__fxstatat" : "__fxstatat NOFOLLOW",
              old_fxstatat(OLD_STAT_VER, AT_FDCWD, path, &st, nf), &st);
    from_statx(follow ? "statx" : "statx NOFOLLOW",
               statx(AT_FDCWD, path, nf, STATX_BASIC_STATS, &sx), &sx);
    /* Relative to a descriptor of the parent directory. */
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    *slash = '\0';
    int dfd = open(parent, O_RDONLY | O_DIRECTORY);
    from_stat(follow ? "fstatat(dirfd)" : "fstatat(dirfd) NOFOLLOW",
              dfd < 0 ? -1 : fstatat(dfd, slash + 1, &st, nf), &st);
    from_statx(follow ? "statx(dirfd)" : "statx(dirfd) NOFOLLOW",
               dfd < 0 ? -1 : statx(dfd, slash + 1, nf, STATX_BASIC_STATS, &sx), &sx);
    if (dfd >= 0) close(dfd);
}

/* All forms succeeded, agree with each other, and show type/mode/size/mtime (-1: any). */
static void expect_all(const char *label, const char *cpath, int follow, mode_t type, int mode,
                       long long size, long long mtime) {
    collect(cpath, follow);
    for (int i = 0; i < nseen; i++) {
        struct seen *s = &seen[i];
        if (!s->ok) {
            fail("%s: %s %s failed: %s", label, s->how, cpath, fs_errname(s->err));
            continue;
        }
        if ((s->mode & S_IFMT) != type)
            fail("%s: %s %s: type %o, expected %o", label, s->how, cpath, s->mode & S_IFMT, type);
        if (mode >= 0 && (int)(s->mode & 07777) != mode)
            fail("%s: %s %s: mode %04o, expected %04o", label, s->how, cpath, s->mode & 07777,
                 mode);
        if (size >= 0 && (long long)s->size != size)
            fail("%s: %s %s: size %llu, expected %lld", label, s->how, cpath, s->size, size);
        if (mtime >= 0 && s->mtime != mtime)
            fail("%s: %s %s: mtime %lld, expected %lld", label, s->how, cpath, s->mtime, mtime);
        if (s->ino != seen[0].ino || s->dev != seen[0].dev || s->nlink != seen[0].nlink)
            fail("%s: %s %s: ino %llu dev %llu nlink %llu, but %s says ino %llu dev %llu nlink "
                 "%llu",
                 label, s->how, cpath, s->ino, s->dev, s->nlink, seen[0].how, seen[0].ino,
                 seen[0].dev, seen[0].nlink);
    }
}

static void expect_none(const char *label, const char *cpath) {
    for (int follow = 0; follow < 2; follow++) {
        collect(cpath, follow);
        for (int i = 0; i < nseen; i++)
            if (seen[i].ok || seen[i].err != ENOENT)
                fail("%s: %s %s: %s, expected ENOENT", label, seen[i].how, cpath,
                     seen[i].ok ? "exists" : fs_errname(seen[i].err));
    }
}

static unsigned long long ino_of(const char *cpath) {
    struct stat st;
    return stat(P(cpath), &st) == 0 ? st.st_ino : 0;
}

int main(int argc, char **argv) {
    fs_parse_mode(argc, argv, "fs_stat --capsule | --native BASE");
    umask(022);
    fs_require_test_root();

    /* Lower files, symlink, directory. */
    expect_all("lower file", "/stat/file.txt", 1, S_IFREG, 0640, 10, 1111111111);
    expect_all("lower file, no follow", "/stat/file.txt", 0, S_IFREG, 0640, 10, 1111111111);
    expect_all("symlink followed", "/stat/link", 1, S_IFREG, 0640, 10, 1111111111);
    expect_all("symlink itself", "/stat/link", 0, S_IFLNK, -1, 8, -1);
    expect_all("lower dir", "/stat/dir", 1, S_IFDIR, -1, -1, -1);
    if (ino_of("/stat/link") != ino_of("/stat/file.txt"))
        fail("stat through the symlink is not the file");

    /* Copied up by chmod: the new mode everywhere, size and mtime kept. */
    CHECK_FS("chmod file.txt", 0, chmod(P("/stat/file.txt"), 0604));
    expect_all("copied-up file", "/stat/file.txt", 1, S_IFREG, 0604, 10, 1111111111);
    expect_all("copied-up file, no follow", "/stat/file.txt", 0, S_IFREG, 0604, 10, 1111111111);
    expect_all("symlink to a copied-up file", "/stat/link", 1, S_IFREG, 0604, 10, 1111111111);
    if (ino_of("/stat/link") != ino_of("/stat/file.txt"))
        fail("stat through the symlink is not the copied-up file");

    /* A new file of the upper layer. */
    CHECK_FS("create new.txt", 0,
             fs_write(P("/stat/new.txt"), O_WRONLY | O_CREAT | O_EXCL, "12345"));
    expect_all("new file", "/stat/new.txt", 1, S_IFREG, 0644, 5, -1);
    CHECK_FS("mkdir newdir", 0, mkdir(P("/stat/newdir"), 0711));
    expect_all("new dir", "/stat/newdir", 1, S_IFDIR, 0711, -1, -1);

    /* Deleted: ENOENT from every form. */
    CHECK_FS("unlink gone.txt", 0, unlink(P("/stat/gone.txt")));
    expect_none("deleted file", "/stat/gone.txt");
    expect_none("missing file", "/stat/never");

    /* access and friends. */
    CHECK_FS("access R_OK", 0, access(P("/stat/file.txt"), R_OK));
    CHECK_FS("access W_OK (copy-on-write)", 0, access(P("/stat/dir"), W_OK));
    CHECK_FS("access F_OK missing", ENOENT, access(P("/stat/never"), F_OK));
    CHECK_FS("access deleted", ENOENT, access(P("/stat/gone.txt"), F_OK));
    CHECK_FS("access through symlink", 0, access(P("/stat/link"), R_OK));
    CHECK_FS("faccessat", 0, faccessat(AT_FDCWD, P("/stat/file.txt"), R_OK, 0));
    CHECK_FS("faccessat AT_EACCESS", 0, faccessat(AT_FDCWD, P("/stat/file.txt"), R_OK, AT_EACCESS));
    CHECK_FS("faccessat AT_SYMLINK_NOFOLLOW", 0,
             faccessat(AT_FDCWD, P("/stat/link"), F_OK, AT_SYMLINK_NOFOLLOW));
    CHECK_FS("faccessat deleted", ENOENT, faccessat(AT_FDCWD, P("/stat/gone.txt"), F_OK, 0));
    CHECK_FS("euidaccess", 0, euidaccess(P("/stat/new.txt"), R_OK | W_OK));
    CHECK_FS("access X_OK of a lower dir", 0, access(P("/stat/dir"), X_OK));
    int dfd = open(P("/stat"), O_RDONLY | O_DIRECTORY);
    CHECK_FS("faccessat(dirfd)", 0, faccessat(dfd, "file.txt", R_OK, 0));
    CHECK_FS("faccessat(dirfd) deleted", ENOENT, faccessat(dfd, "gone.txt", F_OK, 0));
    if (dfd >= 0) close(dfd);

    return probe_finish();
}
