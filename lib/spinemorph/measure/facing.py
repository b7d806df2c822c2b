"""Which side of the image the patient faces, when neither the caller nor the file says.

Two anatomical cues vote, each weighted by how clearly it shows:

- curvature: lumbar lordosis bulges anteriorly, thoracic kyphosis posteriorly;
- wedging: mid-thoracic bodies are shorter in front than behind (Ha/Hp about 0.9), L5 taller.

Levels come from the labels; for an unnamed binary mask with a known spacing they are guessed from body
height (thoracic below 21 mm, lumbar above 23 mm). The result is always flagged ``facing_inferred``.
"""

from __future__ import annotations

import numpy as np

from spinemorph.levels import level_code

__all__ = ["infer_facing"]

_LUMBAR = range(level_code("L1"), level_code("S1"))  # L1-L6
_KYPHOTIC = range(level_code("T3"), level_code("T12"))  # T3-T11
_WEDGED = range(level_code("T4"), level_code("T12"))  # T4-T11


def _bulge(centroids: np.ndarray, scale: np.ndarray) -> float:
    """Return the signed column-wise bulge (mm) of the middle of a run of centroids from the chord joining its ends."""
    pts = centroids * scale
    chord = pts[-1] - pts[0]
    chord /= np.linalg.norm(chord)
    normal = np.array([-chord[1], chord[0]])
    normal *= np.sign(normal[1]) or 1.0  # positive toward the image's right
    return float(np.mean((pts[1:-1] - pts[0]) @ normal))


def _provisional_codes(codes: list[int | None], heights_mm: list[float], spacing_known: bool) -> list[int | None]:
    """Return the codes, or guesses from body height for an unnamed mask with a known spacing."""
    if any(c is not None for c in codes) or not spacing_known:
        return codes
    return [level_code("L3") if h > 23.0 else level_code("T8") if h < 21.0 else None for h in heights_mm]


def infer_facing(codes: list[int | None], centroids: list[np.ndarray], left: list[float], right: list[float],
                 scale: np.ndarray, spacing_known: bool) -> tuple[str, float]:
    """Return the inferred facing ("left"/"right") and a confidence in [0, 1].

    ``left``/``right`` are each body's heights near its left and right walls (mm, or px without spacing).
    """
    mean_heights = [(a + b) / 2 for a, b in zip(left, right, strict=True)]
    codes = _provisional_codes(codes, mean_heights, spacing_known)
    votes = []  # positive: anterior on the right
    for group, sign in ((_LUMBAR, 1.0), (_KYPHOTIC, -1.0)):
        idx = [i for i, c in enumerate(codes) if c in group]
        if len(idx) >= 3:
            run = np.array([centroids[i] for i in idx])
            bulge = _bulge(run, scale)
            size = float(np.mean([mean_heights[i] for i in idx]))
            votes.append(sign * bulge / max(size, 1e-6))
    for i, c in enumerate(codes):
        if c is None or left[i] <= 0 or right[i] <= 0:
            continue
        ratio = np.log(right[i] / left[i])  # > 0: taller on the right
        if c in _WEDGED:
            votes.append(-ratio)  # the shorter side is anterior
        elif c == level_code("L5"):
            votes.append(ratio)  # L5 is taller in front
    total = float(np.sum(votes)) if votes else 0.0
    spread = float(np.sum(np.abs(votes))) if votes else 0.0
    confidence = abs(total) / spread if spread else 0.0
    return ("right" if total > 0 else "left"), confidence
