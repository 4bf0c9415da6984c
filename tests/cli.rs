// Filled in by the cli scenario tests.
