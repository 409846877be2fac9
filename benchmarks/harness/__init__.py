"""The benchmarks' library, no command: timing and memory (measure), the machine (env), Markdown/JSON
reports (report), the compute floor (floor), FLOPs (flops), the runtime rows (variants) and the
artifacts built for them (artifacts), and time budgets for child processes (budget)."""
