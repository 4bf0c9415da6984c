/* Named cases of renameat2(RENAME_EXCHANGE), RENAME_NOREPLACE and renames of
 * directories, for a tree that a capsule has in its lower layer.
 *
 *   fs_exchange DIR setup   the starting tree (run natively, into the lower layer)
 *   fs_exchange DIR run     the cases, one line each (`name = result errno` and what
 *                           the names then hold), then the final tree
 *   fs_exchange - one OLD NEW FLAGS   one renameat2, prints `= result errno`
 *
 * `setup,run` natively and `run` in a capsule over the set-up tree must print the
 * same lines. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void must(int ret, const char *what) {
    if (ret < 0) {
        fprintf(stderr, "fs_exchange: %s: %s\n", what, strerror(errno));
        exit(2);
    }
}

static void put(const char *name, const char *text) {
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    must(fd, name);
    must((int)write(fd, text, strlen(text)), name);
    must(close(fd), name);
}

static void setup(void) {
    put("f1", "one");
    put("f2", "two");
    must(mkdir("D1", 0755), "D1");
    put("D1/a", "a");
    must(mkdir("D1/sub", 0750), "D1/sub");
    put("D1/sub/b", "b");
    must(mkdir("D1/sub/deep", 0755), "deep");
    put("D1/sub/deep/c", "c");
    must(mkdir("D2", 0755), "D2");
    put("D2/c", "c2");
    must(mkdir("D3", 0700), "D3");
    must(mkdir("E", 0755), "E");
    put("E/x", "x");
    put("E/y", "y");
    must(mkdir("W", 0755), "W");
    put("W/w1", "w1");
    put("W/w2", "w2");
    must(mkdir("W/inner", 0755), "W/inner");
    put("W/inner/i1", "i1");
    put("W/inner/i2", "i2");
    must(mkdir("Z", 0755), "Z");
    put("Z/z1", "z1");
    must(mkdir("Y", 0755), "Y");
    put("Y/y1", "y1");
    must(mkdir("V", 0755), "V");
    must(mkdir("T", 0755), "T");
    put("T/t1", "t1");
    must(mkdir("N", 0755), "N");
    must(mkdir("N/n1", 0755), "N/n1");
    must(mkdir("N/n2", 0755), "N/n2");
    must(mkdir("R", 0755), "R");
    put("R/r1", "r1");
    must(mkdir("G", 0755), "G");
    put("G/g1", "g1");
    must(symlink("f1", "L"), "L");
    must(link("f2", "H"), "H");
    must(link("f2", "H2"), "H2");
    must(link("f2", "H3"), "H3");
}

/* What a name holds, in one word: a file's content, a directory's sorted names
 * (recursively, one level of subdirectories), a link's target. */
static void show(const char *name, char *out, size_t size);

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list(const char *dir, char *out, size_t size, int depth) {
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(out, size, "(%s)", strerrorname_np(errno));
        return;
    }
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], cmp);
    size_t used = snprintf(out, size, "{");
    for (int i = 0; i < n; i++) {
        char full[256], inner[512] = "";
        snprintf(full, sizeof full, "%s/%s", dir, names[i]);
        struct stat st;
        if (depth < 3 && lstat(full, &st) == 0 && S_ISDIR(st.st_mode))
            list(full, inner, sizeof inner, depth + 1);
        if (used < size)
            used += snprintf(out + used, size - used, "%s%s%s", i ? " " : "", names[i], inner);
        free(names[i]);
    }
    if (used < size)
        snprintf(out + used, size - used, "}");
}

static void show(const char *name, char *out, size_t size) {
    struct stat st;
    if (lstat(name, &st) < 0) {
        snprintf(out, size, "%s", strerrorname_np(errno));
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        list(name, out, size, 0);
    } else if (S_ISCHR(st.st_mode)) {
        snprintf(out, size, "chr %u:%u mode %o", major(st.st_rdev), minor(st.st_rdev), st.st_mode & 07777);
    } else if (S_ISLNK(st.st_mode)) {
        char t[128];
        ssize_t n = readlink(name, t, sizeof t - 1);
        t[n > 0 ? n : 0] = 0;
        snprintf(out, size, "->%s", t);
    } else {
        char t[64];
        int fd = open(name, O_RDONLY);
        ssize_t n = fd < 0 ? -1 : read(fd, t, sizeof t - 1);
        t[n > 0 ? n : 0] = 0;
        if (fd >= 0)
            close(fd);
        snprintf(out, size, "'%s'", t);
    }
}

