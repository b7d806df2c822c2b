"""Evaluate a model on labelled cases: Table 1 metrics per image (mean ± sd), levels, and morphometry errors."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from spinemorph.evaluation.morphometry import Pairs, compare, summarise
from spinemorph.evaluation.segmentation import binary_metrics, level_metrics, roc_pr_auc
from spinemorph.inference import segment
from spinemorph.io import read_labelmap, read_radiograph
from spinemorph.measure import measure

__all__ = ["Evaluation", "evaluate"]

TABLE1 = ("sensitivity", "specificity", "accuracy", "dsc", "iou", "roc_auc", "pr_auc")


@dataclass
class Evaluation:
    """Per-image metrics, per-level Dice, morphometry pairs and timings of one model on a set of cases."""

    per_image: list[dict] = field(default_factory=list)
    level_dice: dict[int, list[float]] = field(default_factory=dict)
    morphometry: Pairs = field(default_factory=Pairs)
    scores: list[np.ndarray] = field(default_factory=list)  # body probabilities (subsampled), for curves
    truths: list[np.ndarray] = field(default_factory=list)

    def summary(self) -> dict:
        """Return mean ± sd of every per-image metric, level identification and the morphometry errors."""
        out = {}
        first = self.per_image[0] if self.per_image else {}
        keys = [k for k, v in first.items() if isinstance(v, (int, float))]
        for k in keys:
            v = np.array([m[k] for m in self.per_image], float)
            out[k] = {"mean": float(np.nanmean(v)), "sd": float(np.nanstd(v))}
        out["level_dice"] = {int(c): float(np.mean(v)) for c, v in sorted(self.level_dice.items())}
        out["morphometry"] = summarise(self.morphometry) if self.morphometry.grade else {}
        out["images"] = len(self.per_image)
        return out


def evaluate(net, spec, cases, device="cpu", progress: bool = True, keep_curves: bool = False) -> Evaluation:
    """Segment every case, compare with its label (and truth JSON when present), and return the Evaluation."""
    result = Evaluation()
    rng = np.random.default_rng(0)
    for case in tqdm(cases, desc="evaluating", unit="case", disable=not progress):
        image = read_radiograph(case.image)
        truth_labels, _ = read_labelmap(case.label)
        start = time.perf_counter()
        seg = segment(image.pixels, net, spec, device)
        seconds = time.perf_counter() - start
        metrics = binary_metrics(seg.labels, truth_labels)
        metrics["roc_auc"], metrics["pr_auc"] = roc_pr_auc(seg.foreground, truth_labels)
        metrics["seconds"] = seconds
        if spec.head != "binary":
            lv = level_metrics(seg.labels, truth_labels)
            metrics["level_identified"] = lv["identified"]
            for code, d in lv["dice"].items():
                result.level_dice.setdefault(code, []).append(d)
        result.per_image.append(metrics)
        if case.truth is not None:
            truth = json.loads(case.truth.read_text())
            morph = measure(seg.labels, image.spacing_mm, image.facing,
                            anchor=None if spec.head != "binary" else _lowest_level(truth))
            compare(morph, truth, result.morphometry)
        if keep_curves:
            idx = rng.choice(truth_labels.size, min(20_000, truth_labels.size), replace=False)
            result.scores.append(seg.foreground.ravel()[idx])
            result.truths.append((truth_labels.ravel() > 0)[idx])
    return result


def _lowest_level(truth: dict) -> str | None:
    """Return the lowest whole level of a truth record, to name a binary mask's bodies for morphometry."""
    whole = [v for v in truth["vertebrae"] if not v["truncated"]]
    return max(whole, key=lambda v: v.get("center_px", [0])[0])["level"] if whole else None
