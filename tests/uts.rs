// Filled in by the uts scenario tests.
