"""OpenVINO (CPU plugin): runs the ONNX files export.onnx writes, read directly (no IR conversion).

    with open_runtime("model.onnx", OpenVINOOptions(threads=2)) as rt:    # predict: --runtime openvino
        logits = rt.infer(batch)

The metadata is the ONNX file's own (sunet_deploy.artifact.read_onnx_info). The model is compiled with
PERFORMANCE_HINT LATENCY (or THROUGHPUT), INFERENCE_NUM_THREADS and INFERENCE_PRECISION_HINT: on CPUs
with AVX512_BF16/AMX the plugin would run an f32 model in bf16 by default, so FP32 is asked for
explicitly and bf16 is its own option. A Q/DQ (INT8) model runs in OpenVINO's u8/i8 kernels; on CPUs
without AVX512-VNNI OpenVINO documents a "saturation issue" for them, so INT8 is gated by mIoU
(benchmarks.parity), never assumed. Imports and runs without PyTorch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from sunet_deploy import formats
from sunet_deploy.artifact import ArtifactError, read_onnx_info

from .base import Runtime, RuntimeUnavailable, TensorInfo, Timing
from .options import OpenVINOOptions

OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


def _openvino():
    try:
        import openvino
    except ImportError as exc:
        raise RuntimeUnavailable(f"openvino is not installed: {formats.get('openvino').install}") from exc
    return openvino


def cpu_capabilities() -> list[str]:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES (e.g. FP32, INT8, BF16)."""
    return list(_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVINORuntime(Runtime):
    name = "openvino"

    @classmethod
    def availability(cls, options: OpenVINOOptions) -> str | None:
        try:
            capabilities = cpu_capabilities()
        except RuntimeUnavailable as exc:
            return str(exc)
        if options.inference_precision == "bf16" and "BF16" not in capabilities:
            return (f"this CPU has no bf16 kernels for OpenVINO (its capabilities: {', '.join(capabilities)}; bf16 "
                    "needs AVX512_BF16 or AMX)")
        return None

    def __init__(self, path: str | Path, options: OpenVINOOptions | None = None) -> None:
        super().__init__(path, options or OpenVINOOptions())
        self.ov = _openvino()
        onnx_info = read_onnx_info(self.path)
        self._inputs = [TensorInfo(t["name"], tuple(t["shape"]), t["dtype"]) for t in onnx_info.inputs]
        self._outputs = [TensorInfo(t["name"], tuple(t["shape"]), t["dtype"]) for t in onnx_info.outputs]
        info = onnx_info.artifact
        bf16 = self.options.precision == "bf16" and info.precision == "fp32"
        self.info = dataclasses.replace(info, precision="bf16" if bf16 else info.precision)
        self.compiled = self.request = None

    def config(self) -> dict[str, str]:
        """The CPU plugin's compile properties for these options."""
        config = {"PERFORMANCE_HINT": self.options.performance_hint.upper(),
                  "INFERENCE_PRECISION_HINT": OV_PRECISION[self.options.inference_precision]}
        if self.options.threads:
            config["INFERENCE_NUM_THREADS"] = str(self.options.threads)
        return config

    def _activate(self) -> None:
        core = self.ov.Core()
        try:
            model = core.read_model(str(self.path))
        except RuntimeError as exc:  # OpenVINO's frontends raise RuntimeError for models they cannot read
            raise ArtifactError(self.path, f"OpenVINO cannot read it ({str(exc).splitlines()[0]})") from exc
        self.compiled = core.compile_model(model, "CPU", self.config())
        self.request = self.compiled.create_infer_request()

    def _deactivate(self) -> None:
        self.request = self.compiled = None

    def compiled_property(self, name: str) -> str:
        """A property of the compiled model as OpenVINO resolved it (e.g. INFERENCE_PRECISION_HINT)."""
        self.check_active()
        return str(self.compiled.get_property(name))

    def inputs(self) -> list[TensorInfo]:
        return list(self._inputs)

    def outputs(self) -> list[TensorInfo]:
        return list(self._outputs)

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        self.request.infer({0: batch})
        # The output tensor's buffer is reused by the next request: hand out a copy.
        out = np.array(self.request.get_output_tensor(0).data, copy=True)
        expected = self._outputs[0].dtype  # the ONNX type: OpenVINO may compute int64 labels as int32
        return (out if out.dtype == expected else out.astype(expected)), Timing(0.0)
