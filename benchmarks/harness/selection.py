"""What benchmarks.select decides with: the candidates, the accuracy gate, the strategies and the report.

Torch-free except for the plot (matplotlib). The orchestration (build, gate, measure, write) is
benchmarks/select.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from runtimes.options import OnnxRuntimeOptions, OpenVINOOptions, PyTorchOptions, RuntimeOptions
from sunet_deploy import formats
from sunet_deploy.formats import Int8Recipe, OnnxRecipe
from sunet_deploy.options import flag_name, option_fields
from sunet_deploy.tolerance import PARITY as TOLERANCES

from .variants import REFERENCE, VARIANTS, Variant, reference_name

INT8_S8 = OnnxRecipe(int8=Int8Recipe(activations="int8", float_parts="fp32"))
"""INT8 with int8 activations and FP32 float parts: the other activation type, for CPU runtimes."""
EXTRA = {
    v.name: v
    for v in (
        Variant("pytorch-fp32-compile", PyTorchOptions(compile="default")),
        Variant("onnxruntime-cpu-int8-s8", OnnxRuntimeOptions(), INT8_S8),
        Variant("openvino-cpu-int8-s8", OpenVINOOptions(), INT8_S8),
    )
}
"""Candidates only selection builds (the latency and parity harnesses take VARIANTS)."""
PRECISION_RANK = {"fp32": 0, "bf16": 1, "fp16": 1, "int8": 2}
"""Ties within measurement noise go to the higher precision (lower rank)."""
ACCURACY_TIE = 0.01
"""latency-budget: mIoU within this many points counts as equally accurate (one run cannot tell them apart)."""


@dataclass
class Candidate:
    """One deployment option: a variant (recipe + runtime options), or an artifact given with --artifact."""

    name: str
    variant: Variant
    given: Path | None = None  # an existing artifact, not built here
    path: Path | None = None
    cached: bool | None = None  # its artifact was in the cache
    build_s: float | None = None
    precision: str | None = None
    gate: dict | None = None  # parity numbers against PyTorch FP32
    gate_cached: bool | None = None
    key: str = ""  # of its gate result in the cache
    shared_with: str | None = None  # the candidate that built the same file in this run
    passed: bool = False
    reason: str = ""
    row: dict | None = None  # the latency harness's report row
    chosen: bool = False

    @property
    def reference(self) -> bool:
        return self.given is None and self.variant.name == reference_name(self.variant.device)

    @property
    def options(self) -> RuntimeOptions:
        return self.variant.options

    def to_dict(self) -> dict:
        gate, row = self.gate or {}, self.row or {}
        latency = row.get("latency_ms") or {}
        return {
            "name": self.name, "format": artifact_format(self), "runtime": self.variant.runtime,
            "options": self.options.changed(), "recipe": recipe_dict(self.variant.recipe),
            "precision": self.precision, "artifact": str(self.path) if self.path else None,
            "artifact_cached": self.cached, "build_s": self.build_s, "shared_with": self.shared_with,
            "miou": gate.get("miou"), "miou_delta": gate.get("delta_miou"), "agreement": gate.get("agreement"),
            "worst_class": worst_class(gate), "gate_cached": self.gate_cached, "passed": self.passed,
            "reason": self.reason, "median_ms": latency.get("median"), "p90_ms": latency.get("p90"),
            "throughput_ips": row.get("throughput_ips"), "x_floor": row.get("x_floor"),
            "memory": row.get("memory"), "chosen": self.chosen,
        }  # fmt: skip


def artifact_format(candidate: Candidate) -> str:
    if candidate.given is not None:
        return formats.by_suffix(candidate.given.suffix).name
    return candidate.variant.format


def recipe_dict(recipe) -> dict | None:
    return None if recipe is None else {"type": type(recipe).__name__, **dataclasses.asdict(recipe)}


def candidate_variants(device: str, only: list[str] | None = None, exclude: list[str] = ()) -> list[Candidate]:
    """Every variant of `device` (the reference first) and the selection-only ones; those `only`/`exclude`
    leave out are listed with that reason, not dropped."""
    known = {**VARIANTS, **EXTRA}
    unknown = sorted((set(only or ()) | set(exclude)) - set(known))
    if unknown:
        raise ValueError(f"unknown candidate(s) {', '.join(unknown)}; known: {', '.join(known)}")
    reference = reference_name(device)
    names = [reference] + [n for n, v in known.items() if v.device == device and n != reference]
    out = [Candidate(n, known[n]) for n in names]
    for c in out[1:]:
        if (only and c.name not in only) or c.name in exclude:
            c.reason = "left out (" + ("--exclude" if c.name in exclude else "not in --only") + ")"
    return out


def given_candidates(paths: list[Path], device: str) -> list[Candidate]:
    """An --artifact file as a candidate for each runtime of `device` that opens its format."""
    out = []
    for path in paths:
        fmt = formats.by_suffix(path.suffix)
        if fmt is None or fmt.recipe is None:
            raise ValueError(f"{path}: --artifact takes {', '.join(formats.suffixes('onnx', 'aoti', 'tensorrt'))} files")
        for variant in [*VARIANTS.values(), *EXTRA.values()]:
            name = f"{path.stem}@{variant.runtime}"
            if (variant.device == device and variant.recipe == fmt.recipe() and variant.onnx is None
                    and not variant.options.changed() and name not in {c.name for c in out}):  # fmt: skip
                out.append(Candidate(name, variant, given=path))
    return out


# ---------------------------------------------------------------- the gate


@dataclass(frozen=True)
class Gate:
    """The accuracy a candidate must keep: each precision's tolerance (sunet_deploy.tolerance.PARITY), or
    --max-drop POINTS for every precision (one-sided: a rise never fails); --max-class-drop for the worst class."""

    max_drop: float | None = None
    max_class_drop: float | None = None

    def failures(self, gate: dict, precision: str) -> list[str]:
        tolerance, delta = TOLERANCES[precision], gate["delta_miou"]
        out = []
        if self.max_drop is None and not abs(delta) <= tolerance.max_delta_miou:
            out.append(f"|delta mIoU| {abs(delta):.3f} > {tolerance.max_delta_miou} points ({precision} tolerance)")
        if self.max_drop is not None and not delta >= -self.max_drop:
            out.append(f"mIoU drops {-delta:.3f} > --max-drop {self.max_drop:g} points")
        if tolerance.min_agreement is not None and not gate["agreement"] >= tolerance.min_agreement:
            out.append(f"agreement {gate['agreement']:.3f} % < {tolerance.min_agreement} % ({precision})")
        worst = worst_class(gate)
        if self.max_class_drop is not None and worst and not worst["delta"] >= -self.max_class_drop:
            out.append(f"class {worst['class']!r} drops {-worst['delta']:.3f} > --max-class-drop "
                       f"{self.max_class_drop:g} points")
        return out

    def describe(self) -> str:
        if self.max_drop is None:
            text = ", ".join(f"{p} |delta| <= {t.max_delta_miou}" + (f" and agreement >= {t.min_agreement} %"
                             if t.min_agreement else "") for p, t in TOLERANCES.items())  # fmt: skip
            text = f"each precision's tolerance in mIoU points ({text})"
        else:
            text = f"mIoU drop <= {self.max_drop:g} points (FP32 also agreement >= {TOLERANCES['fp32'].min_agreement} %)"
        return text + (f", worst class drop <= {self.max_class_drop:g} points" if self.max_class_drop is not None else "")


def worst_class(gate: dict) -> dict | None:
    deltas = {k: v for k, v in (gate.get("class_iou_delta") or {}).items() if v is not None}
    if not deltas:
        return None
    name = min(deltas, key=deltas.get)
    return {"class": name, "delta": deltas[name]}


# ---------------------------------------------------------------- strategies


@dataclass(frozen=True)
class Strategy:
    kind: str  # latency, throughput, latency-budget
    budget_ms: float | None = None
    tie: float = 0.03  # share of the best value within which candidates tie

    @classmethod
    def parse(cls, text: str, tie: float) -> "Strategy":
        kind, _, value = text.partition("=")
        if kind in ("latency", "throughput") and not value:
            return cls(kind, tie=tie)
        if kind == "latency-budget" and value:
            budget = float(value)
            if budget > 0:
                return cls(kind, budget, tie)
        raise ValueError(f"--strategy takes latency, throughput or latency-budget=MS (MS > 0), got {text!r}")

    def describe(self) -> str:
        tie = (f"candidates within {100 * self.tie:g} % of the best tie (measurement noise on a shared machine) "
               "and the tie goes to the higher precision (fp32 > bf16/fp16 > int8), then to the faster")
        if self.kind == "latency":
            return f"lowest median latency; {tie}"
        if self.kind == "throughput":
            return f"most images/s at the batch; {tie.replace('faster', 'higher throughput')}"
        return (f"most accurate (highest mIoU; within {ACCURACY_TIE} points counts as equal) among those with a "
                f"median under {self.budget_ms:g} ms, then the fastest")

    def choose(self, passed: list[Candidate]) -> tuple[Candidate | None, str]:
        """The winner among measured candidates that passed the gate, and why (or why none)."""
        timed = [c for c in passed if c.row is not None]
        if not timed:
            return None, "no candidate passed the gate and was measured"
        median = {c.name: c.row["latency_ms"]["median"] for c in timed}
        if self.kind == "latency-budget":
            under = [c for c in timed if median[c.name] <= self.budget_ms]
            if not under:
                best = min(timed, key=lambda c: median[c.name])
                return None, f"no passing candidate is under {self.budget_ms:g} ms (fastest: {best.name}, {median[best.name]:.1f} ms)"
            top = max(c.gate["miou"] for c in under)
            accurate = [c for c in under if c.gate["miou"] >= top - ACCURACY_TIE]
            pick = min(accurate, key=lambda c: median[c.name])
            return pick, f"most accurate under {self.budget_ms:g} ms ({len(under)} of {len(timed)} under the budget)"
        if self.kind == "latency":
            cost = median
        else:
            cost = {c.name: 1 / c.row["throughput_ips"] for c in timed}
        best = min(cost.values())
        tied = [c for c in timed if cost[c.name] <= best * (1 + self.tie)]
        pick = min(tied, key=lambda c: (PRECISION_RANK.get(c.precision, 3), cost[c.name]))
        fastest = min(timed, key=lambda c: cost[c.name])
        why = "fastest" if pick is fastest else f"within {100 * self.tie:g} % of {fastest.name} at a higher precision"
        return pick, why + (f" (tied: {', '.join(c.name for c in tied)})" if len(tied) > 1 else "")


# ---------------------------------------------------------------- commands that run the winner


def option_flags(options: RuntimeOptions, runtime_flag: bool) -> list[str]:
    """The predict flags that give these options (and --runtime when the file's own runtime is another)."""
    out = [f"--runtime {options.runtime}"] if runtime_flag else []
    changed = options.changed()
    for f in option_fields(type(options)):
        if f.name in changed:
            value = changed[f.name]
            if isinstance(value, bool):
                out.append(flag_name(f) if value != f.default else f"--no-{f.name.replace('_', '-')}")
            elif isinstance(value, dict):
                out += [f"{flag_name(f)} {k}={v}" for k, v in value.items()]
            else:
                out.append(f"{flag_name(f)} {value}")
    return out


def commands(candidate: Candidate, shipped: Path, protocol_flags: list[str], threads: int | None) -> dict[str, str]:
    """The one-line predict and C++ commands that run the shipped artifact as it was measured."""
    fmt = artifact_format(candidate)
    options = candidate.options
    if threads and "threads" in {f.name for f in dataclasses.fields(options)}:
        options = dataclasses.replace(options, threads=threads)
    flags = option_flags(options, formats.get(fmt).runtime != options.runtime)
    out = {"predict": " ".join(["python -m runtimes.predict", str(shipped), "IMAGES...", "-o", "masks/", *flags,
                                *protocol_flags])}  # fmt: skip
    if fmt in ("onnx", "aoti", "tensorrt"):
        cpp = ["build/cpp/sunet_predict", *([f"--threads {threads}"] if threads else []),
               *(["--cuda"] if candidate.variant.device == "cuda" and fmt != "tensorrt" else []), str(shipped),
               "IMAGE.png", "MASK.png"]  # fmt: skip
        note = "" if options.runtime in ("onnxruntime", "aoti", "tensorrt") else \
            f"  # the C++ app runs this file with its {formats.get(fmt).runtime} backend, not {options.runtime}"
        out["cpp"] = " ".join(cpp) + note
    return out


def shipped_name(candidate: Candidate) -> str:
    suffix = candidate.path.suffix if candidate.path else ""
    return f"model{suffix}"


__all__ = ["Candidate", "EXTRA", "Gate", "REFERENCE", "Strategy", "candidate_variants", "commands", "given_candidates"]
