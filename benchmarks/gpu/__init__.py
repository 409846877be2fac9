"""The steps and tables of `python -m benchmarks.gpu_report` (its own helpers)."""
