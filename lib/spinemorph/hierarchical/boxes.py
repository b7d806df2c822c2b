"""Boxes around vertebral centres (Kim et al. 2019, equation (6)), patches cut from them, and the way back.

Each box is a square centred on its vertebra. Its side comes from the vertical distances to the neighbouring
centres: 3× the one gap for the top and bottom vertebrae, 1.5× the sum of both gaps in between. A box may
reach past the image: the patch is padded with zeros, never clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.transform import resize

__all__ = ["Box", "box_sides", "make_boxes", "crop_patch", "paste_patch"]


@dataclass(frozen=True)
class Box:
    """A square box: centre (row, col) and side in image pixels."""

    row: float
    col: float
    side: float

    def bounds(self) -> tuple[int, int, int, int]:
        """Return (top, left, bottom, right) in whole pixels, bottom and right exclusive; may lie off the image."""
        side = max(int(round(self.side)), 1)
        top, left = int(round(self.row - side / 2)), int(round(self.col - side / 2))
        return top, left, top + side, left + side

    def to_dict(self) -> dict:
        """Return a JSON-ready dict: centre, side and bounds."""
        t, lft, b, r = self.bounds()
        return {"center_px": [round(self.row, 2), round(self.col, 2)], "side_px": round(self.side, 2),
                "bounds_px": [t, lft, b, r]}


def box_sides(rows) -> np.ndarray:
    """Return equation (6)'s side for each centre row (top to bottom): 3× one gap at the ends, else 1.5× both."""
    rows = np.asarray(rows, float)
    if rows.size < 2:
        raise ValueError(f"Equation (6) needs at least two centres, not {rows.size}.")
    gaps = np.abs(np.diff(rows))
    sides = np.empty(rows.size)
    sides[0], sides[-1] = 3.0 * gaps[0], 3.0 * gaps[-1]
    sides[1:-1] = 1.5 * (gaps[:-1] + gaps[1:])
    return sides


def make_boxes(centres, single_side: float | None = None) -> list[Box]:
    """Return one box per (row, col) centre, in the order given (top to bottom).

    A lone centre has no neighbour to size its box: it gets ``single_side`` (no box when that is None).
    """
    centres = np.asarray(centres, float).reshape(-1, 2)
    if len(centres) == 0:
        return []
    if len(centres) == 1:
        return [] if single_side is None else [Box(float(centres[0, 0]), float(centres[0, 1]), float(single_side))]
    sides = box_sides(centres[:, 0])
    return [Box(float(r), float(c), float(s)) for (r, c), s in zip(centres, sides, strict=True)]


def _window(array: np.ndarray, box: Box) -> np.ndarray:
    """Return the box's pixels of ``array``, zero where the box lies off the image."""
    top, left, bottom, right = box.bounds()
    out = np.zeros((bottom - top, right - left), array.dtype)
    r0, r1 = max(top, 0), min(bottom, array.shape[0])
    c0, c1 = max(left, 0), min(right, array.shape[1])
    if r0 < r1 and c0 < c1:
        out[r0 - top:r1 - top, c0 - left:c1 - left] = array[r0:r1, c0:c1]
    return out


def crop_patch(array: np.ndarray, box: Box, size: int, labels: bool = False) -> np.ndarray:
    """Return the box's patch of ``array`` resized to size²: bilinear for images, nearest for ``labels``."""
    window = _window(np.asarray(array), box)
    if labels:
        return resize(window, (size, size), order=0, preserve_range=True, anti_aliasing=False).astype(window.dtype)
    shrink = window.shape[0] > size
    return resize(window.astype(np.float32), (size, size), order=1, preserve_range=True,
                  anti_aliasing=shrink).astype(np.float32)


def paste_patch(patch: np.ndarray, box: Box, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Return a patch (e.g. probabilities) resized back to its box, clipped to the image, and where it goes."""
    top, left, bottom, right = box.bounds()
    full = resize(np.asarray(patch, np.float32), (bottom - top, right - left), order=1, preserve_range=True,
                  anti_aliasing=False)
    r0, r1 = max(top, 0), min(bottom, shape[0])
    c0, c1 = max(left, 0), min(right, shape[1])
    r1, c1 = max(r1, r0), max(c1, c0)  # a box wholly off the image pastes nothing
    return full[r0 - top:r1 - top, c0 - left:c1 - left], (slice(r0, r1), slice(c0, c1))