static void report(const char *what, long ret, const char *a, const char *b) {
    int e = ret < 0 ? errno : 0;
    char sa[1024] = "", sb[1024] = "";
    if (a)
        show(a, sa, sizeof sa);
    if (b)
        show(b, sb, sizeof sb);
    printf("%s = %ld %s", what, ret, e ? strerrorname_np(e) : "-");
    if (a)
        printf(" | %s %s", a, sa);
    if (b)
        printf(" | %s %s", b, sb);
    printf("\n");
}

/* A name relative to directory descriptor `fd`. */
static void at(int fd, const char *name) {
    struct stat st;
    int r = fstatat(fd, name, &st, 0);
    printf("fstatat %s = %d %s size=%lld\n", name, r, r < 0 ? strerrorname_np(errno) : "-",
           r < 0 ? 0LL : (long long)st.st_size);
}

#define EX(a, b) report("exchange " a " " b, renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE), a, b)
#define MV(a, b) report("rename " a " " b, rename(a, b), a, b)

static void run(void) {
    /* file <-> file, both lower; then once more (each now upper) */
    EX("f1", "f2");
    EX("f1", "f2");
    /* file <-> directory with lower content at every depth */
    EX("f1", "D1");
    EX("D1", "f1");
    /* directory <-> directory, an empty one with another mode */
    EX("D2", "D3");
    /* lower <-> upper: a new file, a new directory */
    put("U", "up");
    EX("U", "f2");
    must(mkdir("UD", 0755), "UD");
    put("UD/u", "u");
    EX("UD", "E");
    /* merged directory (lower and upper entries) <-> lower directory */
    put("E/m", "m");
    EX("E", "Y");
    /* with whiteouts: a deleted lower file, a deleted lower directory */
    must(unlink("W/w1"), "unlink W/w1");
    must(unlink("W/inner/i1"), "unlink W/inner/i1");
    EX("W", "T");
    EX("T/inner", "W");
    /* onto a name under which the lower layer has a deleted directory */
    must(unlink("Z/z1"), "unlink Z/z1");
    must(rmdir("Z"), "rmdir Z");
    must(mkdir("Z", 0755), "mkdir Z");
    EX("Z", "V");
    /* a link, and hard links of one file */
    EX("L", "D2");
    /* two names of one lower file: nothing changes, both stay */
    EX("H", "U");
    MV("H2", "H3");
    /* refusals, in the kernel's order */
    EX("missing", "f1");
    EX("f1", "missing");
    EX("D1", "D1/sub");
    EX("D1/sub", "D1");
    EX("f1/", "D1");
    EX("D1", "f1/");
    EX("D1/", "f1");
    EX("D1", "f1");
    EX("D1", "D1");
    report("exchange|noreplace", renameat2(AT_FDCWD, "f1", AT_FDCWD, "f2", RENAME_EXCHANGE | RENAME_NOREPLACE), NULL, NULL);
    report("exchange|whiteout", renameat2(AT_FDCWD, "f1", AT_FDCWD, "f2", RENAME_EXCHANGE | RENAME_WHITEOUT), NULL, NULL);
    report("flags 8", renameat2(AT_FDCWD, "f1", AT_FDCWD, "f2", 8), NULL, NULL);
    report("exchange . f1", renameat2(AT_FDCWD, ".", AT_FDCWD, "f1", RENAME_EXCHANGE), NULL, NULL);
    report("exchange f1 ..", renameat2(AT_FDCWD, "f1", AT_FDCWD, "..", RENAME_EXCHANGE), NULL, NULL);
    /* RENAME_NOREPLACE */
    report("noreplace f1 f2", renameat2(AT_FDCWD, "f1", AT_FDCWD, "f2", RENAME_NOREPLACE), "f1", "f2");
    report("noreplace f2 new", renameat2(AT_FDCWD, "f2", AT_FDCWD, "new", RENAME_NOREPLACE), "f2", "new");
    report("noreplace D1 D3", renameat2(AT_FDCWD, "D1", AT_FDCWD, "D3", RENAME_NOREPLACE), "D1", "D3");
    /* RENAME_WHITEOUT (root's): the old name becomes a character device 0:0 */
    report("whiteout f1 wh", renameat2(AT_FDCWD, "f1", AT_FDCWD, "wh", RENAME_WHITEOUT), "f1", "wh");
    report("whiteout wh f1", renameat2(AT_FDCWD, "wh", AT_FDCWD, "f1", RENAME_WHITEOUT), "wh", "f1");
    must(unlink("wh"), "unlink wh");
    /* renames of directories with lower content; descriptors of them follow */
    int fy = open("Y", O_RDONLY | O_DIRECTORY), fr = open("R", O_RDONLY | O_DIRECTORY);
    MV("Y", "Y2");
    MV("R", "R2");
    at(fy, "m");
    at(fr, "r1");
    EX("R2", "f1");
    at(fr, "r1");
    close(fy);
    close(fr);
    MV("Y2", "Y");
    MV("D3", "Dnew");
    MV("W", "D1/sub/deep/W");
    must(mkdir("Empty", 0755), "mkdir Empty");
    MV("Dnew", "Empty");
    must(unlink("D1/a"), "unlink D1/a");
    MV("D1", "Q");
    MV("Q/sub", "sub");
    report("rmdir Q", rmdir("Q"), "Q", NULL);
    /* st_nlink of merged directories: a file copied up, a subdirectory made, one
     * removed */
    struct stat st;
    put("N/f", "f");
    must(lstat("N", &st), "stat N");
    printf("nlink N %lu\n", (unsigned long)st.st_nlink);
    must(rmdir("N/n1"), "rmdir N/n1");
    must(mkdir("N/n3", 0755), "mkdir N/n3");
    must(mkdir("N/n4", 0755), "mkdir N/n4");
    must(lstat("N", &st), "stat N");
    printf("nlink N %lu\n", (unsigned long)st.st_nlink);
    int fn = open("N", O_RDONLY | O_DIRECTORY);
    must(fn, "open N");
    must(fstat(fn, &st), "fstat N");
    printf("fstat nlink N %lu\n", (unsigned long)st.st_nlink);
    close(fn);
    must(lstat(".", &st), "stat .");
    printf("nlink . %lu\n", (unsigned long)st.st_nlink);
    report("mkdir D1 again", mkdir("D1", 0755), "D1", NULL);
    MV("V", "D1");
    /* onto a name whose lower directory was deleted */
    must(unlink("G/g1"), "unlink G/g1");
    must(rmdir("G"), "rmdir G");
    MV("UD", "G");
    MV("G", "UD");
    MV("UD", "G");
}

