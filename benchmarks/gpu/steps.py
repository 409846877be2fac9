"""The steps of `benchmarks.gpu_report`, in order of value, and the two plans they run at.

Every step is a command (`python -m ...`) that writes its own report into the report folder, and a
reader that takes the step's result from those files. The GPU plan measures SUNet-64 OS16 at
512x512 on CUDA; the rehearsal runs the same steps with SUNet-tiny at 64x64 on the device that is
here, adding CPU stand-in rows where a step's CUDA rows cannot run so that its code still runs.

Order: the latency of the CUDA rows first (the numbers every GPU claim waits for), the bandwidth
floor (arithmetic on their measured bandwidth), AMP training, parity, the GPU tests, and the
compile-heavy rows (TensorRT engines and their parity, AOTInductor, max-autotune, the tests marked
slow) last, each group in a step of its own so that a compile that runs out of time never holds back
the rows measured before it; those rows are measured at the first batch size only. Training
comes before parity although parity is worth more: parity on random weights is no evidence (their
logits are near ties everywhere, so FP16 flips labels at random), and the short training run that
measures AMP throughput is also what gives parity a trained checkpoint.
"""

from __future__ import annotations

import json
import statistics
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from ..harness.variants import VARIANTS, Variant, reference_name, variants_for

ROOT = Path(__file__).resolve().parents[2]
GPU_TEST_MARKERS = "gpu or tensorrt"


@dataclass(frozen=True)
class Plan:
    """Sizes and flags of one run: the GPU plan or the rehearsal."""

    title: str
    device: str
    model: str
    size: str
    batches: tuple[str, ...]
    timing: tuple[str, ...]  # benchmarks.latency's warm-up and timing flags
    train: tuple[str, ...]  # python -m train flags: model, data, length
    parity_images: int
    test_timeout_s: int  # pytest-timeout's limit for each GPU test
    budget_s: float
    threads: tuple[str, ...] = ()  # --threads of the latency, training and parity commands (default: all cores)
    stand_ins: dict[str, tuple[str, ...]] = field(default_factory=dict)  # step -> CPU rows run where CUDA is missing


GPU = Plan(
    title="GPU report: SUNet-64 OS16, 512x512", device="cuda", model="sunet64", size="512x512", batches=("1", "8"),
    timing=("--warmup", "1", "--duration", "3", "--min-iterations", "30", "--rounds", "2"),
    train=("--arch", "sunet64", "--synthetic-samples", "2400", "--val-synthetic-samples", "200",
           "--synthetic-size", "256x256", "--crop-size", "256", "--batch-size", "16", "--iterations", "600",
           "--val-every", "200", "--warmup-iterations", "30", "--log-every", "20", "--workers", "8", "--amp"),
    parity_images=50, test_timeout_s=120, budget_s=480,
)  # fmt: skip
REHEARSAL = Plan(
    title="GPU report rehearsal: SUNet-tiny OS16, 64x64", device="cuda", model="sunet_tiny", size="64x64",
    batches=("1", "2"), timing=("--warmup", "0.05", "--duration", "0.2", "--min-iterations", "3", "--rounds", "1"),
    train=("--arch", "sunet_tiny", "--synthetic-samples", "24", "--val-synthetic-samples", "8",
           "--synthetic-size", "64x64", "--crop-size", "64", "--batch-size", "4", "--iterations", "4",
           "--val-every", "2", "--warmup-iterations", "2", "--log-every", "1", "--workers", "0"),
    parity_images=4, test_timeout_s=60, budget_s=180, threads=("--threads", "1"),
    stand_ins={"latency": ("onnxruntime-cpu",), "parity": ("onnxruntime-cpu",)},
)  # fmt: skip
TRAIN_COMMON = ("--output-stride", "16", "--dataset", "synthetic", "--lr", "0.05", "--momentum", "0.9",
                "--head-lr-mult", "1", "--head-bias-lr-mult", "1", "--bn-momentum", "0.1", "--no-progress",
                "--overwrite")  # fmt: skip


@dataclass(frozen=True)
class Context:
    plan: Plan
    out: Path  # the report folder: everything a reader needs, packable as one archive
    work: Path  # checkpoints and artifacts (large; not part of the report)

    @property
    def checkpoint(self) -> Path:
        return self.work / "train" / "best.safetensors"

    def rows(self, step: str) -> list[str]:
        """The rows a latency or parity step measures: its CUDA rows, and on a CPU-only plan its stand-ins."""
        rows = LATENCY_GROUPS[PARITY_ROWS.get(step, step)]
        return rows + list(self.plan.stand_ins.get(step, ())) if self.plan.device == "cpu" else rows


