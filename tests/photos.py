"""Seven real photos for tests, written from the images scikit-image ships (nothing is committed).

Odd sizes, grayscale, RGBA, PNG and JPEG, and one JPEG whose pixels are stored rotated with EXIF
Orientation=6, as phone cameras write them. Sources: chelsea and coffee are CC0 (Stefan van der
Walt, Rachel Michetti), rocket is public domain (SpaceX), coins has no known restrictions
(Brooklyn Museum), page and the logo are scikit-image's own test data, colorwheel is generated.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXIF_ORIENTATION = 0x0112


def skimage_data():
    return pytest.importorskip("skimage.data", reason="scikit-image (a dev dependency) ships the test photos")


def upright_chelsea() -> np.ndarray:
    """The cat as every viewer shows the EXIF-rotated JPEG: (300, 451, 3)."""
    return skimage_data().chelsea()


def write_photos(folder: Path) -> dict[str, Path]:
    """Write the seven photos into `folder`; returns {name: path}."""
    data = skimage_data()
    source = Path(data.__file__).parent
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("rocket.jpg", "logo.png", "page.png"):  # a JPEG, an RGBA PNG, a grayscale PNG, as shipped
        paths[Path(name).stem] = Path(shutil.copyfile(source / name, folder / name))
    for name, array in (("coffee", data.coffee()), ("coins", data.coins()), ("colorwheel", data.colorwheel())):
        paths[name] = folder / f"{name}.png"
        Image.fromarray(array).save(paths[name])
    paths["chelsea"] = folder / "chelsea_exif6.jpg"
    stored = np.ascontiguousarray(np.rot90(upright_chelsea(), k=1))  # Orientation 6: rotate 90 CW to display
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(stored).save(paths["chelsea"], quality=95, exif=exif)
    return paths
