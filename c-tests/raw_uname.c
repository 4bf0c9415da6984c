/* raw_uname: prints the node name a `uname` system call made with the `syscall`
 * instruction itself (no libc function, so no preload hook sees it) returns.
 * tests/backstop_more.rs: the capsule's name under `--backstop all`, the host's
 * otherwise (for a dynamic program). */
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

static long raw1(long n, long a) {
#if defined(__x86_64__)
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a) : "rcx", "r11", "memory");
    return r;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8) : "memory");
    return x0;
#else
#error "raw_uname: x86_64 or aarch64"
#endif
}

int main(void) {
    struct utsname u;
    if (raw1(SYS_uname, (long)&u) != 0) {
        perror("uname");
        return 1;
    }
    printf("%s\n", u.nodename);
    return 0;
}
