"""Benchmarks of vhtui, run as modules from the repository root (`python -m benchmarks.engine`)."""
