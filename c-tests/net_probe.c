/* net_probe: the socket and resolver calls of a network server and its clients, the
 * way real software makes them, with what each one reported printed as KEY=VALUE
 * lines (the test compares them with what a capsule, or the host, must show).
 *
 *   net_probe --port P --client-port Q [--names N1,N2,...] [--refused HOST:PORT]
 *             [--tag TAG]
 *
 *   TCP    a listener on 0.0.0.0:P and one on [::]:P (IPV6_V6ONLY, as nginx and sshd
 *          bind), then clients connecting to 127.0.0.1:P, [::1]:P, 0.0.0.0:P, [::]:P;
 *          getsockname of the listeners and of each accepted socket, getpeername of
 *          each client, accept's peer address (must be the client's own address),
 *          data both ways. tcp_host_port is the port the kernel really bound (a raw
 *          getsockname, which no preload can change).
 *   UDP    a server on 0.0.0.0:P and a client bound to 0.0.0.0:Q; sendto/recvfrom,
 *          then sendmsg/recvmsg, then sendmmsg/recvmmsg (two datagrams) to
 *          127.0.0.1:P and back to the source addresses the server was given.
 *   names  for each name N, and for the host name gethostname reports (printed as
 *          "self"): getaddrinfo (AF_INET and AF_INET6 hints), gethostbyname,
 *          gethostbyname_r, gethostbyname2 (AF_INET6), and gethostbyaddr,
 *          gethostbyaddr_r and getnameinfo (NI_NAMEREQD) of the AF_INET address
 *          getaddrinfo gave. A failure prints the error.
 *          self_connect: a TCP connection to the own host name at port P.
 *   refused  connect to HOST:PORT (resolved with getaddrinfo), expected to fail.
 *   unix   an abstract listener "@netprobe-TAG": its getsockname, the name the
 *          kernel lists in /proc/net/unix, a connect by the same name through libc
 *          and through a raw system call (which bypasses any preload), and binds of
 *          the longest names that fit in sun_path with and without a capsule prefix
 *          (90 and 107 bytes).
 *
 * Consistency checks that hold everywhere (data arrives, accept's address is the
 * client's) are FAIL lines; the last line is OK or FAILURES: N.
 */
#include "probe.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static int port_p = -1, port_q = -1;

static const char *err_text(int e) {
    switch (e) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ENETUNREACH: return "ENETUNREACH";
    case EINVAL: return "EINVAL";
    default: return errno_name(e);
    }
}

static const char *gai_text(int rc) {
    switch (rc) {
    case EAI_NONAME: return "EAI_NONAME";
    case EAI_AGAIN: return "EAI_AGAIN";
    case EAI_FAIL: return "EAI_FAIL";
    case EAI_FAMILY: return "EAI_FAMILY";
    case EAI_OVERFLOW: return "EAI_OVERFLOW";
    case EAI_SYSTEM: return "EAI_SYSTEM";
#ifdef EAI_NODATA
    case EAI_NODATA: return "EAI_NODATA";
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: return "EAI_ADDRFAMILY";
#endif
    default: return "EAI_?";
    }
}

/* "A.B.C.D:PORT" or "[V6]:PORT" (port omitted when with_port is 0). */
static const char *fmt_addr(const struct sockaddr *sa, int with_port, char *out, size_t size) {
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        port = ntohs(in->sin_port);
        if (with_port)
            snprintf(out, size, "%s:%d", ip, port);
        else
            snprintf(out, size, "%s", ip);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
        if (with_port)
            snprintf(out, size, "[%s]:%d", ip, port);
        else
            snprintf(out, size, "%s", ip);
    } else {
        snprintf(out, size, "family%d", sa->sa_family);
    }
    return out;
}

static void put(const char *key, const char *value) {
    printf("%s=%s\n", key, value);
    fflush(stdout);
}

static void put_addr(const char *key, const struct sockaddr *sa) {
    char text[80];
    put(key, fmt_addr(sa, 1, text, sizeof text));
}

static void put_sockname(const char *key, int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        put(key, err_text(errno));
        return;
    }
    put_addr(key, (struct sockaddr *)&ss);
}

static void put_peername(const char *key, int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
        put(key, err_text(errno));
        return;
    }
    put_addr(key, (struct sockaddr *)&ss);
}

static int same_addr(const struct sockaddr *a, const struct sockaddr *b) {
    char x[80], y[80];
    return strcmp(fmt_addr(a, 1, x, sizeof x), fmt_addr(b, 1, y, sizeof y)) == 0;
}

