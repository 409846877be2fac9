"""predict on images larger than memory, and the checks around reading an image whole.

A large input (a tiled TIFF / BigTIFF / OME-TIFF or a zarr array: runtimes.inputs.Job.large) always
runs under a windowed protocol (the one asked for, else windows of the training crop or of the
artifact's fixed size) and is read, a band of a stripe at a time, from the file; its mask is built on
disk (sunet_deploy.bigimage.MaskStore), stripe by stripe, so memory does not grow with the image.
With --resume the stripes already finished are read from that store and not recomputed, and an input
whose outputs are complete is not run again.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sunet_deploy.bigimage import (
    LargeImageError,
    LazyImage,
    MaskStore,
    job_record,
    open_lazy,
    write_overview,
    write_tiff_mask,
    zarr_complete,
)
from sunet_deploy.pipeline.images import ImageError, read_oriented_image
from sunet_deploy.progress import progress
from sunet_deploy.protocol import TILE_AUTO, Protocol, artifact_protocol
from sunet_deploy.tiling import segment, stripe_starts, stripe_width

from .inputs import Job

HUGE_FLAG = "--allow-huge-images"


def allow_huge_images() -> None:
    """Lift Pillow's decompression-bomb guard (images over 2 x Image.MAX_IMAGE_PIXELS, 179 Mpx, refused)."""
    Image.MAX_IMAGE_PIXELS = None


def read_whole(path: Path) -> tuple[np.ndarray, int]:
    """read_oriented_image, with Pillow's refusal of a huge image as one line that names the way out."""
    try:
        return read_oriented_image(path)
    except Image.DecompressionBombError:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # open() itself refuses it
        try:
            with Image.open(path) as probe:  # the header only
                w, h = probe.size
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        raise ImageError(path, f"{w}x{h} ({w * h / 1e6:.0f} Mpx) is over Pillow's decompression-bomb limit of "
                         f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpx: pass {HUGE_FLAG} to read it whole, or give "
                         "it as a tiled TIFF or zarr array to read it in parts (docs/inference.md)") from None  # fmt: skip


def finished(job: Job) -> bool:
    """Whether an earlier run wrote all of `job`'s outputs (a video is never taken as finished)."""
    if job.video or not all(path.exists() for path in job.outputs()):
        return False
    if not job.large:
        return True
    store = job.partial_store
    return zarr_complete(store) if store == job.mask_path else not store.exists()


def large_protocol(predictor: Any) -> Protocol:
    """The predictor's protocol when it has windows, else windows of the artifact's size or training crop."""
    protocol = predictor.protocol
    if protocol is not None and protocol.window is not None:
        return protocol
    return artifact_protocol(predictor.runtime.info, TILE_AUTO)


@dataclass
class LargeRun:
    """One large input being segmented: its lazy image, its mask store, and the stripes left to do."""

    job: Job
    image: LazyImage
    store: MaskStore
    protocol: Protocol
    starts: list[int]
    todo: list[int]
    stripe: int
    started: float

    def stripe_pixels(self, c0: int) -> int:
        return self.image.shape[0] * min(self.stripe, self.image.shape[1] - c0)


def open_large(predictor: Any, job: Job, resume: bool = False) -> LargeRun:
    """Open the input and create (or, resuming, reopen) its mask store; nothing is computed yet."""
    if predictor.runtime.takes_images:
        raise LargeImageError("a model served with --io image takes whole encoded images; serve it with --io tensor "
                              "to predict tiled TIFFs and zarr arrays")  # fmt: skip
    if predictor.engine.num_classes > 256:
        raise LargeImageError(f"{predictor.engine.num_classes} classes do not fit a palette mask (at most 256)")
    protocol = large_protocol(predictor)
    started = time.perf_counter()
    image = open_lazy(job.source)
    try:
        height, width = image.shape[:2]
        stripe = stripe_width(width, protocol)
        if not resume and job.partial_store.exists():  # prepare() refused it unless --overwrite was given
            shutil.rmtree(job.partial_store)
        record = job_record((height, width), str(predictor.runtime.path), protocol.to_dict(), stripe)
        job.stem.parent.mkdir(parents=True, exist_ok=True)
        store = MaskStore.open(job.partial_store, (height, width), (protocol.window[0], stripe), record, resume)
    except BaseException:
        image.close()
        raise
    starts = stripe_starts(width, protocol)
    return LargeRun(job, image, store, protocol, starts, store.todo(starts), stripe, started)


def attach_large(predictor: Any, job: Job) -> LargeRun:
    """A worker's hold on a large input whose store open_large made (on another machine, perhaps): to run stripes."""
    protocol = large_protocol(predictor)
    image = open_lazy(job.source)
    store = MaskStore.attach(job.partial_store)
    return LargeRun(job, image, store, protocol, [], [], stripe_width(image.shape[1], protocol), time.perf_counter())


def run_stripe(predictor: Any, run: LargeRun, c0: int) -> None:
    """Segment the stripe at column c0 into the store and mark it done (a worker's unit of a large image)."""
    segment(run.image, predictor.engine, run.protocol, out=run.store.array, stripes=[c0])
    run.store.finish(c0)


def finish_large(run: LargeRun, palette: np.ndarray, compute_s: float) -> dict:
    """Write the mask (TIFF) and the overview from a store whose every stripe is done; returns what the
    summary records of the input (size, stripes resumed, seconds, Mpx/s of the stripes computed)."""
    job, store = run.job, run.store
    mask_path, overview_path = job.outputs()
    left = store.todo(run.starts)
    if left:
        raise LargeImageError(f"{job.source}: stripes at columns {left[:4]} were not computed")
    with run.image:
        if mask_path.suffix == ".tif":
            write_tiff_mask(store.array, mask_path, palette)
        write_overview(run.image, store.array, palette, overview_path)
    if job.partial_store != mask_path:
        shutil.rmtree(job.partial_store)
    else:
        store.complete()
    height, width = run.image.shape[:2]
    computed_px = sum(run.stripe_pixels(c0) for c0 in run.todo)
    return {"source": str(job.source), "size": [width, height], "stripes": len(run.starts),
            "stripes_resumed": len(run.starts) - len(run.todo), "compute_s": round(compute_s, 3),
            "total_s": round(time.perf_counter() - run.started, 3),
            "mpx_per_s": round(computed_px / 1e6 / compute_s, 3) if computed_px and compute_s > 0 else None}  # fmt: skip


def run_large(predictor: Any, job: Job, resume: bool = False) -> dict:
    """Segment one large input stripe by stripe into its mask store, then write the mask and the overview."""
    run = open_large(predictor, job, resume)
    height, width = run.image.shape[:2]
    start = time.perf_counter()
    done_px = height * width - sum(run.stripe_pixels(c0) for c0 in run.todo)
    with progress(total=height * width, initial=done_px, unit="px", unit_scale=True, desc=job.source.name,
              leave=False) as bar:  # fmt: skip
        for c0 in run.todo:
            run_stripe(predictor, run, c0)
            bar.update(run.stripe_pixels(c0))
    return finish_large(run, predictor.palette, time.perf_counter() - start)
