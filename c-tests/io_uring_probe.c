/* io_uring in a capsule: io_uring_setup, made with the system call instruction itself
 * (as liburing does, past any preloaded library), and io_uring_enter and
 * io_uring_register on a descriptor that is no ring.
 *
 * usage: io_uring_probe
 * Prints one line per call: "setup=OK" (a ring descriptor) or "setup=ERRNO_NAME",
 * and "enter=..." and "register=..." likewise (an error other than ENOSYS natively,
 * as -1 is no ring).
 */
#include "probe.h"

#include <string.h>

#define IO_URING_SETUP 425
#define IO_URING_ENTER 426
#define IO_URING_REGISTER 427

static const char *name_of(long rc) {
    switch (-rc) {
    case ENOSYS: return "ENOSYS";
    case EBADF: return "EBADF";
    case EPERM: return "EPERM";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    default: return "other";
    }
}

int main(void) {
    unsigned char params[120];
    memset(params, 0, sizeof params);
    long fd = raw_syscall3(IO_URING_SETUP, 4, (long)params, 0);
    if (fd >= 0) {
        printf("setup=OK\n");
        close((int)fd);
    } else {
        printf("setup=%s\n", name_of(fd));
    }
    printf("enter=%s\n", name_of(raw_syscall3(IO_URING_ENTER, -1, 0, 0)));
    printf("register=%s\n", name_of(raw_syscall3(IO_URING_REGISTER, -1, 0, 0)));
    return 0;
}
