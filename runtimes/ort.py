"""ONNX Runtime: CPU, CUDA and TensorRT execution providers; IOBinding with device buffers on GPU.

Imports and runs without PyTorch.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sunet_deploy.metadata import METADATA_KEY, ModelMetadata

from .base import ArtifactError, Runtime, RuntimeUnavailable, TensorInfo, Timing

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
INSTALL_HINT = {
    "cuda": "install onnxruntime-gpu (pip install 'sunet-deploy[gpu]') on a machine with CUDA",
    "tensorrt": "install onnxruntime-gpu built with TensorRT and TensorRT itself",
}


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeUnavailable("onnxruntime is not installed: pip install 'sunet-deploy[onnx]'") from exc
    return onnxruntime


def availability(provider: str = "cpu") -> str | None:
    """None when ONNX Runtime can run with `provider` here, else the reason it cannot."""
    try:
        ort = _onnxruntime()
    except RuntimeUnavailable as exc:
        return str(exc)
    if PROVIDERS[provider] not in ort.get_available_providers():
        return f"ONNX Runtime has no {PROVIDERS[provider]} here: {INSTALL_HINT.get(provider, '')}"
    return None


class OnnxRuntimeRuntime(Runtime):
    name = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        provider: str = "cpu",
        provider_options: dict | None = None,
        threads: int | None = None,
        io_binding: bool | None = None,
        device_id: int = 0,
    ) -> None:
        super().__init__(path)
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {sorted(PROVIDERS)}, got {provider!r}")
        self.ort = _onnxruntime()
        self.provider = provider
        self.provider_options = dict(provider_options or {})
        if provider != "cpu":
            self.provider_options.setdefault("device_id", device_id)
        self.threads = threads
        self.io_binding = provider != "cpu" if io_binding is None else io_binding
        self.device_id = device_id
        self.session = None
        self._probe = self._probe_session()
        self.metadata = self._read_metadata()

    def _probe_session(self):
        """An unoptimised CPU session: cheap, and enough to read metadata, inputs and outputs."""
        options = self.ort.SessionOptions()
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return self.ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for unreadable models
            raise ArtifactError(self.path, f"not a loadable ONNX model ({str(exc).splitlines()[0]})") from exc

    def _read_metadata(self) -> ModelMetadata:
        text = self._probe.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if text is None:
            raise ArtifactError(self.path, "has no sunet-deploy metadata; export it with `python -m export.onnx`")
        return ModelMetadata.from_json(text)

    def _activate(self) -> None:
        reason = availability(self.provider)
        if reason:
            raise RuntimeUnavailable(reason)
        options = self.ort.SessionOptions()
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            options.intra_op_num_threads = self.threads
        providers = [(PROVIDERS[self.provider], self.provider_options)]
        if self.provider != "cpu":
            providers.append("CPUExecutionProvider")
        self.session = self.ort.InferenceSession(str(self.path), options, providers=providers)

    def _deactivate(self) -> None:
        self.session = None

    def _tensor_infos(self, args) -> list[TensorInfo]:
        dtypes = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
                  "tensor(int32)": "int32", "tensor(uint8)": "uint8"}
        return [TensorInfo(a.name, tuple(a.shape), dtypes.get(a.type, a.type)) for a in args]

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
        device = "cuda" if self.provider != "cpu" else "cpu"
        binding = self.session.io_binding()
        t0 = time.perf_counter()
        value = self.ort.OrtValue.ortvalue_from_numpy(batch, device, self.device_id)
        binding.bind_ortvalue_input(input_name, value)
        binding.bind_output(self.session.get_outputs()[0].name, device, self.device_id)
        binding.synchronize_inputs()
        t1 = time.perf_counter()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        t2 = time.perf_counter()
        out = binding.copy_outputs_to_cpu()[0]
        t3 = time.perf_counter()
        return out, Timing(0.0, (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000)
