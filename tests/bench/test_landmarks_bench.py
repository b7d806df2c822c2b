"""bench/landmarks.py's training geometry: truth points in image order and heights by facing, the mirror of a crop
with its points, and the truth six points of a real simulation landing in the crop where its body is (the crop
geometry itself: tests/refine/test_landmarks.py)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import torch

from spinemorph.hierarchical.boxes import crop_patch
from spinemorph.refine.landmarks import to_crop
from tests.app.server import REPO

_spec = importlib.util.spec_from_file_location("bench_landmarks", REPO / "bench" / "landmarks.py")
lm = sys.modules["bench_landmarks"] = importlib.util.module_from_spec(_spec)  # bench/ is no package
_spec.loader.exec_module(lm)

POINTS = {"superior_anterior": [10.0, 20.0], "superior_middle": [11.0, 30.0], "superior_posterior": [12.0, 40.0],
          "inferior_anterior": [30.0, 20.0], "inferior_middle": [29.0, 30.0], "inferior_posterior": [34.0, 40.0]}


def test_image_order_and_heights_follow_the_facing():
    left = lm.image_order(POINTS, "left")  # anterior on the image's left
    right = lm.image_order(POINTS, "right")
    np.testing.assert_array_equal(left[0], POINTS["superior_anterior"])
    np.testing.assert_array_equal(right[0], POINTS["superior_posterior"])
    for facing, pts in (("left", left), ("right", right)):
        h = lm.heights(pts, facing, (0.5, 0.5))
        assert h == {"Ha": 10.0, "Hm": 9.0, "Hp": 11.0}


def test_a_mirrored_crop_swaps_left_and_right_and_mirrors_the_columns():
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    y = torch.as_tensor(np.stack([lm.image_order(POINTS, "left")] * 2), dtype=torch.float32)
    fx, fy = lm.flip(x, y, 5)
    torch.testing.assert_close(fx[..., 0], x[..., -1])
    assert fy[0, 0].tolist() == [y[0, 2, 0].item(), 4 - y[0, 2, 1].item()]  # the right point, now on the left
    torch.testing.assert_close(lm.flip(fx, fy, 5)[1], y)  # twice is once more the crop


def test_truth_points_of_a_simulation_sit_on_their_body_in_the_crop():
    image, labels, truth = lm.case(4_500, 0)  # a calibration simulation, as the bench compares on
    rec = next(v for v in truth["vertebrae"] if v.get("points") and not v.get("truncated"))
    body = dict(lm.body_boxes(labels))[rec["code"]]
    pts = to_crop(lm.image_order(rec["points"], truth["facing"]), body, 192)
    mask = crop_patch(labels == rec["code"], body, 192, labels=True)
    centre = np.round(pts.mean(axis=0)).astype(int)
    assert mask[centre[0], centre[1]]  # the six points' mean lies inside the body
    assert ((pts > 0) & (pts < 191)).all()  # and every point inside the crop
