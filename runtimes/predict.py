"""`python -m runtimes.predict MODEL INPUT... -o OUTDIR`: segment images, folders and videos.

For every image it writes `<name>_mask.png` (palette PNG whose pixel values are class indices)
and `<name>_overlay.jpg`, mirroring the input's path under OUTDIR; for a video, one mask per frame
and an overlay video. Any runtime: the model file's type picks it, and the runtime options below
configure it (an option of another runtime is an error). Pre- and post-processing come from the
model's metadata, so every runtime's masks differ only by the engine. A model served by Triton
(triton://HOST:PORT/MODEL) is used like a file; one that takes encoded images
(export.triton --io image) is sent each image file as it is and returns its mask.

Every mask has the size of its image. JPEGs are turned as their EXIF orientation says (as photo
viewers show them). By default each image runs whole, in one call. --tile runs it in overlapping
windows (their softmax probabilities averaged where they overlap), --scales and --flip add views,
band by band so that memory does not grow with the image (docs/inference.md); a model trained on
crops should be run with --tile on images much larger than its crop (a warning says so). An
artifact built for one input size (an AOTInductor package, a `--static` ONNX model, an engine
profile) gets windows of its size by default, measured better than letterboxing (scaling the image
to fit, padded with the mean colour), which --letterbox still does. An image that fails is one
"skipped" line and the run goes on. The model is opened and loaded before anything is written: a
model that cannot be (missing, foreign, truncated, of another architecture, a served model that is
not there) is one "error:" line, exit 2, and no output folder. predict_summary.json is written once
the run has started: it counts what was written, lists what was skipped, and says what stopped the
run if something did. Earlier outputs are never replaced without --overwrite.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sunet_deploy import formats
from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE, first_line
from sunet_deploy.fileio import atomic_path, atomic_write_bytes
from sunet_deploy.flags import add_flag
from sunet_deploy.formats import Format
from sunet_deploy.pipeline.images import ImageError
from sunet_deploy.pipeline.masks import output_to_mask
from sunet_deploy.pipeline.normalize import Normalization
from sunet_deploy.pipeline.palettes import overlay, save_palette_png
from sunet_deploy.progress import progress
from sunet_deploy.protocol import (
    WARN_FACTOR,
    Protocol,
    ProtocolError,
    add_protocol_flags,
    much_larger,
    protocol_asked,
    protocol_from_args,
)
from sunet_deploy.tiling import InferModel, segment

from . import ArtifactError, Runtime, RuntimeUnavailable, format_for, open_runtime, runtime_row
from .cluster import WorkerLoadError, require_ray, run_cluster
from .inputs import InputError, Job, existing_outputs, plan_jobs
from .large import HUGE_FLAG, allow_huge_images, finished, read_whole, run_large
from .options import COMMON, RuntimeOptions, add_flags, given_flags, values_from_args
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

    def __init__(self, runtime: Runtime, protocol: Protocol | None = None, resume: bool = False) -> None:
        self.runtime = runtime
        self.protocol = protocol
        self.resume = resume
        self.resumed: list[str] = []  # inputs an earlier run finished (--resume)
        self.large: list[dict] = []  # what runtimes.large.run_large reports of each large input
        meta = runtime.metadata
        self.normalize = Normalization.for_artifact(runtime.info)
        self.engine = InferModel.for_uint8(runtime.infer, runtime.output_kind, meta.num_classes, meta.mean, meta.std)
        self.palette = np.asarray(meta.palette, dtype=np.uint8)
        self.latencies_ms: list[float] = []
        self.letterboxed = 0
        self.exif_rotated: list[str] = []
        self.large_untiled: list[str] = []

    def mask(self, image: np.ndarray) -> np.ndarray:
        if self.protocol is not None:
            start = time.perf_counter()
            mask = segment(image, self.engine, self.protocol)
            self.latencies_ms.append((time.perf_counter() - start) * 1000)
            return mask
        batch, geometries = self.normalize(image)
        self.letterboxed += geometries[0].resized != geometries[0].original
        out = self.runtime.infer(batch)
        self.latencies_ms.append(self.runtime.last_timing.total_ms)
        return output_to_mask(out, self.runtime.output_kind, geometries)[0]

    def write_image_result(self, image: np.ndarray, mask: np.ndarray, job: Job) -> None:
        """The mask and the overlay, each whole or not at all (a killed run leaves nothing --resume takes as done)."""
        mask_path, overlay_path = job.outputs()
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(mask_path) as tmp:
            save_palette_png(tmp, mask, self.palette)
        blended = cv2.cvtColor(overlay(image, mask, self.palette), cv2.COLOR_RGB2BGR)
        with atomic_path(overlay_path) as tmp:
            if not cv2.imwrite(str(tmp), blended):
                raise OSError(f"{overlay_path}: OpenCV could not write the overlay")

    def check_size(self, image: np.ndarray, job: Job) -> None:
        """Warn (one line, first time) when an image run whole is much larger than the training crop."""
        crop = self.runtime.metadata.crop_size
        if self.protocol is None and much_larger(image.shape[:2], crop):
            self.large_untiled.append(str(job.source))
            if len(self.large_untiled) == 1:
                tqdm.write(f"warning: {job.source} is {image.shape[1]}x{image.shape[0]}, over {WARN_FACTOR}x the "
                           f"{crop}-pixel crops the model was trained on, and runs whole: pass --tile for windows "
                           "of the crop size (the summary counts every such input)", file=sys.stderr)  # fmt: skip

    def run_image(self, job: Job) -> None:
        image, orientation = read_whole(job.source)
        if orientation != 1:
            self.exif_rotated.append(str(job.source))
        self.check_size(image, job)
        self.write_image_result(image, self.file_mask(image, job.source), job)

    def file_mask(self, image: np.ndarray, source: Path) -> np.ndarray:
        """The mask of `image`, read from the file `source`."""
        return self.mask(image)

    def run_video(self, job: Job) -> None:
        frames_dir, video_path = job.outputs()
        frames_dir.mkdir(parents=True, exist_ok=True)
        writer = None
        try:
            for index, frame in enumerate(progress(video_frames(job.source), desc=job.source.name, unit="frame",
                                               leave=False)):  # fmt: skip
                if index == 0:
                    self.check_size(frame, job)
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
        if self.resume and finished(job):
            self.resumed.append(str(job.source))
        elif job.large:
            self.large.append(run_large(self, job, self.resume))
        else:
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


def predictor_for(runtime: Runtime, protocol: Protocol | None = None, resume: bool = False) -> Predictor:
    return EncodedPredictor(runtime, resume=resume) if runtime.takes_images else Predictor(runtime, protocol, resume)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtimes.predict", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model artifact: .safetensors checkpoint, .onnx, .engine/.plan, .pt2, or a "
                        "served model: triton://HOST:PORT/MODEL (HTTP), triton+grpc://HOST:PORT/MODEL (gRPC)")
    parser.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or videos")
    add_flag(parser, "--output", short="-o", required=True, help="folder for masks and overlays")
    again = parser.add_mutually_exclusive_group()
    add_flag(again, "--overwrite", help="replace outputs of an earlier run")
    add_flag(again, "--resume", help="go on with an interrupted run: inputs whose outputs are complete are not run "
             "again, a large image goes on from its last finished stripe")
    parser.add_argument("--runtime", choices=[f.runtime for f in formats.formats()],
                        help="the runtime that opens MODEL (default: its file type's); openvino opens .onnx files too")
    parser.add_argument("--cluster", metavar="local|ADDRESS", help="run on Ray: 'local' starts a cluster of 2 workers "
                        "for the run, ADDRESS (HOST:PORT) joins a running one (runtimes/cluster.py, docs/inference.md)")
    parser.add_argument(HUGE_FLAG, action="store_true", help="read images over Pillow's decompression-bomb limit "
                        "(179 Mpx) whole; a tiled TIFF or zarr array is read in parts without it (docs/inference.md)")
    add_protocol_flags(parser, letterbox=True)
    add_flags(parser)
    return parser.parse_args(argv)


def runtime_options(args: argparse.Namespace, fmt: Format) -> RuntimeOptions:
    """The options of the runtime that opens args.model (its format `fmt`; --runtime picks another runtime that
    reads it); a flag of another runtime is an error, and a common one (--threads, --device) is taken as that
    runtime honours it."""
    cls = (runtime_row(args.model, fmt, args.runtime) if args.runtime else fmt).options_class()
    fields = {f.name for f in dataclasses.fields(cls)}
    foreign = given_flags(args) - fields - set(COMMON)
    if foreign:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in sorted(foreign))
        raise ValueError(f"{flags} do(es) not apply to the {cls.runtime} runtime that opens {args.model}")
    common = {name: getattr(args, name) for name in COMMON if hasattr(args, name) and name not in fields}
    try:
        return cls.create(**values_from_args(cls, args), **common)
    except ValueError as exc:
        raise ValueError(f"{args.model}: {exc}") from exc


@contextlib.contextmanager
def opening(model: str, runtime: str, step: str) -> Iterator[None]:
    """Whatever stops `step` ("opened", "loaded") of the model is one ArtifactError line naming it (or
    RuntimeUnavailable, saying of this model what to install)."""
    try:
        yield
    except ArtifactError:
        raise
    except RuntimeUnavailable as exc:
        raise RuntimeUnavailable(f"{model}: {exc}") from exc
    except Exception as exc:  # an engine's own error types (ORT, torch, TensorRT, tritonclient)
        reason = first_line(exc).removeprefix(f"{model}: ")
        raise ArtifactError(model, f"cannot be {step} by the {runtime} runtime ({reason})") from exc


def prepare(args: argparse.Namespace) -> tuple[list[Job], Runtime, Protocol | None]:
    """Plan every output, open the runtime and choose the protocol; raises before anything is written
    (`load` then loads the model, still before anything is written)."""
    jobs = plan_jobs(args.inputs, args.output)
    earlier = existing_outputs(jobs) + ([args.output / SUMMARY] if (args.output / SUMMARY).exists() else [])
    if earlier and not (args.overwrite or args.resume):
        raise InputError(f"{earlier[0]} exists ({len(earlier)} output(s) of an earlier run in {args.output}); "
                         "choose another -o folder, or pass --overwrite to replace them")
    fmt = format_for(args.model)  # the one lookup of the model's format
    options = runtime_options(args, fmt)
    with opening(args.model, fmt.runtime, "opened"):
        runtime = open_runtime(args.model, options, fmt=fmt)
    if runtime.takes_images:  # the server decodes and runs each image whole
        if protocol_asked(args):
            raise ProtocolError(f"{args.model} takes encoded images (--io image); --tile, --tile-overlap, --scales "
                                "and --flip need a model served with --io tensor")  # fmt: skip
        return jobs, runtime, None
    return jobs, runtime, protocol_from_args(args, runtime.info)


def load(runtime: Runtime) -> None:
    """Load the model (activate the runtime) before anything is written: a model that opens but cannot
    load (weights, a package's compiled code, an engine, a server) is one line too."""
    with opening(str(runtime.path), runtime.name, "loaded"):
        runtime.activate()


def run_jobs(jobs: list[Job], runtime: Runtime, out_dir: Path, protocol: Protocol | None = None,
             resume: bool = False) -> dict:  # fmt: skip
    """Every job, each failure one 'skipped' line; returns the summary. The runtime is activated first if it
    is not yet (main loads it), so the output folder and the summary exist only once the run has started;
    the summary counts what was written and says what stopped the run if something did."""
    runtime.activate()
    out_dir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    written, stopped = 0, None
    predictor = None
    try:
        with runtime:
            predictor = predictor_for(runtime, protocol, resume)
            for job in progress(jobs, desc=f"predict ({runtime.name})", unit="file"):
                try:
                    predictor.run(job)
                    written += 1
                except Exception as exc:  # one bad input must not stop the others
                    failures.append(f"{job.source}: {first_line(exc)}")
                    tqdm.write(f"skipped: {failures[-1]}", file=sys.stderr)
    except BaseException as exc:  # an interrupt, or the runtime failing to close
        stopped = first_line(exc)
        raise
    finally:
        summary = _summary(jobs, runtime, predictor, written, failures, stopped)
        write_summary(out_dir, summary)
    return summary


def write_summary(out_dir: Path, summary: dict) -> None:
    atomic_write_bytes(out_dir / SUMMARY, (json.dumps(summary, indent=2) + "\n").encode())


def _summary(jobs: list[Job], runtime: Runtime, predictor: Predictor | None, written: int, failures: list[str],
             stopped: str | None) -> dict:  # fmt: skip
    latencies = predictor.latencies_ms if predictor else []
    return {
        "runtime": runtime.name, "model": str(runtime.path), "artifact": runtime.info.describe_shapes(),
        "inputs": len(jobs), "written": written, "skipped": failures, "stopped": stopped,
        "exif_rotated": predictor.exif_rotated if predictor else [],
        "letterboxed_images": predictor.letterboxed if predictor else 0,
        "protocol": ({**predictor.protocol.to_dict(), "description": predictor.protocol.describe()}
                     if predictor and predictor.protocol else None),
        "large_untiled_images": predictor.large_untiled if predictor else [],
        "latency_ms": latency_summary(latencies) if latencies else None,
        "resumed": predictor.resumed if predictor else [], "large_images": predictor.large if predictor else [],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.allow_huge_images:
        allow_huge_images()
    try:
        if args.cluster:
            require_ray()
        jobs, runtime, protocol = prepare(args)
        if args.cluster:
            summary = predict_on_cluster(args, jobs, runtime, protocol)
        else:
            load(runtime)
    except (InputError, ArtifactError, RuntimeUnavailable, ValueError, OSError, WorkerLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.cluster:
        summary = run_jobs(jobs, runtime, args.output, protocol, args.resume)
    print(_describe(summary, args.output))
    return EXIT_FAILED if summary["skipped"] else EXIT_OK


def predict_on_cluster(args: argparse.Namespace, jobs: list[Job], runtime: Runtime, protocol: Protocol | None) -> dict:
    """run_jobs on Ray (runtimes.cluster); the summary is written as run_jobs writes it. The model is loaded
    here first, as by run_jobs, unless it runs on CUDA: the GPU workers load that (this machine may have no
    GPU); a worker that cannot load it stops the run (WorkerLoadError)."""
    if not runtime.options.on_cuda:
        load(runtime)
    summary: dict = {}
    try:
        summary, _ = run_cluster(args.cluster, jobs, runtime, protocol, args.resume, args.output, predictor_for, _summary)
    finally:
        summary = summary or _summary(jobs, runtime, None, 0, [], f"the cluster run stopped: {sys.exc_info()[1]}")
        write_summary(args.output, summary)
    return summary


def _describe(summary: dict, out_dir: Path) -> str:
    lines = [f"{summary['written']} of {summary['inputs']} inputs written to {out_dir} ({SUMMARY} has the details)"]
    if summary["latency_ms"]:
        lat = summary["latency_ms"]
        lines.append(f"{summary['runtime']} inference latency per image: median {lat['median']:.2f} ms, "
                     f"p90 {lat['p90']:.2f} ms (n={lat['count']})")
    if summary["exif_rotated"]:
        lines.append(f"{len(summary['exif_rotated'])} image(s) turned as their EXIF orientation says")
    if summary["protocol"]:
        lines.append(f"inference protocol: {summary['protocol']['description']}, blended at the image's size")
    if summary["large_untiled_images"]:
        lines.append(f"{len(summary['large_untiled_images'])} input(s) much larger than the training crop ran whole "
                     "(--tile runs them in windows)")
    if summary["resumed"]:
        lines.append(f"{len(summary['resumed'])} input(s) finished by an earlier run, not run again (--resume)")
    for large in summary["large_images"]:
        lines.append(f"{large['source']}: {large['size'][0]}x{large['size'][1]}, {large['mpx_per_s']} Mpx/s "
                     f"({large['stripes_resumed']} of {large['stripes']} stripes from an earlier run)")
    for worker in (summary.get("cluster") or {}).get("workers", []):
        lines.append(f"worker {worker['worker']}: {worker['units']} unit(s), {worker['mpx']} Mpx, {worker['mpx_per_s']} Mpx/s")
    if summary["letterboxed_images"]:
        lines.append(f"{summary['letterboxed_images']} image(s) letterboxed into the artifact's "
                     f"{summary['artifact']}; masks are at the original size")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
