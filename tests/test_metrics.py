import json
import math

import numpy as np
import pytest

from sunet_deploy.metrics import ConfusionMatrix, confusion_matrix, format_table

# 3 classes; target has an ignored pixel; class 2 never appears in target or prediction.
TARGET = np.array([[0, 0, 1], [1, 1, 255]])
PRED = np.array([[0, 1, 1], [1, 0, 2]])


def test_confusion_matrix_by_hand():
    expected = [[1, 1, 0], [1, 2, 0], [0, 0, 0]]  # rows = target, cols = prediction
    np.testing.assert_array_equal(confusion_matrix(PRED, TARGET, 3), expected)
    without_ignore = confusion_matrix(PRED, np.where(TARGET == 255, 2, TARGET), 3, ignore_index=None)
    assert without_ignore[2, 2] == 1 and without_ignore.sum() == 6


def test_scores_by_hand_with_absent_class_nan():
    scores = ConfusionMatrix(3).update(PRED, TARGET).scores()
    # class 0: tp 1, union 1+1+1 = 3; class 1: tp 2, union 3+3-2 = 4; class 2: union 0
    assert scores.iou[0] == pytest.approx(1 / 3) and scores.iou[1] == pytest.approx(0.5)
    assert math.isnan(scores.iou[2]) and math.isnan(scores.class_accuracy[2])
    assert scores.miou == pytest.approx((1 / 3 + 0.5) / 2)
    assert scores.pixel_accuracy == pytest.approx(3 / 5) and scores.pixels == 5
    assert scores.mean_class_accuracy == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_class_only_in_prediction_counts_as_zero():
    scores = ConfusionMatrix(3).update(np.array([0, 2]), np.array([0, 0])).scores()
    assert scores.iou.tolist()[0] == 0.5 and scores.iou[2] == 0 and math.isnan(scores.iou[1])
    assert scores.miou == pytest.approx(0.25)


def test_accumulate_and_merge_equal_one_pass():
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 4, (6, 8, 8))
    targets = rng.integers(0, 4, (6, 8, 8))
    whole = ConfusionMatrix(4).update(preds, targets)
    a, b = ConfusionMatrix(4), ConfusionMatrix(4)
    for i in range(3):
        a.update(preds[i], targets[i])
        b.update(preds[i + 3], targets[i + 3])
    np.testing.assert_array_equal((a + b).matrix, whole.matrix)
    a += b
    np.testing.assert_array_equal(a.matrix, whole.matrix)
    np.testing.assert_array_equal(ConfusionMatrix.from_matrix(whole.matrix).matrix, whole.matrix)
    with pytest.raises(ValueError, match="merge"):
        a.merge(ConfusionMatrix(5))


def test_out_of_range_values_are_refused():
    with pytest.raises(ValueError, match=r"target has values outside \[0, 3\): \[7\]"):
        confusion_matrix(np.array([0]), np.array([7]), 3)
    with pytest.raises(ValueError, match="prediction"):
        confusion_matrix(np.array([3]), np.array([0]), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros(2), np.zeros(3), 3)


def test_to_dict_is_json_and_table_prints():
    cm = ConfusionMatrix(3).update(PRED, TARGET)
    data = json.loads(json.dumps(cm.to_dict(["bg", "cat", "dog"])))
    assert data["iou"]["dog"] is None and data["miou"] == pytest.approx(5 / 12)
    assert data["confusion_matrix"][1] == [1, 2, 0]
    table = format_table(cm, ["bg", "cat", "dog"])
    assert "cat" in table and "50.00" in table and "41.67" in table
    assert format_table(ConfusionMatrix(2).scores()).count("-") > 3  # empty: no crash, NaN shown as '-'
