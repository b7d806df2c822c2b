"""Output heads: a binary body head (value 1), or one class per level (background + T1..L5 in VerSe codes)."""

from __future__ import annotations

import numpy as np

from spinemorph.levels import TRAINED_LEVELS

__all__ = ["HEADS", "LEVEL_CLASSES", "head_channels", "code_to_class", "class_to_code"]

HEADS = ("binary", "levels")
#: Class index -> VerSe code of the per-level head: 0 is background, 1..17 are T1..L5.
LEVEL_CLASSES: tuple[int, ...] = (0, *TRAINED_LEVELS)
_CODE_TO_CLASS = np.zeros(256, np.int64)
for _i, _code in enumerate(LEVEL_CLASSES):
    _CODE_TO_CLASS[_code] = _i


def head_channels(head: str) -> int:
    """Return the output channels of a head ("binary": 1, "levels": 18)."""
    if head not in HEADS:
        raise ValueError(f"Unknown head {head!r}: use 'binary' or 'levels'.")
    return 1 if head == "binary" else len(LEVEL_CLASSES)


def code_to_class(labels: np.ndarray, head: str) -> np.ndarray:
    """Return training targets for a head: 0/1 bodies, or class indices (levels outside T1..L5 become background)."""
    labels = np.asarray(labels)
    if head == "binary":
        return (labels > 0).astype(np.int64)
    return _CODE_TO_CLASS[np.clip(labels, 0, 255).astype(np.int64)]


def class_to_code(classes: np.ndarray, head: str) -> np.ndarray:
    """Return a labelmap from predicted classes: 1 for bodies (binary) or VerSe codes (levels)."""
    classes = np.asarray(classes)
    if head == "binary":
        return (classes > 0).astype(np.uint8)
    return np.asarray(LEVEL_CLASSES, np.uint8)[classes]
