/* netbench: a minimal TCP request/response server and a client that times round trips.
 *
 *   netbench serve PORT        accept connections on 0.0.0.0:PORT forever; each one
 *                              gets one request line and one response, then is closed
 *                              (HTTP/1.0 style: a new connection per request)
 *   netbench client HOST PORT N
 *                              N times: connect to HOST:PORT (resolved once with
 *                              getaddrinfo, as real clients do), send a request line,
 *                              read the response to EOF, close. Prints the mean round
 *                              trip and the median one, in microseconds
 *                              ("mean_us=... median_us=...").
 *   netbench wait HOST PORT SECONDS
 *                              retries until one round trip succeeds (exit 0) or the
 *                              time is up (exit 1).
 *
 * Uses the libc socket calls (socket, connect, accept, getaddrinfo), so that under
 * libcapsule.so every call the network replica hooks is on the measured path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char REQUEST[] = "GET / HTTP/1.0\r\n\r\n";
static const char RESPONSE[] = "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello";

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int serve(int port) {
    signal(SIGPIPE, SIG_IGN);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 128) != 0) {
        perror("netbench serve: bind/listen");
        return 1;
    }
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int c = accept(fd, (struct sockaddr *)&peer, &len);
        if (c < 0) {
            if (errno == EINTR) continue;
            perror("netbench serve: accept");
            return 1;
        }
        char buf[256];
        size_t got = 0;
        while (got < sizeof buf) {
            ssize_t n = read(c, buf + got, sizeof buf - got);
            if (n <= 0) break;
            got += (size_t)n;
            if (got >= 4 && memcmp(buf + got - 4, "\r\n\r\n", 4) == 0) break;
        }
        if (write(c, RESPONSE, sizeof RESPONSE - 1) < 0) {
            /* the client went away: nothing to do */
        }
        close(c);
    }
}

static struct addrinfo *resolve(const char *host, const char *port) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "netbench: %s: %s\n", host, gai_strerror(rc));
        return NULL;
    }
    return res;
}

/* One request and its response; 0 on success. */
static int round_trip(const struct addrinfo *ai) {
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        return -1;
    }
    if (write(fd, REQUEST, sizeof REQUEST - 1) != (ssize_t)(sizeof REQUEST - 1)) {
        close(fd);
        return -1;
    }
    char buf[256];
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd, buf + got, sizeof buf - got)) > 0) got += (size_t)n;
    close(fd);
    return got == sizeof RESPONSE - 1 && memcmp(buf, RESPONSE, got) == 0 ? 0 : -1;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "serve") == 0) return serve(atoi(argv[2]));
    if (argc == 5 && strcmp(argv[1], "client") == 0) {
        struct addrinfo *ai = resolve(argv[2], argv[3]);
        if (ai == NULL) return 1;
        long n = atol(argv[4]);
        /* One untimed round trip first: resolver and lazy setup out of the figure. */
        if (round_trip(ai) != 0) {
            fprintf(stderr, "netbench client: %s:%s: %s\n", argv[2], argv[3], strerror(errno));
            return 1;
        }
        double *each = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
        if (each == NULL || n <= 0) return 2;
        double start = now_us();
        for (long i = 0; i < n; i++) {
            double t = now_us();
            if (round_trip(ai) != 0) {
                fprintf(stderr, "netbench client: round trip %ld failed: %s\n", i, strerror(errno));
                return 1;
            }
            each[i] = now_us() - t;
        }
        double mean = (now_us() - start) / (double)n;
        qsort(each, (size_t)n, sizeof(double), by_value);
        printf("mean_us=%.2f median_us=%.2f\n", mean, each[n / 2]);
        free(each);
        freeaddrinfo(ai);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "wait") == 0) {
        double deadline = now_us() + atof(argv[4]) * 1e6;
        while (now_us() < deadline) {
            struct addrinfo *ai = resolve(argv[2], argv[3]);
            if (ai != NULL) {
                int ok = round_trip(ai) == 0;
                freeaddrinfo(ai);
                if (ok) return 0;
            }
            usleep(20000);
        }
        return 1;
    }
    fprintf(stderr, "usage: netbench serve PORT | client HOST PORT N | wait HOST PORT SECONDS\n");
    return 2;
}
