"""The runtime configurations a benchmark can measure, and which of them can run here."""

from __future__ import annotations

from dataclasses import dataclass, field

import runtimes

REFERENCE = "pytorch-fp32"
"""Every speed-up and every parity delta is measured against this variant on the same device."""


@dataclass(frozen=True)
class Variant:
    """One row of a report: an adapter, the artifact it opens, and its options."""

    name: str
    runtime: str  # adapter name in runtimes.ADAPTERS
    artifact: str  # "checkpoint", "onnx", "onnx-fp16", "aoti" or "engine"
    device: str  # "cpu" or "cuda"
    precision: str = "fp32"  # picks the parity tolerance
    options: dict = field(default_factory=dict)
    threaded: bool = False  # takes a `threads` option (CPU runtimes outside torch)

    def open_options(self, threads: int | None) -> dict:
        return {**self.options, "threads": threads} if self.threaded and threads else dict(self.options)

    def availability(self) -> str | None:
        """None when this variant can run here, else why not."""
        checks = {"pytorch": {"device": self.device}, "aoti": {"device": self.device},
                  "onnxruntime": {"provider": self.options.get("provider", "cpu")}, "tensorrt": {}}  # fmt: skip
        return runtimes.availability(self.runtime, **checks[self.runtime])


def _ort(name: str, provider: str, artifact: str = "onnx", **extra) -> Variant:
    options = {"provider": provider, **({"provider_options": extra} if extra else {})}
    precision = "fp16" if extra.get("trt_fp16_enable") or artifact == "onnx-fp16" else "fp32"
    return Variant(name, "onnxruntime", artifact, "cpu" if provider == "cpu" else "cuda", precision, options,
                   threaded=provider == "cpu")  # fmt: skip


VARIANTS = {
    v.name: v
    for v in (
        Variant(REFERENCE, "pytorch", "checkpoint", "cpu", options={"device": "cpu"}),
        Variant("pytorch-fp32-channels-last", "pytorch", "checkpoint", "cpu",
                options={"device": "cpu", "channels_last": True}),  # fmt: skip
        Variant("pytorch-bf16-channels-last", "pytorch", "checkpoint", "cpu", "bf16",
                {"device": "cpu", "precision": "bf16", "channels_last": True}),  # fmt: skip
        _ort("onnxruntime-cpu", "cpu"),
        Variant("aoti-cpu", "aoti", "aoti", "cpu", options={"device": "cpu"}),
        Variant(f"{REFERENCE}-cuda", "pytorch", "checkpoint", "cuda", options={"device": "cuda"}),
        Variant("pytorch-fp16-cuda", "pytorch", "checkpoint", "cuda", "fp16", {"device": "cuda", "precision": "fp16"}),
        Variant("pytorch-fp16-channels-last-cuda", "pytorch", "checkpoint", "cuda", "fp16",
                {"device": "cuda", "precision": "fp16", "channels_last": True}),  # fmt: skip
        Variant("pytorch-fp16-cuda-graph", "pytorch", "checkpoint", "cuda", "fp16",
                {"device": "cuda", "precision": "fp16", "channels_last": True, "cuda_graph": True}),  # fmt: skip
        Variant("pytorch-fp16-cuda-graph-argmax", "pytorch", "checkpoint", "cuda", "fp16",
                {"device": "cuda", "precision": "fp16", "channels_last": True, "cuda_graph": True, "output": "labels"}),  # fmt: skip
        _ort("onnxruntime-cuda", "cuda"),
        _ort("onnxruntime-cuda-fp16", "cuda", "onnx-fp16"),
        _ort("onnxruntime-tensorrt", "tensorrt"),
        _ort("onnxruntime-tensorrt-fp16", "tensorrt", trt_fp16_enable=True),
        Variant("tensorrt", "tensorrt", "engine", "cuda", "fp16"),
        Variant("aoti-cuda", "aoti", "aoti", "cuda", options={"device": "cuda"}),
    )
}


def reference_name(device: str) -> str:
    return REFERENCE if device == "cpu" else f"{REFERENCE}-{device}"


def variants_for(device: str, names: list[str] | None = None) -> list[Variant]:
    """The variants of one device (reference first), or the named ones (the device's reference added)."""
    unknown = sorted(set(names or ()) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    chosen = names or [n for n, v in VARIANTS.items() if v.device == device]
    reference = reference_name(device)
    return [VARIANTS[reference]] + [VARIANTS[n] for n in chosen if n != reference]


def split_available(variants: list[Variant]) -> tuple[list[Variant], dict[str, str]]:
    """(the variants that can run here, {name: reason} for those that cannot)."""
    skipped = {v.name: reason for v in variants if (reason := v.availability())}
    return [v for v in variants if v.name not in skipped], skipped
