"""`python -m runtimes.predict MODEL INPUT... -o OUTDIR`: segment images, folders and videos.

For every image it writes `<name>_mask.png` (palette PNG whose pixel values are class indices)
and `<name>_overlay.jpg`, mirroring the input's path under OUTDIR; for a video, one mask per frame
and an overlay video. Any runtime: the model file's type picks it, and the runtime options below
configure it (an option of another runtime is an error). Pre- and post-processing come from the
model's metadata, so every runtime's masks differ only by the engine. A model served by Triton
(triton://HOST:PORT/MODEL) is used like a file; one that takes encoded images
(export.triton --io image) is sent each image file as it is and returns its mask.

Every mask has the size of its image. JPEGs are turned as their EXIF orientation says (as photo
viewers show them). An artifact built for one input size (an AOTInductor package, a `--static`
ONNX model, an engine whose profile excludes the image) gets the image letterboxed: scaled with
its aspect ratio kept to fit, padded with the mean colour, and the logits mapped back to the
original size (docs/export.md says what this costs in accuracy). An image that fails is one
"skipped" line; the run goes on and predict_summary.json is always written. Earlier outputs are
never replaced without --overwrite.
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

from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE
from sunet_deploy.preprocess import (
    ImageError,
    Normalization,
    output_to_mask,
    overlay,
    read_oriented_image,
    save_palette_png,
)

from . import ArtifactError, Runtime, RuntimeUnavailable, open_runtime, runtime_for
from .inputs import InputError, Job, existing_outputs, plan_jobs
from .options import RuntimeOptions, add_flags, from_args, given_flags, options_class
from .stats import latency_summary

SUMMARY = "predict_summary.json"


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
        self.normalize = Normalization.for_artifact(runtime.info)
        self.palette = np.asarray(runtime.metadata.palette, dtype=np.uint8)
        self.latencies_ms: list[float] = []
        self.letterboxed = 0
        self.exif_rotated: list[str] = []

    def mask(self, image: np.ndarray) -> np.ndarray:
        batch, geometries = self.normalize(image)
        self.letterboxed += geometries[0].resized != geometries[0].original
        out = self.runtime.infer(batch)
        self.latencies_ms.append(self.runtime.last_timing.total_ms)
        return output_to_mask(out, self.runtime.output_kind, geometries)[0]

    def write_image_result(self, image: np.ndarray, mask: np.ndarray, job: Job) -> None:
        job.stem.parent.mkdir(parents=True, exist_ok=True)
        save_palette_png(job.mask_path, mask, self.palette)
        blended = overlay(image, mask, self.palette)
        cv2.imwrite(str(job.outputs()[1]), cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))

    def run_image(self, job: Job) -> None:
        image, orientation = read_oriented_image(job.source)
        if orientation != 1:
            self.exif_rotated.append(str(job.source))
        self.write_image_result(image, self.file_mask(image, job.source), job)

    def file_mask(self, image: np.ndarray, source: Path) -> np.ndarray:
        """The mask of `image`, read from the file `source`."""
        return self.mask(image)

    def run_video(self, job: Job) -> None:
        frames_dir, video_path = job.outputs()
        frames_dir.mkdir(parents=True, exist_ok=True)
        writer = None
        try:
            for index, frame in enumerate(tqdm(video_frames(job.source), desc=job.source.name, unit="frame",
                                               leave=False)):  # fmt: skip
                mask = self.mask(frame)
                save_palette_png(frames_dir / f"frame_{index:06d}_mask.png", mask, self.palette)
                if writer is None:
                    size = (frame.shape[1], frame.shape[0])
                    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
                writer.write(cv2.cvtColor(overlay(frame, mask, self.palette), cv2.COLOR_RGB2BGR))
        finally:
            if writer is not None:
                writer.release()

    def run(self, job: Job) -> None:
        (self.run_video if job.video else self.run_image)(job)


class EncodedPredictor(Predictor):
    """A served image model (export.triton --io image): the server decodes, pre- and post-processes. An
    image file goes as its own bytes (the server reads them as `read_oriented_image` reads the file),
    a video frame as a PNG."""

    def mask(self, image: np.ndarray) -> np.ndarray:
        return self.send(image)

    def file_mask(self, image: np.ndarray, source: Path) -> np.ndarray:
        return self.send(source.read_bytes())

    def send(self, image: bytes | np.ndarray) -> np.ndarray:
        (mask,) = self.runtime.masks([image])
        self.latencies_ms.append(self.runtime.last_timing.total_ms)
        return mask


def predictor_for(runtime: Runtime) -> Predictor:
    return EncodedPredictor(runtime) if runtime.takes_images else Predictor(runtime)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtimes.predict", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model artifact: .safetensors checkpoint, .onnx, .engine/.plan, .pt2, or a "
                        "served model: triton://HOST:PORT/MODEL (HTTP), triton+grpc://HOST:PORT/MODEL (gRPC)")
    parser.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or videos")
    parser.add_argument("-o", "--output", required=True, type=Path, help="folder for masks and overlays")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run")
    add_flags(parser)
    return parser.parse_args(argv)


def runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    """The options of the runtime that opens args.model; a flag of another runtime is an error."""
    cls = options_class(runtime_for(args.model))
    foreign = given_flags(args) - {f.name for f in dataclasses.fields(cls)}
    if foreign:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in sorted(foreign))
        raise ValueError(f"{flags} do(es) not apply to the {cls.runtime} runtime that opens {args.model}")
    return from_args(cls, args)


def prepare(args: argparse.Namespace) -> tuple[list[Job], Runtime]:
    """Plan every output and open the runtime; raises before anything is written."""
    jobs = plan_jobs(args.inputs, args.output)
    earlier = existing_outputs(jobs) + ([args.output / SUMMARY] if (args.output / SUMMARY).exists() else [])
    if earlier and not args.overwrite:
        raise InputError(f"{earlier[0]} exists ({len(earlier)} output(s) of an earlier run in {args.output}); "
                         "choose another -o folder, or pass --overwrite to replace them")
    runtime = open_runtime(args.model, runtime_options(args))
    return jobs, runtime


def run_jobs(jobs: list[Job], runtime: Runtime, out_dir: Path) -> dict:
    """Every job, each failure one 'skipped' line; returns the summary (always written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    predictor = None
    try:
        with runtime:
            predictor = predictor_for(runtime)
            for job in tqdm(jobs, desc=f"predict ({runtime.name})", unit="file"):
                try:
                    predictor.run(job)
                except Exception as exc:  # one bad input must not stop the others
                    failures.append(f"{job.source}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
                    tqdm.write(f"skipped: {failures[-1]}", file=sys.stderr)
    finally:
        summary = _summary(jobs, runtime, predictor, failures)
        (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(jobs: list[Job], runtime: Runtime, predictor: Predictor | None, failures: list[str]) -> dict:
    latencies = predictor.latencies_ms if predictor else []
    return {
        "runtime": runtime.name, "model": str(runtime.path), "artifact": runtime.info.describe_shapes(),
        "inputs": len(jobs), "written": len(jobs) - len(failures), "skipped": failures,
        "exif_rotated": predictor.exif_rotated if predictor else [],
        "letterboxed_images": predictor.letterboxed if predictor else 0,
        "latency_ms": latency_summary(latencies) if latencies else None,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        jobs, runtime = prepare(args)
    except (InputError, ArtifactError, RuntimeUnavailable, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    summary = run_jobs(jobs, runtime, args.output)
    print(_describe(summary, args.output))
    return EXIT_FAILED if summary["skipped"] else EXIT_OK


def _describe(summary: dict, out_dir: Path) -> str:
    lines = [f"{summary['written']} of {summary['inputs']} inputs written to {out_dir} ({SUMMARY} has the details)"]
    if summary["latency_ms"]:
        lat = summary["latency_ms"]
        lines.append(f"{summary['runtime']} inference latency per image: median {lat['median']:.2f} ms, "
                     f"p90 {lat['p90']:.2f} ms (n={lat['count']})")
    if summary["exif_rotated"]:
        lines.append(f"{len(summary['exif_rotated'])} image(s) turned as their EXIF orientation says")
    if summary["letterboxed_images"]:
        lines.append(f"{summary['letterboxed_images']} image(s) letterboxed into the artifact's "
                     f"{summary['artifact']}; masks are at the original size")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
