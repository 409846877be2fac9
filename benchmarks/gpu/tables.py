"""The GPU report's README.md and its printed summary, both made from report.json's data alone."""

from __future__ import annotations

import json

from ..harness.env import format_environment
from ..harness.variants import reference_name

TABLE_COLUMNS = ("row", "batch", "median ms", "speedup", "x floor", "peak memory")


def peak_memory(memory: dict) -> str:
    """The row's peak memory: the driver's view on a GPU (it sees every library's allocations), else
    torch's counter, else the host process's peak RSS."""
    for key, label in (("driver_used_delta_mib", "GPU, driver"), ("torch_peak_allocated_mib", "GPU, torch"),
                       ("peak_rss_mib", "host RSS")):  # fmt: skip
        if memory.get(key) is not None:
            return f"{memory[key]:.0f} MiB {label}"
    return "-"


def latency_rows(data: dict) -> list[tuple[str, ...]]:
    """One line per measured row of every latency step; the reference, re-measured by each step for its
    own speed-ups, is listed once."""
    reference, lines, seen = reference_name(data["device"]), [], set()
    for step in data["steps"]:
        for row in (step.get("result") or {}).get("rows", []) if step["name"].startswith("latency") else []:
            key = (row["variant"], row["batch"])
            if row["variant"] == reference and key in seen:
                continue
            seen.add(key)
            speedup = f"{row['speedup']:.2f}x" if row.get("speedup") else "-"
            lines.append((row["variant"], str(row["batch"]), f"{row['median_ms']:.3f}", speedup,
                          f"{row['x_floor']:.2f}", peak_memory(row.get("memory") or {})))  # fmt: skip
    return lines


def _columns(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def status(data: dict) -> str:
    running = [s["name"] for s in data["steps"] if s["outcome"] in ("running", "interrupted")]
    where = f" while step {running[0]} ran" if running else ""
    if data["state"] == "finished":
        text = f"Finished in {data['elapsed_s']} s of a {data['budget_s']:.0f} s budget ({data['updated_utc']} UTC)."
    elif data["state"] == "interrupted":
        text = f"INTERRUPTED after {data['elapsed_s']} s{where} ({data['updated_utc']} UTC)."
    else:
        text = (f"NOT FINISHED: last written {data['updated_utc']} UTC, {data['elapsed_s']} s into a "
                f"{data['budget_s']:.0f} s budget{where}; the run stopped there or is still going.")  # fmt: skip
    if data["rehearsal"]:
        text += " A rehearsal (tiny model and sizes): it proves the run works, its numbers say nothing of speed."
    return text


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summary_text(data: dict) -> str:
    """What is printed last: the steps' outcomes, then the latency table (often only the tail of the
    output comes back from a lent machine)."""
    steps = [(s["name"], s["outcome"], f"{s['seconds']} s" if "seconds" in s else "", _short(s.get("reason", "")))
             for s in data["steps"]]  # fmt: skip
    rows = latency_rows(data)
    table = _columns(rows, TABLE_COLUMNS) if rows else ["(no latency row was measured)"]
    return "\n".join([status(data), *_columns(steps, ("step", "outcome", "time", "reason")), "", *table])


def _md_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows])


def markdown(data: dict) -> str:
    steps = [(s["name"], s["outcome"], str(s.get("seconds", "")), str(s.get("timeout_s", "")), s.get("reason", ""))
             for s in data["steps"]]  # fmt: skip
    parts = [f"# {data['title']}", status(data), "## Steps",
             _md_table(("step", "outcome", "seconds", "timeout (s)", "reason"), steps),
             "## Latency", _md_table(TABLE_COLUMNS, latency_rows(data)) if latency_rows(data) else "No row measured.",
             "Speed-up: the PyTorch eager FP32 row's median latency over the row's, both measured in the same step. "
             "x floor: median latency over the compute floor (benchmarks.latency). Each step's own report, with every "
             "statistic, the skipped rows and their reasons, is linked below.",
             "## Environment", format_environment(data["environment"]), "## Steps in detail"]  # fmt: skip
    for s in data["steps"]:
        parts.append(f"### {s['name']}: {s['outcome']}\n\n{s['about']}")
        if "command" in s:
            parts.append(f"`{s['command']}` (log: [{s['log']}]({s['log']}))")
        if s.get("result"):
            report = s["result"].get("report")
            parts += [f"Report: [{report}]({report})"] if report else []
            parts.append("```json\n" + json.dumps(s["result"], indent=1, default=str) + "\n```")
    return "\n\n".join(parts) + "\n"
