/* probe_ctor: hooked calls made before main and after it.
 *
 *   probe_ctor HOST UID OFFSET
 * The earliest constructor (priority 101) and a destructor call gethostname, getuid and
 * clock_gettime; they must already (and still) see HOST, UID and the kernel's clock +
 * OFFSET seconds (± 2 s), like main does. A destructor failure exits with status 3.
 */
#include "probe.h"

static char ctor_host[256] = "(constructor did not run)";
static long ctor_uid = -1;
static double ctor_offset = 1e18;
static const char *want_host;
static long want_uid;
static double want_offset;

static double offset_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts_seconds(ts) - raw_seconds(CLOCK_REALTIME);
}

__attribute__((constructor(101))) static void early(void) {
    gethostname(ctor_host, sizeof ctor_host);
    ctor_uid = (long)getuid();
    ctor_offset = offset_now();
}

__attribute__((destructor)) static void late(void) {
    if (want_host == NULL) return;
    char host[256] = "";
    gethostname(host, sizeof host);
    double off = offset_now();
    if (strcmp(host, want_host) != 0 || (long)getuid() != want_uid || off < want_offset - 2 ||
        off > want_offset + 2) {
        printf("FAIL: in a destructor: hostname=%s uid=%u offset=%.3f\n", host, getuid(), off);
        fflush(stdout);
        _exit(3);
    }
}

int main(int argc, char **argv) {
    if (argc != 4) usage("probe_ctor HOST UID OFFSET");
    want_host = argv[1];
    want_uid = atol(argv[2]);
    want_offset = atof(argv[3]);
    printf("constructor: hostname=%s uid=%ld offset=%.3f\n", ctor_host, ctor_uid, ctor_offset);
    if (strcmp(ctor_host, want_host) != 0) fail("constructor saw hostname %s", ctor_host);
    if (ctor_uid != want_uid) fail("constructor saw uid %ld", ctor_uid);
    if (ctor_offset < want_offset - 2 || ctor_offset > want_offset + 2)
        fail("constructor saw clock offset %.3f", ctor_offset);
    char host[256];
    gethostname(host, sizeof host);
    if (strcmp(host, want_host) != 0) fail("main saw hostname %s", host);
    return probe_finish();
}
