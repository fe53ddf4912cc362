"""Pieces of `benchmarks/perf.py`: one module per section of the performance report."""
