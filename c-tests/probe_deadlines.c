/* probe_deadlines: absolute wall-clock deadlines wait as long as the program meant.
 *
 *   probe_deadlines
 * For each kind of wait, the probe reads the wall clock the way a program does
 * (clock_gettime), adds 300 ms, and waits until that instant: clock_nanosleep with
 * TIMER_ABSTIME, sem_timedwait, pthread_mutex_timedlock on a held mutex,
 * pthread_cond_timedwait on a default (wall-clock) and on a CLOCK_MONOTONIC
 * condition variable, pthread_cond_clockwait, sem_clockwait, and a timerfd armed
 * with TFD_TIMER_ABSTIME. Each wait must last about 300 ms by the kernel's
 * monotonic clock. Natively that always holds; in a capsule whose clock is shifted it
 * holds only if the shim moves the deadlines back into host time (otherwise a clock
 * set back returns at once, and a clock set forward waits for the offset: an alarm
 * ends the probe after 20 s).
 */
#include "probe.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <sys/timerfd.h>

#define WAIT_NS 300000000L

static struct timespec deadline(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    ts.tv_nsec += WAIT_NS;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_nsec -= 1000000000L;
        ts.tv_sec += 1;
    }
    return ts;
}

static double started;

static void begin(void) { started = raw_seconds(CLOCK_MONOTONIC); }

static void end(const char *what, int rc, int expected_rc) {
    double waited = raw_seconds(CLOCK_MONOTONIC) - started;
    if (rc != expected_rc)
        fail("%s: returned %d, expected %d", what, rc, expected_rc);
    if (waited < 0.2 || waited > 5.0)
        fail("%s: waited %.3f s, expected about 0.3 s", what, waited);
    printf("%s waited=%.3f\n", what, waited);
}

int main(void) {
    alarm(20);
    struct timespec ts;

    ts = deadline(CLOCK_REALTIME);
    begin();
    end("clock_nanosleep", clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL), 0);

    sem_t sem;
    sem_init(&sem, 0, 0);
    ts = deadline(CLOCK_REALTIME);
    begin();
    int rc = sem_timedwait(&sem, &ts);
    end("sem_timedwait", rc == -1 ? errno : 0, ETIMEDOUT);
    ts = deadline(CLOCK_REALTIME);
    begin();
    rc = sem_clockwait(&sem, CLOCK_REALTIME, &ts);
    end("sem_clockwait", rc == -1 ? errno : 0, ETIMEDOUT);

    /* A mutex held by another (finished) thread, so the timed lock really waits. */
    pthread_mutex_t other = PTHREAD_MUTEX_INITIALIZER;
    pthread_t holder;
    pthread_create(&holder, NULL, (void *(*)(void *))pthread_mutex_lock, &other);
    pthread_join(holder, NULL);
    ts = deadline(CLOCK_REALTIME);
    begin();
    end("pthread_mutex_timedlock", pthread_mutex_timedlock(&other, &ts), ETIMEDOUT);

    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t wall = PTHREAD_COND_INITIALIZER;
    pthread_mutex_lock(&m);
    ts = deadline(CLOCK_REALTIME);
    begin();
    end("pthread_cond_timedwait(realtime)", pthread_cond_timedwait(&wall, &m, &ts), ETIMEDOUT);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_t mono;
    pthread_cond_init(&mono, &ca);
    ts = deadline(CLOCK_MONOTONIC);
    begin();
    end("pthread_cond_timedwait(monotonic)", pthread_cond_timedwait(&mono, &m, &ts), ETIMEDOUT);
    pthread_cond_destroy(&mono);

    ts = deadline(CLOCK_REALTIME);
    begin();
    end("pthread_cond_clockwait", pthread_cond_clockwait(&wall, &m, CLOCK_REALTIME, &ts), ETIMEDOUT);
    pthread_mutex_unlock(&m);

    int tfd = timerfd_create(CLOCK_REALTIME, 0);
    struct itimerspec its = {{0, 0}, deadline(CLOCK_REALTIME)};
    begin();
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0) fail("timerfd_settime: %s", strerror(errno));
    uint64_t expirations = 0;
    rc = read(tfd, &expirations, sizeof expirations) == sizeof expirations ? 0 : -1;
    end("timerfd(abstime)", rc, 0);

    return probe_finish();
}
