"""A small synthetic lumbar labelmap with known heights, for the module's self-test: numpy only."""

from __future__ import annotations

import numpy as np

__all__ = ["box_spine"]


def box_spine(shape: tuple[int, int] = (260, 160), height_px: int = 36, wedged: str = "L3",
              wedge: float = 0.65) -> np.ndarray:
    """Return an (H, W) labelmap of L1-L5 as 61 px deep boxes facing left, ``wedged`` with Ha = wedge × Hp.

    Every body is ``height_px`` + 1 pixels tall at its posterior wall; the wedged one narrows linearly towards
    its anterior (left) wall. Bodies are 10 px apart, the first starting at row 20.
    """
    labels = np.zeros(shape, np.uint8)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    left, right, top = 50, 110, 20
    for code, name in zip(range(20, 25), ("L1", "L2", "L3", "L4", "L5"), strict=True):
        anterior = height_px * (wedge if name == wedged else 1.0)
        height = anterior + (height_px - anterior) * (cols - left) / (right - left)
        bottom = top + height_px
        labels[(cols >= left) & (cols <= right) & (rows <= bottom) & (rows >= bottom - height)] = code
        top = bottom + 10
    return labels
