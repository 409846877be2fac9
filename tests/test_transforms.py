import numpy as np
import pytest

from sunet_deploy.data import EvalTransform, SyntheticSegmentation, TrainTransform
from sunet_deploy.data.transforms import pad_to, random_rotate


def blocky_pair(h=64, w=96, seed=0, block=16):
    """An image whose grey level encodes its label in blocks, so alignment can be checked after warps."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 5, (h // block + 1, w // block + 1))
    label = np.kron(blocks, np.ones((block, block), np.int64))[:h, :w].astype(np.uint8)
    image = np.repeat((label * 50)[:, :, None], 3, axis=2).astype(np.uint8)
    return image, label


def agreement(image, label):
    """Share of labelled pixels whose grey level decodes to their label (block edges blur: < 1)."""
    valid = label != 255
    assert valid.mean() > 0.3
    return (np.round(image[:, :, 0] / 50)[valid] == label[valid]).mean()


@pytest.mark.parametrize("seed", range(8))
def test_train_transform_keeps_image_and_label_aligned(seed):
    image, label = blocky_pair()
    out_image, out_label = TrainTransform(crop_size=48, fill=(250, 250, 250))(image, label, np.random.default_rng(seed))
    assert out_image.shape == (48, 48, 3) and out_label.shape == (48, 48)
    assert out_image.dtype == np.uint8 and out_label.dtype == np.uint8
    assert set(np.unique(out_label)) <= set(range(5)) | {255}  # nearest: no new label values
    assert agreement(out_image, out_label) > 0.85
    assert agreement(out_image, out_label[::-1, ::-1]) < 0.6  # the check does catch misalignment


def test_same_seed_same_result_different_seed_differs():
    image, label = SyntheticSegmentation(1, size=(64, 64))[0]
    transform = TrainTransform(crop_size=48)
    a = transform(image, label, np.random.default_rng(5))
    b = transform(image, label, np.random.default_rng(5))
    c = transform(image, label, np.random.default_rng(6))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_pad_fills_label_with_ignore_and_image_with_fill():
    image, label = blocky_pair(10, 12, block=4)
    padded_image, padded_label = pad_to(image, label, (16, 16), fill=(1, 2, 3))
    assert padded_label.shape == (16, 16)
    np.testing.assert_array_equal(padded_label[:10, :12], label)
    assert np.all(padded_label[10:] == 255) and np.all(padded_label[:, 12:] == 255)
    assert padded_image[15, 15].tolist() == [1, 2, 3]


def test_small_image_crop_contains_ignore_padding():
    image, label = blocky_pair(16, 16, block=4)
    transform = TrainTransform(crop_size=64, scale_range=(1.0, 1.0), rotate_degrees=0, flip=False)
    out_image, out_label = transform(image, label, np.random.default_rng(0))
    assert out_label.shape == (64, 64) and (out_label == 255).mean() > 0.9
    np.testing.assert_array_equal(out_label[:16, :16], label)


def test_rotation_marks_uncovered_corners_ignore():
    image, label = blocky_pair(48, 48)
    rng = np.random.default_rng(0)
    for _ in range(5):
        out_image, out_label = random_rotate(image, label, rng, degrees=10, fill=(0, 0, 0))
        if out_label[0, 0] == 255:
            break
    assert out_label[0, 0] == 255 and out_label[24, 24] != 255
    assert agreement(out_image, out_label) > 0.9


def test_scale_range_changes_size_before_crop():
    image, label = blocky_pair(40, 60)
    transform = TrainTransform(crop_size=(200, 300), scale_range=(2.0, 2.0), rotate_degrees=0, flip=False)
    _, out_label = transform(image, label, np.random.default_rng(0))
    assert (out_label[:80, :120] != 255).all() and (out_label[80:] == 255).all()


def test_eval_transform():
    image, label = blocky_pair(40, 60)
    same = EvalTransform()(image, label)
    assert same[0] is image and same[1] is label
    out_image, out_label = EvalTransform(resize_short=20)(image, label)
    assert out_image.shape == (20, 30, 3) and out_label.shape == (20, 30)
    assert set(np.unique(out_label)) <= set(np.unique(label))
