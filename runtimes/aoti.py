"""AOTInductor runtime: a `.pt2` package from `python -m export.aoti`, run from Python.

The same package runs in C++ applications through runtimes/cpp.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from sunet_deploy.artifact import ArtifactError, info_from_strings

from .base import Runtime, TensorInfo, Timing, output_info
from .options import AOTInductorOptions


def _looks_like_package(path: Path) -> bool:
    """A zip archive holding AOTInductor's archive_format entry (what torch's loader reads first)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/archive_format") for name in archive.namelist())


class AOTInductorRuntime(Runtime):
    name = "aoti"

    def __init__(self, path: str | Path, options: AOTInductorOptions | None = None) -> None:
        super().__init__(path, options or AOTInductorOptions())
        self.device = torch.device(self.options.device)
        if not _looks_like_package(self.path):  # torch would log a misleading "outdated pt2 file" first
            raise ArtifactError(self.path, "not an AOTInductor package (no AOTInductor archive inside); "
                                "export one with `python -m export.aoti`")
        try:
            self.package = torch._inductor.aoti_load_package(str(self.path))
        except Exception as exc:  # the loader raises RuntimeError or zipfile errors for foreign files
            raise ArtifactError(self.path, f"not an AOTInductor package ({str(exc).splitlines()[0]})") from exc
        self.info = info_from_strings(self.package.get_metadata(), self.path, "aoti")

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo("input", self.info.input_shape, "float32")]

    def outputs(self) -> list[TensorInfo]:
        return [output_info(self.output_kind, self.metadata.num_classes)]

    def _activate(self) -> None:
        pass

    def _deactivate(self) -> None:
        pass

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        if not self.info.accepts(batch.shape):
            raise ValueError(f"this AOTInductor package was compiled for input {self.info.input_shape}, "
                             f"got {batch.shape}; re-export with python -m export.aoti --size")
        with torch.inference_mode():
            out = self.package(torch.from_numpy(batch).to(self.device))
        return out.cpu().numpy(), Timing(0.0)
