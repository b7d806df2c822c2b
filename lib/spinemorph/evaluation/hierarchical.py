"""Kim et al. 2019's Table 2 measures on one image: region metrics over L1-L5, centre error and detection success.

A pixel counts as a true positive only when it is predicted with its own level, so a segmentation that calls T12
"L1" loses both precision and sensitivity: the confusion the paper's localisation stage exists to prevent.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinemorph.postprocess import clean_binary

__all__ = ["LUMBAR", "region_metrics", "lowest_five", "component_centres", "centre_errors", "detection_success"]

LUMBAR: tuple[int, ...] = (20, 21, 22, 23, 24)  # L1..L5


def region_metrics(pred: np.ndarray, truth: np.ndarray, levels: tuple[int, ...] = LUMBAR) -> dict[str, float]:
    """Return Dice, precision, sensitivity and specificity over ``levels``, a pixel counting only with its level."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    p, t = np.isin(pred, levels), np.isin(truth, levels)
    tp = float((p & t & (pred == truth)).sum())
    fp, fn = float(p.sum()) - tp, float(t.sum()) - tp
    tn = float((~p & ~t).sum())  # a pixel of one level called another is both a false positive and a false negative
    return {"dice": 2 * tp / max(2 * tp + fp + fn, 1.0), "precision": tp / max(tp + fp, 1.0),
            "sensitivity": tp / max(tp + fn, 1.0), "specificity": tn / max(tn + fp, 1.0)}


def lowest_five(mask: np.ndarray, levels: tuple[int, ...] = LUMBAR) -> np.ndarray:
    """Return a binary body mask's five lowest components (by centroid row) named L1..L5, the lowest L5.

    This is how a whole-image segmenter names its bodies without a localisation stage; fewer bodies are named
    from L5 up, and the components above the five are dropped.
    """
    comps, n = ndimage.label(clean_binary(mask))
    out = np.zeros(np.shape(mask), np.uint8)
    if n == 0:
        return out
    rows = ndimage.center_of_mass(np.ones_like(comps), comps, np.arange(1, n + 1))
    order = np.argsort([r for r, _ in rows])[::-1][:len(levels)]  # lowest first
    for code, i in zip(levels[::-1], order, strict=False):
        out[comps == i + 1] = code
    return out


def component_centres(labels: np.ndarray, levels: tuple[int, ...] = LUMBAR) -> dict[int, tuple[float, float]]:
    """Return the centroid (row, col) of each level present in a labelmap."""
    labels = np.asarray(labels)
    present = [c for c in levels if (labels == c).any()]
    centres = ndimage.center_of_mass(np.ones(labels.shape), labels, present) if present else []
    return {c: (float(r), float(col)) for c, (r, col) in zip(present, centres, strict=True)}


def centre_errors(pred: dict[int, tuple[float, float]], truth: dict[int, tuple[float, float]],
                  spacing: tuple[float, float] | None) -> dict[int, tuple[float, float]]:
    """Return, per level found in both, the centre error in pixels and in mm (nan without a spacing)."""
    out = {}
    for code in sorted(set(pred) & set(truth)):
        d = np.subtract(pred[code], truth[code])
        mm = float(np.hypot(d[0] * spacing[0], d[1] * spacing[1])) if spacing else float("nan")
        out[code] = (float(np.hypot(*d)), mm)
    return out


def detection_success(pred: dict[int, tuple[float, float]], truth_labels: np.ndarray,
                      levels: tuple[int, ...] = LUMBAR) -> bool:
    """Return True when every level has a predicted centre and each lies inside its own true body."""
    truth_labels = np.asarray(truth_labels)
    for code in levels:
        if code not in pred:
            return False
        r, c = (int(round(v)) for v in pred[code])
        inside = 0 <= r < truth_labels.shape[0] and 0 <= c < truth_labels.shape[1]
        if not inside or truth_labels[r, c] != code:
            return False
    return True
