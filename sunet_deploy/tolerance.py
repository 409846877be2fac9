"""How far an artifact may be from the PyTorch FP32 model it came from: one type, in one unit.

Shares of pixels are in percent and mIoU differences in points (percent too). Two gates use it:
`VERIFY`, the check an exporter runs on the batches it converted (logit error and pixel-label
agreement per batch and overall, export.verify), and `PARITY`, benchmarks.parity's judgement of
every runtime's masks over a validation set (mIoU delta, and agreement for FP32). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """A bound left None is not checked."""

    atol: float | None = None  # logit error allowed: atol + rtol * max|reference logit|
    rtol: float | None = None
    min_agreement: float | None = None  # percent of pixels labelled as PyTorch FP32 labels them
    max_delta_miou: float | None = None  # |mIoU - PyTorch FP32's mIoU|, points

    def allowed_error(self, max_abs_reference: float) -> float | None:
        """The logit error allowed where the reference's largest |logit| is `max_abs_reference`."""
        if self.atol is None:
            return None
        return self.atol + (self.rtol or 0.0) * max_abs_reference

    def agreement_ok(self, agreed: int, pixels: int) -> bool:
        """`agreed` of `pixels` labelled alike are enough (no bound: always)."""
        return self.min_agreement is None or 100 * agreed / pixels >= self.min_agreement


VERIFY = {
    "fp32": Tolerance(atol=1e-3, rtol=1e-3, min_agreement=99.9),
    "fp16": Tolerance(atol=2e-2, rtol=2e-2, min_agreement=99.0),
    "int8": Tolerance(min_agreement=95.0),  # no logit bound: INT8 logits move by design
}
"""export.verify: an exported graph against PyTorch FP32 on the batches it was exported with."""

PARITY = {
    "fp32": Tolerance(min_agreement=99.9, max_delta_miou=0.05),
    "fp16": Tolerance(max_delta_miou=0.3),
    "bf16": Tolerance(max_delta_miou=0.3),
    "int8": Tolerance(max_delta_miou=1.0),
}
"""benchmarks.parity: every runtime's masks against PyTorch FP32's over a validation set."""
