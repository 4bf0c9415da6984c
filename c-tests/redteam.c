/* An attacker of the red-team suite (tests/redteam.rs): one attempt to change or read
 * a file the capsule must not reach, by a route that bypasses libc's path functions.
 *
 *   redteam ACTION PATH [PATH2]
 *
 * ACTIONs (each through the raw system call instruction, so no preload sees it,
 * unless named libc-*):
 *   append PATH       openat(O_WRONLY|O_APPEND), write "X\n"
 *   trunc PATH        openat(O_WRONLY|O_TRUNC)
 *   truncate PATH     truncate(PATH, 1)
 *   create PATH       openat(O_WRONLY|O_CREAT|O_EXCL), write "X\n"
 *   unlink PATH       unlinkat(AT_FDCWD, PATH, 0)
 *   rmdir PATH        unlinkat(AT_FDCWD, PATH, AT_REMOVEDIR)
 *   rename PATH NEW   renameat(PATH, NEW)
 *   link PATH NEW     linkat(PATH, NEW)
 *   symlink T NEW     symlinkat(T, NEW)
 *   mkdir PATH        mkdirat(PATH)
 *   mknod PATH        mknodat(PATH, S_IFIFO)
 *   chmod PATH        fchmodat(PATH, 0777)            (metadata: not Landlock's)
 *   utimes PATH       utimensat(PATH, {0, 0})         (metadata)
 *   setxattr PATH     setxattr(PATH, user.redteam)    (metadata)
 *   read PATH         openat(O_RDONLY), print what it read
 *   libc-append PATH  syscall(SYS_openat, ...) through libc's syscall()
 *   libc-unlink PATH  syscall(SYS_unlinkat, ...)
 *   libc-rename P N   syscall(SYS_renameat2, ...)
 *   spawn-trunc PATH  posix_spawn of /bin/true (or argv[3]) with a file action opening
 *                     PATH O_WRONLY|O_TRUNC as its stdout
 *   fd-append PATH    open(PATH, O_RDONLY) with libc, then the raw openat of
 *                     /proc/self/fd/N for appending
 *
 * Through libc (the shim's hooks), class E of issue 9: a directory that becomes a
 * link to TARGET, a host path the kernel would follow on the host:
 *   stale DIR TARGET  in one process: DIR made and looked into (so the shim caches
 *                     it), removed, made a link to TARGET; then chmod, utimensat,
 *                     setxattr, chown and an appending open of DIR/marker, and a read
 *                     of DIR/secret
 *   race DIR TARGET MS  for MS milliseconds one process swaps DIR between a
 *                     directory and a link to TARGET while another changes
 *                     DIR/marker as `stale` does and reads DIR/secret
 *
 * Through libc, the routes ordinary programs take (classes B, C, F):
 *   fchmod-twice PATH   a read-only descriptor: fchmod twice (the first copies up),
 *                       futimens, fsetxattr, fchown
 *   reuse UPPER PATH    fopen/fclose of a capsule file, then PATH opened read-only
 *                       (the same descriptor number) and fchmod, futimens on it
 *   dirfd DIR NAME      relative to a descriptor of DIR: fchmodat, utimensat,
 *                       fchownat, futimesat, an appending openat, linkat, renameat,
 *                       mkdirat, mkfifoat, symlinkat, unlinkat
 *   lchmod PATH         lchmod(PATH, 0777)
 *   handle PATH         name_to_handle_at, then open_by_handle_at for writing
 *   spawn-chdir DIR     posix_spawn with addchdir_np(DIR) and an O_TRUNC open of the
 *                       relative name "marker"
 *
 * Posing as a process of the shim's (a static program, which the system-call
 * backstop's supervisor serves; it must not be fooled into letting its calls through):
 *   pose FILE ACTION ...  map FILE executable first (a file named like the shim,
 *                         or the shim itself), then ACTION
 *   announce ACTION ...   first make the shim's announcement to the supervisor
 *                         (getcwd(NULL, QUERY_SHIM), backstop/trust.rs) from here
 *
 * Forging the capsule's shared state (shim/src/shared.rs), which the shim maps
 * writable into every process of the capsule:
 *   forge-loader INTERP LDSO LIBDIRS PROGRAM ARGS...
 *                       finds the mapping of the state file in /proc/self/maps (by
 *                       its magic), writes a loader entry (exec/loader_cache.rs) for
 *                       interpreter INTERP at the current file-system generation,
 *                       naming loader LDSO and library path LIBDIRS, with a valid
 *                       seqlock; prints "FORGED", then execs PROGRAM ARGS
 *
 * Prints "RAN ACTION" first (the harness checks the attempt really ran), then
 * "DENIED errno=E" or "DONE" (with what it read for `read`). Exit 0 either way: the
 * harness judges by the disk, not by what the attacker says.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <spawn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static long raw6(long n, long a, long b, long c, long d, long e) {
#if defined(__x86_64__)
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
    if (x0 < 0 && x0 > -4096) {
        errno = (int)-x0;
        return -1;
    }
    return x0;
#else
    return syscall(n, a, b, c, d, e);
#endif
}

#define RAW(n, a, b, c, d, e) raw6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e))

static int report(long rc) {
    if (rc < 0)
        printf("DENIED errno=%d\n", errno);
    else
        printf("DONE\n");
    return 0;
}

static int write_fd(long fd) {
    if (fd < 0)
        return report(fd);
    long n = RAW(SYS_write, fd, "X\n", 2, 0, 0);
    RAW(SYS_close, fd, 0, 0, 0, 0);
    return report(n);
}

/* What `stale` and `race` do to DIR/marker and DIR/secret; a secret read is printed. */
static void change_through(const char *dir) {
    char marker[4096], secret[4096];
    snprintf(marker, sizeof marker, "%s/marker", dir);
    snprintf(secret, sizeof secret, "%s/secret", dir);
    struct timespec zero[2] = {{0, 0}, {0, 0}};
    chmod(marker, 0777);
    utimensat(AT_FDCWD, marker, zero, 0);
    setxattr(marker, "user.redteam", "1", 1, 0);
    chown(marker, getuid(), 4242);
    int fd = open(marker, O_WRONLY | O_APPEND);
    if (fd >= 0) {
        (void)!write(fd, "X\n", 2);
        close(fd);
    }
    fd = open(secret, O_RDONLY);
    if (fd >= 0) {
        char buf[256];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n > 0) {
            buf[n] = 0;
            printf("READ %s\n", buf);
        }
        close(fd);
    }
}

