// Filled in by the exec scenario tests.
