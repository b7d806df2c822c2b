"""Kim et al.'s clean-up (small components, holes) and level consistency for per-level predictions.

A per-level prediction may split a level, give two bodies one level, or name them out of order. Here every
level keeps its largest component (pieces of a level that overlap it vertically are fragments of the same
body and go; pieces clear of it may be another body the network misnamed). Then the bodies, top to bottom,
are renamed as one run of consecutive levels: the run that agrees best (by area) with what the network
said, allowing for a missing body where the gap between two centroids is much wider than the gaps beside it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinemorph.levels import TRAINED_LEVELS
from spinemorph.measure.indices import missing_after

__all__ = ["clean_binary", "consistent_levels"]

_EIGHT = np.ones((3, 3), bool)
_MIN_AREA_FRACTION = 0.2  # of the median body


def clean_binary(mask: np.ndarray) -> np.ndarray:
    """Return a 0/1 mask without components under a fifth of the median component, holes filled."""
    comps, n = ndimage.label(mask > 0, structure=_EIGHT)
    if n == 0:
        return np.zeros(mask.shape, np.uint8)
    areas = ndimage.sum_labels(mask > 0, comps, index=np.arange(1, n + 1))
    keep = np.flatnonzero(areas >= _MIN_AREA_FRACTION * np.median(areas)) + 1
    return ndimage.binary_fill_holes(np.isin(comps, keep)).astype(np.uint8)


def consistent_levels(labels: np.ndarray, levels: tuple[int, ...] = TRAINED_LEVELS) -> np.ndarray:
    """Return a VerSe labelmap with one component per level, holes filled, levels consecutive top to bottom."""
    pieces = []  # (row centroid, area, predicted code, mask)
    for code in (int(c) for c in np.unique(labels) if c):
        comps, n = ndimage.label(labels == code, structure=_EIGHT)
        if n == 0:
            continue
        areas = ndimage.sum_labels(labels == code, comps, index=np.arange(1, n + 1))
        kept_rows: list[tuple[int, int]] = []
        for i in np.argsort(-areas) + 1:
            if areas[i - 1] < _MIN_AREA_FRACTION * areas.max():
                break
            rows = np.nonzero(comps == i)[0]
            span = (int(rows.min()), int(rows.max()))
            if any(span[0] <= hi and lo <= span[1] for lo, hi in kept_rows):
                continue  # a fragment beside a larger piece of the same level: the same body
            kept_rows.append(span)
            m = ndimage.binary_fill_holes(comps == i)
            pieces.append((float(rows.mean()), float(m.sum()), code, m))
    if not pieces:
        return np.zeros(labels.shape, np.uint8)
    median_area = float(np.median([p[1] for p in pieces]))
    pieces = [p for p in pieces if p[1] >= _MIN_AREA_FRACTION * median_area]
    pieces.sort(key=lambda p: p[0])
    rows = np.array([p[0] for p in pieces])
    gaps = np.diff(rows)
    missing = missing_after(np.maximum(gaps, 1e-6))
    beside = [min([gaps[j] for j in (i - 1, i + 1) if 0 <= j < len(gaps)] or [gaps[i]]) for i in range(len(gaps))]
    skipped = np.clip(np.round(gaps / np.maximum(np.array(beside), 1.0)), 2, len(levels))
    steps = np.concatenate([[0], np.where(missing, skipped, 1)])
    steps = steps.astype(int)
    position = np.cumsum(steps)
    index = {c: i for i, c in enumerate(levels)}
    said = np.array([index.get(p[2], -10**6) for p in pieces])
    weights = np.array([p[1] for p in pieces])
    offsets = np.arange(-int(position[-1]), len(levels))
    score = [(weights * (said == k + position)).sum() for k in offsets]
    k = int(offsets[int(np.argmax(score))])
    out = np.zeros(labels.shape, np.uint8)
    for p, pos in zip(pieces, position, strict=True):
        if 0 <= k + pos < len(levels):
            out[p[3] & (out == 0)] = levels[k + pos]
    return out
