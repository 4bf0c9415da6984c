// Filled in by the simultaneity scenario tests.
