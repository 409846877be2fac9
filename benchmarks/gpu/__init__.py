"""`python -m benchmarks.gpu_report`'s own helpers: its steps and plans (steps) and its tables (tables)."""
