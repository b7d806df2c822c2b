"""Segmentation metrics per image (Kim et al. 2021, Table 1), per-level Dice and level identification."""

from __future__ import annotations

import numpy as np

from spinemorph.levels import codes_in

__all__ = ["binary_metrics", "roc_pr_auc", "level_metrics", "roc_pr_curves"]


def binary_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Return sensitivity, specificity, accuracy, DSC and IoU of body-vs-background masks."""
    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    tp, tn = float((p & t).sum()), float((~p & ~t).sum())
    fp, fn = float((p & ~t).sum()), float((~p & t).sum())
    return {
        "sensitivity": tp / max(tp + fn, 1.0), "specificity": tn / max(tn + fp, 1.0),
        "accuracy": (tp + tn) / max(tp + tn + fp + fn, 1.0), "dsc": 2 * tp / max(2 * tp + fp + fn, 1.0),
        "iou": tp / max(tp + fp + fn, 1.0),
    }


def _subsample(score: np.ndarray, truth: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    score, truth = np.asarray(score, np.float64).ravel(), np.asarray(truth).ravel() > 0
    if score.size > limit:
        idx = np.random.default_rng(seed).choice(score.size, limit, replace=False)
        score, truth = score[idx], truth[idx]
    return score, truth


def roc_pr_auc(score: np.ndarray, truth: np.ndarray, limit: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """Return ROC-AUC (Mann-Whitney, ties averaged) and PR-AUC (average precision) of per-pixel body scores."""
    s, t = _subsample(score, truth, limit, seed)
    pos, neg = int(t.sum()), int((~t).sum())
    if pos == 0 or neg == 0:
        return float("nan"), float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    roc = (ranks[t].sum() - pos * (pos + 1) / 2.0) / (pos * neg)
    desc = np.argsort(-s, kind="mergesort")
    hits = t[desc]
    precision = np.cumsum(hits) / np.arange(1, s.size + 1)
    ap = float((precision * hits).sum() / pos)
    return float(roc), ap


def roc_pr_curves(score: np.ndarray, truth: np.ndarray, points: int = 200, limit: int = 200_000,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Return ROC (fpr, tpr) and PR (recall, precision) curves at ``points`` thresholds."""
    s, t = _subsample(score, truth, limit, seed)
    thresholds = np.quantile(s, np.linspace(0, 1, points))[::-1]
    pos, neg = max(int(t.sum()), 1), max(int((~t).sum()), 1)
    tp = np.array([(t & (s >= th)).sum() for th in thresholds], float)
    fp = np.array([(~t & (s >= th)).sum() for th in thresholds], float)
    return {"fpr": fp / neg, "tpr": tp / pos, "recall": tp / pos, "precision": tp / np.maximum(tp + fp, 1.0)}


def level_metrics(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Return per-level Dice and level identification: the share of true bodies whose prediction names them.

    A true body is identified when the predicted label covering most of it (by pixels) is its own level.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    dice, named = {}, []
    for code in codes_in(truth):
        t = truth == code
        p = pred == code
        dice[code] = float(2 * (p & t).sum() / max(int(p.sum() + t.sum()), 1))
        covering = pred[t]
        covering = covering[covering > 0]
        named.append(bool(covering.size) and int(np.bincount(covering).argmax()) == code)
    return {"dice": dice, "identified": float(np.mean(named)) if named else float("nan"), "bodies": len(named)}
