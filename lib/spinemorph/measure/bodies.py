"""From a labelmap to named vertebral bodies: validation, clean-up, splitting, ordering and naming.

A labelmap is either level-coded (VerSe codes, one value per vertebra) or a binary body mask (value 1,
what the papers' binary heads produce). A binary mask is cleaned as in Kim et al. 2021 (components far
smaller than the median body are dropped, holes are filled), touching bodies are split by a watershed on
the distance transform, and the bodies are named V1..Vn from the top, or from an anchor level at the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import ndimage

from spinemorph.levels import (
    ANATOMICAL_ORDER,
    fill_holes,
    find_objects,
    grow_window,
    is_level_code,
    level_below,
    level_code,
    level_name,
)

__all__ = ["Body", "find_bodies", "checked_labelmap", "present_values", "MIN_AREA_FRACTION"]

#: Components smaller than this fraction of the median body are debris, not bodies.
MIN_AREA_FRACTION = 0.2
_EIGHT = np.ones((3, 3), bool)
_IGNORED = (level_code("S1"),)  # the sacrum is an anchor, not a body to grade


@dataclass
class Body:
    """One vertebral body: its name, code (None for V1..Vn), mask crop and where the crop sits."""

    name: str
    code: int | None
    mask: np.ndarray
    origin: tuple[int, int]
    flags: list[str] = field(default_factory=list)

    @cached_property
    def centroid(self) -> np.ndarray:
        """Return the (row, col) centroid in image pixels (computed once: the mask is not changed after)."""
        rows, cols = np.nonzero(self.mask)
        return np.array([rows.mean() + self.origin[0], cols.mean() + self.origin[1]])


def checked_labelmap(labels) -> np.ndarray:
    """Return ``labels`` as a 2D non-negative integer array, or raise ValueError saying what is wrong with it."""
    arr = np.asarray(labels)
    while arr.ndim > 2 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"Expected a 2D labelmap (H×W or H×W×1), got shape {np.shape(labels)}.")
    if arr.size == 0:
        raise ValueError("The labelmap has no pixels.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise ValueError("The labelmap holds non-integer values; expected VerSe level codes or a 0/1 mask.")
        arr = arr.astype(np.int32)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if int(arr.min()) < 0 or int(arr.max()) > max(ANATOMICAL_ORDER):
        bad = [int(v) for v in np.unique(arr) if v != 0 and not is_level_code(int(v))]
        raise ValueError(f"Labels {bad} are not VerSe level codes (1-26, 28) and the map is not a 0/1 body mask.")
    return arr


def present_values(arr: np.ndarray, slices: list | None = None) -> list[int]:
    """Return the non-zero values present in a checked labelmap (from ``find_objects``: no sort, no copy)."""
    slices = ndimage.find_objects(arr) if slices is None else slices
    return [i + 1 for i, sl in enumerate(slices) if sl is not None]


def find_bodies(labels: np.ndarray, binary: bool | None = None,
                anchor: str | None = None) -> tuple[list[Body], list[str]]:
    """Return the bodies of a checked labelmap, top to bottom, and global flags.

    ``binary`` forces the reading of value 1 (None: a map whose only value is 1 is a binary mask).
    ``anchor`` names the lowest body of a binary mask (e.g. "L5").
    """
    slices = find_objects(labels)
    values = present_values(labels, slices)
    bad = [v for v in values if not is_level_code(v)]
    if bad:
        raise ValueError(f"Labels {bad} are not VerSe level codes (1-26, 28) and the map is not a 0/1 body mask.")
    if binary is None:
        binary = values == [1]
    if binary:
        return _binary_bodies(labels > 0, anchor)
    flags = []
    bodies = []
    for code in values:
        if code in _IGNORED:
            flags.append(f"ignored_{level_name(code)}")
            continue
        sl = grow_window(slices[code - 1], labels.shape)
        crop = labels[sl] == code
        comps, n = ndimage.label(crop, structure=_EIGHT)
        body_flags = []
        if n > 1:
            areas = ndimage.sum_labels(crop, comps, index=np.arange(1, n + 1))
            keep = int(np.argmax(areas)) + 1
            if np.sort(areas)[-2] > MIN_AREA_FRACTION * areas.max():
                body_flags.append("fragmented")
            crop = comps == keep
        crop = fill_holes(crop)
        bodies.append(Body(level_name(code), code, crop, (sl[0].start, sl[1].start), body_flags))
    bodies.sort(key=lambda b: b.centroid[0])
    if anchor is not None:
        flags.append("anchor_ignored_for_level_codes")
    return bodies, flags


def _binary_bodies(mask: np.ndarray, anchor: str | None) -> tuple[list[Body], list[str]]:
    """Return the bodies of a binary mask after Kim et al.'s clean-up and a watershed split of touching ones."""
    comps, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return [], []
    areas = ndimage.sum_labels(mask, comps, index=np.arange(1, n + 1))
    median = float(np.median(areas))
    keep = np.flatnonzero(areas >= MIN_AREA_FRACTION * median) + 1
    cleaned = ndimage.binary_fill_holes(np.isin(comps, keep))
    flags = ["levels_unknown"] if anchor is None else []
    split = _split_touching(cleaned)
    if split.max() > len(keep):
        flags.append("touching_bodies_split")
    slices = ndimage.find_objects(split)
    bodies = []
    for i, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        sl = grow_window(sl, split.shape)
        bodies.append(Body("", None, split[sl] == i, (sl[0].start, sl[1].start)))
    bodies.sort(key=lambda b: b.centroid[0])
    _name(bodies, anchor)
    return bodies, flags