def latency_group(variant: Variant) -> str:
    """The step that measures a CUDA row: compile-heavy rows get steps of their own."""
    options = variant.options
    if variant.format == "tensorrt" or getattr(options, "provider", None) == "tensorrt":
        return "latency-tensorrt"
    if variant.format == "aoti":
        return "latency-aoti"
    if getattr(options, "compile", None):
        return "latency-max-autotune"
    return "latency"


def latency_groups() -> dict[str, list[str]]:
    """The CUDA rows of benchmarks.harness.variants (the reference aside) by the step that measures them."""
    groups: dict[str, list[str]] = {}
    for name, variant in VARIANTS.items():
        if variant.device == "cuda" and name != reference_name("cuda"):
            groups.setdefault(latency_group(variant), []).append(name)
    return groups


LATENCY_GROUPS = latency_groups()
PARITY_ROWS = {"parity": "latency", "parity-tensorrt": "latency-tensorrt"}  # parity step -> the rows it compares


def rows_unavailable(ctx: Context, step: str) -> str | None:
    """None when a row of the step (besides the reference) can run here, else the reasons none can."""
    variants = variants_for(ctx.plan.device, ctx.rows(step))[1:]
    reasons = [reason for v in variants if (reason := v.availability())]
    if len(reasons) < len(variants):
        return None
    return "no row can run here: " + "; ".join(sorted(set(reasons)))


def latency_command(ctx: Context, step: str) -> list[str]:
    """benchmarks.latency on the step's rows; compile-heavy rows at the first batch size only (one compile each)."""
    batches = ctx.plan.batches if step == "latency" else ctx.plan.batches[:1]
    return ["-m", "benchmarks.latency", "--arch", ctx.plan.model, "--device", ctx.plan.device, "--variants",
            ",".join(ctx.rows(step)), "--batch", *batches, "--size", ctx.plan.size, *ctx.plan.timing,
            "--workdir", str(ctx.work / "artifacts"), "--output", str(ctx.out / step), "--no-flops",
            *ctx.plan.threads]  # fmt: skip


def latency_result(ctx: Context, step: str) -> dict:
    result = json.loads((ctx.out / step / "latency.json").read_text())
    rows = [{"variant": r["variant"], "batch": r["batch"], "precision": r["precision"],
             "median_ms": r["latency_ms"]["median"], "speedup": r["speedup"], "x_floor": r["x_floor"],
             "memory": r["memory"]} for r in result["rows"]]  # fmt: skip
    return {"rows": rows, "skipped": result["skipped"], "rates": result["floor"].get("rates"),
            "report": f"{step}/latency.md"}  # fmt: skip


def traffic_command(ctx: Context) -> list[str]:
    return ["-m", "benchmarks.studies.traffic", "--arch", ctx.plan.model, "--batch", *ctx.plan.batches, "--size",
            ctx.plan.size, "--bandwidth-from", str(ctx.out / "latency" / "latency.json"), "--output",
            str(ctx.out / "bandwidth-floor.json")]  # fmt: skip


def latency_missing(ctx: Context) -> str | None:
    return None if (ctx.out / "latency" / "latency.json").is_file() else "the latency step wrote no latency.json"


def train_command(ctx: Context) -> list[str]:
    return ["-m", "train", *ctx.plan.train, *TRAIN_COMMON, "--device", ctx.plan.device,
            "--out-dir", str(ctx.work / "train"), *ctx.plan.threads]  # fmt: skip


