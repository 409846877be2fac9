"""The inference protocol (sunet_deploy.protocol / .tiling): equal to a direct PyTorch implementation,
the same band by band as whole, windows sized for fixed-size artifacts, bad settings refused."""

import argparse
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sunet_deploy.cli import parse_size
from sunet_deploy.pipeline.geometry import linear_coords
from sunet_deploy.protocol import Protocol, ProtocolError, artifact_window, window_starts
from sunet_deploy.tiling import InferModel, full_probabilities, probability_bands, segment


def reference_probs(model, x: torch.Tensor, p: Protocol, num_classes: int) -> torch.Tensor:
    """The protocol written directly in PyTorch, whole image at once (train.evaluate before the engine)."""
    h, w = x.shape[2:]
    total = x.new_zeros(1, num_classes, h, w)
    for scale in p.scales:
        size = p.view_size((h, w), scale)
        scaled = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        for flip in (False, True) if p.flip else (False,):
            view = scaled.flip(3) if flip else scaled
            wh, ww = p.window or size
            sums, count = view.new_zeros(1, num_classes, *size), view.new_zeros(1, 1, *size)
            for top in window_starts(size[0], wh, p.stride[0] if p.window else 0):
                for left in window_starts(size[1], ww, p.stride[1] if p.window else 0):
                    crop = view[:, :, top : top + wh, left : left + ww]
                    sums[:, :, top : top + crop.shape[2], left : left + crop.shape[3]] += model(crop).softmax(dim=1)
                    count[:, :, top : top + crop.shape[2], left : left + crop.shape[3]] += 1
            probs = (sums / count).flip(3) if flip else sums / count
            total += probs if size == (h, w) else F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
    return total / p.views


def as_runtime(model, num_classes: int = 5) -> InferModel:
    return InferModel(lambda b: model(torch.from_numpy(b)).detach().numpy(), "logits", num_classes)


