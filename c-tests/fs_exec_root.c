/* What a program run in a capsule sees of itself: its argv, /proc/self/exe (readlink,
 * realpath, open) and which dynamic loader and libc are mapped into it.
 *
 * usage: fs_exec_root [--exit N] [ARGS...]
 *        fs_exec_root --dlopen NAME    also prints dlopen=ok or dlopen=<dlerror()>
 * Prints one KEY=VALUE line per observation and exits N (0 by default):
 *   argc, argv0, arg1..argN  the argument vector as main() got it
 *   exe                       readlink("/proc/self/exe")
 *   realpath                  realpath("/proc/self/exe")
 *   exe_same                  yes when open("/proc/self/exe") is the file stat(exe) names
 *   libc, ldso                the files /proc/self/maps shows for libc.so.6 and ld-linux
 *   cmdline_args              how many strings /proc/self/cmdline holds (the kernel's
 *                             argv: more than argc when a dynamic loader was run
 *                             explicitly with options, unless the shim moved argv)
 *   cmdline                   /proc/self/cmdline, its strings joined by '|', the NUL
 *                             bytes at its end dropped (as ps drops them)
 */
#include "probe.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

static void mapped(const char *needle, const char *key) {
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[PATH_MAX + 256];
    if (maps == NULL) {
        printf("%s=(no maps: %s)\n", key, strerror(errno));
        return;
    }
    while (fgets(line, sizeof line, maps) != NULL) {
        char *path = strchr(line, '/');
        if (path != NULL && strstr(path, needle) != NULL) {
            path[strcspn(path, "\n")] = 0;
            printf("%s=%s\n", key, path);
            fclose(maps);
            return;
        }
    }
    printf("%s=(none)\n", key);
    fclose(maps);
}

int main(int argc, char **argv) {
    int status = 0;
    if (argc > 2 && strcmp(argv[1], "--exit") == 0) {
        status = atoi(argv[2]);
    }
    printf("argc=%d\n", argc);
    printf("argv0=%s\n", argv[0]);
    for (int i = 1; i < argc; i++) printf("arg%d=%s\n", i, argv[i]);

    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) {
        printf("exe=(error %s)\n", strerror(errno));
        exe[0] = 0;
    } else {
        exe[n] = 0;
        printf("exe=%s\n", exe);
    }
    char *real = realpath("/proc/self/exe", NULL);
    printf("realpath=%s\n", real ? real : strerror(errno));
    free(real);

    struct stat by_fd, by_path;
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int same = fd >= 0 && fstat(fd, &by_fd) == 0 && stat(exe, &by_path) == 0 &&
               by_fd.st_ino == by_path.st_ino && by_fd.st_dev == by_path.st_dev;
    printf("exe_same=%s\n", same ? "yes" : "no");
    if (fd >= 0) close(fd);

    FILE *cmdline = fopen("/proc/self/cmdline", "r");
    int strings = 0, c;
    static char text[65536];
    size_t len = 0;
    while (cmdline != NULL && (c = fgetc(cmdline)) != EOF) {
        strings += c == 0;
        if (len + 1 < sizeof text) text[len++] = (char)c;
    }
    if (cmdline != NULL) fclose(cmdline);
    printf("cmdline_args=%d\n", strings);
    while (len > 0 && text[len - 1] == 0) len--;
    for (size_t i = 0; i < len; i++) text[i] = text[i] == 0 ? '|' : text[i];
    text[len] = 0;
    printf("cmdline=%s\n", text);

    if (argc > 2 && strcmp(argv[1], "--dlopen") == 0) {
        void *handle = dlopen(argv[2], RTLD_NOW);
        printf("dlopen=%s\n", handle != NULL ? "ok" : dlerror());
    }

    mapped("/libc.so.6", "libc");
    mapped("/ld-linux", "ldso");
    fflush(stdout);
    return status;
}