static void tree(const char *dir) {
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        printf("tree %s: %s\n", dir, strerrorname_np(errno));
        return;
    }
    for (int i = 0; i < n; i++) {
        char full[512], info[128] = "";
        const char *nm = names[i]->d_name;
        if (strcmp(nm, ".") && strcmp(nm, "..")) {
            struct stat st;
            snprintf(full, sizeof full, "%s/%s", dir, nm);
            if (lstat(full, &st) == 0) {
                show(full, info, sizeof info);
                if (S_ISDIR(st.st_mode))
                    snprintf(info, sizeof info, "dir nlink=%lu", (unsigned long)st.st_nlink);
                printf("%s %o %s\n", full, st.st_mode & 07777, info);
                if (S_ISDIR(st.st_mode))
                    tree(full);
            } else {
                printf("%s lstat %s\n", full, strerrorname_np(errno));
            }
        }
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[2], "one")) {
        long r = renameat2(AT_FDCWD, argv[3], AT_FDCWD, argv[4], (unsigned)strtoul(argv[5], NULL, 0));
        printf("= %ld %s\n", r, r < 0 ? strerrorname_np(errno) : "-");
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: fs_exchange DIR setup|run|setup,run\n");
        return 2;
    }
    umask(022);
    must(chdir(argv[1]), argv[1]);
    if (strstr(argv[2], "setup"))
        setup();
    if (strstr(argv[2], "run")) {
        run();
        tree(".");
    }
    return 0;
}
