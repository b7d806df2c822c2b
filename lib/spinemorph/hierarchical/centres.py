"""Vertebral centres from Pose-net's confidence map, and the level of each (Kim et al. 2019, section 2.2).

The map is thresholded with Otsu's method and its local maxima taken. Each maximum is scored by the map's mean
over a window around it (31×31 at the paper's 512×256 input), and candidates scoring under half the mean score
are dropped: a sharp spurious peak has little mass around it. The paper then keeps the five lowest candidates
as L1-L5; ``name_centres`` does that for a lumbar view and, for any view, names every accepted centre instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu

from spinemorph.levels import TRAINED_LEVELS, level_code
from spinemorph.postprocess import level_positions

__all__ = ["Candidate", "find_centres", "name_centres", "naming_margin", "LUMBAR", "SURE_MARGIN"]

LUMBAR: tuple[int, ...] = (20, 21, 22, 23, 24)  # L1..L5
_MIN_VOTE = 0.15  # below this mean map value at the centres, the model has no opinion on the levels
#: Under this margin between the best naming's vote total and the runner-up's (a share of the best), the levels are
#: flagged ``level_uncertain``: the least margin tried (0.05 to 0.3 by 0.05, 0.4, 0.5) above which the shipped
#: model named 90 % of the bodies it found right on held-out calibration images (60 simulations of seed 1200; never
#: a test set). There it flags 24 of the 60 images, which hold 83 found bodies and 21 named right, and leaves 196
#: bodies, 176 named right (without the flag: 197 of 279 right, 71 %); it flags 21 of 24 CT-DRRs of seed 8000.
SURE_MARGIN = 0.5


@dataclass(frozen=True)
class Candidate:
    """A local maximum of the map: position (row, col) in map pixels, peak value and window score."""

    row: float
    col: float
    peak: float
    score: float


def _offset(before: float, at: float, after: float) -> float:
    """Return the sub-pixel offset of a peak from three samples: a parabola through their logarithms (exact for a
    Gaussian), or 0 when the samples are not a clean peak."""
    lb, la, lf = np.log(np.maximum([before, at, after], 1e-6))
    curvature = lb - 2 * la + lf
    return float(np.clip((lb - lf) / (2 * curvature), -0.5, 0.5)) if curvature < 0 else 0.0


def _refined(m: np.ndarray, r: int, c: int) -> tuple[float, float]:
    """Return the sub-pixel centre of the maximum at (r, c)."""
    pad = np.pad(m, 1, mode="edge")
    r1, c1 = r + 1, c + 1
    return (r + _offset(pad[r1 - 1, c1], pad[r1, c1], pad[r1 + 1, c1]),
            c + _offset(pad[r1, c1 - 1], pad[r1, c1], pad[r1, c1 + 1]))


def find_centres(heatmap: np.ndarray, window: int = 31, score_ratio: float = 0.5,
                 min_distance: int = 2) -> tuple[list[Candidate], list[Candidate]]:
    """Return (accepted, rejected) candidates of a confidence map, each list top to bottom.

    Args:
        heatmap: (H, W) confidence map.
        window: side of the scoring window in map pixels (odd).
        score_ratio: a candidate is rejected when its score is under this share of the mean score.
        min_distance: minimum distance between maxima in map pixels.
    """
    m = np.nan_to_num(np.asarray(heatmap, np.float64))
    if m.ndim != 2:
        raise ValueError(f"A confidence map is 2D, not of shape {m.shape}.")
    if m.max() <= m.min():
        return [], []
    threshold = threshold_otsu(m)
    peaks = peak_local_max(m, min_distance=min_distance, threshold_abs=threshold, exclude_border=False)
    if len(peaks) == 0:
        return [], []
    scores = ndimage.uniform_filter(m, size=window, mode="constant")[peaks[:, 0], peaks[:, 1]]
    keep = scores >= score_ratio * scores.mean()
    found = [Candidate(*_refined(m, r, c), float(m[r, c]), float(s))
             for (r, c), s in zip(peaks, scores, strict=True)]
    accepted = sorted((f for f, k in zip(found, keep, strict=True) if k), key=lambda f: f.row)
    rejected = sorted((f for f, k in zip(found, keep, strict=True) if not k), key=lambda f: f.row)
    return accepted, rejected


def name_centres(rows, votes: np.ndarray | None = None, view: str = "auto",
                 anchor: str | int | None = None) -> tuple[list[int | None], list[str]]:
    """Return the VerSe code of each centre (top to bottom; None: not kept) and flags saying how they were named.

    Args:
        rows: the centres' rows, top to bottom, in any one pixel scale.
        votes: (n, 17) the model's confidence that centre i is level T1..L5 (Pose-net's stage-one L5 map counts
            towards L5, its per-level maps towards each level), or None.
        view: "lumbar": the paper's rule, the five lowest centres are L1-L5 and the rest are dropped;
            "auto": every centre is named, anchored on ``anchor`` or on the levels the model votes for; the
            names are ``level_uncertain`` when the votes hardly prefer them to another naming
            (``SURE_MARGIN``) or when there are no votes (``levels_assumed_lowest_l5``).
        anchor: the level of the lowest centre, when the caller knows it.
    """
    n = len(rows)
    if view not in ("auto", "lumbar"):
        raise ValueError(f"view must be 'auto' or 'lumbar', not {view!r}.")
    if n == 0:
        return [], ["no_centres"]
    flags = [] if n >= 2 else ["fewer_than_two_centres"]
    if view == "lumbar":
        if n < len(LUMBAR):
            flags.append("fewer_than_five_centres")
        kept = LUMBAR[-min(n, len(LUMBAR)):]
        return [None] * (n - len(kept)) + list(kept), flags
    position = level_positions(rows)
    order = list(TRAINED_LEVELS)
    if anchor is not None:
        start = order.index(level_code(anchor)) - int(position[-1])
        return _codes(position, start, order), [*flags, "anchored"]
    if votes is None or float(np.max(votes, initial=0.0)) < _MIN_VOTE:
        start = order.index(level_code("L5")) - int(position[-1])
        return _codes(position, start, order), [*flags, "levels_assumed_lowest_l5", "level_uncertain"]
    votes = np.asarray(votes, float)
    starts = np.arange(-int(position[-1]), len(order))
    totals = [sum(votes[i, s + p] for i, p in enumerate(position) if 0 <= s + p < len(order)) for s in starts]
    unsure = ["level_uncertain"] if naming_margin(totals) < SURE_MARGIN else []
    return _codes(position, int(starts[int(np.argmax(totals))]), order), [*flags, *unsure]


def naming_margin(totals) -> float:
    """Return how far the best naming's vote total leads the runner-up's, as a share of the best (1: no rival)."""
    ranked = sorted((float(t) for t in totals), reverse=True)
    if not ranked or ranked[0] <= 0:
        return 0.0
    return (ranked[0] - ranked[1]) / ranked[0] if len(ranked) > 1 else 1.0


def _codes(position: np.ndarray, start: int, order: list[int]) -> list[int | None]:
    return [order[start + p] if 0 <= start + p < len(order) else None for p in position]
