"""An exported ONNX graph, run by ONNX Runtime, against the PyTorch FP32 model it came from.

Two numbers per input shape: the max |logit difference| (logit graphs only) and the share of
pixels whose label (argmax over classes) agrees. The allowed logit error scales with the size of
the logits: atol + rtol * max|PyTorch logit|.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

DYNAMIC_SHAPES = ((1, 3, 128, 128), (2, 3, 75, 113))
"""Square batch 1, then odd non-square batch 2: the shapes a dynamic export is verified on."""


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    min_agreement: float

    def allowed_error(self, reference: np.ndarray) -> float:
        return self.atol + self.rtol * float(np.abs(reference).max())

    def describe(self) -> str:
        return (f"max |logit error| <= {self.atol:g} + {self.rtol:g} * max|logit|, "
                f"pixel-label agreement >= {self.min_agreement:g}")


TOLERANCES = {
    "fp32": Tolerance(atol=1e-3, rtol=1e-3, min_agreement=0.999),
    "fp16": Tolerance(atol=2e-2, rtol=2e-2, min_agreement=0.99),
}


@dataclass(frozen=True)
class ShapeResult:
    shape: tuple[int, ...]
    agreement: float
    classes: int
    max_abs_error: float | None = None  # None for a graph that outputs labels
    allowed_error: float | None = None

    def failures(self, tolerance: Tolerance) -> list[str]:
        shape = "x".join(map(str, self.shape))
        problems = []
        if self.max_abs_error is not None and self.max_abs_error > self.allowed_error:
            problems.append(f"{shape}: max |logit error| {self.max_abs_error:.3g} exceeds {self.allowed_error:.3g} "
                            f"by {self.max_abs_error - self.allowed_error:.3g}")
        if self.agreement < tolerance.min_agreement:
            problems.append(f"{shape}: pixel-label agreement {self.agreement:.5f} is below {tolerance.min_agreement:g} "
                            f"by {tolerance.min_agreement - self.agreement:.5f}")
        return problems

    def describe(self) -> str:
        error = "n/a (labels output)" if self.max_abs_error is None else \
            f"{self.max_abs_error:.3g} (allowed {self.allowed_error:.3g})"
        note = "; one class only, so agreement says little" if self.classes == 1 else ""
        return (f"{'x'.join(map(str, self.shape)):>14}: max |logit error| {error}, "
                f"agreement {self.agreement:.5f} ({self.classes} classes in the reference{note})")


@dataclass(frozen=True)
class Verification:
    precision: str
    tolerance: Tolerance
    results: tuple[ShapeResult, ...]

    @property
    def failures(self) -> list[str]:
        return [f for r in self.results for f in r.failures(self.tolerance)]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def max_abs_error(self) -> float | None:
        errors = [r.max_abs_error for r in self.results if r.max_abs_error is not None]
        return max(errors) if errors else None

    @property
    def min_agreement(self) -> float:
        return min(r.agreement for r in self.results)

    def report(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        lines = [f"export ({self.precision}) vs PyTorch FP32: {verdict}; thresholds: {self.tolerance.describe()}"]
        return "\n".join(lines + [f"  {r.describe()}" for r in self.results])


def verify(run: Callable[[np.ndarray], np.ndarray], model: nn.Module, batches: list[np.ndarray],
           precision: str) -> Verification:
    """Run each batch through `run` (an exported artifact) and through `model` in FP32, and compare."""
    tolerance = TOLERANCES[precision]
    device = next(model.parameters()).device
    results = []
    for batch in batches:
        with torch.no_grad():
            reference = model.eval()(torch.from_numpy(batch).to(device)).cpu().numpy()
        results.append(compare(run(batch), reference, tolerance))
    return Verification(precision, tolerance, tuple(results))


def onnx_runner(onnx_bytes: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """ONNX Runtime (CPU) on a serialized model, as a function of the input batch."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {input_name: batch})[0]


def random_inputs(shapes: list[tuple[int, ...]], seed: int = 0) -> list[np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator).numpy() for shape in shapes]


def compare(out: np.ndarray, reference: np.ndarray, tolerance: Tolerance) -> ShapeResult:
    """Compare a runtime's output (logits N,C,H,W or labels N,H,W) with reference logits."""
    ref_labels = reference.argmax(1)
    labels = out if out.ndim == 3 else out.argmax(1)
    if labels.shape != ref_labels.shape:
        raise ValueError(f"output shape {out.shape} does not match the reference {reference.shape}")
    result = ShapeResult(tuple(reference.shape[:1]) + (3,) + tuple(reference.shape[2:]),
                         float((labels == ref_labels).mean()), len(np.unique(ref_labels)))
    if out.ndim == 3:
        return result
    allowed = tolerance.allowed_error(reference)
    error = float(np.abs(out.astype(np.float64) - reference).max())
    return ShapeResult(result.shape, result.agreement, result.classes, error, allowed)