static void step(const char *what, int rc) {
    if (rc < 0)
        printf("%s: errno=%d\n", what, errno);
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The layout of the shim's shared state (repr(C) in shim/src/shared.rs and
 * shim/src/exec/loader_cache.rs). */
#define SHARED_MAGIC 0x63617073756c6504ULL
struct shared_name {
    uint32_t seq, len;
    uint8_t bytes[64];
};
struct shared_loader {
    uint32_t seq, verdict;
    uint64_t generation;
    uint32_t key_len, ldso_len, check_len, path_len;
    uint8_t key[1024], ldso[1024], check[1024], path[4096];
};
struct shared {
    uint64_t magic;
    struct shared_name hostname, domainname;
    int64_t clock_adjust_ns;
    uint64_t fs_generation, fs_links_cached;
    struct shared_loader loader;
};
/* capsule_config::SHARED_FS_GENERATION_OFFSET, and the loader right after. */
_Static_assert(offsetof(struct shared, fs_generation) == 160, "the shim's layout");
_Static_assert(offsetof(struct shared, loader) == 176, "the shim's layout");

/* The capsule's shared state as this process has it mapped. */
static struct shared *find_shared(void) {
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[4096];
    while (maps && fgets(line, sizeof line, maps)) {
        unsigned long from, to;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &from, &to, perms) != 3 || perms[0] != 'r' ||
            perms[1] != 'w' || to - from < sizeof(struct shared))
            continue;
        struct shared *s = (struct shared *)from;
        if (strstr(line, "/shared") && s->magic == SHARED_MAGIC) {
            fclose(maps);
            return s;
        }
    }
    if (maps)
        fclose(maps);
    return NULL;
}

