"""Benchmarks: run.py (issue 9), bench_source.py, micro.py; shared code in common.py."""
