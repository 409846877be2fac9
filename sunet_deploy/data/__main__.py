"""`python -m sunet_deploy.data OUT`: write synthetic samples to disk in the plain folder layout.

OUT/images/<name>.png and OUT/masks/<name>.png (palette PNG of class indices), plus
OUT/classes.txt. The result is a `folder` dataset (`DatasetSpec("folder", OUT).build()` takes its
classes from OUT/classes.txt) and a set of real image files for `python -m runtimes.predict`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from ..cli import EXIT_STATUS_HELP
from ..flags import add_flag, add_renamed
from ..pipeline.palettes import save_palette_png
from ..progress import progress
from .synthetic import DEFAULT_CLASSES, DEFAULT_SEED, DEFAULT_SIZE, SyntheticSegmentation


def write_synthetic_folder(dataset: SyntheticSegmentation, root: Path) -> Path:
    """Write every sample of `dataset` under root/images and root/masks; returns root."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for index in progress(range(len(dataset)), desc=f"writing {root}", unit="image"):
        image, label = dataset[index]
        name = dataset.name(index)
        if not cv2.imwrite(str(root / "images" / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{root / 'images' / name}.png: could not be written")
        save_palette_png(root / "masks" / f"{name}.png", label, dataset.palette)
    (root / "classes.txt").write_text("\n".join(dataset.classes) + "\n")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sunet_deploy.data", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="folder to write images/ and masks/ into")
    add_flag(parser, "--synthetic-samples", dest="count", default=16, help="number of samples (default 16)")
    add_flag(parser, "--split", default="val", choices=("train", "val", "test"), help="synthetic split (default val)")
    add_flag(parser, "--synthetic-size", dest="size", default=DEFAULT_SIZE,
             help="image HxW (default {}x{})".format(*DEFAULT_SIZE))
    add_flag(parser, "--num-classes", dest="classes", default=DEFAULT_CLASSES,
             help=f"number of classes incl. background (default {DEFAULT_CLASSES})")
    add_flag(parser, "--seed", default=DEFAULT_SEED, help=f"dataset seed (default {DEFAULT_SEED})")
    add_renamed(parser, "--count", "--classes", here={"--size": "--synthetic-size"})
    args = parser.parse_args(argv)
    try:
        dataset = SyntheticSegmentation(num_samples=args.count, size=args.size, num_classes=args.classes,
                                        seed=args.seed, split=args.split)
        write_synthetic_folder(dataset, args.output)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.count} {args.split} samples written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