static void make_v4(struct sockaddr_in *in, const char *ip, int port) {
    memset(in, 0, sizeof *in);
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &in->sin_addr);
}

static void make_v6(struct sockaddr_in6 *in6, const char *ip, int port) {
    memset(in6, 0, sizeof *in6);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, ip, &in6->sin6_addr);
}

/* The port the kernel really bound, through a raw system call. */
static int raw_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (raw_syscall3(SYS_getsockname, fd, (long)&ss, (long)&len) != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static void put_int(const char *key, int value) {
    char text[24];
    snprintf(text, sizeof text, "%d", value);
    put(key, text);
}

/* A listener bound to addr; exits when that fails (nothing else can be checked). */
static int listener(int family, const struct sockaddr *addr, socklen_t len, const char *what) {
    int fd = socket(family, SOCK_STREAM, 0);
    int one = 1;
    if (fd < 0) {
        printf("FAIL: socket for %s: %s\n", what, strerror(errno));
        exit(1);
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, addr, len) != 0 || listen(fd, 16) != 0) {
        printf("FAIL: bind/listen %s: %s\n", what, strerror(errno));
        exit(1);
    }
    return fd;
}

/* One client connection to `to` accepted by `server`: prints PREFIX_connect,
 * PREFIX_peername (client side), PREFIX_accepted_sockname (server side), and checks
 * that accept reported the client's own address and that data flows both ways. */
static void tcp_round(const char *prefix, int server, const struct sockaddr *to, socklen_t len) {
    char key[64];
    int c = socket(to->sa_family, SOCK_STREAM, 0);
    snprintf(key, sizeof key, "%s_connect", prefix);
    errno = ERRNO_SENTINEL;
    if (connect(c, to, len) != 0) {
        put(key, err_text(errno));
        close(c);
        return;
    }
    if (errno != ERRNO_SENTINEL) fail("%s: connect succeeded but changed errno", prefix);
    put(key, "ok");
    snprintf(key, sizeof key, "%s_peername", prefix);
    put_peername(key, c);

    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    memset(&from, 0, sizeof from);
    int a = accept(server, (struct sockaddr *)&from, &from_len);
    if (a < 0) {
        fail("%s: accept: %s", prefix, strerror(errno));
        close(c);
        return;
    }
    snprintf(key, sizeof key, "%s_accepted_sockname", prefix);
    put_sockname(key, a);
    struct sockaddr_storage mine;
    socklen_t mine_len = sizeof mine;
    getsockname(c, (struct sockaddr *)&mine, &mine_len);
    if (!same_addr((struct sockaddr *)&from, (struct sockaddr *)&mine)) {
        char x[80], y[80];
        fail("%s: accept reported %s, the client is %s", prefix,
             fmt_addr((struct sockaddr *)&from, 1, x, sizeof x),
             fmt_addr((struct sockaddr *)&mine, 1, y, sizeof y));
    }
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    getpeername(a, (struct sockaddr *)&peer, &peer_len);
    if (!same_addr((struct sockaddr *)&from, (struct sockaddr *)&peer))
        fail("%s: accept and getpeername of the accepted socket disagree", prefix);
    char buf[16] = {0};
    if (write(c, "ping", 4) != 4 || read(a, buf, sizeof buf) != 4 || memcmp(buf, "ping", 4) != 0)
        fail("%s: client to server data lost", prefix);
    memset(buf, 0, sizeof buf);
    if (write(a, "pong", 4) != 4 || read(c, buf, sizeof buf) != 4 || memcmp(buf, "pong", 4) != 0)
        fail("%s: server to client data lost", prefix);
    close(a);
    close(c);
}

static void tcp_checks(void) {
    struct sockaddr_in any4, lo4;
    struct sockaddr_in6 any6, lo6;
    make_v4(&any4, "0.0.0.0", port_p);
    make_v6(&any6, "::", port_p);
    int s4 = listener(AF_INET, (struct sockaddr *)&any4, sizeof any4, "0.0.0.0:P");
    int s6 = listener(AF_INET6, (struct sockaddr *)&any6, sizeof any6, "[::]:P");
    put_sockname("tcp4_sockname", s4);
    put_sockname("tcp6_sockname", s6);
    put_int("tcp_host_port", raw_port(s4));
    if (raw_port(s6) != raw_port(s4)) fail("the IPv4 and IPv6 listeners of P are on different host ports");

    make_v4(&lo4, "127.0.0.1", port_p);
    make_v6(&lo6, "::1", port_p);
    tcp_round("v4", s4, (struct sockaddr *)&lo4, sizeof lo4);
    tcp_round("v6", s6, (struct sockaddr *)&lo6, sizeof lo6);
    tcp_round("any4", s4, (struct sockaddr *)&any4, sizeof any4);
    tcp_round("any6", s6, (struct sockaddr *)&any6, sizeof any6);

    /* The own host name, resolved, reaches the own port too. */
    char host[256] = "";
    gethostname(host, sizeof host);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    char service[16];
    snprintf(service, sizeof service, "%d", port_p);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        put("self_connect", gai_text(rc));
    } else {
        tcp_round("self", s4, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
    }
    close(s4);
    close(s6);
}

