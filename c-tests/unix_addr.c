/* The addresses of unix sockets at paths, as the kernel reports them, between two
 * processes: built dynamic and with `cc -static` (then the backstop serves it).
 *
 * usage: unix_addr stream SERVER CLIENT
 *        unix_addr dgram SERVER CLIENT
 *        unix_addr mmsg SERVER CLIENT
 *
 * stream: the parent listens at SERVER; a child binds CLIENT, connects, prints
 * "peer=" (getpeername) and "client=" (getsockname), reads what the server wrote
 * ("got="). The parent prints "addr=" (the listener's getsockname), "accepted_peer="
 * (accept's address, the child's CLIENT), "accepted=" (the accepted socket's
 * getsockname), "short=" (getsockname into a buffer with room for 4 bytes of the
 * path: what it holds) and "short_len=" (the length reported, the whole address's).
 *
 * dgram: the parent binds SERVER; a child binds CLIENT and sends "ping" to SERVER
 * with sendmsg. The parent prints "src=" (recvfrom's source address) and "src_len=",
 * then answers "pong" with sendto to that very address; the child prints
 * "reply=pong" and "from=" (recvfrom's source, SERVER).
 *
 * mmsg: as dgram, but the child sends two "ping" datagrams with one sendmmsg (both
 * must be sent, 4 bytes each).
 *
 * Lengths are printed as the offset of sun_path plus the bytes after it. The
 * parent prints after the child ended, so lines come in one order. Then OK. */
#define _GNU_SOURCE /* sendmmsg */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
    printf("FAIL: %s: %m\n", what);
    fflush(stdout);
    exit(1);
}

static struct sockaddr_un at(const char *path, socklen_t *len) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    *len = offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
    return a;
}

static int bound(int type, const char *path) {
    int fd = socket(AF_UNIX, type, 0);
    if (fd < 0)
        die("socket");
    socklen_t len;
    struct sockaddr_un a = at(path, &len);
    if (bind(fd, (struct sockaddr *)&a, len) != 0)
        die("bind");
    return fd;
}

/* The path in an address the kernel filled (len bytes of it). */
static const char *path_of(const struct sockaddr_un *a, socklen_t len) {
    static char out[4][sizeof a->sun_path + 1];
    static int next;
    char *p = out[next++ % 4];
    size_t n = len > offsetof(struct sockaddr_un, sun_path)
                   ? len - offsetof(struct sockaddr_un, sun_path)
                   : 0;
    if (n > sizeof a->sun_path)
        n = sizeof a->sun_path;
    memcpy(p, a->sun_path, n);
    p[n] = 0;
    return n == 0 ? "(unnamed)" : p;
}

static void wait_child(pid_t pid) {
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("child");
}

static int stream(const char *server, const char *client) {
    int s = bound(SOCK_STREAM, server);
    if (listen(s, 4) != 0)
        die("listen");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        int c = bound(SOCK_STREAM, client);
        socklen_t len;
        struct sockaddr_un to = at(server, &len);
        if (connect(c, (struct sockaddr *)&to, len) != 0)
            die("connect");
        struct sockaddr_un peer, own;
        socklen_t peer_len = sizeof peer, own_len = sizeof own;
        if (getpeername(c, (struct sockaddr *)&peer, &peer_len) != 0)
            die("getpeername");
        if (getsockname(c, (struct sockaddr *)&own, &own_len) != 0)
            die("getsockname");
        char buf[32] = {0};
        ssize_t n = read(c, buf, sizeof buf - 1);
        if (n < 0)
            die("read");
        printf("peer=%s\nclient=%s\ngot=%s\n", path_of(&peer, peer_len), path_of(&own, own_len),
               buf);
        exit(0);
    }
    struct sockaddr_un from, mine, addr;
    socklen_t from_len = sizeof from, mine_len = sizeof mine, addr_len = sizeof addr;
    int a = accept(s, (struct sockaddr *)&from, &from_len);
    if (a < 0)
        die("accept");
    if (getsockname(a, (struct sockaddr *)&mine, &mine_len) != 0)
        die("getsockname accepted");
    if (getsockname(s, (struct sockaddr *)&addr, &addr_len) != 0)
        die("getsockname listener");
    /* Room for the family and 4 bytes of the path: the kernel fills that much and
     * says how long the whole address is. */
    struct sockaddr_un small;
    memset(&small, 0x7f, sizeof small);
    socklen_t small_len = offsetof(struct sockaddr_un, sun_path) + 4;
    if (getsockname(s, (struct sockaddr *)&small, &small_len) != 0)
        die("getsockname short");
    if (write(a, "hello", 5) != 5)
        die("write");
    close(a);
    wait_child(pid);
    printf("addr=%s\naddr_len=%u\naccepted_peer=%s\naccepted=%s\nshort=%.4s\nshort_len=%u\n",
           path_of(&addr, addr_len), (unsigned)addr_len, path_of(&from, from_len),
           path_of(&mine, mine_len), small.sun_path, (unsigned)small_len);
    return 0;
}

static int dgram(const char *server, const char *client, int mmsg) {
    int d = bound(SOCK_DGRAM, server);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        int c = bound(SOCK_DGRAM, client);
        socklen_t len;
        struct sockaddr_un to = at(server, &len);
        struct iovec iov = {.iov_base = "ping", .iov_len = 4};
        struct msghdr msg = {.msg_name = &to, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1};
        if (mmsg) {
            struct mmsghdr two[2] = {{.msg_hdr = msg}, {.msg_hdr = msg}};
            if (sendmmsg(c, two, 2, 0) != 2 || two[0].msg_len != 4 || two[1].msg_len != 4)
                die("sendmmsg");
        } else if (sendmsg(c, &msg, 0) != 4)
            die("sendmsg");
        struct sockaddr_un from;
        socklen_t from_len = sizeof from;
        char buf[16] = {0};
        if (recvfrom(c, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &from_len) < 0)
            die("recvfrom reply");
        printf("reply=%s\nfrom=%s\n", buf, path_of(&from, from_len));
        exit(0);
    }
    struct sockaddr_un src;
    socklen_t src_len = sizeof src;
    char buf[16] = {0};
    if (recvfrom(d, buf, sizeof buf - 1, 0, (struct sockaddr *)&src, &src_len) != 4)
        die("recvfrom");
    /* Answer the source as reported: a capsule path, which sendto finds again. */
    if (sendto(d, "pong", 4, 0, (struct sockaddr *)&src, src_len) != 4)
        die("sendto reply");
    wait_child(pid);
    printf("got=%s\nsrc=%s\nsrc_len=%u\n", buf, path_of(&src, src_len), (unsigned)src_len);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: unix_addr stream|dgram|mmsg SERVER CLIENT\n");
        return 2;
    }
    int rc = strcmp(argv[1], "stream") == 0 ? stream(argv[2], argv[3])
             : strcmp(argv[1], "dgram") == 0 ? dgram(argv[2], argv[3], 0)
             : strcmp(argv[1], "mmsg") == 0  ? dgram(argv[2], argv[3], 1)
                                             : 2;
    if (rc == 0)
        printf("OK\n");
    return rc;
}
