// Filled in by the time scenario tests.
