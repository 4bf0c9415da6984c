/* listen_report.c - a tiny server that says who it is.
 *
 *   listen_report PORT FILE
 *
 * Binds TCP PORT on every address (as servers that hard-code their port do), then
 * writes "HOSTNAME PORT\n" to FILE (atomically: a temporary file, then rename), where
 * HOSTNAME is what gethostname() says and PORT what getsockname() reports for the
 * bound socket. Then answers every connection with its host name and closes it.
 * Exits 1 with a message on any failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: listen_report PORT FILE\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) die("socket");
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((unsigned short)atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind");
    if (listen(s, 64) != 0) die("listen");
    struct sockaddr_in bound;
    socklen_t len = sizeof bound;
    if (getsockname(s, (struct sockaddr *)&bound, &len) != 0) die("getsockname");
    char name[256] = {0};
    if (gethostname(name, sizeof name - 1) != 0) die("gethostname");

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]);
    FILE *out = fopen(tmp, "w");
    if (!out) die(tmp);
    fprintf(out, "%s %d\n", name, ntohs(bound.sin_port));
    if (fclose(out) != 0) die(tmp);
    if (rename(tmp, argv[2]) != 0) die(argv[2]);

    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        ssize_t n = write(c, name, strlen(name));
        (void)n;
        close(c);
    }
}
