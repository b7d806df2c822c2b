"""RoIAlign in pure PyTorch, on ``grid_sample``: the same code on CPU and GPU, no compiled torchvision op.

It follows torchvision's ``roi_align(..., aligned=True)`` (Detectron2's ROIAlignV2) with a fixed sampling ratio:
a box's continuous coordinates are scaled and shifted by half a pixel, each output bin averages
``sampling_ratio``² bilinear samples, a sample more than one pixel outside the map is zero and one within a
pixel of the edge reads the edge. Boxes are (row0, col0, row1, col1) in array order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["roi_align", "MultiScaleRoIAlign"]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _sample_coordinates(start: torch.Tensor, length: torch.Tensor, bins: int, ratio: int) -> torch.Tensor:
    """Return (K, bins * ratio) sample positions along one axis, in pixel-centre coordinates."""
    steps = (torch.arange(bins * ratio, device=start.device, dtype=start.dtype) + 0.5) / ratio
    return start[:, None] + steps[None, :] * (length / bins)[:, None]


def roi_align(features: torch.Tensor, rois: torch.Tensor, output_size: int | Sequence[int],
              spatial_scale: float = 1.0, sampling_ratio: int = 2) -> torch.Tensor:
    """Return the (K, C, oh, ow) features of ``rois`` (K, 5: batch index, row0, col0, row1, col1) in (B, C, H, W).

    Args:
        features: the feature map.
        rois: boxes in image coordinates, with the index of their image first.
        output_size: bins per side (int or (rows, cols)).
        spatial_scale: feature-map pixels per image pixel (1 / stride).
        sampling_ratio: bilinear samples per bin along each axis.

    Example::

        pooled = roi_align(p2, torch.tensor([[0, 10.0, 12.0, 40.0, 50.0]]), 7, spatial_scale=0.25)  # (1, C, 7, 7)
    """
    if sampling_ratio < 1:
        raise ValueError(f"sampling_ratio must be at least 1, not {sampling_ratio}.")
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must be (K, 5): batch index, row0, col0, row1, col1; got {tuple(rois.shape)}.")
    oh, ow = _pair(output_size)
    b, c, h, w = features.shape
    out = features.new_zeros((rois.shape[0], c, oh, ow))
    if rois.shape[0] == 0:
        return out
    boxes = rois[:, 1:].to(features.dtype) * spatial_scale - 0.5
    for image in range(b):
        sel = torch.nonzero(rois[:, 0].long() == image).flatten()
        if sel.numel() == 0:
            continue
        k = sel.numel()
        r = _sample_coordinates(boxes[sel, 0], boxes[sel, 2] - boxes[sel, 0], oh, sampling_ratio)  # (k, oh*s)
        q = _sample_coordinates(boxes[sel, 1], boxes[sel, 3] - boxes[sel, 1], ow, sampling_ratio)  # (k, ow*s)
        rr, qq = r[:, :, None].expand(k, r.shape[1], q.shape[1]), q[:, None, :].expand(k, r.shape[1], q.shape[1])
        # grid_sample with align_corners=False reads pixel p at (2p + 1) / size - 1; "border" clamps to the edge.
        grid = torch.stack([(2 * qq + 1) / w - 1, (2 * rr + 1) / h - 1], dim=-1)
        sampled = F.grid_sample(features[image:image + 1], grid.reshape(1, -1, q.shape[1], 2), mode="bilinear",
                                padding_mode="border", align_corners=False)  # (1, C, k*oh*s, ow*s)
        inside = ((rr >= -1) & (rr <= h) & (qq >= -1) & (qq <= w)).to(features.dtype)
        sampled = sampled * inside.reshape(1, 1, -1, q.shape[1])
        pooled = F.avg_pool2d(sampled, sampling_ratio) if sampling_ratio > 1 else sampled  # (1, C, k*oh, ow)
        out[sel] = pooled.reshape(c, k, oh, ow).permute(1, 0, 2, 3)
    return out


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign from the pyramid level that suits each box's size (Lin et al. 2017, equation 1).

    A box of side ``sqrt(area)`` goes to level ``floor(canonical_level + log2(side / canonical_size))``,
    clamped to the levels given.

    Args:
        strides: the stride of each feature map, finest first (e.g. 4, 8, 16, 32).
        output_size: bins per side.
        canonical_size, canonical_level: a box of this side pools from the level of this stride's log2.
        sampling_ratio: bilinear samples per bin along each axis.
    """

    def __init__(self, strides: Sequence[int], output_size: int, canonical_size: float = 48.0,
                 canonical_level: int = 3, sampling_ratio: int = 2) -> None:
        super().__init__()
        if not strides:
            raise ValueError("MultiScaleRoIAlign needs at least one feature map stride.")
        self.levels = [int(round(math.log2(s))) for s in strides]
        self.strides, self.output_size = list(strides), output_size
        self.canonical_size, self.canonical_level, self.sampling_ratio = canonical_size, canonical_level, sampling_ratio

    def assign(self, boxes: torch.Tensor) -> torch.Tensor:
        """Return the index into the feature list that each box (N, 4) pools from."""
        side = ((boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3) * (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3)).sqrt()
        level = torch.floor(self.canonical_level + torch.log2(side / self.canonical_size) + 1e-6)
        return (level.clamp(self.levels[0], self.levels[-1]) - self.levels[0]).long()

    def forward(self, features: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return (sum of boxes, C, size, size) features for the boxes of each image, in order."""
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        out = features[0].new_zeros((rois.shape[0], features[0].shape[1], self.output_size, self.output_size))
        which = self.assign(rois[:, 1:])
        for k, (fmap, stride) in enumerate(zip(features, self.strides, strict=True)):
            sel = torch.nonzero(which == k).flatten()
            if sel.numel():
                out[sel] = roi_align(fmap, rois[sel], self.output_size, 1.0 / stride, self.sampling_ratio)
        return out