@pytest.mark.parametrize("protocol", [
    Protocol(),
    Protocol((0.5, 0.75, 1.0, 1.25), base_size=48, flip=True, window=(32, 32), stride=(21, 21), batch=3),
    Protocol((0.7, 1.3), flip=True, window=(24, 40), stride=(10, 30)),
])  # fmt: skip
def test_engine_equals_the_pytorch_protocol(tiny_model, protocol):
    x = torch.randn(1, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference_probs(tiny_model, x, protocol, 5)[0].numpy()
        got = full_probabilities(x[0].permute(1, 2, 0).numpy(), as_runtime(tiny_model), protocol)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_bands_equal_the_whole_and_batching_changes_nothing(tiny_model):
    image = np.random.default_rng(0).integers(0, 256, (150, 70, 3), dtype=np.uint8)
    model = InferModel.for_uint8(as_runtime(tiny_model).infer, "logits", 5, (0.5,) * 3, (0.25,) * 3)
    p = Protocol((0.75, 1.25), flip=True, window=(32, 32), stride=(20, 20))
    with torch.no_grad():
        whole = full_probabilities(image, model, p)
        for band_rows in (7, 64):
            bands = np.concatenate([probs for _, _, probs in probability_bands(image, model, p, band_rows)], axis=1)
            np.testing.assert_array_equal(bands, whole)
        batched = segment(image, model, Protocol(p.scales, 0, True, (32, 32), (20, 20), batch=4))
    np.testing.assert_array_equal(batched, whole.argmax(axis=0))
    np.testing.assert_allclose(whole.sum(axis=0), 1.0, rtol=1e-5)


def mixing_infer(batch: np.ndarray) -> np.ndarray:
    """4-class logits that depend on each pixel's place in its window and on its neighbours (numpy):
    a window run at the wrong offset, or a missing one, changes them."""
    xs = np.arange(batch.shape[3], dtype=np.float32) / batch.shape[3]
    return np.stack([batch[:, k % 3] * (k + 1) + 0.1 * np.cumsum(batch[:, (k + 1) % 3], axis=1 + k % 2) + k * xs
                     for k in range(4)], axis=1)  # fmt: skip


@pytest.mark.parametrize("protocol", [
    Protocol((0.75, 1.25), flip=True, window=(16, 16), stride=(11, 11), batch=2),
    Protocol((0.6, 1.0), flip=True, window=(16, 16), stride=(12, 12), pad_to=(16, 16), batch=3),
    Protocol((1.3,), base_size=30, flip=True, window=(24, 20), stride=(17, 13)),
])  # fmt: skip
def test_stripes_are_bit_identical_to_the_whole_width(protocol):
    image = np.random.default_rng(2).integers(0, 256, (37, 101, 3), dtype=np.uint8)
    model = InferModel.for_uint8(mixing_infer, "logits", 4, (0.5,) * 3, (0.25,) * 3)
    whole = full_probabilities(image, model, protocol, stripe_cols=101)
    for stripe_cols in (1, 7, 16, 40):
        np.testing.assert_array_equal(full_probabilities(image, model, protocol, stripe_cols), whole)
    np.testing.assert_array_equal(segment(image, model, protocol, band_rows=5, stripe_cols=9), whole.argmax(axis=0))


def test_peak_memory_does_not_grow_with_width():
    model = InferModel.for_uint8(mixing_infer, "logits", 4, (0.5,) * 3, (0.25,) * 3)
    p = Protocol((0.75, 1.25), flip=True, window=(16, 16), stride=(12, 12))  # stripes of 8 windows: 128 columns
    peaks = []
    for width in (256, 1024):
        image = np.zeros((48, width, 3), np.uint8)
        tracemalloc.start()
        mask = segment(image, model, p)
        peaks.append(tracemalloc.get_traced_memory()[1] - mask.nbytes)
        tracemalloc.stop()
    assert peaks[1] < 1.25 * peaks[0], peaks  # whole-width bands: 4 times


def test_fixed_size_windows_are_padded_never_resized():
    seen = []

    def infer(batch):
        seen.append(batch.shape)
        return np.zeros((len(batch), 3, 32, 32), np.float32)  # all classes equal: argmax 0

    p = Protocol(window=(32, 32), stride=(24, 24), pad_to=(32, 32), batch=2)
    mask = segment(np.zeros((20, 70, 3), np.uint8), InferModel(infer, "logits", 3), p)
    assert mask.shape == (20, 70) and seen == [(2, 3, 32, 32), (1, 3, 32, 32)]  # 3 windows, 2 per call


def test_label_outputs_vote():
    infer = lambda batch: np.full((len(batch), *batch.shape[2:]), 2, np.int64)  # noqa: E731
    mask = segment(np.zeros((30, 30, 3), np.uint8), InferModel(infer, "labels", 4), Protocol(window=(16, 16)))
    assert (mask == 2).all()


def test_linear_coords_match_torch():
    x = torch.arange(7, dtype=torch.float32)[None, None, :, None].expand(1, 1, 7, 1)
    for out in (3, 7, 16):
        expected = F.interpolate(x, size=(out, 1), mode="bilinear", align_corners=False)[0, 0, :, 0].numpy()
        i0, i1, frac = linear_coords(7, out, 0, out)
        np.testing.assert_allclose(i0 + frac * (i1 - i0), expected, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"scales": (1.0, 0.0)}, "scales must be > 0"),
    ({"scales": (-0.5,)}, "scales must be > 0"),
    ({"window": (64, 64), "stride": (0, 0)}, "overlap 64x64 must be smaller than the window 64x64"),
    ({"window": (0, 8)}, "at least 1x1"),
    ({"batch": 0}, "batch must be >= 1"),
])  # fmt: skip
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ProtocolError, match=message):
        Protocol(**kwargs)


def test_windows_for_artifacts():
    assert artifact_window(None, (512, 512), (512, 512), 96) == (512, 512)  # a fixed-size artifact's own size
    assert artifact_window(None, (1, 1), (None, None), 96) == (96, 96)  # the training crop
    assert artifact_window((64, 128), (1, 1), (None, None), None) == (64, 128)
    with pytest.raises(ProtocolError, match="larger than the artifact accepts .*height 600 > 512.*--tile 512x512"):
        artifact_window((600, 256), (512, 512), (512, 512), None)
    with pytest.raises(ProtocolError, match="records no training crop size"):
        artifact_window(None, (1, 1), (None, None), None)
    assert parse_size("512", square=True) == (512, 512) and parse_size("384x512", square=True) == (384, 512)
    for bad in ("big", "0", "12x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad, square=True)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("512")  # a square side alone only where the flag says SIZE|HxW


def test_protocol_runs_where_torch_cannot_be_imported():
    code = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import numpy as np
from sunet_deploy.protocol import Protocol
from sunet_deploy.tiling import InferModel, segment
infer = lambda b: np.stack([b[:, 0], -b[:, 0]], axis=1)  # class 0 where the red channel is above the mean
model = InferModel.for_uint8(infer, "logits", 2, (0.5,) * 3, (0.25,) * 3)
image = np.zeros((30, 50, 3), np.uint8)
image[:, :20] = 255
mask = segment(image, model, Protocol((0.5, 1.0), flip=True, window=(16, 16), stride=(12, 12), batch=2))
assert (mask[:, :18] == 0).all() and (mask[:, 22:] == 1).all(), mask
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
