/* probe_env: what a freshly started program sees; the child of the exec tests.
 *
 *   probe_env [TAG]
 * Prints one KEY=VALUE line each: tag, hostname (gethostname), uid (getuid),
 * euid (geteuid), realtime_offset (whole seconds between the libc and the kernel's
 * realtime clock), ld_preload (LD_PRELOAD or empty), shim_mapped (how many distinct
 * libcapsule files are mapped into the process), test_var (CAPSULE_TEST_VAR or empty),
 * marker (1 when libmarker.so, another preloaded library, is loaded).
 */
#include "probe.h"

static int shim_mapped(void) {
    FILE *maps = fopen("/proc/self/maps", "r");
    if (maps == NULL) return -1;
    char line[4096], seen[8][4096];
    int count = 0;
    while (fgets(line, sizeof line, maps) != NULL) {
        char *path = strchr(line, '/');
        if (path == NULL || strstr(path, "libcapsule") == NULL) continue;
        path[strcspn(path, "\n")] = '\0';
        int known = 0;
        for (int i = 0; i < count; i++) known |= strcmp(seen[i], path) == 0;
        if (!known && count < 8) snprintf(seen[count++], sizeof seen[0], "%s", path);
    }
    fclose(maps);
    return count;
}

int main(int argc, char **argv) {
    char host[256] = "";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "(error %d)", errno);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double offset = ts_seconds(ts) - raw_seconds(CLOCK_REALTIME);
    const char *preload = getenv("LD_PRELOAD");
    const char *var = getenv("CAPSULE_TEST_VAR");
    printf("tag=%s\n", argc > 1 ? argv[1] : "");
    printf("hostname=%s\n", host);
    printf("uid=%u\n", getuid());
    printf("euid=%u\n", geteuid());
    printf("realtime_offset=%ld\n", (long)(offset < 0 ? offset - 0.5 : offset + 0.5));
    printf("ld_preload=%s\n", preload ? preload : "");
    printf("shim_mapped=%d\n", shim_mapped());
    printf("test_var=%s\n", var ? var : "");
    printf("marker=%d\n", dlsym(RTLD_DEFAULT, "capsule_test_marker") != NULL);
    return 0;
}
