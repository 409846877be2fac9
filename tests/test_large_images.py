"""Images larger than memory in runtimes.predict: tiled BigTIFF and zarr inputs read in parts, masks built
on disk stripe by stripe (the same pixels as the in-memory path), --resume, and Pillow's huge-image guard."""

import json
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tifffile")
zarr = pytest.importorskip("zarr")

import runtimes.large  # noqa: E402
from runtimes.predict import main  # noqa: E402
from sunet_deploy.bigimage import LazyImage, read_mask  # noqa: E402
from sunet_deploy.data.mosaic import SyntheticMosaic  # noqa: E402
from sunet_deploy.pipeline.palettes import read_label_png  # noqa: E402
from sunet_deploy.protocol import Protocol  # noqa: E402
from sunet_deploy.tiling import InferModel, segment  # noqa: E402

PROTOCOL = ["--tile", "16", "--scales", "0.75", "1", "--flip"]
SIZE = (64, 512)  # 4 stripes of 8 16-pixel windows


@pytest.fixture(scope="module")
def onnx(artifacts):
    return str(artifacts.onnx())


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The same synthetic scene as a PNG, a tiled BigTIFF and a zarr array, each in its own folder."""
    root = tmp_path_factory.mktemp("scene")
    mosaic = SyntheticMosaic(SIZE, tile=64)
    image, _ = mosaic.region(0, SIZE[0], 0, SIZE[1])
    for name in ("png", "tif", "zarr"):
        (root / name).mkdir()
    cv2.imwrite(str(root / "png" / "scene.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    mosaic.write_tiff(root / "tif" / "scene.tif")
    zarr.create_array(str(root / "zarr" / "scene.zarr"), data=image, chunks=(32, 32, 3))
    return root


def summary(out):
    return json.loads((out / "predict_summary.json").read_text())


@pytest.fixture(scope="module")
def png_mask(onnx, scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("png_out")
    assert main([onnx, str(scene / "png" / "scene.png"), "-o", str(out), *PROTOCOL]) == 0
    return read_label_png(out / "scene_mask.png")


def test_a_tiled_bigtiff_gives_the_png_s_mask_as_a_tiled_palette_bigtiff_with_an_overview(onnx, scene, png_mask, tmp_path):
    import tifffile

    assert main([onnx, str(scene / "tif" / "scene.tif"), "-o", str(tmp_path), *PROTOCOL]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predict_summary.json", "scene_mask.tif", "scene_overview.png"]
    mask = read_mask(tmp_path / "scene_mask.tif")
    assert mask.shape == SIZE and len(np.unique(png_mask)) > 1
    np.testing.assert_array_equal(mask, png_mask)
    with tifffile.TiffFile(tmp_path / "scene_mask.tif") as tif:
        page = tif.pages[0]
        assert tif.is_bigtiff and page.is_tiled and page.photometric == tifffile.PHOTOMETRIC.PALETTE
        assert page.compression != tifffile.COMPRESSION.NONE
    overview = cv2.imread(str(tmp_path / "scene_overview.png"))
    assert overview.shape[:2] == SIZE  # small enough to keep every pixel
    (large,) = summary(tmp_path)["large_images"]
    assert large["size"] == [SIZE[1], SIZE[0]] and large["stripes"] == 4 and large["stripes_resumed"] == 0


def test_a_zarr_array_gives_a_zarr_mask(onnx, scene, png_mask, tmp_path):
    assert main([onnx, str(scene / "zarr"), "-o", str(tmp_path), *PROTOCOL]) == 0  # found in a folder
    np.testing.assert_array_equal(read_mask(tmp_path / "scene_mask.zarr"), png_mask)
    assert (tmp_path / "scene_overview.png").exists()
    assert main([onnx, str(scene / "zarr"), "-o", str(tmp_path), *PROTOCOL]) == 2  # never replaced silently
    assert main([onnx, str(scene / "zarr"), "-o", str(tmp_path), "--resume", *PROTOCOL]) == 0
    assert summary(tmp_path)["resumed"] == [str(scene / "zarr" / "scene.zarr")]


def test_interrupted_run_resumes_from_its_finished_stripes_to_the_same_bytes(onnx, scene, tmp_path, monkeypatch):
    source = str(scene / "tif" / "scene.tif")
    flags = ["--tile", "16"]
    assert main([onnx, source, "-o", str(tmp_path / "full"), *flags]) == 0
    calls, real = [], runtimes.large.segment

    def dies_on_the_third_stripe(*args, **kwargs):
        calls.append(kwargs["stripes"])
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a kill: nothing after it runs
        return real(*args, **kwargs)

    monkeypatch.setattr(runtimes.large, "segment", dies_on_the_third_stripe)
    with pytest.raises(KeyboardInterrupt):
        main([onnx, source, "-o", str(tmp_path / "cut"), *flags])
    assert sorted(p.name for p in (tmp_path / "cut" / "scene_mask.partial.zarr" / "stripes_done").iterdir()) == ["0", "128"]
    assert main([onnx, source, "-o", str(tmp_path / "cut"), *flags]) == 2  # the partial store is an earlier output
    calls.clear()
    monkeypatch.setattr(runtimes.large, "segment", lambda *a, **k: calls.append(k["stripes"]) or real(*a, **k))
    assert main([onnx, source, "-o", str(tmp_path / "cut"), "--resume", *flags]) == 0
    assert calls == [[256], [384]]  # only the stripes not finished
    assert (tmp_path / "cut" / "scene_mask.tif").read_bytes() == (tmp_path / "full" / "scene_mask.tif").read_bytes()
    assert not (tmp_path / "cut" / "scene_mask.partial.zarr").exists()
    assert summary(tmp_path / "cut")["large_images"][0]["stripes_resumed"] == 2


def test_resume_refuses_a_store_started_with_other_settings(onnx, scene, tmp_path, monkeypatch):
    source = str(scene / "tif" / "scene.tif")
    monkeypatch.setattr(runtimes.large, "segment", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        main([onnx, source, "-o", str(tmp_path), "--tile", "16"])
    monkeypatch.undo()
    assert main([onnx, source, "-o", str(tmp_path), "--resume", "--tile", "24"]) == 1
    assert "other settings" in summary(tmp_path)["skipped"][0]
    assert main([onnx, source, "-o", str(tmp_path), "--overwrite", "--tile", "24"]) == 0


def test_resume_skips_finished_images_and_redoes_unfinished_ones(onnx, scene, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"im{i}.png").write_bytes((scene / "png" / "scene.png").read_bytes())
    out = tmp_path / "out"
    assert main([onnx, str(folder), "-o", str(out)]) == 0
    (out / "im1_overlay.jpg").unlink()
    assert main([onnx, str(folder), "-o", str(out), "--resume"]) == 0
    result = summary(out)
    assert result["resumed"] == [str(folder / "im0.png"), str(folder / "im2.png")] and result["written"] == 3
    assert (out / "im1_overlay.jpg").exists()


DIES_WRITING_THE_SECOND_OVERLAY = """
import os, signal, sys, cv2
from runtimes.predict import main
real, calls = cv2.imwrite, []
def dying(path, image, *args):
    calls.append(path)
    if len(calls) == 2:  # half the JPEG's bytes, then the process is killed mid-write
        data = cv2.imencode(".jpg", image)[1].tobytes()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, image, *args)
