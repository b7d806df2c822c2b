from __future__ import annotations

import numpy as np
import pytest

from spinemorph.evaluation.hierarchical import (
    centre_errors,
    component_centres,
    detection_success,
    lowest_five,
    region_metrics,
)


def _spine(codes=(19, 20, 21, 22, 23, 24)):
    labels = np.zeros((140, 40), np.uint8)
    for i, code in enumerate(codes):
        labels[5 + 22 * i:5 + 22 * i + 16, 10:30] = code
    return labels


def test_a_pixel_counts_only_with_its_own_level():
    truth = _spine()
    assert region_metrics(truth, truth) == {"dice": 1.0, "precision": 1.0, "sensitivity": 1.0, "specificity": 1.0}
    shifted = np.where(truth > 0, truth + 1, 0)  # every body called one level lower: T12 becomes "L1"
    m = region_metrics(np.where(shifted > 24, 0, shifted), truth)
    assert m["dice"] == 0.0 and m["sensitivity"] == 0.0
    # true negatives: the 5600 pixels less the six bodies (16 x 20 px) that truth or prediction calls lumbar
    assert m["specificity"] == pytest.approx((5600 - 6 * 320) / (5600 - 6 * 320 + 5 * 320))


def test_a_whole_image_mask_names_its_five_lowest_bodies():
    truth = _spine()
    named = lowest_five(truth > 0)
    np.testing.assert_array_equal(named, np.where(truth == 19, 0, truth))
    assert set(np.unique(lowest_five(_spine((23, 24)) > 0))) == {0, 23, 24}


def test_centres_errors_and_success():
    truth = _spine()
    centres = component_centres(truth)
    assert sorted(centres) == [20, 21, 22, 23, 24] and centres[20] == pytest.approx((34.5, 19.5))
    moved = {**centres, 24: (centres[24][0] + 3.0, centres[24][1] + 4.0)}
    errors = centre_errors(moved, centres, (0.5, 0.5))
    assert errors[24] == pytest.approx((5.0, 2.5)) and errors[20] == (0.0, 0.0)
    assert detection_success(moved, truth)
    assert not detection_success({k: v for k, v in centres.items() if k != 22}, truth)
    swapped = {**centres, 20: centres[21], 21: centres[20]}
    assert not detection_success(swapped, truth)
