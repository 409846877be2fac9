"""The serving suite: a Triton-served model (docs/serving.md).

    python -m benchmarks.serving.serve URI               # our client, then perf_analyzer, per concurrency
    python -m benchmarks.serving.serve REPO/MODEL --search   # serving configurations (serve_search)
    python -m benchmarks.serving.serve_transports URI    # one client's latency per transport, interleaved

perf_analyzer runs NVIDIA's load generator; served describes what a served model takes and returns.
"""
