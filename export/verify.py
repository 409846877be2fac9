"""An exported model, run by its runtime, against the PyTorch FP32 model it came from.

The inputs are images of the checkpoint's own dataset (export.calibration), so that the
reference draws several classes. Per batch: the max |logit difference| (logit outputs, FP32 and
FP16) and the share of pixels whose label (argmax over classes) agrees; over all batches, the
agreement (which the tolerance gates) and, per class of the reference, the share of its pixels
the export labels the same. The allowed
logit error scales with the size of the logits: atol + rtol * max|PyTorch logit|. INT8 has no
logit bound (its logits move by design); its gate is the agreement. The thresholds are
sunet_deploy.tolerance.VERIFY (agreement in percent there; printed here as a share, as the agreements are).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from sunet_deploy.pipeline.masks import class_indices
from sunet_deploy.tolerance import VERIFY as TOLERANCES
from sunet_deploy.tolerance import Tolerance


def describe(tolerance: Tolerance) -> str:
    """The thresholds as the report prints them (agreement as a share of pixels, as the agreements)."""
    logits = "no logit-error bound" if tolerance.atol is None else \
        f"max |logit error| <= {tolerance.atol:g} + {tolerance.rtol:g} * max|logit|"
    return f"{logits}, pixel-label agreement >= {tolerance.min_agreement / 100:g}"


def agreement_failure(where: str, agreed: int, pixels: int, tolerance: Tolerance) -> str | None:
    if tolerance.agreement_ok(agreed, pixels):
        return None
    agreement, least = agreed / pixels, tolerance.min_agreement / 100
    return f"{where}: pixel-label agreement {agreement:.5f} is below {least:g} by {least - agreement:.5f}"


@dataclass(frozen=True)
class BatchResult:
    """One batch: overall agreement, and per class of the reference its pixels and those labelled alike."""

    shape: tuple[int, ...]
    agreement: float
    class_pixels: tuple[int, ...]
    class_agreed: tuple[int, ...]
    max_abs_error: float | None = None  # None for a graph that outputs labels
    allowed_error: float | None = None  # None where the tolerance sets no bound

    @property
    def classes(self) -> int:
        """Number of classes the reference draws in this batch."""
        return sum(1 for n in self.class_pixels if n)

    @property
    def label(self) -> str:
        return "x".join(map(str, self.shape))

    def logit_failure(self) -> str | None:
        if self.allowed_error is None or self.max_abs_error <= self.allowed_error:
            return None
        return (f"{self.label}: max |logit error| {self.max_abs_error:.3g} exceeds {self.allowed_error:.3g} "
                f"by {self.max_abs_error - self.allowed_error:.3g}")

    def failures(self, tolerance: Tolerance) -> list[str]:
        """This batch judged on its own: logit error and agreement."""
        agreement = agreement_failure(self.label, sum(self.class_agreed), sum(self.class_pixels), tolerance)
        return [p for p in (self.logit_failure(), agreement) if p]

    def describe(self) -> str:
        if self.max_abs_error is None:
            error = "n/a (labels output)"
        else:
            bound = "no bound" if self.allowed_error is None else f"allowed {self.allowed_error:.3g}"
            error = f"{self.max_abs_error:.3g} ({bound})"
        return (f"{'x'.join(map(str, self.shape)):>14}: max |logit error| {error}, "
                f"agreement {self.agreement:.5f}, {self.classes} classes in the reference")


@dataclass(frozen=True)
class Verification:
    precision: str
    tolerance: Tolerance
    results: tuple[BatchResult, ...]
    class_names: tuple[str, ...] = ()

    @property
    def failures(self) -> list[str]:
        """The logit error of each batch, and the agreement over every pixel of every batch."""
        logits = [r.logit_failure() for r in self.results]
        agreed = sum(sum(r.class_agreed) for r in self.results)
        pixels = sum(sum(r.class_pixels) for r in self.results)
        return [f for f in (*logits, agreement_failure("all images", agreed, pixels, self.tolerance)) if f]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def max_abs_error(self) -> float | None:
        errors = [r.max_abs_error for r in self.results if r.max_abs_error is not None]
        return max(errors) if errors else None

    @property
    def agreement(self) -> float:
        """Pixel-label agreement over every pixel of every batch."""
        return sum(sum(r.class_agreed) for r in self.results) / sum(sum(r.class_pixels) for r in self.results)

    def class_agreement(self) -> dict[str, tuple[float, int]]:
        """Per class the reference draws anywhere: (share of its pixels labelled alike, its pixels)."""
        pixels = np.sum([r.class_pixels for r in self.results], axis=0)
        agreed = np.sum([r.class_agreed for r in self.results], axis=0)
        names = self.class_names or tuple(f"class {i}" for i in range(len(pixels)))
        return {names[i]: (agreed[i] / pixels[i], int(pixels[i])) for i in np.flatnonzero(pixels)}

    def report(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        lines = [f"export ({self.precision}) vs PyTorch FP32: {verdict}; thresholds: {describe(self.tolerance)} "
                 "(over all images)"]
        lines += [f"  {r.describe()}" for r in self.results]
        lines.append(f"  agreement over all images: {self.agreement:.5f}")
        per_class = self.class_agreement()
        note = "; one class only, so agreement says little" if len(per_class) == 1 else ""
        worst = min(per_class, key=lambda name: per_class[name][0])
        lines.append(f"  per-class agreement ({len(per_class)} classes in the reference{note}; worst {worst}):")
        lines.append("    " + ", ".join(f"{name} {share:.4f} ({pixels} px)" for name, (share, pixels) in per_class.items()))
        return "\n".join(lines)


def reference_outputs(model: nn.Module, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
    """PyTorch FP32 logits of every batch."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return [model.eval()(torch.from_numpy(batch).to(device)).cpu().numpy() for batch in batches]


