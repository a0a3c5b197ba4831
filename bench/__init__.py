"""Benchmarks and the scale harness: ``python -m bench [--quick | --smoke]``."""
