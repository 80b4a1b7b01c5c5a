"""Benchmarks, the soak and load generators: run from a checkout (make bench, make soak), never installed."""
