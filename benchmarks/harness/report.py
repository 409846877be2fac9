"""Reports: JSON with every raw sample, a Markdown table with the environment, PNG plots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sunet_deploy.fileio import atomic_write_bytes

from .env import environment, format_environment
from .floor import floor_ms

COLUMNS = ("model", "batch", "size", "variant", "precision", "median", "mean", "p90", "p99", "min", "max", "throughput",
           "speed-up", "x floor", "split", "memory", "artifact")  # fmt: skip


def nothing_measured(skipped: dict[str, str]) -> str:
    """The message of a run in which no runtime could run (no report is written then)."""
    reasons = "\n".join(f"  {name}: {reason}" for name, reason in skipped.items()) or "  (no runtimes selected)"
    return f"nothing was measured, so no report was written. Runtimes skipped:\n{reasons}"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _split(row: dict) -> str:
    parts = [f"{k} {_ms(row[k]['median'])}" for k in ("h2d", "compute", "d2h") if k in row]
    return " / ".join(parts) or "-"


def _memory(memory: dict) -> str:
    labels = {"torch_peak_allocated_mib": "torch peak", "driver_used_delta_mib": "driver delta",
              "tensorrt_activation_mib": "TRT activations", "peak_rss_mib": "host peak RSS"}  # fmt: skip
    return ", ".join(f"{label} {memory[k]:.0f} MiB" for k, label in labels.items() if k in memory)


def latency_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lat = r["latency_ms"]
        speedup = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        cells = (r["model"], r["batch"], "x".join(map(str, r["size"])), r["variant"], r["precision"], _ms(lat["median"]),
                 _ms(lat["mean"]), _ms(lat["p90"]), _ms(lat["p99"]), _ms(lat["min"]), _ms(lat["max"]),
                 f"{r['throughput_ips']:.2f}", speedup, f"{r['x_floor']:.2f}", _split(r), _memory(r["memory"]),
                 f"{r['artifact_mib']:.1f} MiB")  # fmt: skip
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def model_table_md(models: list[dict]) -> str:
    lines = ["| model | output stride | input | parameters | GFLOPs |", "|---|---|---|---|---|"]
    for m in models:
        size = "x".join(map(str, m["size"]))
        lines.append(f"| {m['model']} | {m['output_stride']} | {size} | {m['params']:,} | {m['gflops']:.1f} |")
    return "\n".join(lines)


def floor_md(floor: dict, rows: list[dict]) -> str:
    """The measured matrix-multiply rates and each case's FLOPs and floor."""
    rates = floor["rates"]
    lines = [f"Matrix-multiply rate, best of {len(floor['measurements'])} measurements (one per round): "
             + ", ".join(f"{key.removesuffix('_gflops').upper()} {value:.1f} GFLOP/s" for key, value in rates.items()
                         if key.endswith("_gflops"))
             + (f", memory bandwidth {rates['bandwidth_gbs']:.0f} GB/s" if "bandwidth_gbs" in rates else "") + ".", ""]
    lines += ["| model | batch | size | GFLOPs | floor (ms) at FP32 |", "|---|---|---|---|---|"]
    seen = set()
    for r in rows:
        key = (r["model"], r["batch"], tuple(r["size"]))
        if key not in seen:
            seen.add(key)
            lines.append(f"| {r['model']} | {r['batch']} | {'x'.join(map(str, r['size']))} | {r['gflops']:.1f} | "
                         f"{floor_ms(r['gflops'], rates):.1f} |")
    return "\n".join(lines)


def skipped_md(skipped: dict[str, str]) -> str:
    return "\n".join(f"- {name}: {reason}" for name, reason in skipped.items()) or "- none"


def markdown(result: dict, title: str) -> str:
    parts = [f"# {title}", "## Environment", format_environment(result["environment"]),
             "## Latency (ms) and throughput (images/s)", latency_table(result["rows"]),
             "Speed-up: median latency of the PyTorch eager FP32 row of the same model, batch and size "
             "over the row's. x floor: median latency over the compute floor (the model's FLOPs at the "
             "matrix-multiply rate of the row's precision measured in this run; on CPU the FP32 sgemm rate "
             "for every row, so an INT8 row can go below 1). Split: median host-to-device / compute / "
             "device-to-host ms.",
             "## Compute floor", floor_md(result["floor"], result["rows"]),
             "## Skipped", skipped_md(result["skipped"])]  # fmt: skip
    if result.get("models"):
        parts += ["## Parameters and FLOPs (batch 1, FlopCounterMode; 2 FLOPs per multiply-add)",
                  model_table_md(result["models"])]  # fmt: skip
    return "\n\n".join(parts) + "\n"


def _groups(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(f"{r['model']} b{r['batch']} {'x'.join(map(str, r['size']))}", []).append(r)
    return groups


def _pyplot():
    """matplotlib.pyplot with the file-only backend; None where matplotlib is not installed (plots are optional)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def plot_latency(rows: list[dict], path: Path) -> Path:
    """Box plots of every row's raw latencies, one panel per model/batch/size."""
    plt = _pyplot()
    groups = _groups(rows)
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 1.2 + 0.6 * max(map(len, groups.values())) * len(groups)),
                             squeeze=False)  # fmt: skip
    for ax, (label, group) in zip(axes[:, 0], groups.items()):
        ax.boxplot([r["samples_ms"]["total"] for r in group], orientation="horizontal", showfliers=True)
        ax.set_yticks(range(1, len(group) + 1), [r["variant"] for r in group])
        ax.set_title(label)
        ax.set_xlabel("latency (ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_speedup(rows: list[dict], path: Path) -> Path:
    """Bars of the speed-up against PyTorch eager FP32, one bar per row."""
    plt = _pyplot()
    rows = [r for r in rows if r["speedup"]]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * max(len(rows), 1)))
    labels = [f"{r['variant']} ({r['model']} b{r['batch']} {'x'.join(map(str, r['size']))})" for r in rows]
    ax.barh(labels, [r["speedup"] for r in rows], color="tab:blue")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlabel("speed-up vs PyTorch eager FP32 (median latency)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_json(result: dict, path: Path) -> Path:
    """Write `result` as JSON, atomically: a reader (or a killed run) sees the old file or the new one."""
    return atomic_write_bytes(path, (json.dumps(result, indent=1, default=str) + "\n").encode())


def save_report(result: dict, text: str, out_dir: Path, name: str) -> None:
    """Print a report's markdown and write it, and the result as JSON, to out_dir/name.md and .json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.md").write_text(text)
    print(text)
    print(f"wrote {write_json(result, out_dir / f'{name}.json')} and {out_dir / f'{name}.md'}")


def write_reports(result: dict, out_dir: Path, title: str) -> list[Path]:
    """latency.json (everything, raw samples too), latency.md, latency.png and speedup.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"environment": environment(result["settings"].get("threads")), **result}
    (out_dir / "latency.md").write_text(markdown(result, title))
    written = [write_json(result, out_dir / "latency.json"), out_dir / "latency.md"]
    if _pyplot() is None:
        print("matplotlib is not installed: no plots (latency.png, speedup.png)", file=sys.stderr)
        return written
    return written + [plot_latency(result["rows"], out_dir / "latency.png"),
                      plot_speedup(result["rows"], out_dir / "speedup.png")]
