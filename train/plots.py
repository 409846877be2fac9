"""The PNG of a run's curves: training loss and validation score against the step (matplotlib)."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(metrics_file: Path, output: Path) -> Path:
    """Loss (left) and validation mIoU or top-1 (right) from metrics.jsonl, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_file)
    train = [r for r in records if r.get("event") == "train"]
    val = [r for r in records if r.get("event") == "val"]
    metric = "miou" if any("miou" in r for r in val) else "top1"
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train])
    ax_loss.set(xlabel="step", ylabel="training loss", title="loss", yscale="log")
    ax_val.plot([r["step"] for r in val], [100 * r[metric] for r in val], marker="o")
    baseline = [r["baseline_miou"] for r in val if "baseline_miou" in r]
    if baseline:
        ax_val.axhline(100 * baseline[0], color="gray", linestyle="--", label="majority-class baseline")
        ax_val.legend()
    ax_val.set(xlabel="step", ylabel=f"validation {metric} (%)", title=f"validation {metric}")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output
