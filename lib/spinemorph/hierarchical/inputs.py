"""The networks' inputs: the whole radiograph fitted into Pose-net's H×W frame, and the full-resolution image the
patches are cut from. Both use the one normalisation and CLAHE + Gaussian of ``spinemorph.transforms``.

Pose-net's frame is ``size`` × ``size // 2`` (height × width; the paper's 512×256), the image resized with its
aspect ratio kept and zero-padded, centred. ``FitGeometry`` maps points between the image and the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from spinemorph.transforms import ClaheGaussian, NormalizeRadiograph, Preprocessing

__all__ = ["FitGeometry", "pose_frame", "pose_input", "full_resolution"]


def pose_frame(settings: Preprocessing) -> tuple[int, int]:
    """Return Pose-net's input (height, width): ``size`` × ``size // 2``, as the paper's 512×256."""
    return settings.size, settings.size // 2


@dataclass(frozen=True)
class FitGeometry:
    """Where an (H, W) image went in a (h, w) frame: resized to ``resized``, placed at (top, left)."""

    shape: tuple[int, int]
    frame: tuple[int, int]
    resized: tuple[int, int]
    top: int
    left: int

    @classmethod
    def of(cls, shape: tuple[int, int], frame: tuple[int, int]) -> FitGeometry:
        """Return the geometry that fits ``shape`` into ``frame``, aspect kept, centred."""
        h, w = int(shape[0]), int(shape[1])
        if h < 1 or w < 1:
            raise ValueError(f"Cannot fit an image of shape {shape}.")
        scale = min(frame[0] / h, frame[1] / w)
        rh, rw = max(1, min(frame[0], round(h * scale))), max(1, min(frame[1], round(w * scale)))
        return cls((h, w), (int(frame[0]), int(frame[1])), (rh, rw), (frame[0] - rh) // 2, (frame[1] - rw) // 2)

    @property
    def scale(self) -> float:
        """Return frame pixels per image pixel (rows)."""
        return self.resized[0] / self.shape[0]

    def to_frame(self, points) -> np.ndarray:
        """Return image (row, col) points in frame pixels (pixel centres map onto pixel centres)."""
        p = np.asarray(points, float).reshape(-1, 2)
        rh, rw = self.resized
        sy, sx = rh / self.shape[0], rw / self.shape[1]
        return np.stack([(p[:, 0] + 0.5) * sy - 0.5 + self.top, (p[:, 1] + 0.5) * sx - 0.5 + self.left], axis=1)

    def to_image(self, points) -> np.ndarray:
        """Return frame (row, col) points in image pixels."""
        p = np.asarray(points, float).reshape(-1, 2)
        rh, rw = self.resized
        sy, sx = rh / self.shape[0], rw / self.shape[1]
        return np.stack([(p[:, 0] - self.top + 0.5) / sy - 0.5, (p[:, 1] - self.left + 0.5) / sx - 0.5], axis=1)


def full_resolution(pixels: np.ndarray, settings: Preprocessing) -> np.ndarray:
    """Return the radiograph normalised to [0, 1] with CLAHE and Gaussian smoothing, at its own resolution."""
    x = NormalizeRadiograph()(torch.as_tensor(np.asarray(pixels, np.float32))[None])
    return ClaheGaussian(settings.clip_limit, settings.tiles, settings.sigma)(x)[0].numpy()


def pose_input(pixels: np.ndarray, settings: Preprocessing) -> tuple[torch.Tensor, FitGeometry]:
    """Return Pose-net's input (1, size, size // 2) of an (H, W) radiograph and the geometry back to it."""
    frame = pose_frame(settings)
    g = FitGeometry.of(np.shape(pixels), frame)
    x = NormalizeRadiograph()(torch.as_tensor(np.asarray(pixels, np.float32))[None])
    resized = F.interpolate(x[None], size=g.resized, mode="bilinear", align_corners=False, antialias=True)[0]
    out = torch.zeros((1, *frame), dtype=torch.float32)
    out[:, g.top:g.top + resized.shape[1], g.left:g.left + resized.shape[2]] = resized
    # CLAHE on the frame, as on the square input of the segmentation networks
    return ClaheGaussian(settings.clip_limit, settings.tiles, settings.sigma)(out), g
