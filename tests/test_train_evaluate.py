"""train.evaluate: confusion matrices on a crafted case, the multi-scale/sliding-window protocol."""

import numpy as np
import pytest
import torch
from torch import nn

from train.evaluate import Protocol, constant_prediction, evaluate_segmentation, multiscale_probs, window_starts


class ThresholdModel(nn.Module):
    """Class 1 where channel 0 > 0, else class 0; class 2 never: a model whose answers we know."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positive = (x[:, :1] > 0).float()
        return torch.cat([1 - positive, positive, torch.full_like(positive, -1.0)], dim=1) * 5


def test_crafted_confusion_matrix_iou_and_baseline():
    image = -torch.ones(1, 3, 2, 4)
    image[0, 0, :, 2:] = 1.0  # predicted: [[0 0 1 1], [0 0 1 1]]
    label = torch.tensor([[[0, 1, 1, 1], [0, 0, 255, 2]]])
    cm = evaluate_segmentation(ThresholdModel(), [(image, label)], 3, torch.device("cpu"))
    # true 0 -> pred 0,0,0 ; true 1 -> pred 0,1,1 ; true 2 -> pred 1 ; 255 ignored
    np.testing.assert_array_equal(cm.matrix, [[3, 0, 0], [1, 2, 0], [0, 1, 0]])
    scores = cm.scores()
    np.testing.assert_allclose(scores.iou, [3 / 4, 2 / 4, 0.0])
    assert scores.miou == pytest.approx((3 / 4 + 2 / 4 + 0) / 3)
    assert scores.pixel_accuracy == pytest.approx(5 / 7)
    baseline = constant_prediction(cm, 0).scores()
    assert baseline.pixel_accuracy == pytest.approx(3 / 7) and baseline.miou == pytest.approx((3 / 7) / 3)


def test_window_starts_cover_the_image():
    assert window_starts(100, 512, 342) == [0]
    assert window_starts(1000, 512, 342) == [0, 342, 488]
    assert window_starts(40, 0, 0) == [0]
    for size, window, stride in [(57, 16, 10), (64, 32, 32), (33, 32, 5)]:
        covered = np.zeros(size, bool)
        for start in window_starts(size, window, stride):
            assert 0 <= start <= size - window
            covered[start : start + window] = True
        assert covered.all()


def test_trivial_protocol_equals_single_scale(tiny_model):
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    trivial = Protocol(scales=(1.0,), base_size=0, flip=False, window=0, stride=0)
    with torch.no_grad():
        single = tiny_model(x)
        probs = multiscale_probs(tiny_model, x, trivial, 5)
        big_window = multiscale_probs(tiny_model, x, Protocol((1.0,), 0, False, 64, 32), 5)
    torch.testing.assert_close(probs, single.softmax(dim=1))
    torch.testing.assert_close(big_window, probs)  # a window larger than the image is the whole image


def test_paper_protocol_shapes_and_probabilities(tiny_model):
    x = torch.randn(1, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    paper_like = Protocol(scales=(0.5, 0.75, 1.0, 1.25), base_size=48, flip=True, window=32, stride=21)
    with torch.no_grad():
        probs = multiscale_probs(tiny_model, x, paper_like, 5)
        single = multiscale_probs(tiny_model, x, Protocol((1.0,), 0, False, 0, 0), 5)
    assert probs.shape == (1, 5, 40, 56)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(1, 40, 56))
    assert not torch.allclose(probs, single)  # scales, flips and windows did change the average
    label = torch.zeros(1, 40, 56, dtype=torch.long)
    cm = evaluate_segmentation(tiny_model, [(x, label)], 5, torch.device("cpu"), paper_like)
    assert cm.matrix.sum() == 40 * 56