def train_result(ctx: Context) -> dict:
    records = [json.loads(line) for line in (ctx.work / "train" / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["images_per_s"] for r in records if r.get("event") == "train"]
    steady = speeds[2:] or speeds  # after the warm-up (cuDNN autotuning, allocator growth)
    val = [r for r in records if r.get("event") == "val"]
    return {"amp": ctx.plan.device == "cuda", "steps": len(speeds),
            "images_per_s_median": statistics.median(steady) if steady else None,
            "val_miou": 100 * val[-1]["miou"] if val else None,
            "checkpoint": str(ctx.checkpoint) if ctx.checkpoint.is_file() else None}  # fmt: skip


def parity_needs(ctx: Context, step: str) -> str | None:
    if not ctx.checkpoint.is_file():
        return f"no trained checkpoint ({ctx.checkpoint}): the training step saved none"
    return rows_unavailable(ctx, step)


def parity_command(ctx: Context, step: str) -> list[str]:
    return ["-m", "benchmarks.parity", str(ctx.checkpoint), "--device", ctx.plan.device, "--variants",
            ",".join(ctx.rows(step)), "--limit", str(ctx.plan.parity_images), "--workdir",
            str(ctx.work / "artifacts"), "--output", str(ctx.out / step), *ctx.plan.threads]  # fmt: skip


def parity_result(ctx: Context, step: str) -> dict:
    result = json.loads((ctx.out / step / "parity.json").read_text())
    runtimes = {name: {k: r[k] for k in ("precision", "delta_miou", "agreement", "passed")}
                for name, r in result["runtimes"].items()}  # fmt: skip
    return {"images": result["samples"], "reference_miou": result["reference_miou"], "runtimes": runtimes,
            "skipped": result["skipped"], "report": f"{step}/parity.md"}  # fmt: skip


def tests_needs(ctx: Context) -> str | None:
    return None if (ROOT / "tests").is_dir() else f"no tests/ folder beside {ROOT / 'benchmarks'} (an installed copy)"


def tests_command(ctx: Context, step: str) -> list[str]:
    """pytest on the tests marked gpu or tensorrt; those also marked slow (compiles of minutes) run in a
    step of their own at the end, with a longer per-test timeout."""
    slow = step.endswith("slow")
    markers = f"({GPU_TEST_MARKERS}) and {'' if slow else 'not '}slow"
    limit = ctx.plan.test_timeout_s * (3 if slow else 1)
    timeout = [f"--timeout={limit}"] if find_spec("pytest_timeout") else []
    return ["-m", "pytest", str(ROOT / "tests"), "-m", markers, *timeout, "-v", "-rs", "-p", "no:cacheprovider",
            "--continue-on-collection-errors", f"--junitxml={ctx.out / step / 'junit.xml'}"]  # fmt: skip


def tests_result(ctx: Context, step: str) -> dict:
    suite = ElementTree.parse(ctx.out / step / "junit.xml").getroot().find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    skipped = sorted({s.get("message", "") for s in suite.iter("skipped")})
    broken = {f"{case.get('classname')}::{case.get('name')}": bad.get("message", "")[:200]
              for case in suite.iter("testcase") for bad in case if bad.tag in ("failure", "error")}  # fmt: skip
    notes = [] if find_spec("pytest_timeout") else ["pytest-timeout is not installed: no per-test timeout"]
    return {**counts, "failed": broken, "skip_reasons": skipped, "notes": notes, "report": f"{step}/junit.xml"}


@dataclass(frozen=True)
class Step:
    name: str
    about: str
    share: float  # the most of the whole budget this step may take
    command: Callable[[Context], list[str]]  # arguments of `python`
    read: Callable[[Context], dict]  # its result, from the files it wrote
    needs: Callable[[Context], str | None] = lambda ctx: None  # why it cannot run here, or None


def _latency_step(name: str, about: str, share: float) -> Step:
    return Step(name, about, share, lambda ctx: latency_command(ctx, name), lambda ctx: latency_result(ctx, name),
                lambda ctx: rows_unavailable(ctx, name))  # fmt: skip


def _parity_step(name: str, about: str, share: float) -> Step:
    return Step(name, about, share, lambda ctx: parity_command(ctx, name), lambda ctx: parity_result(ctx, name),
                lambda ctx: parity_needs(ctx, name))  # fmt: skip


def _tests_step(name: str, about: str, share: float) -> Step:
    return Step(name, about, share, lambda ctx: tests_command(ctx, name), lambda ctx: tests_result(ctx, name),
                tests_needs)


STEPS = [
    _latency_step("latency", "benchmarks.latency: PyTorch FP16, channels_last, CUDA graphs, ONNX Runtime CUDA", 0.3),
    Step("bandwidth-floor", "benchmarks.studies.traffic: least bytes moved over the measured bandwidth", 0.08,
         traffic_command, lambda ctx: json.loads((ctx.out / "bandwidth-floor.json").read_text()), latency_missing),
    Step("amp-training", "python -m train with AMP on synthetic data (images/s; the checkpoint parity needs)", 0.25,
         train_command, train_result),
    _parity_step("parity", "benchmarks.parity of the latency step's rows against PyTorch FP32", 0.15),
    _tests_step("gpu-tests", f"pytest -m '({GPU_TEST_MARKERS}) and not slow'", 0.2),
    _latency_step("latency-tensorrt", "benchmarks.latency: TensorRT engines (built here), ONNX Runtime TensorRT", 0.25),
    _parity_step("parity-tensorrt", "benchmarks.parity of the TensorRT rows against PyTorch FP32", 0.15),
    _latency_step("latency-aoti", "benchmarks.latency: AOTInductor CUDA (compiled here)", 0.25),
    _latency_step("latency-max-autotune", "benchmarks.latency: torch.compile max-autotune (compiled here)", 0.4),
    _tests_step("gpu-tests-slow", f"pytest -m '({GPU_TEST_MARKERS}) and slow' (compiles of minutes)", 1.0),
]  # fmt: skip
