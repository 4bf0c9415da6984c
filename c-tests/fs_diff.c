/* Differential file-system driver: fs_diff DIR PHASES SEED FIRST COUNT OPS
 *
 * For each sequence K in FIRST..FIRST+COUNT-1 works in DIR/sK and runs the PHASES
 * (comma separated): `setup` (the starting tree), `change` (changes to it, as a
 * capsule would make to lower content), `run` (OPS random operations seeded by
 * SEED+K; with `exchange` RENAME_EXCHANGE among the renames, with `nodirrename` no
 * renames of directories; one line each: `K.I op args = result errno`, then the
 * final tree, one line per entry). The same command natively and in a capsule must
 * print the same lines. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static uint64_t rng;
static unsigned pick(unsigned n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}
#define PICK(a) (a)[pick(sizeof(a) / sizeof((a)[0]))]

static long seq, step;
static int exchange; /* RENAME_EXCHANGE in the mix: phase `exchange` */
static int dir_renames = 1; /* phase `nodirrename`: renames of directories skipped */

/* Whether a rename of `p` is left out (a directory, with `nodirrename`). */
static int skip_rename(int dfd, const char *p) {
    struct stat st;
    return !dir_renames && fstatat(dfd, p, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}
static void report(const char *op, const char *args, long ret) {
    int e = ret < 0 ? errno : 0;
    printf("%ld.%ld %s %s = %ld %s\n", seq, step, op, args, ret, e ? strerrorname_np(e) : "-");
}

static const char *top[] = {"a", "b", "c", "d", "e", "l", "m", "z", "p", ".", "n"};
static const char *sub[] = {"f", "g", "b", ".", "..", "l", "h", "x"};
static char pathbuf[2][64];
static const char *path(int which) {
    char *p = pathbuf[which];
    strcpy(p, PICK(top));
    if (pick(2)) {
        strcat(p, "/");
        const char *s = PICK(sub);
        strcat(p, p[0] == '.' && s[0] == '.' ? "f" : s); /* never above the scratch tree */
        if (pick(4) == 0) {
            strcat(p, "/");
            strcat(p, PICK(sub) [0] == '.' ? "h" : PICK(sub));
        }
    }
    if (pick(6) == 0)
        strcat(p, "/");
    if (pick(12) == 0 && strcmp(p, ".") != 0 && p[0] != '.') {
        memmove(p + 2, p, strlen(p) + 1);
        memcpy(p, "./", 2);
    }
    return p;
}

/* AT_FDCWD or a descriptor of "d" (or "e") opened for this operation. */
static int dirfd_for(char *label) {
    switch (pick(4)) {
    case 0: {
        int fd = open("d", O_RDONLY | O_DIRECTORY);
        strcpy(label, fd < 0 ? "bad" : "d");
        return fd < 0 ? -1 : fd;
    }
    case 1: {
        int fd = open("e", O_PATH | O_DIRECTORY);
        strcpy(label, fd < 0 ? "bad" : "e@path");
        return fd < 0 ? -1 : fd;
    }
    default:
        strcpy(label, ".");
        return AT_FDCWD;
    }
}

static void put(const char *name, const char *text, mode_t mode) {
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, text, strlen(text)) < 0 || fchmod(fd, mode) < 0 || close(fd) < 0) {
        fprintf(stderr, "fs_diff: setup %s: %s\n", name, strerror(errno));
        exit(2);
    }
}

static void must(int ret, const char *what) {
    if (ret < 0) {
        fprintf(stderr, "fs_diff: %s: %s\n", what, strerror(errno));
        exit(2);
    }
}

static void setup(void) {
    put("a", "alpha", 0644);
    put("b", "bb", 0600);
    must(chown("b", 1234, 1234), "chown b");
    must(mkdir("d", 0755), "mkdir d");
    put("d/f", "ff", 0640);
    put("d/b", "db", 04755);
    must(mkdir("d/g", 0700), "mkdir d/g");
    put("d/g/h", "hh", 0444);
    must(mkdir("e", 0750), "mkdir e");
    must(symlink("a", "l"), "symlink l");
    must(symlink("d", "m"), "symlink m");
    must(symlink("nowhere", "z"), "symlink z");
    must(symlink("g", "d/l"), "symlink d/l");
    must(mkfifo("p", 0620), "mkfifo p");
}

