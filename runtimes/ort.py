"""ONNX Runtime: CPU, CUDA and TensorRT execution providers; IOBinding with device buffers on GPU.

Imports and runs without PyTorch.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from sunet_deploy import formats
from sunet_deploy.artifact import ORT_DISABLED_OPTIMIZERS_KEY, ArtifactError, dtype_name, info_from_strings

from .base import Runtime, RuntimeUnavailable, TensorInfo, Timing
from .options import PROVIDERS, OnnxRuntimeOptions

PROVIDER_HINTS = {
    "cuda": "replace onnxruntime with onnxruntime-gpu (pip uninstall -y onnxruntime && pip install onnxruntime-gpu) "
            "on a machine with CUDA",
    "tensorrt": "install onnxruntime-gpu built with TensorRT and TensorRT itself",
}


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeUnavailable(f"onnxruntime is not installed: {formats.get('onnx').install}") from exc
    return onnxruntime


def provider_availability(provider: str = "cpu") -> str | None:
    """None when ONNX Runtime can run with `provider` here, else the reason it cannot."""
    try:
        ort = _onnxruntime()
    except RuntimeUnavailable as exc:
        return str(exc)
    if PROVIDERS[provider] not in ort.get_available_providers():
        return f"ONNX Runtime has no {PROVIDERS[provider]} here: {PROVIDER_HINTS.get(provider, '')}"
    return None


class OnnxRuntimeRuntime(Runtime):
    name = "onnxruntime"

    @classmethod
    def availability(cls, options: OnnxRuntimeOptions) -> str | None:
        return provider_availability(options.provider)

    def __init__(self, path: str | Path, options: OnnxRuntimeOptions | None = None) -> None:
        super().__init__(path, options or OnnxRuntimeOptions())
        self.ort = _onnxruntime()
        self.session = None
        self._probe = self._probe_session()
        strings = self._probe.get_modelmeta().custom_metadata_map
        info = info_from_strings(strings, self.path, "onnx")
        self.disabled_optimizers = [name for name in strings.get(ORT_DISABLED_OPTIMIZERS_KEY, "").split(",") if name]
        self.info = dataclasses.replace(info, precision=self.options.precision or info.precision)

    @property
    def io_binding(self) -> bool:
        return self.options.provider != "cpu" if self.options.io_binding is None else self.options.io_binding

    def _probe_session(self):
        """An unoptimised CPU session: cheap, and enough to read metadata, inputs and outputs."""
        options = self.ort.SessionOptions()
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return self.ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for unreadable models
            raise ArtifactError(self.path, f"not a loadable ONNX model ({str(exc).splitlines()[0]})") from exc

    def _activate(self) -> None:
        self.session = self.ort.InferenceSession(str(self.path), self._session_options(), providers=self._providers(),
                                                 disabled_optimizers=self.disabled_optimizers)

    def _session_options(self):
        options = self.ort.SessionOptions()
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.options.threads:
            options.intra_op_num_threads = self.options.threads
        return options

    def _providers(self) -> list:
        """The execution providers with their options, CPU as the fallback of a GPU provider."""
        provider, extra = self.options.provider, dict(self.options.provider_options)
        if provider == "cpu":
            return [(PROVIDERS["cpu"], extra)]
        return [(PROVIDERS[provider], {"device_id": self.options.device_id, **extra}), PROVIDERS["cpu"]]

    def _deactivate(self) -> None:
        self.session = None

    def _tensor_infos(self, args) -> list[TensorInfo]:
        return [TensorInfo(a.name, tuple(a.shape), dtype_name("ort", a.type)) for a in args]

    def inputs(self) -> list[TensorInfo]:
        return self._tensor_infos(self._probe.get_inputs())

    def outputs(self) -> list[TensorInfo]:
        return self._tensor_infos(self._probe.get_outputs())

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        input_name = self.session.get_inputs()[0].name
        if not self.io_binding:
            return self.session.run(None, {input_name: batch})[0], Timing(0.0)
        return self._infer_bound(input_name, batch)

    def _infer_bound(self, input_name: str, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        """Input copied once to a device-resident OrtValue; the output stays on the device until the end."""
        device, device_id = self.options.device, self.options.device_id
        binding = self.session.io_binding()
        t0 = time.perf_counter()
        value = self.ort.OrtValue.ortvalue_from_numpy(batch, device, device_id)
        binding.bind_ortvalue_input(input_name, value)
        binding.bind_output(self.session.get_outputs()[0].name, device, device_id)
        binding.synchronize_inputs()
        t1 = time.perf_counter()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        t2 = time.perf_counter()
        out = binding.copy_outputs_to_cpu()[0]
        t3 = time.perf_counter()
        return out, Timing(0.0, (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000)
