/* block_recv: N children each wait in recvfrom(2) for a datagram that never comes,
 * asking for the sender's address (a call the system-call backstop serves, and that
 * blocks there); meanwhile the parent must still get its own calls answered.
 *
 *   block_recv N
 * Prints nodename=NAME (uname, a call the backstop serves) once the children wait,
 * then ends them.
 */
#include "probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>

static void die(const char *what) {
    perror(what);
    _exit(1);
}

int main(int argc, char **argv) {
    if (argc != 2) usage("block_recv N");
    int n = atoi(argv[1]);
    pid_t kids[64];
    if (n < 1 || n > 64) usage("block_recv N (1 to 64)");
    for (int i = 0; i < n; i++) {
        kids[i] = fork();
        if (kids[i] < 0) die("fork");
        if (kids[i] == 0) {
            int fd = socket(AF_INET, SOCK_DGRAM, 0);
            struct sockaddr_in me = {.sin_family = AF_INET};
            me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof me) != 0) die("socket");
            char buf[16];
            struct sockaddr_in from;
            socklen_t len = sizeof from;
            recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
            _exit(0);
        }
    }
    /* Long enough for every child to be waiting in its recvfrom. */
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 500 * 1000 * 1000};
    nanosleep(&pause, NULL);
    struct utsname u;
    if (uname(&u) != 0) die("uname");
    printf("nodename=%s\n", u.nodename);
    fflush(stdout);
    for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
    for (int i = 0; i < n; i++) waitpid(kids[i], NULL, 0);
    return 0;
}
