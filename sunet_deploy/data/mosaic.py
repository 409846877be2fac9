"""Synthetic scenes of any size with known labels: a grid of synthetic samples (data.synthetic), one per
tile, written as a tiled BigTIFF without ever holding the scene (tests and benchmarks of huge images).

    mosaic = SyntheticMosaic((20000, 20000), tile=512)
    mosaic.write_tiff("scene.tif")                   # RGB, tiled, deflate
    image, label = mosaic.region(0, 4000, 0, 6000)   # any part, in memory, from the same generator
    python -m sunet_deploy.data.mosaic scene.tif --size 20000x20000
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..cli import parse_size
from ..fileio import atomic_path
from .synthetic import DEFAULT_CLASSES, DEFAULT_SEED, SyntheticSegmentation


class SyntheticMosaic:
    """A (height, width) scene whose tile (i, j) is synthetic sample i * columns + j of size tile x tile
    (modulo `distinct`, when given: a scene of many tiles made from a few samples, kept in memory)."""

    def __init__(self, size: tuple[int, int], tile: int = 512, num_classes: int = DEFAULT_CLASSES,
                 seed: int = DEFAULT_SEED, distinct: int | None = None) -> None:  # fmt: skip
        if tile % 16:
            raise ValueError(f"a TIFF tile is a multiple of 16 pixels, got {tile}")
        self.size, self.tile = (int(size[0]), int(size[1])), tile
        self.grid = (-(-self.size[0] // tile), -(-self.size[1] // tile))
        count = min(distinct or self.grid[0] * self.grid[1], self.grid[0] * self.grid[1])
        self.samples = SyntheticSegmentation(count, (tile, tile), num_classes, seed, "test")
        self._kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._keep = distinct is not None

    @property
    def num_classes(self) -> int:
        return self.samples.num_classes

    def tile_sample(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole sample of tile (i, j): it runs past the scene's edge on the last row and column."""
        index = (i * self.grid[1] + j) % len(self.samples)
        if not self._keep:
            return self.samples[index]
        if index not in self._kept:
            self._kept[index] = self.samples[index]
        return self._kept[index]

    def region(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (HxWx3 uint8) and label (HxW uint8) of rows [r0, r1) and columns [c0, c1)."""
        t = self.tile
        image = np.empty((r1 - r0, c1 - c0, 3), dtype=np.uint8)
        label = np.empty((r1 - r0, c1 - c0), dtype=np.uint8)
        for i in range(r0 // t, -(-r1 // t)):
            for j in range(c0 // t, -(-c1 // t)):
                img, lab = self.tile_sample(i, j)
                a, b = max(r0, i * t), min(r1, (i + 1) * t)
                c, d = max(c0, j * t), min(c1, (j + 1) * t)
                image[a - r0 : b - r0, c - c0 : d - c0] = img[a - i * t : b - i * t, c - j * t : d - j * t]
                label[a - r0 : b - r0, c - c0 : d - c0] = lab[a - i * t : b - i * t, c - j * t : d - j * t]
        return image, label

    def tiles(self, labels: bool = False) -> Iterator[np.ndarray]:
        """Every tile's image (or label), row-major: what a tiled TIFF writer takes."""
        for i in range(self.grid[0]):
            for j in range(self.grid[1]):
                yield self.tile_sample(i, j)[1 if labels else 0]

    def write_tiff(self, path: str | os.PathLike, labels: bool = False, compression: str | None = "zlib") -> Path:
        """The scene (or its labels) as a tiled BigTIFF, one tile in memory at a time (whole or not at all)."""
        import tifffile

        shape = self.size if labels else (*self.size, 3)
        with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=True) as writer:
            writer.write(self.tiles(labels), shape=shape, dtype=np.uint8, tile=(self.tile, self.tile),
                         photometric="minisblack" if labels else "rgb", compression=compression)  # fmt: skip
        return Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sunet_deploy.data.mosaic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("output", type=Path, help="the scene's tiled BigTIFF (.tif)")
    parser.add_argument("--size", type=parse_size, required=True, help="HxW pixels")
    parser.add_argument("--tiff-tile", type=int, default=512, help="the TIFF's tile (and synthetic sample) size (default 512)")
    parser.add_argument("--labels", type=Path, help="also write the labels as a tiled BigTIFF here")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--distinct", type=int, help="this many distinct samples, repeated (fast for huge scenes)")
    args = parser.parse_args(argv)
    mosaic = SyntheticMosaic(args.size, args.tiff_tile, seed=args.seed, distinct=args.distinct)
    mosaic.write_tiff(args.output)
    if args.labels:
        mosaic.write_tiff(args.labels, labels=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
