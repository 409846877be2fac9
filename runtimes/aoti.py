"""AOTInductor runtime: a `.pt2` package from `python -m export.aoti`, run from Python.

The same package runs in C++ applications through runtimes/cpp.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sunet_deploy.metadata import METADATA_KEY, ModelMetadata

from .base import ArtifactError, Runtime, TensorInfo, Timing, output_info
from .pytorch import availability  # noqa: F401  (same condition: torch sees the device)


class AOTInductorRuntime(Runtime):
    name = "aoti"

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        super().__init__(path)
        self.device = torch.device(device)
        try:
            self.package = torch._inductor.aoti_load_package(str(self.path))
        except Exception as exc:  # the loader raises RuntimeError or zipfile errors for foreign files
            raise ArtifactError(self.path, f"not an AOTInductor package ({str(exc).splitlines()[0]})") from exc
        package_meta = self.package.get_metadata()
        if METADATA_KEY not in package_meta:
            raise ArtifactError(self.path, "has no sunet-deploy metadata; export it with `python -m export.aoti`")
        self.metadata = ModelMetadata.from_json(package_meta[METADATA_KEY])
        self.input_shape = tuple(int(v) for v in package_meta["sunet_deploy.input_shape"].split("x"))

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo("input", self.input_shape, "float32")]

    def outputs(self) -> list[TensorInfo]:
        return [output_info(self.output_kind, self.metadata.num_classes)]

    def _activate(self) -> None:
        pass

    def _deactivate(self) -> None:
        pass

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        if batch.shape != self.input_shape:
            raise ValueError(
                f"this AOTInductor package was compiled for input {self.input_shape}, got {batch.shape}; "
                "re-export with python -m export.aoti --size"
            )
        with torch.inference_mode():
            out = self.package(torch.from_numpy(batch).to(self.device))
        return out.cpu().numpy(), Timing(0.0)