static void change(void) {
    int fd = open("a", O_WRONLY | O_APPEND);
    must(fd, "open a");
    must(write(fd, "+", 1), "append a");
    close(fd);
    must(chmod("d/f", 0600), "chmod d/f");
    put("d/new", "new", 0644);
    must(unlink("d/g/h"), "unlink d/g/h");
    must(mkdir("e/x", 0711), "mkdir e/x");
    must(rename("b", "e/b"), "rename b");
}

/* unlinkat(dirfd, name) after scanning the directory descriptor, as fd-relative
 * rmtree implementations do. */
static int rmtree_at(int parent, const char *name, int depth) {
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOTDIR ? unlinkat(parent, name, 0) : -1;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        close(fd);
        return -1;
    }
    struct dirent *ent;
    int ret = 0;
    while ((ent = readdir(dir))) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, ".."))
            continue;
        if (depth < 8 && rmtree_at(dirfd(dir), ent->d_name, depth + 1) < 0)
            ret = -1;
    }
    closedir(dir);
    if (ret < 0)
        return -1;
    return unlinkat(parent, name, AT_REMOVEDIR);
}

static const char *type_of(mode_t m) {
    return S_ISREG(m) ? "f" : S_ISDIR(m) ? "d" : S_ISLNK(m) ? "l" : S_ISFIFO(m) ? "p" : "?";
}