def verify(run: Callable[[np.ndarray], np.ndarray], model: nn.Module, batches: Sequence[np.ndarray],
           precision: str, class_names: Sequence[str] = ()) -> Verification:
    """Run each batch through `run` (an exported artifact) and through `model` in FP32, and compare."""
    tolerance = TOLERANCES[precision]
    references = reference_outputs(model, batches)
    results = tuple(compare(run(batch), reference, tolerance) for batch, reference in zip(batches, references))
    return Verification(precision, tolerance, results, tuple(class_names))


def onnx_runner(onnx_bytes: bytes, disabled_optimizers: Sequence[str] = ()) -> Callable[[np.ndarray], np.ndarray]:
    """ONNX Runtime (CPU) on a serialized model, as a function of the input batch; `disabled_optimizers`
    names ONNX Runtime graph transformers to leave out (see export.quantize.ORT_FP16_QDQ_DISABLED)."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=list(disabled_optimizers))
    input_name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {input_name: batch})[0]


def compare(out: np.ndarray, reference: np.ndarray, tolerance: Tolerance) -> BatchResult:
    """Compare a runtime's output (logits N,C,H,W or labels N,H,W) with reference logits."""
    ref_labels = class_indices(reference, "logits")
    labels = class_indices(out, "labels" if out.ndim == 3 else "logits")
    if labels.shape != ref_labels.shape:
        raise ValueError(f"output shape {out.shape} does not match the reference {reference.shape}")
    same = labels == ref_labels
    num_classes = reference.shape[1]
    pixels = np.bincount(ref_labels.ravel(), minlength=num_classes)
    agreed = np.bincount(ref_labels[same], minlength=num_classes)
    shape = tuple(reference.shape[:1]) + (3,) + tuple(reference.shape[2:])
    result = BatchResult(shape, float(same.mean()), tuple(map(int, pixels)), tuple(map(int, agreed)))
    if out.ndim == 3:
        return result
    error = float(np.abs(out.astype(np.float64) - reference).max())
    allowed = tolerance.allowed_error(float(np.abs(reference).max()))
    return dataclasses.replace(result, max_abs_error=error, allowed_error=allowed)
