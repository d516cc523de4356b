"""Benchmark helpers shared by the plugin benchmarks and `nox -s bench`."""
