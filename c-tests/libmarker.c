/* libmarker.so: a stand-in for another preloaded library (a malloc, a sanitizer, a
 * tracer) that must stay in LD_PRELOAD beside the shim. probe_env reports whether it is
 * loaded by looking up capsule_test_marker. Built with -shared -fPIC.
 */
int capsule_test_marker(void);

int capsule_test_marker(void) {
    return 42;
}
