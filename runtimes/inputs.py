"""What `runtimes.predict` reads and where each result goes, decided before anything is written.

Folders are searched recursively; each file's outputs mirror its path relative to the folder it
was found in (files named directly go to the top of the output folder). Files of one folder that
share a stem (photo.png, photo.jpg) keep their suffix in the output name. Two inputs that would
still write the same output, or an input inside the output folder, are refused up front; the
output folder is never searched, so a second run does not segment the first run's masks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sunet_deploy.bigimage import is_lazy, mask_suffix

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".zarr"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


class InputError(ValueError):
    """Inputs that cannot be read, or whose outputs would collide; nothing has been written."""


@dataclass(frozen=True)
class Job:
    """One input file and the stem of its outputs (`<stem>_mask.png`, `<stem>_overlay.jpg`, ...). A large
    one (a tiled TIFF or a zarr array, read lazily: runtimes.large) writes `<stem>_mask.tif` (or .zarr)
    and `<stem>_overview.png`."""

    source: Path
    stem: Path
    large: bool = False

    @property
    def video(self) -> bool:
        return self.source.suffix.lower() in VIDEO_SUFFIXES

    def outputs(self) -> list[Path]:
        if self.video:
            return [self.stem, self.stem.with_name(f"{self.stem.name}_overlay.mp4")]
        if self.large:
            return [self.mask_path, self.stem.with_name(f"{self.stem.name}_overview.png")]
        return [self.mask_path, self.stem.with_name(f"{self.stem.name}_overlay.jpg")]

    @property
    def mask_path(self) -> Path:
        return self.stem.with_name(f"{self.stem.name}_mask{mask_suffix(self.source) if self.large else '.png'}")

    @property
    def partial_store(self) -> Path | None:
        """Where a large job's mask is built, chunk by chunk (the mask itself when it is a zarr array)."""
        if not self.large:
            return None
        mask = self.mask_path
        return mask if mask.suffix == ".zarr" else self.stem.with_name(f"{self.stem.name}_mask.partial.zarr")


def plan_jobs(inputs: list[str | Path], out_dir: Path) -> list[Job]:
    """One Job per image or video under `inputs`, with unique outputs under `out_dir`."""
    out_dir = Path(out_dir).resolve()
    found = [(path, relative) for item in map(Path, inputs) for path, relative in _expand(item, out_dir)]
    shared = Counter((rel.parent, _stem(rel)) for _, rel in found)
    jobs = [Job(path, out_dir / rel.parent / _stem(rel, shared[(rel.parent, _stem(rel))] == 1), is_lazy(path))
            for path, rel in found]
    _refuse_collisions(jobs)
    return jobs


def _stem(rel: Path, unique: bool = True) -> str:
    """The output stem of an input: `slide.ome.tif` -> `slide`; `<stem>_<suffix>` when two files share it."""
    stem = rel.name[: -len(".ome.tif")] if rel.name.lower().endswith(".ome.tif") else rel.stem
    return stem if unique else f"{stem}_{rel.suffix[1:]}"


def _expand(item: Path, out_dir: Path) -> list[tuple[Path, Path]]:
    """(file, path relative to where it was found) for a file, a zarr array (a folder) or a folder."""
    if item.is_file() or (item.is_dir() and item.suffix.lower() == ".zarr"):
        if _inside(item, out_dir):
            raise InputError(f"{item}: is inside the output folder {out_dir}; predict never reads its own outputs")
        return [(item, Path(item.name))]
    if not item.is_dir():
        raise InputError(f"{item}: no such file or folder")
    files = sorted(p for p in _walk(item) if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
                   and not _inside(p, out_dir))  # fmt: skip
    if not files:
        raise InputError(f"{item}: folder holds no images or videos ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [(p, p.relative_to(item)) for p in files]


def _walk(folder: Path) -> list[Path]:
    """Files under `folder`, and zarr arrays (folders named *.zarr) as single inputs, not searched."""
    found = []
    for entry in folder.iterdir():
        if entry.is_dir():
            found.extend([entry] if entry.suffix.lower() == ".zarr" else _walk(entry))
        elif entry.is_file():
            found.append(entry)
    return found


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder)


def _refuse_collisions(jobs: list[Job]) -> None:
    owners: dict[Path, Path] = {}
    for job in jobs:
        for output in job.outputs():
            if output in owners and owners[output] != job.source:
                raise InputError(f"{owners[output]} and {job.source} would both write {output}; "
                                 "give their folders instead of the files, or predict them in two runs")
            owners[output] = job.source


def existing_outputs(jobs: list[Job]) -> list[Path]:
    """Outputs of `jobs` that are already on disk (a previous run's)."""
    return [output for job in jobs for output in [*job.outputs(), job.partial_store] if output and output.exists()]