cv2.imwrite = dying
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_killed_mid_write_leaves_no_half_output_for_resume_to_take_as_done(onnx, scene, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i in range(3):
        (folder / f"im{i}.png").write_bytes((scene / "png" / "scene.png").read_bytes())
    killed = subprocess.run([sys.executable, "-c", DIES_WRITING_THE_SECOND_OVERLAY, onnx, str(folder), "-o", str(out)],
                            capture_output=True, text=True)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (out / "im0_overlay.jpg").exists() and not (out / "im1_overlay.jpg").exists()
    assert main([onnx, str(folder), "-o", str(out), "--resume"]) == 0
    assert summary(out)["resumed"] == [str(folder / "im0.png")] and summary(out)["written"] == 3
    assert main([onnx, str(folder), "-o", str(tmp_path / "clean")]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "clean").iterdir())  # the killed write's partial file is gone
    assert all((out / n).read_bytes() == (tmp_path / "clean" / n).read_bytes() for n in names if n.startswith("im"))


def test_pillow_s_huge_image_guard_is_named_in_the_skip_line_and_lifted_by_a_flag(onnx, scene, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", SIZE[0] * SIZE[1] // 4)  # the scene is then "a bomb"
    source = str(scene / "png" / "scene.png")
    assert main([onnx, source, "-o", str(tmp_path / "a")]) == 1
    (skipped,) = summary(tmp_path / "a")["skipped"]
    assert "decompression-bomb" in skipped and "--allow-huge-images" in skipped and "512x64" in skipped
    assert main([onnx, source, "-o", str(tmp_path / "b"), "--allow-huge-images"]) == 0


class CountingImage(LazyImage):
    """A lazy image over a numpy array that records the largest block it was asked for."""

    def __init__(self, array):
        super().__init__(array, "YXS", "counting")
        self.largest = (0, 0)

    def __getitem__(self, key):
        block = super().__getitem__(key)
        self.largest = tuple(max(a, b) for a, b in zip(self.largest, block.shape[:2]))
        return block


def test_the_engine_reads_a_lazy_image_a_band_of_a_stripe_at_a_time_with_the_same_result():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 1000, 3), dtype=np.uint8)
    weights = rng.normal(size=(3, 3)).astype(np.float32)
    model = InferModel.for_uint8(lambda x: np.einsum("kc,nchw->nkhw", weights, x), "logits", 3, (0.5,) * 3, (0.25,) * 3)
    protocol = Protocol((0.5, 1.25), 0, True, (32, 32), (24, 24))
    lazy = CountingImage(image)
    out = np.full(image.shape[:2], 255, np.uint8)
    segment(lazy, model, protocol, out=out)
    np.testing.assert_array_equal(out, segment(image, model, protocol))
    rows, cols = lazy.largest
    # a band of one stripe (at the smallest scale: 2 source pixels per view pixel), never the image
    assert rows <= 32 / 0.5 + 2 and cols <= 8 * 32 + 2 * 32 / 0.5 + 4, lazy.largest


