"""Stage 2's six points as landmarks: the heights of six-point morphometry placed directly, not read off an outline.

A six-channel U-Net reads the same crop as stage 2 (``spinemorph.refine.crops``: the body at ``MARGIN`` times its
extent, the same preprocessing) and gives one heatmap per point; each point is its heatmap's soft-argmax
(sub-pixel), the mean of the crop's and its mirror image's answer. Channels are in image order (``POINTS``: upper
left, middle, right, then lower), so the mirror image is the same task with left and right swapped; the film's
facing says which side is anterior (``spinemorph.measure``).

Since bundle 0.4.0 the heights of the bodies stage 2 drew come by default from the mean of the landmarks' points
and the outline's (since 2026-12-05 weighted 0.6 to the landmarks: ``spinemorph.measure.core.LANDMARK_WEIGHT``;
``analyse(heights=...)``; the server's ``heights``, ``spinemorph segment --heights``): the
outline stays the one stage 2 drew and the gates judge it. The outline alone reads a fracture's reduction slightly
high and the landmarks alone slightly low; on the calibration simulations (series 4500, 4600, 4700) the mean's
graded heights are 0.252 mm from the truth against the outline's 0.320, with the outline's Genant κ (0.932;
docs/STAGE2.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spinemorph.hierarchical.boxes import Box
from spinemorph.inference.model import ModelSpec
from spinemorph.networks.factory import NETWORKS, PadToMultiple
from spinemorph.networks.norms import group_instance_norms
from spinemorph.refine.crops import body_boxes, crop_inputs, normalised

__all__ = ["LANDMARKS_FILE", "POINTS", "Landmarks", "build_landmark_net", "load_landmarks", "save_landmarks",
           "soft_argmax", "mirrored", "predict_points", "to_crop", "to_film", "find_landmarks"]

#: Where a bundle keeps its landmark network, beside models/refine.pt.
LANDMARKS_FILE = "landmarks.pt"
#: The network's output channels, in image order: the film's facing names anterior and posterior.
POINTS = tuple(f"{row}_{side}" for row in ("superior", "inferior") for side in ("left", "middle", "right"))
_MIRROR = [2, 1, 0, 5, 4, 3]  # the channel each point becomes in the mirror image
_BATCH = 16


@dataclass
class Landmarks:
    """Per level code, the six points (``POINTS`` -> (row, col) on the input's pixel grid), and timings."""

    points: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def build_landmark_net(spec: ModelSpec) -> nn.Module:
    """Return a freshly initialised landmark network of ``spec`` (its ``network`` and ``kwargs``, six outputs)."""
    return PadToMultiple(NETWORKS[spec.network](1, len(POINTS), **spec.kwargs))


def save_landmarks(net: nn.Module, spec: ModelSpec, path: str | Path, extra: dict | None = None) -> Path:
    """Save a landmark network with its spec and its channel order."""
    from spinemorph.store import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"state_dict": net.state_dict(), "spec": spec.to_dict(), "points": list(POINTS), **(extra or {})}
    return atomic_write(path, lambda fh: torch.save(state, fh))


def load_landmarks(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec] | None:
    """Return the landmark network (eval mode, instance norms as group norms: ``spinemorph.networks.norms``) and
    its spec: ``path`` itself, or the one shipped beside a segmentation model (a bundle's models/landmarks.pt); None
    when there is none."""
    path = Path(path)
    if path.name != LANDMARKS_FILE:
        path = path / "models" / LANDMARKS_FILE if path.is_dir() else path.with_name(LANDMARKS_FILE)
    if not path.is_file():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if tuple(ckpt.get("points", ())) != POINTS:
        raise ValueError(f"{path} is not a six-point landmark network of this version (points {ckpt.get('points')}).")
    spec = ModelSpec.from_dict(ckpt["spec"])
    net = build_landmark_net(spec)
    net.load_state_dict(ckpt["state_dict"])
    return group_instance_norms(net).to(device).eval(), spec


def soft_argmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (log-probabilities (B, C, H*W), points (B, C, 2) as (row, col) in crop pixels) of heatmaps
    (B, C, H, W)."""
    b, c, h, w = logits.shape
    logp = F.log_softmax(logits.float().reshape(b, c, h * w), dim=-1)
    p = logp.exp().reshape(b, c, h, w)
    rows = (p.sum(-1) * torch.arange(h, dtype=p.dtype, device=p.device)).sum(-1)
    cols = (p.sum(-2) * torch.arange(w, dtype=p.dtype, device=p.device)).sum(-1)
    return logp, torch.stack([rows, cols], -1)


def mirrored(points: torch.Tensor, width: int) -> torch.Tensor:
    """Return six points (..., 6, 2) of a crop as the points of its left-right mirror image (and back)."""
    out = points[..., _MIRROR, :].clone()
    out[..., 1] = width - 1 - out[..., 1]
    return out


@torch.no_grad()
def predict_points(net: nn.Module, x: torch.Tensor, device: str | torch.device = "cpu") -> np.ndarray:
    """Return six points (N, 6, 2) per crop (N, 1, P, P) in crop pixels: the mean of the crop's and its mirror
    image's (mapped back)."""
    out = []
    for i in range(0, len(x), _BATCH):
        batch = x[i:i + _BATCH].to(device)
        _, pts = soft_argmax(net(torch.cat([batch, batch.flip(-1)])))
        n = len(batch)
        out.append(((pts[:n] + mirrored(pts[n:], x.shape[-1])) / 2).cpu())
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros((0, len(POINTS), 2))


def to_crop(points: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Return (row, col) points of the film in the pixels of ``box``'s crop resampled to ``size``²."""
    top, left, bottom, _ = box.bounds()
    return (np.asarray(points, np.float64) - [top, left] + 0.5) * size / (bottom - top) - 0.5


def to_film(points: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Return (row, col) points of ``box``'s crop (``size``²) on the film's pixel grid (``to_crop``'s inverse)."""
    top, left, bottom, _ = box.bounds()
    return (np.asarray(points, np.float64) + 0.5) * (bottom - top) / size - 0.5 + [top, left]


def find_landmarks(pixels: np.ndarray, labels: np.ndarray, net: nn.Module, spec: ModelSpec,
                   device: str | torch.device = "cpu", codes: set[int] | None = None,
                   prepared: np.ndarray | None = None) -> Landmarks:
    """Return the six points of every body of ``labels`` (VerSe codes on the grid of ``pixels``), or of ``codes``
    only, each from the crop of its outline's box; ``prepared``: ``normalised(pixels)`` when the caller has it."""
    start = time.perf_counter()
    boxes = [(c, b) for c, b in body_boxes(labels) if codes is None or c in codes]
    x = crop_inputs(normalised(pixels) if prepared is None else prepared, [b for _, b in boxes], spec.preprocessing)
    crops_s = time.perf_counter() - start
    start = time.perf_counter()
    pts = predict_points(net, x, device)
    points = {code: dict(zip(POINTS, to_film(p, box, x.shape[-1]), strict=True))
              for (code, box), p in zip(boxes, pts, strict=True)}
    return Landmarks(points, {"landmarks_crops_s": crops_s, "landmarks_network_s": time.perf_counter() - start})
