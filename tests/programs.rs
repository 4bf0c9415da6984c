// Filled in by the programs scenario tests.
