/* threads_fork: hooked calls from several threads while the main thread forks.
 *
 *   threads_fork HOST UID OFFSET PROBE_ENV
 * Four threads call gethostname, getuid, geteuid and clock_gettime in a loop, each
 * read checked against HOST, UID and the kernel's clock + OFFSET seconds (± 2 s). The
 * main thread meanwhile forks 40 times: odd children exec PROBE_ENV (whose report is
 * read through a pipe and checked), even children check the same calls themselves
 * without exec. A deadlock is caught by alarm(60). Prints OK when every read held.
 */
#include "probe.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define THREADS 4
#define FORKS 40

static const char *want_host;
static long want_uid;
static double want_offset;
static atomic_int stop;
static atomic_long reads;
static atomic_int bad;

/* One round of checks; returns a description of the first mismatch or NULL. */
static const char *check_once(char *msg, size_t size) {
    char host[256];
    if (gethostname(host, sizeof host) != 0) return "gethostname failed";
    if (strcmp(host, want_host) != 0) {
        snprintf(msg, size, "gethostname=%s", host);
        return msg;
    }
    if ((long)getuid() != want_uid || (long)geteuid() != want_uid) {
        snprintf(msg, size, "getuid=%u geteuid=%u", getuid(), geteuid());
        return msg;
    }
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return "clock_gettime failed";
    double off = ts_seconds(ts) - raw_seconds(CLOCK_REALTIME);
    if (off < want_offset - 2 || off > want_offset + 2) {
        snprintf(msg, size, "realtime offset %.3f", off);
        return msg;
    }
    return NULL;
}

static void *worker(void *arg) {
    (void)arg;
    char msg[512];
    while (!atomic_load(&stop)) {
        const char *err = check_once(msg, sizeof msg);
        atomic_fetch_add(&reads, 1);
        if (err != NULL && atomic_fetch_add(&bad, 1) < 5) {
            printf("FAIL: thread read %s\n", err);
            fflush(stdout);
        }
    }
    return NULL;
}

/* Reads the child's report and checks the lines that matter. */
static void check_report(int fd, int round) {
    char buf[8192];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fd, buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)n;
    buf[len] = '\0';
    char want[512];
    snprintf(want, sizeof want, "\nhostname=%s\n", want_host);
    if (strstr(buf, want) == NULL) fail("fork %d: exec'd child reported no %s: %s", round, want + 1, buf);
    snprintf(want, sizeof want, "\nuid=%ld\n", want_uid);
    if (strstr(buf, want) == NULL) fail("fork %d: exec'd child reported no uid=%ld", round, want_uid);
    const char *off = strstr(buf, "\nrealtime_offset=");
    if (off == NULL || atof(off + 17) < want_offset - 2 || atof(off + 17) > want_offset + 2)
        fail("fork %d: exec'd child has the wrong clock: %s", round, buf);
}

int main(int argc, char **argv) {
    if (argc != 5) usage("threads_fork HOST UID OFFSET PROBE_ENV");
    want_host = argv[1];
    want_uid = atol(argv[2]);
    want_offset = atof(argv[3]);
    const char *probe = argv[4];
    alarm(60);

    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&threads[i], NULL, worker, NULL) != 0) {
            fail("pthread_create");
            return probe_finish();
        }

    for (int round = 0; round < FORKS; round++) {
        int fds[2];
        if (pipe(fds) != 0) {
            fail("pipe");
            break;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            fail("fork: %s", strerror(errno));
            break;
        }
        if (pid == 0) {
            close(fds[0]);
            if (round % 2 == 1) {
                dup2(fds[1], 1);
                execl(probe, probe, "threads_fork", (char *)NULL);
                _exit(127);
            }
            char msg[512];
            const char *err = check_once(msg, sizeof msg);
            if (err != NULL) {
                dprintf(fds[1], "%s", err);
                _exit(1);
            }
            _exit(0);
        }
        close(fds[1]);
        if (round % 2 == 1) {
            check_report(fds[0], round);
        } else {
            char msg[512] = "";
            ssize_t n = read(fds[0], msg, sizeof msg - 1);
            if (n > 0) {
                msg[n] = '\0';
                fail("fork %d: child read %s", round, msg);
            }
        }
        close(fds[0]);
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail("fork %d: child status %d", round, status);
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }

    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    long total = atomic_load(&reads);
    int wrong = atomic_load(&bad);
    printf("reads=%ld wrong=%d\n", total, wrong);
    if (wrong > 0) fail("%d of %ld thread reads were wrong", wrong, total);
    if (total < THREADS) fail("the threads barely ran (%ld reads)", total);
    return probe_finish();
}
