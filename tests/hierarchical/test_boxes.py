from __future__ import annotations

import numpy as np
import pytest

from spinemorph.hierarchical.boxes import Box, box_sides, crop_patch, make_boxes, paste_patch


def test_equation_6_on_known_centres():
    rows = [100.0, 130.0, 165.0, 205.0]  # gaps 30, 35, 40
    np.testing.assert_allclose(box_sides(rows), [90.0, 97.5, 112.5, 120.0])
    boxes = make_boxes([(r, 50.0 + i) for i, r in enumerate(rows)])
    assert [(b.row, b.col, b.side) for b in boxes][1] == (130.0, 51.0, 97.5)
    assert boxes[0].bounds() == (55, 5, 145, 95)


def test_two_centres_and_fewer():
    np.testing.assert_allclose(box_sides([10.0, 30.0]), [60.0, 60.0])
    with pytest.raises(ValueError, match="two centres"):
        box_sides([10.0])
    assert make_boxes([]) == [] and make_boxes([(5.0, 5.0)]) == []
    assert make_boxes([(5.0, 5.0)], single_side=20.0)[0].side == 20.0


def test_a_box_past_the_edge_gives_a_zero_padded_patch_and_pastes_back_clipped():
    image = np.arange(100 * 80, dtype=np.float32).reshape(100, 80)
    box = Box(5.0, 75.0, 20.0)  # rows -5..15, cols 65..85
    patch = crop_patch(image, box, 20)
    assert patch.shape == (20, 20)
    assert (patch[:5] == 0).all() and (patch[:, 15:] == 0).all()
    np.testing.assert_allclose(patch[5:, :15], image[:15, 65:80])
    back, where = paste_patch(np.ones((20, 20)), box, image.shape)
    assert where == (slice(0, 15), slice(65, 80)) and back.shape == (15, 15)
    off, where = paste_patch(np.ones((8, 8)), Box(-50.0, -50.0, 10.0), image.shape)
    assert off.size == 0


def test_labels_stay_labels_when_resized():
    labels = np.zeros((60, 60), np.uint8)
    labels[20:40, 15:45] = 1
    patch = crop_patch(labels, Box(30.0, 30.0, 40.0), 112, labels=True)
    assert set(np.unique(patch)) == {0, 1} and patch.dtype == np.uint8
