/* no_seccomp: runs a program where seccomp filters are forbidden (seccomp(2)
 * fails with EPERM), as under a sandbox whose policy allows no nested filters.
 * tests/backstop_more.rs runs capsule under it: the system-call backstop cannot
 * be installed, so a static program must be refused, or run unseen with
 * --allow-bypass.
 *
 *   no_seccomp PROGRAM [ARGS...]
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: no_seccomp PROGRAM [ARGS...]\n");
        return 2;
    }
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_seccomp, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        perror("no_seccomp");
        return 2;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "no_seccomp: %s: %s\n", argv[1], strerror(errno));
    return 127;
}
