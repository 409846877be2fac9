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
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from sunet_deploy.bigimage import (
    LargeImageError,
    MaskStore,
    job_record,
    open_lazy,
    write_overview,
    write_tiff_mask,
    zarr_complete,
)
from sunet_deploy.preprocess import ImageError, read_oriented_image
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


def run_large(predictor: Any, job: Job, resume: bool = False) -> dict:
    """Segment one large input into its mask store, then write the mask and the overview; returns
    what the summary records of it (size, stripes resumed, seconds, Mpx/s)."""
    if predictor.runtime.takes_images:
        raise LargeImageError("a model served with --io image takes whole encoded images; serve it with --io tensor "
                              "to predict tiled TIFFs and zarr arrays")  # fmt: skip
    if predictor.engine.num_classes > 256:
        raise LargeImageError(f"{predictor.engine.num_classes} classes do not fit a palette mask (at most 256)")
    protocol = large_protocol(predictor)
    mask_path, overview_path = job.outputs()
    store_path = job.partial_store
    start = time.perf_counter()
    with open_lazy(job.source) as image:
        height, width = image.shape[:2]
        stripe = stripe_width(width, protocol)
        if not resume and store_path.exists():  # prepare() refused it unless --overwrite was given
            shutil.rmtree(store_path)
        job_path = str(predictor.runtime.path)
        record = job_record((height, width), job_path, protocol.to_dict(), stripe)
        job.stem.parent.mkdir(parents=True, exist_ok=True)
        store = MaskStore.open(store_path, (height, width), (protocol.window[0], stripe), record, resume)
        starts = stripe_starts(width, protocol)
        todo = store.todo(starts)
        done_px = sum(height * min(stripe, width - c0) for c0 in starts if c0 not in todo)
        with tqdm(total=height * width, initial=done_px, unit="px", unit_scale=True, desc=job.source.name,
                  leave=False) as bar:  # fmt: skip
            for c0 in todo:
                segment(image, predictor.engine, protocol, out=store.array, stripes=[c0])
                store.finish(c0)
                bar.update(height * min(stripe, width - c0))
        compute_s = time.perf_counter() - start
        if mask_path.suffix == ".tif":
            write_tiff_mask(store.array, mask_path, predictor.palette)
        write_overview(image, store.array, predictor.palette, overview_path)
        if store_path != mask_path:
            shutil.rmtree(store_path)
        else:
            store.complete()
    computed_px = height * width - done_px
    return {"source": str(job.source), "size": [width, height], "stripes": len(starts),
            "stripes_resumed": len(starts) - len(todo), "compute_s": round(compute_s, 3),
            "total_s": round(time.perf_counter() - start, 3),
            "mpx_per_s": round(computed_px / 1e6 / compute_s, 3) if computed_px and compute_s > 0 else None}  # fmt: skip
