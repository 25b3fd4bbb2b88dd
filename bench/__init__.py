"""Benchmarks of offline-ingestor: throughput, backlog latency, hashing, large files, start-up.

Run ``bench/run`` (or ``python -m bench``) from the repository root; see ``bench/README.md``.
Every section measures ratios side by side in one run; nothing here asserts wall-clock times.
"""
