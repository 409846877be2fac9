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

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


class InputError(ValueError):
    """Inputs that cannot be read, or whose outputs would collide; nothing has been written."""


@dataclass(frozen=True)
class Job:
    """One input file and the stem of its outputs (`<stem>_mask.png`, `<stem>_overlay.jpg`, ...)."""

    source: Path
    stem: Path

    @property
    def video(self) -> bool:
        return self.source.suffix.lower() in VIDEO_SUFFIXES

    def outputs(self) -> list[Path]:
        if self.video:
            return [self.stem, self.stem.with_name(f"{self.stem.name}_overlay.mp4")]
        return [self.mask_path, self.stem.with_name(f"{self.stem.name}_overlay.jpg")]

    @property
    def mask_path(self) -> Path:
        return self.stem.with_name(f"{self.stem.name}_mask.png")


def plan_jobs(inputs: list[str | Path], out_dir: Path) -> list[Job]:
    """One Job per image or video under `inputs`, with unique outputs under `out_dir`."""
    out_dir = Path(out_dir).resolve()
    found = [(path, relative) for item in map(Path, inputs) for path, relative in _expand(item, out_dir)]
    shared = Counter((rel.parent, rel.stem) for _, rel in found)
    jobs = [Job(path, out_dir / rel.parent / (rel.stem if shared[(rel.parent, rel.stem)] == 1
                                              else f"{rel.stem}_{rel.suffix[1:]}"))  # fmt: skip
            for path, rel in found]
    _refuse_collisions(jobs)
    return jobs


def _expand(item: Path, out_dir: Path) -> list[tuple[Path, Path]]:
    """(file, path relative to where it was found) for a file or a folder."""
    if item.is_file():
        if _inside(item, out_dir):
            raise InputError(f"{item}: is inside the output folder {out_dir}; predict never reads its own outputs")
        return [(item, Path(item.name))]
    if not item.is_dir():
        raise InputError(f"{item}: no such file or folder")
    files = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
                   and not _inside(p, out_dir))  # fmt: skip
    if not files:
        raise InputError(f"{item}: folder holds no images or videos ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [(p, p.relative_to(item)) for p in files]


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
    return [output for job in jobs for output in job.outputs() if output.exists()]