static void udp_mmsg(int server, int client, struct sockaddr_in *to);

static int udp_socket(int port, const char *what) {
    struct sockaddr_in in;
    make_v4(&in, "0.0.0.0", port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&in, sizeof in) != 0) {
        printf("FAIL: UDP bind %s: %s\n", what, strerror(errno));
        exit(1);
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void udp_checks(void) {
    int server = udp_socket(port_p, "0.0.0.0:P");
    int client = udp_socket(port_q, "0.0.0.0:Q");
    put_sockname("udp_sockname", server);
    put_sockname("udp_client_sockname", client);
    put_int("udp_host_port", raw_port(server));

    struct sockaddr_in to;
    make_v4(&to, "127.0.0.1", port_p);
    struct sockaddr_storage from;
    socklen_t from_len;
    char buf[16];

    /* sendto / recvfrom, and the reply sent to the address recvfrom gave. */
    if (sendto(client, "ping", 4, 0, (struct sockaddr *)&to, sizeof to) != 4)
        fail("udp sendto: %s", strerror(errno));
    memset(&from, 0, sizeof from);
    from_len = sizeof from;
    memset(buf, 0, sizeof buf);
    if (recvfrom(server, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len) != 4 ||
        memcmp(buf, "ping", 4) != 0) {
        put("udp_from", err_text(errno));
    } else {
        put_addr("udp_from", (struct sockaddr *)&from);
        if (sendto(server, "pong", 4, 0, (struct sockaddr *)&from, from_len) != 4)
            fail("udp reply sendto: %s", strerror(errno));
        memset(&from, 0, sizeof from);
        from_len = sizeof from;
        if (recvfrom(client, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len) != 4 ||
            memcmp(buf, "pong", 4) != 0)
            put("udp_reply_from", err_text(errno));
        else
            put_addr("udp_reply_from", (struct sockaddr *)&from);
    }

    /* sendmsg / recvmsg, the same way. */
    struct iovec iov;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    iov.iov_base = "ping";
    iov.iov_len = 4;
    msg.msg_name = &to;
    msg.msg_namelen = sizeof to;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (sendmsg(client, &msg, 0) != 4) fail("udp sendmsg: %s", strerror(errno));
    if (msg.msg_name != &to || ntohs(to.sin_port) != port_p)
        fail("sendmsg changed the caller's message header or address");
    memset(&msg, 0, sizeof msg);
    memset(&from, 0, sizeof from);
    memset(buf, 0, sizeof buf);
    iov.iov_base = buf;
    iov.iov_len = sizeof buf;
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (recvmsg(server, &msg, 0) != 4 || memcmp(buf, "ping", 4) != 0) {
        put("udpmsg_from", err_text(errno));
    } else {
        put_addr("udpmsg_from", (struct sockaddr *)&from);
        struct msghdr reply;
        struct iovec riov = {"pong", 4};
        memset(&reply, 0, sizeof reply);
        reply.msg_name = &from;
        reply.msg_namelen = msg.msg_namelen;
        reply.msg_iov = &riov;
        reply.msg_iovlen = 1;
        if (sendmsg(server, &reply, 0) != 4) fail("udp reply sendmsg: %s", strerror(errno));
        memset(&msg, 0, sizeof msg);
        memset(&from, 0, sizeof from);
        iov.iov_base = buf;
        iov.iov_len = sizeof buf;
        msg.msg_name = &from;
        msg.msg_namelen = sizeof from;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (recvmsg(client, &msg, 0) != 4 || memcmp(buf, "pong", 4) != 0)
            put("udpmsg_reply_from", err_text(errno));
        else
            put_addr("udpmsg_reply_from", (struct sockaddr *)&from);
    }
    udp_mmsg(server, client, &to);
    close(server);
    close(client);
}

/* Two datagrams with sendmmsg to `to`, received with recvmmsg; both replies sent back
 * with sendmmsg to the source addresses recvmmsg gave, received with recvmmsg. Prints
 * the source addresses, comma-separated. */
static void udp_mmsg(int server, int client, struct sockaddr_in *to) {
    struct mmsghdr msgs[2];
    struct iovec iovs[2];
    struct sockaddr_storage from[2];
    char bufs[2][16];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < 2; i++) {
        iovs[i].iov_base = i == 0 ? "one" : "two";
        iovs[i].iov_len = 3;
        msgs[i].msg_hdr.msg_name = to;
        msgs[i].msg_hdr.msg_namelen = sizeof *to;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(client, msgs, 2, 0);
    if (n != 2 || msgs[0].msg_len != 3 || msgs[1].msg_len != 3) {
        put("udpmmsg_from", n < 0 ? err_text(errno) : "short");
        return;
    }
    if (ntohs(to->sin_port) != port_p) fail("sendmmsg changed the caller's address");

    /* recv_all: up to 2 datagrams into bufs, their sources into from. */
    struct timespec timeout = {10, 0};
    char text[200];
    for (int round = 0; round < 2; round++) {
        int fd = round == 0 ? server : client;
        memset(msgs, 0, sizeof msgs);
        memset(from, 0, sizeof from);
        for (int i = 0; i < 2; i++) {
            iovs[i].iov_base = bufs[i];
            iovs[i].iov_len = sizeof bufs[i];
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof from[i];
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int got = 0;
        while (got < 2) {
            int r = recvmmsg(fd, msgs + got, (unsigned)(2 - got), 0, &timeout);
            if (r <= 0) break;
            got += r;
        }
        const char *key = round == 0 ? "udpmmsg_from" : "udpmmsg_reply_from";
        if (got != 2) {
            put(key, "lost");
            return;
        }
        char a[80], b[80];
        snprintf(text, sizeof text, "%s,%s", fmt_addr((struct sockaddr *)&from[0], 1, a, sizeof a),
                 fmt_addr((struct sockaddr *)&from[1], 1, b, sizeof b));
        put(key, text);
        if (round == 1) break;
        /* Reply to each source as recvmmsg reported it. */
        struct sockaddr_storage back[2];
        memcpy(back, from, sizeof back);
        memset(msgs, 0, sizeof msgs);
        for (int i = 0; i < 2; i++) {
            iovs[i].iov_base = "ack";
            iovs[i].iov_len = 3;
            msgs[i].msg_hdr.msg_name = &back[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        if (sendmmsg(server, msgs, 2, 0) != 2) fail("reply sendmmsg: %s", strerror(errno));
    }
}

static void put_hostent(const char *key, const struct hostent *h, int err) {
    char text[300];
    if (h == NULL) {
        snprintf(text, sizeof text, "h_errno:%d", err);
        put(key, text);
        return;
    }
    char ip[INET6_ADDRSTRLEN] = "?";
    if (h->h_addr_list[0] != NULL) inet_ntop(h->h_addrtype, h->h_addr_list[0], ip, sizeof ip);
    snprintf(text, sizeof text, "%s %s%s", ip, h->h_name,
             h->h_addr_list[0] != NULL && h->h_addr_list[1] == NULL ? "" : " (not one address)");
    put(key, text);
}

static void name_checks(const char *label, const char *name) {
    char key[128];
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_CANONNAME;
    snprintf(key, sizeof key, "gai_%s", label);
    int rc = getaddrinfo(name, "80", &hints, &res);
    struct sockaddr_in found;
    int have = 0;
    if (rc != 0) {
        put(key, gai_text(rc));
    } else {
        char text[300], ip[80];
        snprintf(text, sizeof text, "%s %s", fmt_addr(res->ai_addr, 0, ip, sizeof ip),
                 res->ai_canonname ? res->ai_canonname : "(no canonical name)");
        put(key, text);
        if (ntohs(((struct sockaddr_in *)res->ai_addr)->sin_port) != 80)
            fail("getaddrinfo(%s, \"80\") lost the service port", name);
        memcpy(&found, res->ai_addr, sizeof found);
        have = 1;
        freeaddrinfo(res);
    }

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET6;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(key, sizeof key, "gai6_%s", label);
    rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc != 0) {
        put(key, gai_text(rc));
    } else {
        char ip[80];
        put(key, fmt_addr(res->ai_addr, 0, ip, sizeof ip));
        freeaddrinfo(res);
    }

    snprintf(key, sizeof key, "ghbn_%s", label);
    h_errno = 0;
    struct hostent *h = gethostbyname(name);
    put_hostent(key, h, h_errno);

    snprintf(key, sizeof key, "ghbn_r_%s", label);
    struct hostent ent, *result = NULL;
    char buf[1024];
    int herr = 0;
    rc = gethostbyname_r(name, &ent, buf, sizeof buf, &result, &herr);
    put_hostent(key, rc == 0 ? result : NULL, herr);
    /* A buffer too small is ERANGE, never an overflow. */
    char tiny[8];
    rc = gethostbyname_r(name, &ent, tiny, sizeof tiny, &result, &herr);
    snprintf(key, sizeof key, "ghbn_r_small_%s", label);
    put(key, rc == ERANGE ? "ERANGE" : rc == 0 ? "ok" : "other");

    snprintf(key, sizeof key, "ghbn2_%s", label);
    h_errno = 0;
    h = gethostbyname2(name, AF_INET6);
    put_hostent(key, h, h_errno);

    snprintf(key, sizeof key, "byaddr_%s", label);
    if (!have) {
        put(key, "(unresolved)");
    } else {
        h_errno = 0;
        h = gethostbyaddr(&found.sin_addr, sizeof found.sin_addr, AF_INET);
        put_hostent(key, h, h_errno);
        snprintf(key, sizeof key, "byaddr_r_%s", label);
        rc = gethostbyaddr_r(&found.sin_addr, sizeof found.sin_addr, AF_INET, &ent, buf, sizeof buf,
                             &result, &herr);
        put_hostent(key, rc == 0 ? result : NULL, herr);
    }

    snprintf(key, sizeof key, "nameinfo_%s", label);
    if (!have) {
        put(key, "(unresolved)");
    } else {
        char host[256], serv[32];
        rc = getnameinfo((struct sockaddr *)&found, sizeof found, host, sizeof host, serv,
                         sizeof serv, NI_NAMEREQD | NI_NUMERICSERV);
        if (rc != 0) {
            put(key, gai_text(rc));
        } else {
            char text[300];
            snprintf(text, sizeof text, "%s %s", host, serv);
            put(key, text);
        }
    }
}

static void refused_check(const char *target) {
    char host[256];
    snprintf(host, sizeof host, "%s", target);
    char *colon = strrchr(host, ':');
    if (colon == NULL) usage("--refused HOST:PORT");
    *colon = 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        put("refused", gai_text(rc));
        return;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    errno = 0;
    rc = connect(fd, res->ai_addr, res->ai_addrlen);
    put("refused", rc == 0 ? "connected" : err_text(errno));
    close(fd);
    freeaddrinfo(res);
}

/* An abstract address for `name` (without the leading NUL). */
static socklen_t abstract_addr(struct sockaddr_un *un, const char *name) {
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(un->sun_path + 1, name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

/* How /proc/net/unix lists the abstract socket named `name`, or `name` behind a
 * prefix ending in '/'. */
static void kernel_name(const char *name, char *out, size_t size) {
    snprintf(out, size, "(not listed)");
    FILE *f = fopen("/proc/net/unix", "r");
    if (f == NULL) return;
    char line[512];
    size_t n = strlen(name);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *at = strrchr(line, ' ');
        if (at == NULL) continue;
        at++;
        size_t len = strlen(at);
        if (at[0] == '@' && len > n && strcmp(at + len - n, name) == 0 &&
            (len == n + 1 || at[len - n - 1] == '/')) {
            snprintf(out, size, "%s", at);
            break;
        }
    }
    fclose(f);
}

static const char *try_bind_abstract(size_t length) {
    char name[128];
    memset(name, 'n', length);
    name[length] = 0;
    struct sockaddr_un un;
    socklen_t len = abstract_addr(&un, name);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    errno = ERRNO_SENTINEL;
    int rc = bind(fd, (struct sockaddr *)&un, len);
    int e = errno;
    close(fd);
    if (rc == 0) {
        if (e != ERRNO_SENTINEL) fail("abstract bind of %zu bytes changed errno", length);
        return "ok";
    }
    return err_text(e);
}

static void unix_checks(const char *tag) {
    char name[80];
    snprintf(name, sizeof name, "netprobe-%s", tag);
    struct sockaddr_un un;
    socklen_t len = abstract_addr(&un, name);
    int server = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(server, (struct sockaddr *)&un, len) != 0 || listen(server, 4) != 0) {
        put("abstract_bind", err_text(errno));
        return;
    }
    put("abstract_bind", "ok");

    struct sockaddr_un got;
    socklen_t got_len = sizeof got;
    memset(&got, 0, sizeof got);
    getsockname(server, (struct sockaddr *)&got, &got_len);
    char text[200];
    size_t n = got_len - offsetof(struct sockaddr_un, sun_path);
    if (got_len > offsetof(struct sockaddr_un, sun_path) && got.sun_path[0] == 0 && n < sizeof text) {
        text[0] = '@';
        memcpy(text + 1, got.sun_path + 1, n - 1);
        text[n] = 0;
    } else {
        snprintf(text, sizeof text, "(not abstract, length %u)", (unsigned)got_len);
    }
    put("abstract_sockname", text);
    if (got_len != len) fail("abstract getsockname length %u, bound with %u", got_len, len);

    char listed[200];
    kernel_name(name, listed, sizeof listed);
    put("abstract_kernel", listed);

    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    errno = 0;
    put("abstract_connect", connect(c, (struct sockaddr *)&un, len) == 0 ? "ok" : err_text(errno));
    int a = accept(server, NULL, NULL);
    char buf[8] = {0};
    if (a < 0 || write(c, "hi", 2) != 2 || read(a, buf, sizeof buf) != 2 || memcmp(buf, "hi", 2) != 0)
        fail("abstract: no data through the connection");
    if (a >= 0) {
        /* The accepted socket's own name is the listener's, as the capsule sees it. */
        memset(&got, 0, sizeof got);
        got_len = sizeof got;
        getsockname(a, (struct sockaddr *)&got, &got_len);
        if (got_len != len || memcmp(got.sun_path, un.sun_path, len - offsetof(struct sockaddr_un, sun_path)) != 0)
            fail("abstract: the accepted socket's name is not the bound one");
        /* The client's getpeername shows the same name. */
        memset(&got, 0, sizeof got);
        got_len = sizeof got;
        getpeername(c, (struct sockaddr *)&got, &got_len);
        if (got_len != len || memcmp(got.sun_path, un.sun_path, len - offsetof(struct sockaddr_un, sun_path)) != 0)
            fail("abstract: the client's getpeername is not the bound name");
        close(a);
    }
    close(c);

    /* The same name through a raw system call: the kernel's own namespace. */
    c = socket(AF_UNIX, SOCK_STREAM, 0);
    long r = raw_syscall3(SYS_connect, c, (long)&un, len);
    put("abstract_raw_connect", r == 0 ? "ok" : err_text((int)-r));
    if (r == 0) {
        a = accept(server, NULL, NULL);
        if (a >= 0) close(a);
    }
    close(c);
    close(server);

    /* sun_path holds 108 bytes: the leading NUL and 107 of name, of which a capsule's
     * prefix ("capsule-XXXXXXXX/", 17 bytes) takes some. */
    put("abstract_bind_90", try_bind_abstract(90));
    put("abstract_bind_91", try_bind_abstract(91));
    put("abstract_bind_107", try_bind_abstract(107));
}

int main(int argc, char **argv) {
    const char *names = "", *refused = NULL, *tag = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage("net_probe --port P --client-port Q [--names A,B] [--refused HOST:PORT] [--tag T]");
        if (strcmp(argv[i], "--port") == 0)
            port_p = atoi(argv[++i]);
        else if (strcmp(argv[i], "--client-port") == 0)
            port_q = atoi(argv[++i]);
        else if (strcmp(argv[i], "--names") == 0)
            names = argv[++i];
        else if (strcmp(argv[i], "--refused") == 0)
            refused = argv[++i];
        else if (strcmp(argv[i], "--tag") == 0)
            tag = argv[++i];
        else
            usage("net_probe --port P --client-port Q [--names A,B] [--refused HOST:PORT] [--tag T]");
    }
    if (port_p <= 0 || port_q <= 0) usage("net_probe --port P --client-port Q ...");
    char tag_buf[32];
    if (tag == NULL) {
        snprintf(tag_buf, sizeof tag_buf, "%d", (int)getpid());
        tag = tag_buf;
    }

    tcp_checks();
    udp_checks();

    char host[256] = "";
    gethostname(host, sizeof host);
    put("hostname", host);
    name_checks("self", host);
    char list[1024];
    snprintf(list, sizeof list, "%s", names);
    for (char *save = NULL, *n = strtok_r(list, ",", &save); n; n = strtok_r(NULL, ",", &save))
        name_checks(n, n);
    if (refused) refused_check(refused);
    unix_checks(tag);
    return probe_finish();
}
