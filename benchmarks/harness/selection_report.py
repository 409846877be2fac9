"""benchmarks.select's outputs: the deploy folder (the chosen artifact, selection.md/.json/.png, a Triton
repository) and the Markdown report."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from sunet_deploy.formats import TritonRecipe

from .artifacts import failure_reason
from .env import environment, format_environment
from .report import _pyplot, write_json
from .selection import Candidate, commands, shipped_name

WRITTEN = ("selection.md", "selection.json", "selection.png", "triton")


def protocol_flags(args: argparse.Namespace) -> list[str]:
    """The predict flags of the protocol the gate ran (empty: each image whole)."""
    out = []
    if args.tile is not None:
        out.append("--tile" + ("" if args.tile == "auto" else f" {args.tile[0]}x{args.tile[1]}"))
    if args.tile_overlap is not None:
        out.append(f"--tile-overlap {args.tile_overlap}")
    if args.scales:
        out.append("--scales " + " ".join(f"{s:g}" for s in args.scales))
    if args.flip:
        out.append("--flip")
    if out:
        out.append(f"--tile-batch {args.tile_batch}")
    return out


def clear_earlier(out: Path) -> None:
    """--overwrite: remove what an earlier selection wrote here (only those files)."""
    for path in [*out.glob("model.*"), *(out / name for name in WRITTEN)]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def write_deploy(result: dict, chosen: Candidate | None, args: argparse.Namespace) -> list[Path]:
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    if args.overwrite:
        clear_earlier(out)
    written = []
    if chosen is not None:
        shipped = out / shipped_name(chosen)
        shutil.copy2(chosen.path, shipped)
        written.append(shipped)
        result["shipped"] = str(shipped)
        result["commands"] = commands(chosen, shipped, result["protocol_flags"], args.threads)
        if args.triton:
            result["triton"] = triton_repository(shipped, out / "triton", args.threads)
            written += [out / "triton"] * ("repository" in result["triton"])
    result["environment"] = environment(args.threads)
    written.append(write_json(result, out / "selection.json"))
    (out / "selection.md").write_text(markdown(result))
    written.append(out / "selection.md")
    png = plot(result, out / "selection.png")
    written += [png] if png else []
    return written


def triton_repository(shipped: Path, repository: Path, threads: int | None) -> dict:
    """A Triton repository serving the shipped artifact, and the commands that serve and query it."""
    from export.triton import export_repository_model

    try:
        folder = export_repository_model(shipped, repository, TritonRecipe(threads=threads))
    except Exception as exc:  # not servable (an AOTInductor package) or refused: said in the report
        return {"error": failure_reason(exc)}
    return {"repository": str(repository), "model": str(folder),
            "serve": f"tritonserver --model-repository {repository}",
            "predict": "python -m runtimes.predict triton://127.0.0.1:8000/sunet IMAGES... -o masks/"}


# ---------------------------------------------------------------- Markdown


COLUMNS = ("candidate", "format", "runtime", "precision", "artifact", "mIoU", "delta mIoU", "agreement %",
           "worst class (delta)", "p50 ms", "p90 ms", "images/s", "x floor", "host peak RSS", "passed", "why",
           "chosen")  # fmt: skip


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _row(c: dict) -> str:
    artifact = ("-" if c["artifact_cached"] is None else "cached" if c["artifact_cached"] else
                f"as {c['shared_with']}" if c["shared_with"] else f"built {c['build_s']:.0f} s")
    worst = c["worst_class"]
    memory = (c["memory"] or {}).get("peak_rss_mib")
    cells = (c["name"], c["format"], c["runtime"], c["precision"] or "-", artifact, _num(c["miou"], ".3f"),
             _num(c["miou_delta"], "+.4f"), _num(c["agreement"], ".3f"),
             f"{worst['class']} ({worst['delta']:+.3f})" if worst else "-", _num(c["median_ms"], ".2f"),
             _num(c["p90_ms"], ".2f"), _num(c["throughput_ips"], ".2f"), _num(c["x_floor"], ".2f"),
             _num(memory, ".0f") + (" MiB" if memory else ""), "yes" if c["passed"] else "no", c["reason"] or "-",
             "**chosen**" if c["chosen"] else "")  # fmt: skip
    return "| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |"


def markdown(result: dict) -> str:
    table = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    table += [_row(c) for c in result["candidates"]]
    cache = result["cache"]
    lines = [
        "# Deployment selection", "",
        f"checkpoint `{result['checkpoint']}` (SHA-256 {result['checkpoint_sha256'][:12]}...), device "
        f"{result['device']}, input {'x'.join(map(str, result['shape']))}, {result['threads']} thread(s)", "",
        f"- gate: {result['gate']}, against PyTorch FP32 on {result['images']}, {result['protocol']}",
        f"- strategy: {result['strategy']}",
        f"- chosen: **{result['chosen'] or 'none'}** ({result['why']})",
        f"- cache: {cache['artifacts_reused']} artifact(s) reused, {cache['artifacts_built']} built; "
        f"{cache['gates_reused']} gate result(s) reused, {cache['gates_measured']} measured; "
        f"{result['seconds']:.0f} s in all", "",
        *table, "",
    ]  # fmt: skip
    if result.get("commands"):
        lines += ["## Run it", "", "```", *result["commands"].values(), "```", ""]
    if result.get("triton"):
        t = result["triton"]
        lines += ["## Triton", ""] + ([f"not written: {t['error']}", ""] if "error" in t else
                                      ["```", t["serve"], t["predict"], "```", ""])  # fmt: skip
    if result.get("environment"):
        lines += ["## Environment", "", format_environment(result["environment"]), ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> Path | None:
    """Median latency against the mIoU change, one point per timed candidate, the chosen one marked."""
    plt = _pyplot()
    points = [c for c in result["candidates"] if c["median_ms"] is not None and c["miou_delta"] is not None]
    if plt is None or not points:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for c in points:
        style = dict(marker="*", s=260, color="tab:green", zorder=3) if c["chosen"] else \
            dict(marker="o", s=50, color="tab:blue") if c["passed"] else dict(marker="x", s=60, color="tab:red")
        ax.scatter(c["miou_delta"], c["median_ms"], **style)
        ax.annotate(c["name"], (c["miou_delta"], c["median_ms"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("mIoU change against PyTorch FP32 (points; below 0 a drop; red x: rejected by the gate)")
    ax.set_ylabel(f"median latency (ms), input {'x'.join(map(str, result['shape']))}")
    ax.set_title(f"chosen: {result['chosen'] or 'none'} (green star)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
