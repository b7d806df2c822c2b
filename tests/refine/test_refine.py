"""Stage 2: crops around stage 1's bodies, redrawn and pasted back into the input's exact geometry."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spinemorph.inference import ModelSpec
from spinemorph.refine import MARGIN, body_boxes, crop_inputs, normalised, refine
from spinemorph.transforms import Preprocessing

SPEC = ModelSpec("unet", "binary", {}, Preprocessing(size=64))


def column() -> np.ndarray:
    """T12, L1 and L2 as 20×30 boxes in a 110×60 labelmap, S1 below them."""
    labels = np.zeros((110, 60), np.uint8)
    for i, code in enumerate((19, 20, 21)):
        labels[10 + 30 * i: 30 + 30 * i, 15:45] = code
    labels[100:108, 15:45] = 26
    return labels


class Centred(nn.Module):
    """Stage-2 stand-in: a body at the crop's centre, ``share`` of the crop's side wide and half as tall."""

    def __init__(self, share: float) -> None:
        super().__init__()
        self.share = share

    def forward(self, x):
        n = x.shape[-1]
        r = (torch.arange(n) - (n - 1) / 2).abs()
        inside = (r[:, None] < self.share * n / 4) & (r[None, :] < self.share * n / 2)
        return (inside.float() * 20 - 10).expand(x.shape[0], 1, n, n)


def test_each_body_gets_a_square_around_it_and_the_sacrum_none():
    boxes = body_boxes(column())
    assert [code for code, _ in boxes] == [19, 20, 21]
    for i, (_, box) in enumerate(boxes):
        assert (box.row, box.col) == (19.5 + 30 * i, 29.5) and box.side == MARGIN * 30


def test_crops_are_the_networks_input():
    pixels = np.random.default_rng(0).integers(0, 4096, (110, 60)).astype(np.uint16)
    x = crop_inputs(normalised(pixels), [b for _, b in body_boxes(column())], SPEC.preprocessing)
    assert x.shape == (3, 1, 64, 64) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1


def test_redrawn_bodies_keep_their_levels_and_the_input_geometry():
    labels = column()
    # A 45 px crop: the stand-in draws 0.6 × 45 = 27 px wide, 13.5 px tall, about each body's centre.
    done = refine(np.zeros(labels.shape, np.uint16), labels, Centred(0.6), SPEC)
    assert done.labels.shape == labels.shape and done.labels.dtype == np.uint8
    assert done.stages == {19: 2, 20: 2, 21: 2} and set(done.confidence) == {19, 20, 21}
    for code in (19, 20, 21):
        rows, cols = np.nonzero(done.labels == code)
        assert abs(rows.mean() - np.nonzero(labels == code)[0].mean()) < 1 and abs(cols.mean() - 29.5) < 1
        assert 12 <= np.ptp(rows) + 1 <= 15 and 25 <= np.ptp(cols) + 1 <= 29
    assert np.array_equal(done.labels == 26, labels == 26)  # the anchor stays as stage 1 drew it
    # about 13.5 × 27 px drawn inside a 20 × 30 px body: the stages' outlines overlap by about 0.6 (IoU)
    assert all(0.5 < done.agreement[code] < 0.72 for code in (19, 20, 21)), done.agreement


def test_a_body_stage_2_cannot_redraw_keeps_its_stage_1_outline():
    labels = column()
    empty = refine(np.zeros(labels.shape, np.uint16), labels, Centred(0.0), SPEC)
    assert empty.stages == {19: 1, 20: 1, 21: 1} and np.array_equal(empty.labels, labels)
    huge = refine(np.zeros(labels.shape, np.uint16), labels, Centred(1.9), SPEC)  # more than twice the area
    assert set(huge.stages.values()) == {1} and np.array_equal(huge.labels, labels)


class Shifted(Centred):
    """Stage-2 stand-in that draws its body off centre, toward the crop's right, by ``shift`` of the crop's side."""

    def __init__(self, share: float, shift: float) -> None:
        super().__init__(share)
        self.shift = shift

    def forward(self, x):
        n = x.shape[-1]
        r = (torch.arange(n) - (n - 1) / 2).abs()
        c = torch.arange(n) - (n - 1) / 2 - self.shift * n
        inside = (r[:, None] < self.share * n / 4) & (c[None, :].abs() < self.share * n / 2)
        return (inside.float() * 20 - 10).expand(x.shape[0], 1, n, n)


def test_stage_2_averages_each_crop_with_its_mirror():
    labels = column()
    # Alone the stand-in draws 0.8 × 45 = 36 px wide, 4.5 px right of each body's centre; averaged with its mirror
    # only what both draw stays above one half: 0.6 × 45 = 27 px, centred.
    done = refine(np.zeros(labels.shape, np.uint16), labels, Shifted(0.8, 0.1), SPEC)
    for code in (19, 20, 21):
        cols = np.nonzero(done.labels == code)[1]
        assert abs(cols.mean() - 29.5) < 0.6 and 25 <= np.ptp(cols) + 1 <= 29, (cols.mean(), np.ptp(cols))


def test_each_view_alone_is_drawn_on_demand():
    """The crops alone and their mirror images alone: the stand-in's off-centre body lands right in one, left in the
    other; the mean (above) is centred."""
    labels = column()
    done = refine(np.zeros(labels.shape, np.uint16), labels, Shifted(0.8, 0.1), SPEC)
    crops, mirrors = done.views()
    for view, side in ((crops, 1), (mirrors, -1)):
        assert view.labels.shape == labels.shape and view.stages == done.stages and view.views() == []
        for code in (19, 20, 21):
            cols = np.nonzero(view.labels == code)[1]
            assert abs(cols.mean() - (29.5 + side * 4.5)) < 1.0 and 33 <= np.ptp(cols) + 1 <= 37, (cols.mean(), side)
        assert np.array_equal(view.labels == 26, labels == 26)
    for view, whole in zip(done.views({20}), (crops, mirrors), strict=True):  # L1 alone, as the whole view drew it
        assert view.stages == {20: 2} and np.array_equal(view.labels == 20, whole.labels == 20)
        assert set(np.unique(view.labels)) == {0, 20, 26}
