"""Latency statistics as trtexec reports them (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """min/mean/median/p90/p95/p99/max of latency samples in milliseconds (linear interpolation)."""
    if len(samples_ms) == 0:
        raise ValueError("no latency samples")
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p95, p99 = np.percentile(values, PERCENTILES)
    return {
        "count": int(values.size),
        "min": float(values.min()),
        "mean": float(values.mean()),
        "median": float(p50),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(values.max()),
    }