static int forge_loader(char **argv) {
    const char *interp = argv[2], *ldso = argv[3], *dirs = argv[4];
    struct shared *s = find_shared();
    if (!s) {
        printf("DENIED no shared state mapped\n");
        return 0;
    }
    struct shared_loader *l = &s->loader;
    size_t key_len = strlen(interp) + 1; /* the name, its NUL, no LD_LIBRARY_PATH */
    uint32_t seq = __atomic_load_n(&l->seq, __ATOMIC_RELAXED) & ~1u;
    __atomic_store_n(&l->seq, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    memset(l->key, 0, sizeof l->key);
    memcpy(l->key, interp, key_len);
    l->key_len = key_len;
    memset(l->ldso, 0, sizeof l->ldso);
    strcpy((char *)l->ldso, ldso);
    l->ldso_len = strlen(ldso);
    memset(l->path, 0, sizeof l->path);
    strcpy((char *)l->path, dirs);
    l->path_len = strlen(dirs);
    l->check_len = 0;
    l->verdict = 2; /* a loader is recorded */
    l->generation = __atomic_load_n(&s->fs_generation, __ATOMIC_ACQUIRE) + 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&l->seq, seq + 2, __ATOMIC_RELEASE);
    printf("FORGED generation=%llu\n", (unsigned long long)(l->generation - 1));
    fflush(stdout);
    execv(argv[5], argv + 5);
    printf("DENIED exec errno=%d\n", errno);
    return 0;
}

/* Maps FILE executable, as the dynamic loader maps a library. */
static void pose(const char *file) {
    int fd = RAW(SYS_openat, AT_FDCWD, file, O_RDONLY | O_CLOEXEC, 0, 0);
    if (fd < 0) {
        printf("pose open %s: errno=%d\n", file, errno);
        return;
    }
    if (mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0) == MAP_FAILED)
        printf("pose mmap: errno=%d\n", errno);
}

