"""Benchmarks of the AOI reference implementation (``make bench``)."""
