"""Training targets derived from labelmaps alone: each body's centre and height, and Pose-net's confidence maps.

A body's centre is its centroid; its height is the extent of its second-moment ellipse across its long axis
(√12 · the minor standard deviation: exact for a rectangle), so a tilted body is not taller than it is. A map is
the max of Gaussians, one per centre, with σ² = ¼ of the body's height in the map's pixels (Kim et al. 2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spinemorph.levels import TRAINED_LEVELS, level_code

__all__ = ["BodyCentre", "body_centres", "gaussian_maps", "level_channel", "pose_maps", "L5"]

L5 = 24
_MIN_AREA_FRACTION = 0.2  # of the median body: smaller pieces are debris, not bodies


@dataclass(frozen=True)
class BodyCentre:
    """One labelled body: VerSe code, centre (row, col) and height in pixels, and whether it touches the edge."""

    code: int
    row: float
    col: float
    height: float
    at_edge: bool = False


def _height(rows: np.ndarray, cols: np.ndarray) -> float:
    if rows.size < 3:
        return float(max(rows.size, 1))
    cov = np.cov(np.stack([rows, cols]).astype(float))
    minor = float(np.sqrt(max(np.linalg.eigvalsh(cov)[0], 0.0)))
    return float(min(np.sqrt(12.0) * minor, rows.max() - rows.min() + 1))


_S1 = level_code("S1")


def body_centres(labels: np.ndarray, margin: int = 3) -> list[BodyCentre]:
    """Return the bodies of a labelmap (VerSe codes), top to bottom; within ``margin`` px of the edge: at_edge.

    The sacrum (S1), labelled as a naming anchor in some training data, is no vertebral body and is left out.
    """
    labels = np.asarray(labels)
    found = []
    for code, box in enumerate(ndimage.find_objects(labels.astype(np.int64)), start=1):
        if box is None or code == _S1:
            continue
        rows, cols = np.nonzero(labels[box] == code)
        rows, cols = rows + box[0].start, cols + box[1].start
        edge = bool(rows.min() < margin or cols.min() < margin or rows.max() >= labels.shape[0] - margin
                    or cols.max() >= labels.shape[1] - margin)
        found.append((rows.size, BodyCentre(code, float(rows.mean()), float(cols.mean()), _height(rows, cols), edge)))
    if not found:
        return []
    median = float(np.median([a for a, _ in found]))
    return sorted((c for a, c in found if a >= _MIN_AREA_FRACTION * median), key=lambda c: c.row)


def gaussian_maps(centres, heights, shape: tuple[int, int], channels: np.ndarray | None = None,
                  n_channels: int = 1) -> np.ndarray:
    """Return (n_channels, H, W) maps: channel ``channels[i]`` gets a Gaussian at ``centres[i]``, combined by max.

    ``centres`` are (row, col) and ``heights`` body heights, both in the map's pixels; σ² = height / 4.
    """
    out = np.zeros((n_channels, *shape), np.float32)
    centres = np.asarray(centres, float).reshape(-1, 2)
    channels = np.zeros(len(centres), int) if channels is None else np.asarray(channels, int)
    rr = np.arange(shape[0], dtype=np.float32)[:, None]
    cc = np.arange(shape[1], dtype=np.float32)[None, :]
    for (r, c), h, ch in zip(centres, heights, channels, strict=True):
        var = max(float(h) / 4.0, 0.25)
        reach = int(np.ceil(4 * np.sqrt(var)))
        r0, r1 = max(int(r) - reach, 0), min(int(r) + reach + 2, shape[0])
        c0, c1 = max(int(c) - reach, 0), min(int(c) + reach + 2, shape[1])
        if r0 >= r1 or c0 >= c1:
            continue
        g = np.exp(-((rr[r0:r1] - r) ** 2 + (cc[:, c0:c1] - c) ** 2) / (2 * var))
        np.maximum(out[ch, r0:r1, c0:c1], g, out=out[ch, r0:r1, c0:c1])
    return out


def level_channel(code: int) -> int:
    """Return the per-level channel (1..17) of a VerSe code in T1..L5, or 0 for any other level."""
    return TRAINED_LEVELS.index(code) + 1 if code in TRAINED_LEVELS else 0


def pose_maps(points, heights, codes, shape: tuple[int, int], n_channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Return Pose-net's targets: the L5 map (1, H, W) and the centre maps (n_channels, H, W).

    Channel 0 holds every centre; with 18 channels, channel k also holds the centre of level k (T1..L5).
    """
    codes = np.asarray(codes, int)
    l5 = codes == L5
    l5_map = gaussian_maps(np.asarray(points).reshape(-1, 2)[l5], np.asarray(heights)[l5], shape)
    maps = gaussian_maps(points, heights, shape, None, n_channels)
    if n_channels > 1:
        channels = np.array([level_channel(int(c)) for c in codes], int)
        named = channels > 0
        per_level = gaussian_maps(np.asarray(points).reshape(-1, 2)[named], np.asarray(heights)[named], shape,
                                  channels[named], n_channels)
        maps[1:] = per_level[1:]
    return l5_map, maps
