/* Built twice by tests/musl.rs, with musl-gcc and with cc (glibc), to check that a
 * program of either C library sees the capsule, and that an exec chain crossing
 * from one library to the other keeps it.
 *
 * usage: musl_probe TAG FILE [PROG ARGS...]
 * Appends "TAG\n" to FILE, then prints one line
 *   TAG host=H uid=U time=T libc=L content=C
 * (L: the mapped file of the process's C library, as /proc/self/maps names it; C:
 * FILE's content, newlines as commas), then executes PROG ARGS if given. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void libc_path(char *out, size_t len) {
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[4096];
    strcpy(out, "?");
    if (!maps)
        return;
    while (fgets(line, sizeof line, maps)) {
        char *path = strchr(line, '/');
        if (!path)
            continue;
        path[strcspn(path, "\n")] = 0;
        const char *base = strrchr(path, '/') + 1;
        if (!strncmp(base, "ld-musl", 7) || !strncmp(base, "libc.so", 7)) {
            snprintf(out, len, "%s", path);
            break;
        }
    }
    fclose(maps);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: musl_probe TAG FILE [PROG ARGS...]\n");
        return 2;
    }
    int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0 || write(fd, argv[1], strlen(argv[1])) < 0 || write(fd, "\n", 1) != 1) {
        perror(argv[2]);
        return 3;
    }
    close(fd);
    char content[1024] = "";
    fd = open(argv[2], O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, content, sizeof content - 1);
    if (n < 0) {
        perror(argv[2]);
        return 4;
    }
    content[n] = 0;
    close(fd);
    for (char *c = content; *c; c++)
        if (*c == '\n')
            *c = ',';
    char host[256], lib[1024];
    gethostname(host, sizeof host);
    libc_path(lib, sizeof lib);
    printf("%s host=%s uid=%d time=%ld libc=%s content=%s\n", argv[1], host, (int)getuid(),
           (long)time(NULL), lib, content);
    fflush(stdout);
    if (argc > 3) {
        execv(argv[3], argv + 3);
        perror(argv[3]);
        return 5;
    }
    return 0;
}
