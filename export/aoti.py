"""`python -m export.aoti CHECKPOINT -o model.pt2`: an AOTInductor package for C++ and Python apps.

The model is captured with torch.export and compiled ahead of time by AOTInductor into one .pt2
file that runs without Python (`torch::inductor::AOTIModelPackageLoader`, see runtimes/cpp) or
from Python (`runtimes.open_runtime("model.pt2")`). The sunet-deploy artifact info travels inside
the package (sunet_deploy.artifact), as JSON and as plain strings for C++ readers.

The package is compiled for one input size (`--size HxW`); `runtimes.predict` letterboxes other
images to it. Dynamic height/width does not export yet: torch.export's shape solver cannot prove
the guards that cropping the decoders' 2x upsampled tensors to their skip tensors creates.

Compilation uses Inductor's freezing (weights as constants: oneDNN prepacked weights and
channels-last layouts on CPU) without its binary folding, which folds a BatchNorm that follows an
equal-channel ConvTranspose2d along the wrong axis in torch 2.13 (SUNet's decoders: wrong logits).
Nothing is written unless the package's outputs match PyTorch FP32 (export.verify) on images of
the checkpoint's own dataset (export.calibration), letterboxed into the compiled size.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch

from export.calibration import dataset_images, verification_batches
from export.cli import parse_export_args
from export.common import check_writable
from export.heads import LabelsHead
from export.verify import Verification, verify
from sunet_deploy.artifact import ArtifactInfo, info_to_strings, labels_dtype
from sunet_deploy.checkpoint import CheckpointError, load_model
from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from sunet_deploy.data.selection import DatasetChoice
from sunet_deploy.fileio import apply_umask
from sunet_deploy.formats import AotiRecipe


class AotiExportError(RuntimeError):
    """The package was compiled but failed verification; nothing was written."""


@dataclass(frozen=True)
class AotiExport:
    """What `export_aoti` wrote, and the evidence that it is right."""

    path: Path
    info: ArtifactInfo
    verification: Verification
    seconds: float

    def report(self) -> str:
        size_mb = self.path.stat().st_size / 2**20
        return (f"{self.verification.report()}\nwrote {self.path} ({size_mb:.1f} MiB, "
                f"{self.info.describe_shapes()}) in {self.seconds:.1f} s")


@contextmanager
def compile_settings():
    """Inductor configuration of every package: freezing without binary folding, one compile thread
    (no pool of compile workers left running after the export returns)."""
    from torch._inductor.fx_passes import freezing_patterns
    from torch._inductor.pattern_matcher import PatternMatcherPass

    freezing_patterns.lazy_init()  # registers the patterns into the real pass first (once per process)
    with torch._inductor.config.patch(freezing=True, compile_threads=1), \
            mock.patch.object(freezing_patterns, "binary_folding_pass", PatternMatcherPass()):
        yield


def export_aoti(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    recipe: AotiRecipe = AotiRecipe(),
    *,
    images: DatasetChoice | None = None,
    verify_images: int = 4,
    seed: int = 0,
) -> AotiExport:
    """Compile a checkpoint into a verified AOTInductor package at `output` (written atomically).

    Verification runs at least `verify_images` images of `images` (default: the checkpoint's own
    dataset), `recipe.batch` at a time. Raises CheckpointError, ValueError (bad arguments, an unreadable
    dataset), OSError, or AotiExportError (verification).
    """
    start = time.perf_counter()
    output = Path(output)
    size, batch, device, output_kind = recipe.size, recipe.batch, recipe.device, recipe.output_kind
    if output.suffix != ".pt2":
        raise ValueError(f"{output}: an AOTInductor package must end in .pt2")
    check_writable(output)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda needs a CUDA build of PyTorch and a visible GPU")
    model, ckpt = load_model(checkpoint)
    info = ckpt.artifact_info("aoti", output_kind, "fp32", (batch, 3, *size))
    meta = info.metadata
    head = LabelsHead(model, labels_dtype(meta.num_classes)) if output_kind == "labels" else model
    wrapped = head.to(device).eval()
    # AOTInductor writes the package in place; compile to a temporary name, then rename.
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.stem}.", suffix=".pt2")
    os.close(fd)
    try:
        with torch.no_grad(), compile_settings():
            program = torch.export.export(wrapped, (torch.randn(batch, 3, *size, device=device),))
            torch._inductor.aoti_compile_and_package(program, package_path=tmp,
                                                     inductor_configs={"aot_inductor.metadata": info_to_strings(info)})
        drawn = dataset_images(meta, images, batch * math.ceil(verify_images / batch), seed)
        batches = verification_batches(drawn, meta, size, batch)
        verification = verify(_package_runner(tmp, device), model, batches, "fp32", meta.classes)
        if not verification.passed:
            raise AotiExportError(verification.report() + "\nexport failed verification, nothing written:\n  "
                                  + "\n  ".join(verification.failures))
        apply_umask(tmp)  # mkstemp's 0600 would hide the package from other users
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return AotiExport(output, info, verification, time.perf_counter() - start)


def _package_runner(path: str, device: str):
    package = torch._inductor.aoti_load_package(path)

    def run(batch):
        with torch.inference_mode():
            return package(torch.from_numpy(batch).to(device)).cpu().numpy()

    return run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parse_export_args(argv, "python -m export.aoti", __doc__, ("checkpoint", "sunet-deploy .safetensors checkpoint"),
                             "package to write (.pt2)", AotiRecipe, images=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    h, w = args.size
    print(f"compiling {args.checkpoint} with AOTInductor for {args.device}, input {args.batch}x3x{h}x{w} "
          "(about a minute for sunet_tiny, several for sunet64 on a small CPU)", flush=True)
    try:
        result = export_aoti(args.checkpoint, args.output, args.recipe, images=args.images,
                             verify_images=args.verify_images, seed=args.seed)
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AotiExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(result.report())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