int main(int argc, char **argv) {
    if (argc > 3 && !strcmp(argv[1], "announce")) {
        step("announce", RAW(SYS_getcwd, 0, 0x636170737368696dL, 0, 0, 0));
        argv += 1;
        argc -= 1;
    }
    if (argc > 4 && !strcmp(argv[1], "pose")) {
        pose(argv[2]);
        argv += 2;
        argc -= 2;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: redteam ACTION PATH [PATH2]\n");
        return 2;
    }
    if (argc > 5 && !strcmp(argv[1], "forge-loader")) {
        printf("RAN %s\n", argv[1]);
        fflush(stdout);
        return forge_loader(argv);
    }
    const char *act = argv[1], *p = argv[2], *q = argc > 3 ? argv[3] : "";
    printf("RAN %s\n", act);
    fflush(stdout);
    if (!strcmp(act, "append"))
        return write_fd(RAW(SYS_openat, AT_FDCWD, p, O_WRONLY | O_APPEND, 0, 0));
    if (!strcmp(act, "trunc")) {
        long fd = RAW(SYS_openat, AT_FDCWD, p, O_WRONLY | O_TRUNC, 0, 0);
        if (fd >= 0)
            RAW(SYS_close, fd, 0, 0, 0, 0);
        return report(fd);
    }
    if (!strcmp(act, "truncate"))
        return report(RAW(SYS_truncate, p, 1, 0, 0, 0));
    if (!strcmp(act, "create"))
        return write_fd(RAW(SYS_openat, AT_FDCWD, p, O_WRONLY | O_CREAT | O_EXCL, 0644, 0));
    if (!strcmp(act, "unlink"))
        return report(RAW(SYS_unlinkat, AT_FDCWD, p, 0, 0, 0));
    if (!strcmp(act, "rmdir"))
        return report(RAW(SYS_unlinkat, AT_FDCWD, p, AT_REMOVEDIR, 0, 0));
    if (!strcmp(act, "rename"))
        return report(RAW(SYS_renameat, AT_FDCWD, p, AT_FDCWD, q, 0));
    if (!strcmp(act, "exchange"))
        return report(RAW(SYS_renameat2, AT_FDCWD, p, AT_FDCWD, q, RENAME_EXCHANGE));
    if (!strcmp(act, "link"))
        return report(RAW(SYS_linkat, AT_FDCWD, p, AT_FDCWD, q, 0));
    if (!strcmp(act, "symlink"))
        return report(RAW(SYS_symlinkat, p, AT_FDCWD, q, 0, 0));
    if (!strcmp(act, "mkdir"))
        return report(RAW(SYS_mkdirat, AT_FDCWD, p, 0755, 0, 0));
    if (!strcmp(act, "mknod"))
        return report(RAW(SYS_mknodat, AT_FDCWD, p, S_IFIFO | 0644, 0, 0));
    if (!strcmp(act, "chmod"))
        return report(RAW(SYS_fchmodat, AT_FDCWD, p, 0777, 0, 0));
    if (!strcmp(act, "utimes")) {
        struct timespec ts[2] = {{0, 0}, {0, 0}};
        return report(RAW(SYS_utimensat, AT_FDCWD, p, ts, 0, 0));
    }
    if (!strcmp(act, "setxattr"))
        return report(RAW(SYS_setxattr, p, "user.redteam", "X", 1, 0));
    if (!strcmp(act, "read")) {
        char buf[256];
        long fd = RAW(SYS_openat, AT_FDCWD, p, O_RDONLY, 0, 0);
        if (fd < 0)
            return report(fd);
        long n = RAW(SYS_read, fd, buf, sizeof buf - 1, 0, 0);
        RAW(SYS_close, fd, 0, 0, 0, 0);
        if (n < 0)
            return report(n);
        buf[n] = 0;
        printf("DONE read: %s\n", buf);
        return 0;
    }
    if (!strcmp(act, "libc-append"))
        return write_fd(syscall(SYS_openat, AT_FDCWD, p, O_WRONLY | O_APPEND, 0));
    if (!strcmp(act, "libc-unlink"))
        return report(syscall(SYS_unlinkat, AT_FDCWD, p, 0));
    if (!strcmp(act, "libc-rename"))
        return report(syscall(SYS_renameat2, AT_FDCWD, p, AT_FDCWD, q, 0));
    if (!strcmp(act, "libc-exchange"))
        return report(syscall(SYS_renameat2, AT_FDCWD, p, AT_FDCWD, q, RENAME_EXCHANGE));
    if (!strcmp(act, "spawn-trunc")) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, p, O_WRONLY | O_TRUNC, 0644);
        char *prog = argc > 3 ? argv[3] : "/bin/true";
        char *args[] = {prog, NULL};
        pid_t pid;
        int rc = posix_spawn(&pid, prog, &fa, NULL, args, environ);
        if (rc != 0) {
            errno = rc;
            return report(-1);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        /* posix_spawn reports a failed file action as exit 127 of the child. */
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
            errno = EACCES;
            return report(-1);
        }
        return report(0);
    }
    if (!strcmp(act, "fd-append")) {
        int fd = open(p, O_RDONLY);
        if (fd < 0)
            return report(-1);
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        return write_fd(RAW(SYS_openat, AT_FDCWD, link, O_WRONLY | O_APPEND, 0, 0));
    }
    if (!strcmp(act, "stale")) {
        char x[4096];
        snprintf(x, sizeof x, "%s/x", p);
        struct stat st;
        if (mkdir(p, 0755) || close(open(x, O_WRONLY | O_CREAT, 0644)) || stat(x, &st) ||
            unlink(x) || rmdir(p) || symlink(q, p))
            return report(-1);
        change_through(p);
        return report(0);
    }
    if (!strcmp(act, "race")) {
        char saved[4096], marker[4096];
        snprintf(saved, sizeof saved, "%s.dir", p);
        snprintf(marker, sizeof marker, "%s/marker", p);
        if (mkdir(p, 0755) || close(open(marker, O_WRONLY | O_CREAT, 0644)))
            return report(-1);
        long end = now_ms() + (argc > 4 ? atol(argv[4]) : 1000);
        fflush(stdout);
        pid_t swapper = fork();
        if (swapper == 0) {
            while (now_ms() < end) {
                rename(p, saved);
                symlink(q, p);
                unlink(p);
                rename(saved, p);
            }
            _exit(0);
        }
        long rounds = 0;
        while (now_ms() < end) {
            change_through(p);
            rounds++;
        }
        waitpid(swapper, NULL, 0);
        printf("rounds %ld\n", rounds);
        return report(0);
    }
    if (!strcmp(act, "fchmod-twice")) {
        int fd = open(p, O_RDONLY);
        if (fd < 0)
            return report(-1);
        struct timespec zero[2] = {{0, 0}, {0, 0}};
        step("fchmod", fchmod(fd, 0600));
        step("fchmod again", fchmod(fd, 0777));
        step("futimens", futimens(fd, zero));
        step("fsetxattr", fsetxattr(fd, "user.redteam", "1", 1, 0));
        step("fchown", fchown(fd, getuid(), 4242));
        close(fd);
        return report(0);
    }
    if (!strcmp(act, "reuse")) {
        FILE *f = fopen(p, "w");
        if (!f)
            return report(-1);
        fclose(f);
        int fd = open(q, O_RDONLY);
        if (fd < 0)
            return report(-1);
        struct timespec zero[2] = {{0, 0}, {0, 0}};
        step("fchmod", fchmod(fd, 0777));
        step("futimens", futimens(fd, zero));
        close(fd);
        return report(0);
    }
    if (!strcmp(act, "dirfd")) {
        int d = open(p, O_RDONLY | O_DIRECTORY);
        if (d < 0)
            return report(-1);
        struct timespec zero[2] = {{0, 0}, {0, 0}};
        step("fchmodat", fchmodat(d, q, 0777, 0));
        step("utimensat", utimensat(d, q, zero, 0));
        step("fchownat", fchownat(d, q, getuid(), 4242, 0));
        step("futimesat", futimesat(d, q, NULL));
        int fd = openat(d, q, O_WRONLY | O_APPEND);
        if (fd >= 0) {
            (void)!write(fd, "X\n", 2);
            close(fd);
        }
        step("linkat", linkat(d, q, d, "rt-link", 0));
        step("renameat", renameat(d, "rt-link", d, "rt-renamed"));
        step("unlinkat", unlinkat(d, "rt-renamed", 0));
        step("mkdirat", mkdirat(d, "rt-dir", 0755));
        step("mkfifoat", mkfifoat(d, "rt-fifo", 0644));
        step("symlinkat", symlinkat("/etc", d, "rt-sym"));
        close(d);
        return report(0);
    }
    if (!strcmp(act, "lchmod"))
        return report(lchmod(p, 0777));
    if (!strcmp(act, "handle")) {
        struct {
            struct file_handle h;
            unsigned char bytes[128];
        } fh;
        fh.h.handle_bytes = sizeof fh.bytes;
        int mount_id;
        if (name_to_handle_at(AT_FDCWD, p, &fh.h, &mount_id, 0) < 0)
            return report(-1);
        return write_fd(open_by_handle_at(AT_FDCWD, &fh.h, O_WRONLY | O_APPEND));
    }
    if (!strcmp(act, "spawn-chdir")) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addchdir_np(&fa, p);
        posix_spawn_file_actions_addopen(&fa, 1, "marker", O_WRONLY | O_TRUNC, 0644);
        pid_t pid;
        char *args[] = {"true", NULL};
        int rc = posix_spawn(&pid, "/bin/true", &fa, NULL, args, environ);
        if (rc) {
            errno = rc;
            return report(-1);
        }
        int status;
        waitpid(pid, &status, 0);
        return report(0);
    }
    fprintf(stderr, "redteam: unknown action %s\n", act);
    return 2;
}
