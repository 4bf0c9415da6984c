// Filled in by the preload scenario tests.
