// Filled in by the identity scenario tests.