def _split_touching(mask: np.ndarray) -> np.ndarray:
    """Return labelled bodies, splitting components much larger than the median by a distance watershed."""
    comps, n = ndimage.label(mask, structure=_EIGHT)
    areas = ndimage.sum_labels(mask, comps, index=np.arange(1, n + 1))
    median = float(np.median(areas))
    out = np.zeros(mask.shape, np.int32)
    next_label = 1
    for i, sl in enumerate(ndimage.find_objects(comps), start=1):
        crop = comps[sl] == i
        pieces = _watershed(crop) if n == 1 or areas[i - 1] > 1.6 * median else crop.astype(np.int32)
        for j in range(1, int(pieces.max()) + 1):
            out[sl][pieces == j] = next_label
            next_label += 1
    return out


def _watershed(crop: np.ndarray) -> np.ndarray:
    """Return ``crop`` split at its narrow waists.

    Markers are the cores where the distance to the background exceeds 60 % of its peak: one per body when
    bodies touch through a thin bridge. Each pixel then joins its nearest core, which cuts every bridge at
    its middle (a distance watershed without the tie-breaking artefacts of a minimax flood).
    """
    dist = ndimage.distance_transform_edt(np.pad(crop, 1))[1:-1, 1:-1]
    markers, n = ndimage.label(dist > 0.6 * dist.max(), structure=_EIGHT)
    if n <= 1:
        return crop.astype(np.int32)
    _, (rows, cols) = ndimage.distance_transform_edt(markers == 0, return_indices=True)
    return np.where(crop, markers[rows, cols], 0).astype(np.int32)


def _name(bodies: list[Body], anchor: str | None) -> None:
    """Name bodies V1..Vn from the top, or by level upward from ``anchor`` at the lowest body."""
    if anchor is None:
        for i, body in enumerate(bodies, start=1):
            body.name = f"V{i}"
        return
    code = level_code(anchor)
    for steps, body in enumerate(reversed(bodies)):
        above = level_below(code, -steps)
        if above is None:
            raise ValueError(f"Anchor {anchor} leaves {len(bodies)} bodies no room above the top of the spine.")
        body.code, body.name = above, level_name(above)
