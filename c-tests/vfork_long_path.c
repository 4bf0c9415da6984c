/* vfork_long_path: a vfork child runs a program by a name longer than the shim's
 * inline path buffers (240 bytes). The child shares its parent's memory, heap
 * included, so the shim must not allocate there: what it took would never be
 * freed once the exec succeeds. The parent's malloc counters, read before the
 * vfork and after the child has exec'd, must be equal.
 *
 *   vfork_long_path PROGRAM
 * Prints status=N (the child's exit status; 127: the exec failed, with errno=E)
 * and heap_delta=N (bytes the parent's heap gained meanwhile).
 */
#include "probe.h"

#include <malloc.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    if (argc != 2) usage("vfork_long_path PROGRAM");
    static volatile int child_errno;
    char *child_argv[] = {argv[1], NULL};
    struct mallinfo2 before = mallinfo2();
    pid_t pid = vfork();
    if (pid == 0) {
        execv(argv[1], child_argv);
        child_errno = errno;
        _exit(127);
    }
    /* The child has exec'd (or exited): nothing here allocated in between. */
    struct mallinfo2 after = mallinfo2();
    if (pid < 0) {
        perror("vfork");
        return 1;
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        return 1;
    }
    printf("status=%d\nerrno=%d\nheap_delta=%ld\n", WIFEXITED(status) ? WEXITSTATUS(status) : 99,
           child_errno, (long)after.uordblks - (long)before.uordblks);
    return 0;
}
