"""Ground-truth instances from a labelmap and its truth: every body is an instance, its class its fracture level.

The grades come from the simulator's truth JSON; an annotated labelmap without one is graded by measuring it
(``spinemorph.measure``, which agrees with the truth at kappa 1.0 on ground-truth labelmaps).

A body with Genant grade >= 1 at one of the detector's levels takes that level's class; a normal body is
class 0 (background for the classifier, but still a body for the RPN, the box regression and the mask head);
a fracture the classes do not cover, or one the image edge cuts, is -1 (ignored by the classifier).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from spinemorph.detection.boxes import masks_to_boxes
from spinemorph.networks import code_to_class

__all__ = ["IGNORE", "truth_grades", "measured_grades", "body_classes", "instances"]

IGNORE = -1


def truth_grades(truth: dict | str | Path | None) -> dict[int, tuple[int, bool]]:
    """Return, per VerSe code in a truth record, (Genant grade as the detector shows it, truncated)."""
    if truth is None:
        return {}
    if not isinstance(truth, dict):
        truth = json.loads(Path(truth).read_text())
    out = {}
    for v in truth.get("vertebrae", []):
        grade = v.get("genant_grade_shown", v.get("genant_grade", 0)) or 0
        out[int(v["code"])] = (int(grade), bool(v.get("truncated", False)))
    return out


def measured_grades(labels, spacing=None, facing: str | None = None) -> dict[int, tuple[int, bool]]:
    """Return, per body of an annotated labelmap without a truth record, (measured Genant grade, truncated)."""
    from spinemorph.measure import measure
    from spinemorph.measure.gates import TRUTH_GATES

    out = {}
    for rec in measure(labels, spacing, facing, gates=TRUTH_GATES).vertebrae:
        if rec.code is not None:
            out[int(rec.code)] = (int(rec.genant_grade or 0), "truncated" in rec.flags)
    return out


def body_classes(grades: dict[int, tuple[int, bool]], codes: Sequence[int], classes: Sequence[int]) -> dict[int, int]:
    """Return the detector class of each body code: 1-based level class if fractured, 0 if normal, -1 to ignore."""
    index = {c: i + 1 for i, c in enumerate(classes)}
    out = {}
    for code in codes:
        grade, truncated = grades.get(int(code), (0, False))
        if grade < 1:
            out[int(code)] = 0
        elif truncated or int(code) not in index:
            out[int(code)] = IGNORE
        else:
            out[int(code)] = index[int(code)]
    return out


def instances(labels: torch.Tensor, classes_by_code: dict[int, int], min_pixels: int = 12) -> dict[str, torch.Tensor]:
    """Return a detector target from a (H, W) labelmap of VerSe codes.

    Keys: boxes (M, 4), classes (M,), masks (M, H, W) uint8, codes (M,) and semantic (H, W), the per-level
    classes of the segmentation head. Bodies under ``min_pixels`` (cut by the edge or an augmentation) are
    left out of the instances.
    """
    labels = labels.long()
    codes = [int(c) for c in torch.unique(labels) if c > 0]
    areas = {c: int((labels == c).sum()) for c in codes}
    codes = [c for c in codes if areas[c] >= min_pixels]
    masks = torch.stack([labels == c for c in codes]).to(torch.uint8) if codes else \
        torch.zeros((0, *labels.shape), dtype=torch.uint8)
    semantic = torch.as_tensor(code_to_class(labels.numpy(), "levels"), dtype=torch.long)
    return {
        "boxes": masks_to_boxes(masks.bool()),
        "classes": torch.tensor([classes_by_code.get(c, 0) for c in codes], dtype=torch.long),
        "masks": masks,
        "codes": torch.tensor(codes, dtype=torch.long),
        "semantic": semantic,
    }

