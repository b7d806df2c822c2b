"""Detection metrics on hand-made detections: AP, greedy matching with ignored boxes, and 2×2 tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinemorph.evaluation.detection import (
    ImageDetections,
    ap_by_class,
    average_precision,
    box_iou_np,
    confusion,
    match_image,
    pr_curve,
)


def test_box_iou():
    np.testing.assert_allclose(box_iou_np([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]),
                               [[1.0, 1 / 3, 0.0]])


def test_average_precision_exact_values():
    assert average_precision([0.9, 0.8], [True, True], 2) == pytest.approx(1.0)
    assert average_precision([0.9, 0.8], [True, True], 4) == pytest.approx(51 / 101)  # recall 0.5: points 0..0.5
    # hit, miss, hit of 2 truths: precision 1 up to recall 0.5, then 2/3 up to recall 1.
    assert average_precision([0.9, 0.8, 0.7], [True, False, True], 2) == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert average_precision([], [], 3) == 0.0
    assert math.isnan(average_precision([0.5], [False], 0))
    recall, precision, thresholds = pr_curve([0.2, 0.9], [False, True], 1)
    assert recall.tolist() == [1.0, 1.0] and precision.tolist() == [1.0, 0.5] and thresholds.tolist() == [0.9, 0.2]


def test_matching_is_greedy_by_score_per_class_and_drops_ignored():
    image = ImageDetections(
        boxes=np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60], [30, 30, 40, 40]]),
        scores=np.array([0.6, 0.9, 0.8, 0.7, 0.5]), classes=np.array([20, 20, 21, 20, 20]),
        gt_boxes=np.array([[0, 0, 10, 10]]), gt_classes=np.array([20]), ignore_boxes=np.array([[30, 30, 40, 40]]))
    kept, tp, found = match_image(image)
    assert tp.tolist() == [False, True, False, False, False]  # the best-scoring L1 box takes the truth
    assert kept.tolist() == [True, True, True, True, False]  # the box on the ignored fracture is dropped
    assert found.tolist() == [0.9]
    table = ap_by_class([image])
    assert table[20]["truths"] == 1 and table[20]["detections"] == 3 and table[20]["ap"] == pytest.approx(1.0)
    assert table[21]["truths"] == 0 and math.isnan(table[21]["ap"])


def test_confusion_table():
    t = confusion([True, True, False, False, True], [True, False, False, True, True])
    assert (t["TP"], t["FP"], t["TN"], t["FN"]) == (2, 1, 1, 1)
    assert t["sensitivity"] == pytest.approx(200 / 3) and t["specificity"] == pytest.approx(50.0)
    assert t["accuracy"] == pytest.approx(60.0) and t["f1"] == pytest.approx(400 / 6)
    assert math.isnan(confusion([False], [False])["sensitivity"])