static void one(void) {
    char args[256], lab[16];
    const char *p = path(0), *q = path(1);
    int fd, dfd;
    long r;
    mode_t mode = PICK(((mode_t[]){0644, 0600, 0755, 0444, 04711, 01777, 0}));
    switch (pick(20)) {
    case 0:
    case 1:
    case 2: {
        int acc = PICK(((int[]){O_RDONLY, O_WRONLY, O_RDWR}));
        int fl = acc;
        int extra[] = {O_CREAT, O_EXCL, O_TRUNC, O_DIRECTORY, O_NOFOLLOW, O_APPEND};
        for (unsigned i = 0; i < 6; i++)
            if (pick(3) == 0)
                fl |= extra[i];
        if (fl & O_CREAT && fl & O_DIRECTORY) /* EINVAL from Linux 6.4, not before */
            fl &= ~O_DIRECTORY;
        dfd = dirfd_for(lab);
        fd = openat(dfd, p, fl | O_NONBLOCK, mode);
        snprintf(args, sizeof args, "%s %s flags=%#o mode=%o", lab, p, fl, mode);
        report("openat", args, fd < 0 ? -1 : 0);
        if (fd >= 0) {
            struct stat st;
            if (acc != O_RDONLY) {
                errno = 0;
                r = write(fd, "w", 1);
                report(" write", "", r);
            }
            r = fstat(fd, &st);
            snprintf(args, sizeof args, "%s %o size=%lld", type_of(st.st_mode), st.st_mode & 07777,
                     (long long)st.st_size);
            report(" fstat", args, r);
            close(fd);
        }
        if (dfd >= 0)
            close(dfd);
        return;
    }
    case 3:
        dfd = dirfd_for(lab);
        r = pick(2) ? mkdirat(dfd, p, mode) : (dfd == AT_FDCWD ? mkdir(p, mode) : mkdirat(dfd, p, mode));
        snprintf(args, sizeof args, "%s %s %o", lab, p, mode);
        report("mkdirat", args, r);
        break;
    case 4: {
        int flag = pick(3) == 0 ? AT_REMOVEDIR : 0;
        dfd = dirfd_for(lab);
        r = unlinkat(dfd, p, flag);
        snprintf(args, sizeof args, "%s %s %d", lab, p, flag);
        report("unlinkat", args, r);
        break;
    }
    case 5:
        dfd = AT_FDCWD;
        r = pick(2) ? rmdir(p) : unlink(p);
        report(r == 0 ? "rm" : "rm", p, r);
        break;
    case 6:
    case 7: {
        unsigned fl = PICK(((unsigned[]){0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE}));
        if (fl == RENAME_EXCHANGE && !exchange)
            fl = 0;
        dfd = dirfd_for(lab);
        if (skip_rename(dfd, p) || (fl == RENAME_EXCHANGE && skip_rename(AT_FDCWD, q)))
            break;
        r = renameat2(dfd, p, AT_FDCWD, q, fl);
        snprintf(args, sizeof args, "%s %s . %s %u", lab, p, q, fl);
        report("renameat2", args, r);
        break;
    }
    case 8:
        dfd = AT_FDCWD;
        if (skip_rename(dfd, p))
            break;
        r = rename(p, q);
        snprintf(args, sizeof args, "%s %s", p, q);
        report("rename", args, r);
        break;
    case 9: {
        int fl = pick(2) ? AT_SYMLINK_FOLLOW : 0;
        dfd = dirfd_for(lab);
        r = linkat(AT_FDCWD, p, dfd, q, fl);
        snprintf(args, sizeof args, "%s %s %s %d", p, lab, q, fl);
        report("linkat", args, r);
        break;
    }
    case 10: {
        const char *target = PICK(((const char *[]){"a", "d", "d/f", "nowhere", "d/..", "l", "g", "./e/"}));
        dfd = dirfd_for(lab);
        r = symlinkat(target, dfd, p);
        snprintf(args, sizeof args, "%s %s %s", target, lab, p);
        report("symlinkat", args, r);
        break;
    }
    case 11:
        dfd = dirfd_for(lab);
        r = mkfifoat(dfd, p, mode);
        snprintf(args, sizeof args, "%s %s %o", lab, p, mode);
        report("mkfifoat", args, r);
        break;
    case 12:
        dfd = dirfd_for(lab);
        r = pick(2) ? fchmodat(dfd, p, mode, 0) : (dfd == AT_FDCWD ? chmod(p, mode) : fchmodat(dfd, p, mode, 0));
        snprintf(args, sizeof args, "%s %s %o", lab, p, mode);
        report("chmod", args, r);
        break;
    case 13: {
        uid_t u = PICK(((uid_t[]){0, 1234, (uid_t)-1}));
        gid_t g = PICK(((gid_t[]){0, 1234, 77, (gid_t)-1}));
        int fl = pick(2) ? AT_SYMLINK_NOFOLLOW : 0;
        dfd = dirfd_for(lab);
        r = fchownat(dfd, p, u, g, fl);
        snprintf(args, sizeof args, "%s %s %d %d %d", lab, p, (int)u, (int)g, fl);
        report("fchownat", args, r);
        break;
    }
    case 14: {
        off_t len = PICK(((off_t[]){0, 3, 10}));
        dfd = AT_FDCWD;
        r = truncate(p, len);
        snprintf(args, sizeof args, "%s %lld", p, (long long)len);
        report("truncate", args, r);
        break;
    }
    case 15: {
        struct timespec ts[2] = {{1000, 0}, {2000, 5}};
        int fl = pick(2) ? AT_SYMLINK_NOFOLLOW : 0;
        struct stat st;
        dfd = dirfd_for(lab);
        r = utimensat(dfd, p, ts, fl);
        snprintf(args, sizeof args, "%s %s %d", lab, p, fl);
        report("utimensat", args, r);
        if (r == 0) {
            r = fstatat(dfd, p, &st, fl);
            snprintf(args, sizeof args, "mtime=%lld.%ld", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
            report(" fstatat", args, r);
        }
        break;
    }
    case 16: {
        struct stat st;
        int fl = pick(2) ? AT_SYMLINK_NOFOLLOW : 0;
        dfd = dirfd_for(lab);
        r = fstatat(dfd, p, &st, fl);
        if (r == 0)
            snprintf(args, sizeof args, "%s %s %d: %s %o size=%lld uid=%d gid=%d", lab, p, fl,
                     type_of(st.st_mode), st.st_mode & 07777, (long long)st.st_size, (int)st.st_uid,
                     (int)st.st_gid);
        else
            snprintf(args, sizeof args, "%s %s %d", lab, p, fl);
        report("fstatat", args, r);
        break;
    }
    case 17: {
        char buf[64];
        dfd = dirfd_for(lab);
        r = readlinkat(dfd, p, buf, sizeof buf - 1);
        if (r >= 0)
            buf[r] = 0;
        snprintf(args, sizeof args, "%s %s: %s", lab, p, r >= 0 ? buf : "");
        report("readlinkat", args, r);
        break;
    }
    case 18:
        dfd = AT_FDCWD;
        if (pick(3))
            return;
        r = rmtree_at(AT_FDCWD, PICK(((const char *[]){"d", "e", "m", "d/g"})), 0);
        report("rmtree", "", r);
        break;
    default: {
        struct stat st;
        dfd = AT_FDCWD;
        r = access(p, PICK(((int[]){F_OK, R_OK, W_OK, X_OK})));
        report("access", p, r);
        r = stat(p, &st);
        snprintf(args, sizeof args, "%s nlink=%s", p, r == 0 && !S_ISDIR(st.st_mode) ? "n" : "-");
        struct stat up;
        /* The directory above the sequences' holds every sequence's: natively only
         * those set up so far, in the capsule's lower layer all of them. */
        int top = r == 0 && stat("..", &up) == 0 && up.st_ino == st.st_ino && up.st_dev == st.st_dev;
        if (r == 0)
            snprintf(args, sizeof args, "%s %s nlink=%lu", p, type_of(st.st_mode),
                     top ? 0UL : (unsigned long)st.st_nlink);
        report("stat", args, r);
        break;
    }
    }
    if (dfd >= 0)
        close(dfd);
}

static void tree(const char *dir) {
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        printf("%ld tree %s: %s\n", seq, dir, strerrorname_np(errno));
        return;
    }
    for (int i = 0; i < n; i++) {
        char full[512], info[160] = "";
        const char *nm = names[i]->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..")) {
            free(names[i]);
            continue;
        }
        snprintf(full, sizeof full, "%s/%s", dir, nm);
        struct stat st;
        if (lstat(full, &st) < 0) {
            printf("%ld %s lstat %s\n", seq, full, strerrorname_np(errno));
            free(names[i]);
            continue;
        }
        if (S_ISREG(st.st_mode)) {
            int fd = open(full, O_RDONLY);
            ssize_t got = fd < 0 ? -1 : read(fd, info, 64);
            info[got > 0 ? got : 0] = 0;
            if (fd >= 0)
                close(fd);
        } else if (S_ISLNK(st.st_mode)) {
            ssize_t got = readlink(full, info, 100);
            info[got > 0 ? got : 0] = 0;
        }
        printf("%ld %s %s %o %d:%d size=%lld nlink=%lu [%s]\n", seq, full, type_of(st.st_mode),
               st.st_mode & 07777, (int)st.st_uid, (int)st.st_gid,
               S_ISDIR(st.st_mode) ? 0LL : (long long)st.st_size,
               (unsigned long)st.st_nlink, info);
        if (S_ISDIR(st.st_mode))
            tree(full);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: fs_diff DIR PHASES SEED FIRST COUNT OPS\n");
        return 2;
    }
    const char *dir = argv[1], *phases = argv[2];
    long seed = atol(argv[3]), first = atol(argv[4]), count = atol(argv[5]), ops = atol(argv[6]);
    exchange = strstr(phases, "exchange") != NULL;
    dir_renames = strstr(phases, "nodirrename") == NULL;
    umask(022);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    for (seq = first; seq < first + count; seq++) {
        char here[64];
        snprintf(here, sizeof here, "s%ld", seq);
        must(chdir(dir), dir);
        if (strstr(phases, "setup"))
            must(mkdir(here, 0755), here);
        must(chdir(here), here);
        if (strstr(phases, "setup"))
            setup();
        if (strstr(phases, "change"))
            change();
        if (strstr(phases, "run")) {
            rng = (uint64_t)(seed * 1000003 + seq) * 2654435761u + 1;
            for (step = 0; step < ops; step++)
                one();
            must(chdir(".."), "..");
            tree(here);
        }
    }
    fflush(stdout);
    return 0;
}
