"""Detection metrics: AP@IoU per class (COCO's 101-point interpolation), precision-recall, and 2×2 tables.

Numpy only. A detection is a true positive when it overlaps a not-yet-matched ground truth of its class at
IoU >= 0.5, taken in descending score order over the whole test set (COCO's greedy rule); a detection that
overlaps an "ignore" box (a fracture cut by the image edge) is dropped, neither true nor false.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["box_iou_np", "ImageDetections", "match_image", "average_precision", "pr_curve", "ap_by_class",
           "confusion"]


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the IoU matrix (len(a), len(b)) of boxes (row0, col0, row1, col1)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class ImageDetections:
    """One image's detections and ground truth, each box with a class (a VerSe code, or 0 for class-agnostic)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    ignore_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


def match_image(image: ImageDetections, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per detection (kept mask, true-positive flag) and per ground truth its best matched score (or nan)."""
    order = np.argsort(-np.asarray(image.scores), kind="stable")
    kept = np.ones(len(order), bool)
    tp = np.zeros(len(order), bool)
    found = np.full(len(image.gt_boxes), np.nan)
    overlaps = box_iou_np(image.boxes, image.gt_boxes)
    ignored = box_iou_np(image.boxes, image.ignore_boxes).max(axis=1, initial=0.0) >= iou
    for d in order:
        same = np.flatnonzero((image.gt_classes == image.classes[d]) & np.isnan(found))
        best = same[np.argmax(overlaps[d, same])] if same.size else -1
        if best >= 0 and overlaps[d, best] >= iou:
            tp[d], found[best] = True, image.scores[d]
        elif ignored[d]:
            kept[d] = False
    return kept, tp, found


def average_precision(scores: Sequence[float], tp: Sequence[bool], n_gt: int) -> float:
    """Return AP (COCO's 101-point interpolated precision) of scored detections against ``n_gt`` truths; nan if 0."""
    if n_gt == 0:
        return float("nan")
    recall, precision, _ = pr_curve(scores, tp, n_gt)
    if recall.size == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.mean(np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)))


def pr_curve(scores: Sequence[float], tp: Sequence[bool], n_gt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (recall, precision, threshold) arrays, one point per detection in descending score order."""
    scores, tp = np.asarray(scores, float), np.asarray(tp, bool)
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(tp[order])
    recall = hits / max(n_gt, 1)
    precision = hits / np.arange(1, len(order) + 1)
    return recall, precision, scores[order]


def ap_by_class(images: Sequence[ImageDetections], iou: float = 0.5) -> dict[int, dict[str, float]]:
    """Return per class: AP, the number of truths and detections, over all images."""
    scores: dict[int, list] = {}
    flags: dict[int, list] = {}
    counts: dict[int, int] = {}
    for image in images:
        kept, tp, _ = match_image(image, iou)
        for c in np.asarray(image.gt_classes).tolist():
            counts[c] = counts.get(c, 0) + 1
        for d in np.flatnonzero(kept):
            c = int(image.classes[d])
            scores.setdefault(c, []).append(float(image.scores[d]))
            flags.setdefault(c, []).append(bool(tp[d]))
    out = {}
    for c in sorted(set(counts) | set(scores)):
        out[c] = {"ap": average_precision(scores.get(c, []), flags.get(c, []), counts.get(c, 0)),
                  "truths": counts.get(c, 0), "detections": len(scores.get(c, []))}
    return out


def confusion(predicted: Sequence[bool], truth: Sequence[bool]) -> dict[str, float]:
    """Return TP, FP, TN, FN, sensitivity, specificity, accuracy and F1 (in %) of binary calls."""
    p, t = np.asarray(predicted, bool), np.asarray(truth, bool)
    tp, fp = int((p & t).sum()), int((p & ~t).sum())
    tn, fn = int((~p & ~t).sum()), int((~p & t).sum())

    def pct(num: int, den: int) -> float:
        return 100.0 * num / den if den else float("nan")

    return {"TP": tp, "FP": fp, "TN": tn, "FN": fn, "sensitivity": pct(tp, tp + fn), "specificity": pct(tn, tn + fp),
            "accuracy": pct(tp + tn, len(p)), "f1": pct(2 * tp, 2 * tp + fp + fn)}
