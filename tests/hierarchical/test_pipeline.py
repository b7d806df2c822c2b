"""The pipeline's stages joined, with stand-in networks whose outputs are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spinemorph.hierarchical.inputs import FitGeometry, pose_frame
from spinemorph.hierarchical.model import HierarchicalModel
from spinemorph.hierarchical.pipeline import HierarchicalOptions, run_hierarchical
from spinemorph.hierarchical.targets import gaussian_maps
from spinemorph.inference import ModelSpec
from spinemorph.io import Radiograph, sagittal_affine
from spinemorph.transforms import Preprocessing

POSE = ModelSpec("posenet", "binary", {}, Preprocessing(size=128))
PATCH = ModelSpec("mnet", "binary", {}, Preprocessing(size=32))


class MapsOf(nn.Module):
    """Pose-net stand-in: Gaussians at given image points (and the L5 map at the lowest)."""

    def __init__(self, points, shape):
        super().__init__()
        g = FitGeometry.of(shape, pose_frame(POSE.preprocessing))
        frame_points = g.to_frame(points)
        self.centres = torch.as_tensor(gaussian_maps(frame_points, [12.0] * len(points), g.frame))
        self.l5 = torch.as_tensor(gaussian_maps(frame_points[-1:], [12.0] * len(frame_points[-1:]), g.frame))

    def forward(self, x, all_outputs=None):
        return {"l5": self.l5[None], "centres": self.centres[None]}


class Disc(nn.Module):
    """Patch-network stand-in: a centred disc, a third of the patch across."""

    def forward(self, x, all_outputs=None):
        n = x.shape[-1]
        r = torch.arange(n) - (n - 1) / 2
        inside = (r[:, None] ** 2 + r[None, :] ** 2) < (n / 6) ** 2
        return (inside.float() * 20 - 10).expand(x.shape[0], 1, n, n)


def _image(points, shape=(200, 120)):
    """Bright discs of radius 15 px (what the stand-in patch network outputs in 90-px boxes) on a noisy background."""
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    discs = sum(((rows - r) ** 2 + (cols - c) ** 2 < 15**2) for r, c in points)
    pixels = 1000 + 2000 * (discs > 0) + np.random.default_rng(0).normal(0, 50, shape)
    return Radiograph(pixels, (0.5, 0.5), "PixelSpacing", "left", sagittal_affine((0.5, 0.5), "left"))


def _model(points, shape=(200, 120)):
    return HierarchicalModel(MapsOf(points, shape), POSE, Disc(), PATCH)


POINTS = [(40.0, 60.0), (70.0, 62.0), (100.0, 63.0), (130.0, 62.0), (160.0, 60.0)]


@pytest.mark.parametrize("level_set", [False, True])
def test_five_centres_become_five_levels_in_the_input_geometry(level_set):
    result = run_hierarchical(_image(POINTS), _model(POINTS), HierarchicalOptions(view="lumbar", level_set=level_set))
    assert result.labels.shape == (200, 120) and result.flags == []
    assert [c["level"] for c in result.centres] == ["L1", "L2", "L3", "L4", "L5"]
    for c, (r, col) in zip(result.centres, POINTS, strict=True):
        assert abs(c["center_px"][0] - r) < 1.5 and abs(c["center_px"][1] - col) < 1.5
        assert result.labels[int(r), int(col)] == c["code"]
    assert [b.side for b in result.boxes] == pytest.approx([90, 90, 90, 90, 90], abs=5)
    assert {r["level"] for r in result.to_dict()["morphometry"]["vertebrae"]} == {"L1", "L2", "L3", "L4", "L5"}


def test_one_centre_or_none_is_returned_with_a_flag_and_no_crash():
    result = run_hierarchical(_image(POINTS[2:3]), _model(POINTS[2:3]))
    assert len(result.centres) == 1 and "fewer_than_two_centres" in result.flags
    assert result.boxes == [] and not result.labels.any()
    result = run_hierarchical(_image([]), _model([]))
    assert result.centres == [] and result.flags == ["no_centres"] and not result.labels.any()
    assert result.to_dict()["morphometry"]["vertebrae"] == []


def test_boxes_past_the_image_edge_are_padded():
    points = [(3.0, 5.0), (40.0, 10.0), (75.0, 105.0)]
    result = run_hierarchical(_image(points), _model(points), HierarchicalOptions(anchor="L5"))
    top, left, _, _ = result.boxes[0].bounds()
    assert top < 0 and left < 0
    assert [c["level"] for c in result.centres] == ["L3", "L4", "L5"]
    assert result.labels[40, 10] == 23 and result.labels[75, 105] == 24


def test_levels_the_model_has_no_opinion_on_are_flagged_in_the_morphometry_too():
    named = run_hierarchical(_image(POINTS), _model(POINTS))  # the L5 map votes for the lowest centre
    assert "level_uncertain" not in named.flags and "level_uncertain" not in named.morphometry.flags
    model = _model(POINTS)
    model.posenet.l5.zero_()  # no vote at all: the lowest centre is only assumed to be L5
    assumed = run_hierarchical(_image(POINTS), model)
    assert [c["level"] for c in assumed.centres] == ["L1", "L2", "L3", "L4", "L5"]
    assert assumed.flags[-2:] == ["levels_assumed_lowest_l5", "level_uncertain"]
    assert "level_uncertain" in assumed.morphometry.flags
    assert assumed.to_dict()["morphometry"]["level_naming"] == {"anchor": None, "level_uncertain": True}


class Shape(nn.Module):
    """Patch-network stand-in: the same body in every patch, drawn by column, whatever the patch shows."""

    def __init__(self, short: slice):
        super().__init__()
        self.short = short  # columns whose height is cut by a third (left = the image's left)

    def forward(self, x, all_outputs=None):
        n = x.shape[-1]
        body = torch.zeros(n, n)
        body[n // 3:n - n // 3, n // 4:n - n // 4] = 1
        cut = n // 3 + (n - 2 * (n // 3)) // 3
        body[n // 3:cut, self.short] = 0
        return (body * 20 - 10).expand(x.shape[0], 1, n, n)


@pytest.mark.parametrize("views", [False, True])
def test_a_fracture_the_mirror_view_does_not_repeat_is_withdrawn(views):
    # Facing left: bodies short in front (a wedge) in the patch as cut, short behind in its mirror image.
    model = HierarchicalModel(MapsOf(POINTS, (200, 120)), POSE, Shape(slice(8, 13)), PATCH)
    options = HierarchicalOptions(view="lumbar", level_set=False, views=views)
    records = run_hierarchical(_image(POINTS), model, options).morphometry.vertebrae
    assert len(records) == 5 and all(r.wedge < 0.8 for r in records)  # measured alike either way
    if views:
        assert all(r.genant_grade is None and {"low_confidence", "views_disagree"} <= set(r.flags) for r in records)
    else:
        assert all(r.genant_grade and r.deformity == "wedge" and "views_disagree" not in r.flags for r in records)


def test_a_fracture_both_views_see_stands():
    # Short in the middle columns: the same body in either view (biconcave), so the grade stands.
    model = HierarchicalModel(MapsOf(POINTS, (200, 120)), POSE, Shape(slice(14, 18)), PATCH)
    result = run_hierarchical(_image(POINTS), model, HierarchicalOptions(view="lumbar", level_set=False))
    records = result.morphometry.vertebrae
    assert len(records) == 5 and all(r.genant_grade and r.deformity == "biconcave" for r in records)
    assert not any("views_disagree" in r.flags for r in records)
    assert "views_s" in result.timings
