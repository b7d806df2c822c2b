from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinemorph.hierarchical.levelset import edge_indicator, refine_mask


def _scene():
    rng = np.random.default_rng(0)
    truth = np.zeros((96, 96), bool)
    truth[30:66, 25:75] = True
    image = ndimage.gaussian_filter(truth * 0.6, 1.0) + rng.normal(0, 0.02, truth.shape)
    return image.astype(np.float32), truth


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_the_edge_indicator_is_low_on_edges_and_high_in_flat_regions():
    image, truth = _scene()
    g = edge_indicator(image)
    edge = truth ^ ndimage.binary_erosion(truth)
    assert g[edge].mean() < 0.15 and g[40:56, 40:60].mean() > 0.8


def test_a_perfect_mask_stays_and_a_dilated_or_eroded_one_is_pulled_to_the_edge():
    image, truth = _scene()
    assert _dice(refine_mask(image, truth.astype(np.float32)) < 0, truth) > 0.98
    dilated = ndimage.binary_dilation(truth, iterations=4)
    refined = refine_mask(image, dilated.astype(np.float32)) < 0
    assert _dice(dilated, truth) < 0.84 and _dice(refined, truth) > _dice(dilated, truth) + 0.05
    eroded = ndimage.binary_erosion(truth, iterations=3)
    refined = refine_mask(image, eroded.astype(np.float32)) < 0
    assert _dice(refined, truth) > _dice(eroded, truth) + 0.05


def test_empty_or_full_masks_come_back_unchanged():
    image, _ = _scene()
    assert (refine_mask(image, np.zeros_like(image)) > 0).all()
    assert (refine_mask(image, np.ones_like(image)) < 0).all()
