"""Output heads: a binary body head (value 1), one class per level, or one per level plus the sacrum.

- "binary": one logit, vertebral body or not (the papers' head).
- "levels": background + T1..L5 in VerSe codes.
- "anchored": background + T1..L5 + S1. The sacrum is not a body to grade but the anchor that names the levels:
  with S1 in view, the body above it is L5 and the count runs up from there (``spinemorph.postprocess``).
"""

from __future__ import annotations

import numpy as np

from spinemorph.levels import TRAINED_LEVELS, level_code

__all__ = ["HEADS", "LEVEL_CLASSES", "ANCHORED_CLASSES", "S1", "head_classes", "head_channels", "code_to_class",
           "class_to_code", "is_level_head"]

HEADS = ("binary", "levels", "anchored")
S1 = level_code("S1")
#: Class index -> VerSe code of the per-level head: 0 is background, 1..17 are T1..L5.
LEVEL_CLASSES: tuple[int, ...] = (0, *TRAINED_LEVELS)
#: Class index -> VerSe code of the anchored head: the per-level classes, then S1 (class 18).
ANCHORED_CLASSES: tuple[int, ...] = (*LEVEL_CLASSES, S1)
_CLASSES = {"binary": (0, 1), "levels": LEVEL_CLASSES, "anchored": ANCHORED_CLASSES}
_CODE_TO_CLASS = {}
for _head in ("levels", "anchored"):
    _CODE_TO_CLASS[_head] = np.zeros(256, np.int64)
    for _i, _code in enumerate(_CLASSES[_head]):
        _CODE_TO_CLASS[_head][_code] = _i


def _checked(head: str) -> str:
    if head not in HEADS:
        raise ValueError(f"Unknown head {head!r}: use one of {', '.join(HEADS)}.")
    return head


def head_classes(head: str) -> tuple[int, ...]:
    """Return the VerSe code of each output class of a head, in class order (binary: (0, 1))."""
    return _CLASSES[_checked(head)]


def is_level_head(head: str) -> bool:
    """Return True for a head that names levels ("levels", "anchored")."""
    return _checked(head) != "binary"


def head_channels(head: str) -> int:
    """Return the output channels of a head ("binary": 1, "levels": 18, "anchored": 19)."""
    return 1 if _checked(head) == "binary" else len(_CLASSES[head])


def code_to_class(labels: np.ndarray, head: str) -> np.ndarray:
    """Return training targets for a head: 0/1 bodies, or class indices (codes the head lacks become background).

    The sacrum is never a body: a binary target leaves it out, as the "levels" head does.
    """
    labels = np.asarray(labels)
    if _checked(head) == "binary":
        return ((labels > 0) & (labels != S1)).astype(np.int64)
    return _CODE_TO_CLASS[head][np.clip(labels, 0, 255).astype(np.int64)]


def class_to_code(classes: np.ndarray, head: str) -> np.ndarray:
    """Return a labelmap from predicted classes: 1 for bodies (binary) or VerSe codes (level heads)."""
    classes = np.asarray(classes)
    if _checked(head) == "binary":
        return (classes > 0).astype(np.uint8)
    return np.asarray(_CLASSES[head], np.uint8)[classes]
