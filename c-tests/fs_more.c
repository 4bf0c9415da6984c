/* The path-taking libc functions beyond the everyday file calls: each must name the
 * capsule's file, as natively, and change only the capsule's copy.
 *
 * usage: fs_more BASE
 *   BASE is the top of the test tree (tests/fs_support.rs): "/" in a capsule on the
 *   test root, a native copy of the tree otherwise. Checks futimesat (path and
 *   directory descriptor), lchmod, scandirat, pathconf, ftok, inotify_add_watch,
 *   name_to_handle_at, posix_spawn file actions (addopen for reading, writing and
 *   creating; addchdir_np) and execveat relative to a directory descriptor.
 * Prints OK at the end when every check held.
 */
#include "probe.h"

#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/ipc.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

extern char **environ;

static char base[1024];

static const char *at(const char *rel) {
    static char bufs[8][1200];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s%s%s", base, base[strlen(base) - 1] == '/' ? "" : "/", rel);
    return b;
}

static char *slurp(const char *path) {
    static char buf[4096];
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void expect_text(const char *path, const char *want, const char *what) {
    char *got = slurp(path);
    if (!got || strcmp(got, want) != 0)
        fail("%s: %s holds [%s], want [%s]", what, path, got ? got : "(unreadable)", want);
}

static long mtime_of(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    return (long)st.st_mtime;
}

static int run_spawn(posix_spawn_file_actions_t *fa, char *const argv[]) {
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], fa, NULL, argv, environ);
    if (rc != 0) {
        fail("posix_spawn %s: %s", argv[0], strerror(rc));
        return -1;
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int by_name(const struct dirent *d) { return d->d_name[0] != '.'; }

int main(int argc, char **argv) {
    if (argc != 2)
        usage("fs_more BASE");
    snprintf(base, sizeof base, "%s", argv[1]);

    /* futimesat: by path, and relative to a directory descriptor. */
    struct timeval tv[2] = {{1, 0}, {2000000, 0}};
    if (futimesat(AT_FDCWD, at("cow/utime.txt"), tv) != 0)
        fail("futimesat path: %s", strerror(errno));
    if (mtime_of(at("cow/utime.txt")) != 2000000)
        fail("futimesat path: mtime %ld", mtime_of(at("cow/utime.txt")));
    int cow = open(at("cow"), O_RDONLY | O_DIRECTORY);
    if (cow < 0)
        fail("open cow: %s", strerror(errno));
    tv[1].tv_sec = 3000000;
    if (futimesat(cow, "times.txt", tv) != 0)
        fail("futimesat dirfd: %s", strerror(errno));
    if (mtime_of(at("cow/times.txt")) != 3000000)
        fail("futimesat dirfd: mtime %ld", mtime_of(at("cow/times.txt")));
    errno = 0;
    if (futimesat(cow, "missing.txt", tv) != -1 || errno != ENOENT)
        fail("futimesat missing: errno %d", errno);

    /* lchmod of a regular file. */
    if (lchmod(at("cow/mode.txt"), 0600) != 0)
        fail("lchmod: %s", strerror(errno));
    struct stat st;
    if (stat(at("cow/mode.txt"), &st) != 0 || (st.st_mode & 07777) != 0600)
        fail("lchmod: mode %o", st.st_mode & 07777);

    /* scandirat of a directory relative to a descriptor. */
    struct dirent **list;
    int n = scandirat(cow, "fulldir", &list, by_name, alphasort);
    if (n != 3)
        fail("scandirat: %d entries (%s)", n, n < 0 ? strerror(errno) : "");
    else {
        if (strcmp(list[0]->d_name, "a") || strcmp(list[1]->d_name, "b") ||
            strcmp(list[2]->d_name, "sub"))
            fail("scandirat: %s %s %s", list[0]->d_name, list[1]->d_name, list[2]->d_name);
        for (int i = 0; i < n; i++)
            free(list[i]);
        free(list);
    }

    /* pathconf, ftok, inotify_add_watch, name_to_handle_at on names of the tree. */
    if (pathconf(at("etc/app.conf"), _PC_NAME_MAX) != 255)
        fail("pathconf: %ld", pathconf(at("etc/app.conf"), _PC_NAME_MAX));
    errno = 0;
    if (pathconf(at("nowhere/x"), _PC_NAME_MAX) != -1 || errno != ENOENT)
        fail("pathconf missing: errno %d", errno);
    if (ftok(at("etc/app.conf"), 1) == -1)
        fail("ftok: %s", strerror(errno));
    errno = 0;
    if (ftok(at("nowhere/x"), 1) != -1 || errno != ENOENT)
        fail("ftok missing: errno %d", errno);
    int in = inotify_init1(IN_CLOEXEC);
    if (inotify_add_watch(in, at("etc"), IN_CREATE) < 0)
        fail("inotify_add_watch: %s", strerror(errno));
    errno = 0;
    if (inotify_add_watch(in, at("nowhere"), IN_CREATE) != -1 || errno != ENOENT)
        fail("inotify_add_watch missing: errno %d", errno);
    close(in);
    struct {
        struct file_handle h;
        unsigned char room[128];
    } handle;
    handle.h.handle_bytes = 128;
    int mount_id;
    errno = 0;
    if (name_to_handle_at(AT_FDCWD, at("nowhere/x"), &handle.h, &mount_id, 0) != -1 ||
        errno != ENOENT)
        fail("name_to_handle_at missing: errno %d", errno);

    /* posix_spawn file actions: stdin from a file of the tree, stdout appended to
     * another, and created in a third; a working directory of the tree. */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, at("etc/app.conf"), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, at("cow/append.txt"), O_WRONLY | O_APPEND, 0);
    char *cat[] = {"/bin/cat", NULL};
    if (run_spawn(&fa, cat) != 0)
        fail("spawned cat failed");
    posix_spawn_file_actions_destroy(&fa);
    expect_text(at("cow/append.txt"), "line1\nsetting=1\n", "addopen append");

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, at("tmp/spawned.txt"), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addchdir_np(&fa, at("paths"));
    char *cat_rel[] = {"/bin/cat", "rel.txt", NULL};
    if (run_spawn(&fa, cat_rel) != 0)
        fail("spawned cat rel.txt failed");
    posix_spawn_file_actions_destroy(&fa);
    expect_text(at("tmp/spawned.txt"), "rel\n", "addopen create + addchdir");

    /* execveat relative to a directory descriptor. */
    int bin = open("/bin", O_RDONLY | O_DIRECTORY);
    pid_t pid = fork();
    if (pid == 0) {
        char *sh[] = {"sh", "-c", "exit 7", NULL};
        syscall(SYS_execveat, bin, "sh", sh, environ, 0);
        _exit(99);
    }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 7)
        fail("execveat: status %d", status);
    pid = fork();
    if (pid == 0) {
        char *sh[] = {"sh", "-c", "exit 7", NULL};
        execveat(bin, "sh", sh, environ, 0);
        _exit(99);
    }
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 7)
        fail("execveat libc: status %d", status);
    return probe_finish();
}
