"""AOTInductor runtime: a `.pt2` package from `python -m export.aoti`, run from Python.

The same package runs in C++ applications through runtimes/cpp.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch

from sunet_deploy.artifact import ArtifactError, info_from_strings

from .base import Runtime, TensorInfo, Timing, output_info, torch_device_availability, torch_threads
from .options import AOTInductorOptions


def read_package_strings(path: Path) -> dict[str, str]:
    """The string metadata an AOTInductor package holds (its *_metadata.json, the file torch's loader
    reads too), read from the zip without loading the compiled model."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(name.endswith("/archive_format") for name in names):
                raise ArtifactError(path, "not an AOTInductor package (no AOTInductor archive inside); "
                                    "export one with `python -m export.aoti`")
            found = [name for name in names if name.endswith("_metadata.json")]
            return json.loads(archive.read(found[0])) if found else {}
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(path, f"not an AOTInductor package ({exc})") from exc


class AOTInductorRuntime(Runtime):
    name = "aoti"

    def __init__(self, path: str | Path, options: AOTInductorOptions | None = None) -> None:
        super().__init__(path, options or AOTInductorOptions())
        self.info = info_from_strings(read_package_strings(self.path), self.path, "aoti")
        self.package = None

    @classmethod
    def availability(cls, options: AOTInductorOptions) -> str | None:
        return torch_device_availability(options.device)

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo("input", self.info.input_shape, "float32")]

    def outputs(self) -> list[TensorInfo]:
        return [output_info(self.output_kind, self.metadata.num_classes)]

    def _activate(self) -> None:
        # torch's loader logs "Loading outdated pt2 file" for any package its first loader refuses, then
        # tries an older loader; the error below says what failed, in one line
        loader_log = logging.getLogger("torch._inductor.package.package")
        level = loader_log.level
        loader_log.setLevel(logging.ERROR)
        try:
            self.package = torch._inductor.aoti_load_package(str(self.path))
        except Exception as exc:  # the loader raises RuntimeError or zipfile errors for foreign files
            raise ArtifactError(self.path, f"not an AOTInductor package ({str(exc).splitlines()[0]})") from exc
        finally:
            loader_log.setLevel(level)

    def _deactivate(self) -> None:
        self.package = None

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        if not self.info.accepts(batch.shape):
            raise ValueError(f"this AOTInductor package was compiled for input {self.info.input_shape}, "
                             f"got {batch.shape}; re-export with python -m export.aoti --size")
        with torch_threads(self.options.threads), torch.inference_mode():
            out = self.package(torch.from_numpy(batch).to(torch.device(self.options.device)))
        return out.cpu().numpy(), Timing(0.0)