def test_ome_tiff_pyramids_planar_and_16_bit_tiffs_read_as_rgb_and_name_their_outputs(tmp_path):
    import tifffile

    from runtimes.inputs import plan_jobs
    from sunet_deploy.bigimage import open_lazy

    rgb = np.random.default_rng(0).integers(0, 256, (150, 260, 3), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "slide.ome.tif", ome=True) as tif:  # full resolution + one level
        tif.write(rgb, tile=(64, 64), subifds=1, photometric="rgb", compression="zlib", metadata={"axes": "YXS"})
        tif.write(rgb[::2, ::2], tile=(64, 64), photometric="rgb", subfiletype=1, compression="zlib")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0).copy(), ome=True, tile=(64, 64),
                     photometric="minisblack", metadata={"axes": "CYX"})  # fmt: skip
    gray16 = (np.arange(150 * 260).reshape(150, 260) * 7 % 65536).astype(np.uint16)
    tifffile.imwrite(tmp_path / "gray16.tif", gray16, tile=(64, 64))
    for name in ("slide.ome.tif", "planar.tif"):
        with open_lazy(tmp_path / name) as image:
            assert image.shape == (150, 260, 3)
            np.testing.assert_array_equal(image[10:90, 30:250], rgb[10:90, 30:250])
    with open_lazy(tmp_path / "gray16.tif") as image:
        block = image[5:9, 100:104]
    expected = (gray16[5:9, 100:104].astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(block, np.repeat(expected[:, :, None], 3, axis=2))
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, rgb)  # stripped, not BigTIFF: read whole as before, a PNG mask
    jobs = {job.source.name: job for job in plan_jobs([tmp_path], tmp_path / "out")}
    assert [p.name for p in jobs["slide.ome.tif"].outputs()] == ["slide_mask.tif", "slide_overview.png"]
    assert not jobs["plain.tif"].large and jobs["plain.tif"].mask_path.name == "plain_mask.png"
