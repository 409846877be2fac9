"""The serving suite: a Triton-served model measured by our client and by perf_analyzer, serving configurations searched, transports compared."""
