"""`python -m runtimes.predict MODEL INPUT... -o OUTDIR`: segment images, folders and videos.

For every image it writes `<name>_mask.png` (palette PNG whose pixel values are class indices)
and `<name>_overlay.jpg`; for a video, one mask per frame and an overlay video. Any runtime:
the model file's type picks it, and the runtime options below configure it (an option of another
runtime is an error). Pre- and post-processing come from the model's metadata, so every runtime's
masks differ only by the engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sunet_deploy.preprocess import (
    ImageError,
    Normalization,
    output_to_mask,
    overlay,
    read_image,
    save_palette_png,
)

from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE

from . import ArtifactError, Runtime, RuntimeUnavailable, open_runtime, runtime_for
from .options import OPTIONS, RuntimeOptions, add_flags, from_args, given_flags
from .stats import format_summary, latency_summary

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


class InputError(ValueError):
    pass


def collect_inputs(inputs: list[str]) -> list[Path]:
    """Expand folders (recursively) into image and video files; refuse what is not there."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not found:
                raise InputError(f"{item}: folder holds no images or videos ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    return files


def video_frames(path: Path) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ImageError(path, "cannot be opened as a video")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


class Predictor:
    """Image in, mask out, through any runtime, with the model's own pre/post-processing."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.normalize = Normalization.from_metadata(runtime.metadata)
        self.palette = np.asarray(runtime.metadata.palette, dtype=np.uint8)
        self.latencies_ms: list[float] = []

    def mask(self, image: np.ndarray) -> np.ndarray:
        batch, geometries = self.normalize(image)
        out = self.runtime.infer(batch)
        self.latencies_ms.append(self.runtime.last_timing.total_ms)
        return output_to_mask(out, self.runtime.output_kind, geometries)[0]

    def write_image_result(self, image: np.ndarray, mask: np.ndarray, out_dir: Path, stem: str) -> None:
        save_palette_png(out_dir / f"{stem}_mask.png", mask, self.palette)
        blended = overlay(image, mask, self.palette)
        cv2.imwrite(str(out_dir / f"{stem}_overlay.jpg"), cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))

    def run_image(self, path: Path, out_dir: Path) -> None:
        image = read_image(path)
        self.write_image_result(image, self.mask(image), out_dir, path.stem)

    def run_video(self, path: Path, out_dir: Path) -> None:
        frames_dir = out_dir / path.stem
        frames_dir.mkdir(parents=True, exist_ok=True)
        writer = None
        try:
            for index, frame in enumerate(tqdm(video_frames(path), desc=path.name, unit="frame", leave=False)):
                mask = self.mask(frame)
                save_palette_png(frames_dir / f"frame_{index:06d}_mask.png", mask, self.palette)
                if writer is None:
                    size = (frame.shape[1], frame.shape[0])
                    writer = cv2.VideoWriter(str(out_dir / f"{path.stem}_overlay.mp4"),
                                             cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
                writer.write(cv2.cvtColor(overlay(frame, mask, self.palette), cv2.COLOR_RGB2BGR))
        finally:
            if writer is not None:
                writer.release()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtimes.predict", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model artifact: .safetensors checkpoint, .onnx, .engine/.plan, .pt2")
    parser.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or videos")
    parser.add_argument("-o", "--output", required=True, type=Path, help="folder for masks and overlays")
    add_flags(parser)
    return parser.parse_args(argv)


def runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    """The options of the runtime that opens args.model; a flag of another runtime is an error."""
    cls = OPTIONS[runtime_for(args.model)]
    foreign = given_flags(args) - {f.name for f in dataclasses.fields(cls)}
    if foreign:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in sorted(foreign))
        raise ValueError(f"{flags} do(es) not apply to the {cls.runtime} runtime that opens {args.model}")
    return from_args(cls, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        files = collect_inputs(args.inputs)
        runtime = open_runtime(args.model, runtime_options(args))
        args.output.mkdir(parents=True, exist_ok=True)
    except (InputError, ArtifactError, RuntimeUnavailable, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    failures = []
    with runtime:
        predictor = Predictor(runtime)
        for path in tqdm(files, desc=f"predict ({runtime.name})", unit="file"):
            try:
                if path.suffix.lower() in VIDEO_SUFFIXES:
                    predictor.run_video(path, args.output)
                else:
                    predictor.run_image(path, args.output)
            except (ImageError, ValueError) as exc:
                failures.append(str(exc))
                tqdm.write(f"skipped: {exc}", file=sys.stderr)
    if predictor.latencies_ms:
        print(f"{runtime.name} inference latency per image: {format_summary(latency_summary(predictor.latencies_ms))}")
        summary = {"runtime": runtime.name, "model": str(args.model), "latency_ms": latency_summary(predictor.latencies_ms),
                   "failed": failures}
        (args.output / "predict_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{len(files) - len(failures)} of {len(files)} inputs written to {args.output}")
    return EXIT_FAILED if failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
