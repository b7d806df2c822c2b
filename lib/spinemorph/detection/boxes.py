"""Boxes in MONAI's standard mode, in array order: (row0, col0, row1, col1), a pixel i covering [i, i + 1).

IoU and NMS are MONAI's pure-torch ``monai.data.box_utils``; this module adds what a two-stage detector needs
around them: boxes from masks, clipping, small-box removal, and the Faster R-CNN IoU-threshold matcher (MONAI
ships only ATSS; torchvision's ``Matcher`` cannot load here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.apps.detection.utils.ATSS_matcher import Matcher
from monai.data.box_utils import batched_nms, box_iou, clip_boxes_to_image

__all__ = ["box_iou", "nms", "masks_to_boxes", "clip_boxes", "keep_large", "IoUMatcher"]


def _overlap(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Return the IoU matrix of valid boxes: ``box_iou`` without its per-call checks, for NMS's inner loop."""
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).prod(dim=1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).prod(dim=1)
    return inter / (area1[:, None] + area2[None, :] - inter + torch.finfo(torch.float32).eps)


def nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float,
        max_keep: int = -1) -> torch.Tensor:
    """Return the indices kept by greedy NMS within each group (class or level), best score first.

    MONAI's ``batched_nms``, given an overlap function without validity checks: the boxes are already valid,
    and the checks cost more than the IoU itself in the loop.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    keep = batched_nms(boxes.float(), scores.float(), groups, threshold, max_keep, box_overlap_metric=_overlap)
    return torch.as_tensor(keep, dtype=torch.long, device=boxes.device)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Return the tight box (N, 4) of each mask in (N, H, W); an empty mask gives a zero box."""
    n = masks.shape[0]
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    out = torch.zeros((n, 4), dtype=torch.float32, device=masks.device)
    for axis, present in ((0, rows), (1, cols)):
        idx = torch.arange(present.shape[1], device=masks.device, dtype=torch.float32)
        big = torch.full_like(idx, float(present.shape[1]))
        out[:, axis] = torch.where(present, idx, big).amin(dim=1)
        out[:, axis + 2] = torch.where(present, idx, -torch.ones_like(idx)).amax(dim=1) + 1
    empty = ~rows.any(dim=1)
    out[empty] = 0.0
    return out


def clip_boxes(boxes: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Return ``boxes`` clipped to an image of ``size`` (rows, cols)."""
    if boxes.numel() == 0:
        return boxes
    clipped, _ = clip_boxes_to_image(boxes, tuple(int(s) for s in size), remove_empty=False)
    return clipped


def keep_large(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Return the indices of boxes at least ``min_size`` pixels along both axes."""
    sides = boxes[:, 2:] - boxes[:, :2]
    return torch.nonzero((sides >= min_size).all(dim=1)).flatten()


class IoUMatcher(Matcher):
    """The Faster R-CNN matcher on MONAI's ``Matcher`` interface: a box goes to the ground truth it overlaps most.

    Matches with IoU >= ``high`` are kept; below ``low`` they become ``BELOW_LOW_THRESHOLD`` (-1, background),
    in between ``BETWEEN_THRESHOLDS`` (-2, ignored). With ``allow_low_quality``, every ground truth also keeps
    the boxes that overlap it best, even below ``high``.

    Example::

        quality, matches = IoUMatcher(0.5, 0.5)(gt_boxes, proposals, [len(proposals)], 1)
    """

    def __init__(self, high: float = 0.5, low: float = 0.5, allow_low_quality: bool = False) -> None:
        super().__init__(similarity_fn=box_iou)
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"Thresholds must satisfy 0 <= low <= high <= 1, not low={low}, high={high}.")
        self.high, self.low, self.allow_low_quality = high, low, allow_low_quality

    def compute_matches(self, boxes: torch.Tensor, anchors: torch.Tensor, num_anchors_per_level: Sequence[int],
                        num_anchors_per_loc: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the IoU matrix (gt, boxes) and each box's matched ground truth index (or -1 / -2)."""
        quality = self.similarity_fn(boxes, anchors)
        best, matches = quality.max(dim=0)
        kept = matches.clone()
        matches[best < self.low] = self.BELOW_LOW_THRESHOLD
        matches[(best >= self.low) & (best < self.high)] = self.BETWEEN_THRESHOLDS
        if self.allow_low_quality:
            top = quality.max(dim=1, keepdim=True).values
            box_idx = torch.nonzero((quality == top) & (top > 0))[:, 1]
            matches[box_idx] = kept[box_idx]
        return quality, matches
