"""The benchmark harness: timing, memory, environment, reports, compute floor, FLOPs, the runtime rows (variants) and their artifacts, time budgets. A library: no command here."""
