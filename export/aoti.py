"""`python -m export.aoti CHECKPOINT -o model.pt2`: an AOTInductor package for C++ and Python apps.

The model is captured with torch.export and compiled ahead of time by AOTInductor into one .pt2
file that runs without Python (`torch::inductor::AOTIModelPackageLoader`, see runtimes/cpp) or
from Python (`torch._inductor.aoti_load_package`). The sunet-deploy metadata travels inside the
package: the full ModelMetadata JSON for Python, and the same facts as plain strings (mean, std,
palette, ...) so that a C++ reader needs no JSON parser.

The package is compiled for one input size (`--size HxW`). Dynamic height/width does not export
yet: torch.export's shape solver cannot prove the guards that cropping the decoders' 2x upsampled
tensors to their skip tensors creates, and specialises or fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from export.heads import LabelsHead
from sunet_deploy.checkpoint import CheckpointError, load_model
from sunet_deploy.cli import parse_size
from sunet_deploy.metadata import ModelMetadata

METADATA_JSON_KEY = "sunet_deploy.metadata"
"""The package metadata key holding the full ModelMetadata JSON."""


def package_metadata(meta: ModelMetadata, input_shape: tuple[int, int, int, int]) -> dict[str, str]:
    """ModelMetadata as the string map AOTInductor stores in a package."""
    return {
        METADATA_JSON_KEY: meta.to_json(),
        "sunet_deploy.format": "sunet-deploy-aoti-1",
        "sunet_deploy.output": meta.output,
        "sunet_deploy.num_classes": str(meta.num_classes),
        "sunet_deploy.mean": " ".join(repr(float(v)) for v in meta.mean),
        "sunet_deploy.std": " ".join(repr(float(v)) for v in meta.std),
        "sunet_deploy.palette": " ".join(str(int(c)) for color in meta.palette for c in color),
        "sunet_deploy.classes": "\n".join(meta.classes),
        "sunet_deploy.input_color": meta.input_color,
        "sunet_deploy.resize_policy": meta.resize_policy,
        "sunet_deploy.source_sha256": meta.source_sha256,
        "sunet_deploy.input_shape": "x".join(map(str, input_shape)),
    }


def export_aoti(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    size: tuple[int, int] = (512, 512),
    batch: int = 1,
    device: str = "cpu",
    output_kind: str = "logits",
) -> Path:
    """Compile a checkpoint into an AOTInductor package at `output` (written atomically)."""
    output = Path(output)
    if output.suffix != ".pt2":
        raise ValueError(f"{output}: an AOTInductor package must end in .pt2")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda needs a CUDA build of PyTorch and a visible GPU")
    model, ckpt = load_model(checkpoint)
    meta = dataclasses.replace(ckpt.meta, output=output_kind, source_sha256=ckpt.sha256)
    if output_kind == "labels":
        model = LabelsHead(model)
    model = model.to(device).eval()
    example = torch.randn(batch, 3, *size, device=device)
    with torch.no_grad():
        program = torch.export.export(model, (example,))
        configs = {"aot_inductor.metadata": package_metadata(meta, tuple(example.shape))}
        # AOTInductor writes the package in place; compile to a temporary name, then rename.
        fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.stem}.", suffix=".pt2")
        os.close(fd)
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=tmp, inductor_configs=configs)
            os.replace(tmp, output)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return output


def read_package_metadata(path: str | os.PathLike) -> ModelMetadata:
    """The ModelMetadata stored in a package written by `export_aoti`."""
    loaded = torch._inductor.aoti_load_package(str(path))
    text = loaded.get_metadata().get(METADATA_JSON_KEY)
    if text is None:
        raise ValueError(f"{path}: an AOTInductor package without sunet-deploy metadata")
    return ModelMetadata.from_json(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export.aoti", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="sunet-deploy .safetensors checkpoint")
    parser.add_argument("-o", "--output", type=Path, required=True, help="package to write (.pt2)")
    parser.add_argument("--size", type=parse_size, default=(512, 512), metavar="HxW",
                        help="the input height x width compiled in; images must have this size (default 512x512)")
    parser.add_argument("--batch", type=int, default=1, help="batch size compiled in (default 1)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device the code is compiled for")
    parser.add_argument("--output-kind", default="logits", choices=("logits", "labels"),
                        help="logits (N,C,H,W float32) or labels (N,H,W int64, argmax built in); default logits")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    h, w = args.size
    print(f"compiling {args.checkpoint} with AOTInductor for {args.device}, input {args.batch}x3x{h}x{w} "
          "(about a minute for sunet_tiny, several for sunet64 on a small CPU)")
    try:
        path = export_aoti(args.checkpoint, args.output, args.size, args.batch, args.device, args.output_kind)
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size_mb = path.stat().st_size / 2**20
    print(f"wrote {path} ({size_mb:.1f} MiB) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
