/* exec_family: starts probe_env through one of libc's ways of running a program.
 *
 *   exec_family FORM ENV PROBE
 * FORM: execve execv execvp execvpe execl execlp execle fexecve execveat posix_spawn
 *       posix_spawnp system popen vfork fork
 * ENV:  keep   - the current environment
 *       empty  - an empty environment (envp = {NULL}, or clearenv() for the forms that
 *                use environ; the PATH-searching forms keep only PATH, which they need)
 *       custom - only CAPSULE_TEST_VAR=kept (plus PATH where the search needs it)
 * PROBE: absolute path of probe_env. The child's output is this program's output; the
 * exit status is the child's. The forms that return (spawn, system, popen, fork, vfork)
 * then print what the parent itself still sees: parent_hostname=, parent_uid=.
 */
#include "probe.h"

#include <fcntl.h>
#include <libgen.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

static char *empty_env[] = {NULL};
static char *custom_env[] = {"CAPSULE_TEST_VAR=kept", NULL};

static int child_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    fprintf(stderr, "child died with status %d\n", status);
    return 99;
}

/* What the parent sees after its child ran: starting a child must not change it. */
static int report_parent(int status) {
    char host[256] = "";
    gethostname(host, sizeof host);
    printf("parent_hostname=%s\nparent_uid=%u\n", host, getuid());
    fflush(stdout);
    return status;
}

static int wait_child(pid_t pid) {
    int status;
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        return 98;
    }
    return report_parent(child_status(status));
}

int main(int argc, char **argv) {
    if (argc != 4) usage("exec_family FORM keep|empty|custom PROBE");
    const char *form = argv[1], *mode = argv[2], *probe = argv[3];
    char dir_buf[4096], base_buf[4096];
    snprintf(dir_buf, sizeof dir_buf, "%s", probe);
    snprintf(base_buf, sizeof base_buf, "%s", probe);
    const char *dir = dirname(dir_buf), *base = basename(base_buf);
    char tag[256];
    snprintf(tag, sizeof tag, "%s-%s", form, mode);
    char *child_argv[] = {(char *)base, tag, NULL};

    int keep = strcmp(mode, "keep") == 0;
    int custom = strcmp(mode, "custom") == 0;
    if (!keep && !custom && strcmp(mode, "empty") != 0) usage("ENV is keep, empty or custom");
    char **envp = keep ? environ : custom ? custom_env : empty_env;

    /* The PATH the searching forms look the probe up in. */
    char path[8192];
    const char *old_path = getenv("PATH");
    snprintf(path, sizeof path, "%s:%s", dir, old_path ? old_path : "/usr/bin:/bin");

    /* Forms that take the child's environment from `environ`. */
    int uses_environ = strcmp(form, "execv") == 0 || strcmp(form, "execvp") == 0 ||
                       strcmp(form, "execl") == 0 || strcmp(form, "execlp") == 0 ||
                       strcmp(form, "system") == 0 || strcmp(form, "popen") == 0;
    int searches = strcmp(form, "execvp") == 0 || strcmp(form, "execlp") == 0 ||
                   strcmp(form, "execvpe") == 0 || strcmp(form, "posix_spawnp") == 0;
    if (uses_environ && !keep) {
        clearenv();
        if (custom) setenv("CAPSULE_TEST_VAR", "kept", 1);
    }
    if (searches) setenv("PATH", dir, 1);
    if (searches && keep) setenv("PATH", path, 1);
    fflush(stdout);

    if (strcmp(form, "execve") == 0) {
        execve(probe, child_argv, envp);
    } else if (strcmp(form, "execv") == 0) {
        execv(probe, child_argv);
    } else if (strcmp(form, "execvp") == 0) {
        execvp(base, child_argv);
    } else if (strcmp(form, "execvpe") == 0) {
        execvpe(base, child_argv, envp);
    } else if (strcmp(form, "execl") == 0) {
        execl(probe, base, tag, (char *)NULL);
    } else if (strcmp(form, "execlp") == 0) {
        execlp(base, base, tag, (char *)NULL);
    } else if (strcmp(form, "execle") == 0) {
        execle(probe, base, tag, (char *)NULL, envp);
    } else if (strcmp(form, "fexecve") == 0) {
        int fd = open(probe, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            perror("open");
            return 97;
        }
        fexecve(fd, child_argv, envp);
    } else if (strcmp(form, "execveat") == 0) {
        int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
            perror("open dir");
            return 97;
        }
        execveat(dirfd, base, child_argv, envp, 0);
    } else if (strcmp(form, "posix_spawn") == 0 || strcmp(form, "posix_spawnp") == 0) {
        pid_t pid;
        int err = form[11] == 'p' ? posix_spawnp(&pid, base, NULL, NULL, child_argv, envp)
                                  : posix_spawn(&pid, probe, NULL, NULL, child_argv, envp);
        if (err != 0) {
            fprintf(stderr, "%s: %s\n", form, strerror(err));
            return 96;
        }
        return wait_child(pid);
    } else if (strcmp(form, "system") == 0) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s' '%s'", probe, tag);
        int status = system(cmd);
        if (status == -1) {
            perror("system");
            return 96;
        }
        return report_parent(child_status(status));
    } else if (strcmp(form, "popen") == 0) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s' '%s'", probe, tag);
        FILE *pipe = popen(cmd, "r");
        if (pipe == NULL) {
            perror("popen");
            return 96;
        }
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) fwrite(buf, 1, n, stdout);
        fflush(stdout);
        int status = pclose(pipe);
        if (status == -1) {
            perror("pclose");
            return 96;
        }
        return report_parent(child_status(status));
    } else if (strcmp(form, "vfork") == 0) {
        pid_t pid = vfork();
        if (pid == 0) {
            execve(probe, child_argv, envp);
            _exit(127);
        }
        if (pid < 0) {
            perror("vfork");
            return 96;
        }
        return wait_child(pid);
    } else if (strcmp(form, "fork") == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            execve(probe, child_argv, envp);
            _exit(127);
        }
        if (pid < 0) {
            perror("fork");
            return 96;
        }
        return wait_child(pid);
    } else {
        fprintf(stderr, "unknown form %s\n", form);
        return 2;
    }
    fprintf(stderr, "%s failed: %s\n", form, strerror(errno));
    return 95;
}
