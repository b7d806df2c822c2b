"""The geometry of every body at once: its axis, its walls, and the six points where its outline crosses three lines.

Work happens in millimetre space (pixel coordinates times the spacing), so anisotropic pixels measure
correctly. Each body is read from an index map by bilinear interpolation of its indicator, and its outline is
where that crosses 0.5: halfway between an inside and an outside pixel centre. All bodies run in lockstep,
so a radiograph costs a handful of vectorised passes rather than many small ones per body.

The axis starts from the line through the neighbours' centroids and is refined with the walls: a body's
anterior and posterior walls stay parallel to its axis whatever the deformity (a wedge tilts an endplate,
not a wall). A wall is the body's furthest extent across it along most of its side, found on lines at many
heights, since on a wedged body a line through the centre can leave through the collapsed endplate; a bulge
fewer than a third of those lines reach (a real outline's double contour, an osteophyte) is not the wall. On a
simulator's body that is its furthest extent. The six points follow ``spinemorph.conventions.WALL_INSET``, the
simulator's definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinemorph.conventions import WALL_INSET

__all__ = ["BodyGeometry", "locate_all", "initial_axes"]

_REFINE = 2  # axis refinements from the walls
_WALL_LINES = 15  # lines across a body at different heights: a grade 3 wedge needs 15 to hit its short wall 3 times
_RUN_SAMPLES = 81  # samples along a line to find the middle of a body's run
_FINE = np.linspace(0.0, 1.0, 21)
#: Share of a side's crossing points that may lie outside its wall: a bulge fewer lines reach is not the wall. Chosen
#: on calibration images (docs/STAGE2.md, "Real outlines: a bulge is not the wall"): 0.4 and 0.5 read more real
#: bodies' truth outlines, but 0.4 graded a normal real body as a fracture; 0.33 gave no false grade on any
#: calibration set.
_WALL_OUTSIDE = 0.33


@dataclass
class BodyGeometry:
    """Side-agnostic geometry: "left" and "right" are the image's sides; facing later names them."""

    centroid: np.ndarray  # (row, col) px
    axis: np.ndarray  # unit, caudal, in mm space
    points: dict[str, np.ndarray]  # {superior,inferior}_{left,middle,right} -> (row, col) px
    heights_mm: dict[str, float]  # left, middle, right, in mm space (px when the spacing is 1)
    depth_mm: float


def initial_axes(centroids: list[np.ndarray], scale: np.ndarray) -> np.ndarray:
    """Return a first axis per body (n, 2), unit, caudal, in mm space, from its neighbours' centroids."""
    pts = np.asarray(centroids, float) * scale
    above = pts[np.maximum(np.arange(len(pts)) - 1, 0)]
    below = pts[np.minimum(np.arange(len(pts)) + 1, len(pts) - 1)]
    d = below - above
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    return np.where(norm > 0, d / np.where(norm > 0, norm, 1.0), [1.0, 0.0])


def _perpendicular(axis: np.ndarray) -> np.ndarray:
    """Return unit vectors across the bodies (n, 2), pointing to the image's right (increasing column)."""
    v = np.stack([-axis[:, 1], axis[:, 0]], axis=1)
    return v * np.where(v[:, 1:] >= 0, 1.0, -1.0)


class _Sampler:
    """Bilinear samples of each body's indicator from an index map (0 background, i + 1 for body i)."""

    def __init__(self, index_map: np.ndarray, scale: np.ndarray) -> None:
        self.map = np.pad(index_map, 1)
        self.scale = scale
        self.step = 2.0 * float(scale.min())  # coarse search step; the fine pass resolves a tenth of a pixel

    def value(self, pts: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Return the indicator of body ``ids`` (broadcast to pts[..., 0]) at mm-space points (..., 2)."""
        p = pts / self.scale + 1.0
        r, c = p[..., 0], p[..., 1]
        h, w = self.map.shape
        r0 = np.clip(np.floor(r).astype(np.intp), 0, h - 2)
        c0 = np.clip(np.floor(c).astype(np.intp), 0, w - 2)
        fr, fc = np.clip(r - r0, 0.0, 1.0), np.clip(c - c0, 0.0, 1.0)
        k = ids + 1
        m = self.map
        return ((1 - fr) * ((1 - fc) * (m[r0, c0] == k) + fc * (m[r0, c0 + 1] == k))
                + fr * ((1 - fc) * (m[r0 + 1, c0] == k) + fc * (m[r0 + 1, c0 + 1] == k)))

    def crossings(self, starts: np.ndarray, dirs: np.ndarray, ids: np.ndarray, reach: np.ndarray) -> np.ndarray:
        """Return the distance (mm) along each unit direction to where the indicator drops below 0.5, or NaN.

        ``reach`` (n, 2) is each body's (height, width) in mm: no search need go further than that extent.
        """
        far = float(np.max(np.abs(dirs) * reach[ids], axis=0).sum()) if len(ids) else 0.0
        coarse = np.arange(0.0, far + self.step, self.step)
        vals = self.value(starts[:, None, :] + coarse[None, :, None] * dirs[:, None, :], ids[:, None])
        inside = vals >= 0.5
        first_out = np.argmin(inside, axis=1)
        rows = np.arange(len(starts))
        valid = inside[:, 0] & ~inside[rows, first_out]
        base = coarse[np.maximum(first_out - 1, 0)][:, None] + _FINE[None, :] * self.step
        vals = self.value(starts[:, None, :] + base[:, :, None] * dirs[:, None, :], ids[:, None])
        j = np.clip(np.argmin(vals >= 0.5, axis=1), 1, _FINE.size - 1)
        v0, v1 = vals[rows, j - 1], vals[rows, j]
        frac = np.where(v0 != v1, (v0 - 0.5) / np.where(v0 != v1, v0 - v1, 1.0), 0.0)
        return np.where(valid, base[rows, j - 1] + frac * (_FINE[1] - _FINE[0]) * self.step, np.nan)

    def run_middle(self, points: np.ndarray, axis: np.ndarray, ids: np.ndarray, reach: np.ndarray) -> np.ndarray:
        """Return the middle of each body's run along ``axis`` through ``points`` (N, 2), NaN where it misses."""
        far = float(np.hypot(*reach.max(axis=0)))
        offsets = np.linspace(-far / 2, far / 2, _RUN_SAMPLES)
        inside = self.value(points[:, None, :] + offsets[None, :, None] * axis[:, None, :], ids[:, None]) >= 0.5
        first = np.argmax(inside, axis=1)
        last = _RUN_SAMPLES - 1 - np.argmax(inside[:, ::-1], axis=1)
        mid = points + axis * offsets[(first + last) // 2][:, None]
        return np.where(inside.any(axis=1)[:, None], mid, np.nan)


def _support_lines(pts: np.ndarray, valid: np.ndarray, out: np.ndarray, axis: np.ndarray, tol: float):
    """Return each wall's direction (n, 2), mean point (n, 2) and inliers (n, k), from crossing points (n, k, 2).

    The wall is the line through one of the points, toward another or along the current axis, with the most points
    on it (within ``tol``) and no more than ``_WALL_OUTSIDE`` of them outside it by more than ``tol``; of lines with
    as many points, the outermost. Lines that leave through an endplate give points inside that line, so they drop
    out, whatever the current axis error; a bulge that only a few lines reach (the lower half of a rotated body's
    double contour, an osteophyte on a real film) lies outside it, and the wall stays where most of the side is.
    """
    n, k, _ = pts.shape
    rows = np.arange(n)[:, None]
    # Where each point lies outward, and how far as a share of the side's spread (an outermost tie-break: a share
    # of a point, never more).
    reach = (pts * out[:, None, :]).sum(-1)
    low = reach.min(axis=1, initial=np.inf, where=valid)[:, None]
    span = np.maximum(reach.max(axis=1, initial=-np.inf, where=valid)[:, None] - low, 1e-9)
    order = np.where(valid, (reach - low) / span, 0.0) * 0.5
    # Candidate lines (n, pairs + k): through each pair of points, anchored at whichever of the two is found and
    # further out (the line through a toward b is the line through b toward a: one candidate, not two), then
    # through each point along the axis.
    a, b = np.triu_indices(k, 1)
    swap = valid[:, b] & (~valid[:, a] | (order[:, b] > order[:, a]))  # (n, pairs)
    anchor = np.concatenate([np.where(swap, b, a), np.broadcast_to(np.arange(k), (n, k))], axis=1)
    other = np.concatenate([np.where(swap, a, b), np.broadcast_to(np.arange(k), (n, k))], axis=1)
    # Ties go as a scan of (anchor, toward) would meet them, the axis through a point in its own place.
    first = anchor * (k + 1) + other
    cand = pts[rows, other] - pts[rows, anchor]
    norm = np.linalg.norm(cand, axis=-1, keepdims=True)
    cand = np.where(norm > 1e-9, cand / np.where(norm > 1e-9, norm, 1.0), axis[:, None, :])
    normal = np.stack([-cand[..., 1], cand[..., 0]], axis=-1)
    normal *= np.where((normal * out[:, None, :]).sum(-1, keepdims=True) < 0, -1.0, 1.0)
    # each point's distance outside each candidate line (n, lines, k)
    resid = np.einsum("njd,ncd->ncj", pts, normal) - np.einsum("ncd,ncd->nc", pts[rows, anchor], normal)[..., None]
    inlier = valid[:, None, :] & (np.abs(resid) <= tol)
    outside = (valid[:, None, :] & (resid > tol)).sum(-1)
    usable = valid[rows, anchor] & (outside <= _WALL_OUTSIDE * valid.sum(axis=1)[:, None])
    # the most points on it; of those, the line through the outermost anchor
    score = np.where(usable, inlier.sum(-1) + order[rows, anchor], -1.0)
    best = np.where(score == score.max(axis=1, keepdims=True), first, k * (k + 1)).argmin(axis=1)
    use = inlier[np.arange(n), best]
    w = use.astype(float)
    count = np.maximum(w.sum(axis=1), 1.0)
    mean = (pts * w[..., None]).sum(axis=1) / count[:, None]
    d = (pts - mean[:, None, :]) * w[..., None]
    crr, ccc, crc = (d[..., 0] ** 2).sum(1), (d[..., 1] ** 2).sum(1), (d[..., 0] * d[..., 1]).sum(1)
    angle = 0.5 * np.arctan2(2 * crc, crr - ccc)
    direction = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    direction *= np.where((direction * axis).sum(1, keepdims=True) < 0, -1.0, 1.0)
    return np.where((w.sum(axis=1) >= 3)[:, None], direction, axis), mean, use


def _walls(s: _Sampler, centre, axis, span, ids, reach):
    """Return per body and side (left, right): wall direction (n, 2, 2), distance from centre (n, 2), length (n, 2)."""
    n = len(ids)
    v = _perpendicular(axis)
    heights = np.linspace(-0.45, 0.45, _WALL_LINES)
    starts = centre[:, None, :] + heights[None, :, None] * span[:, None, None] * axis[:, None, :]  # (n, k, 2)
    dirs, dist_out, length = [], [], []
    ok = np.ones(n, bool)
    for side in (-v, v):
        d = s.crossings(starts.reshape(-1, 2), np.repeat(side, _WALL_LINES, axis=0), np.repeat(ids, _WALL_LINES),
                        reach).reshape(n, _WALL_LINES)
        valid = np.isfinite(d)
        ok &= valid.sum(axis=1) >= 2
        pts = starts + np.nan_to_num(d)[..., None] * side[:, None, :]
        direction, mean, use = _support_lines(pts, valid, side, axis, float(s.scale.max()))
        along = ((pts - centre[:, None, :]) * axis[:, None, :]).sum(-1)
        span = np.max(np.where(use, along, -np.inf), axis=1) - np.min(np.where(use, along, np.inf), axis=1)
        dirs.append(direction)
        dist_out.append(((mean - centre) * side).sum(1))
        length.append(np.where(use.any(axis=1) & np.isfinite(span), span, 0.0))
    return np.stack(dirs, 1), np.stack(dist_out, 1), np.stack(length, 1), ok


def locate_all(index_map: np.ndarray, centroids: np.ndarray, axes: np.ndarray, scale: np.ndarray,
               reach: np.ndarray) -> list[BodyGeometry | None]:
    """Return each body's geometry (None where its outline cannot be followed).

    ``index_map`` holds i + 1 for body i; ``centroids`` are (row, col) px; ``reach`` (n, 2) is each body's
    bounding-box (height, width) in mm, which bounds its searches.
    """
    n = len(centroids)
    ids, s = np.arange(n), _Sampler(index_map, scale)
    axis = np.asarray(axes, float)
    fallback = np.asarray(centroids, float) * scale
    centre = s.run_middle(fallback, axis, ids, reach)
    good = np.isfinite(centre).all(axis=1)
    for attempt in range(_REFINE + 1):
        # A body that has failed keeps finite stand-ins, so it cannot spoil the others' shared searches.
        centre = np.where(good[:, None], centre, fallback)
        axis = np.where(good[:, None] & np.isfinite(axis), axis, [1.0, 0.0])
        ends = s.crossings(np.concatenate([centre, centre]), np.concatenate([-axis, axis]), np.tile(ids, 2), reach)
        up, down = ends[:n], ends[n:]
        good &= np.isfinite(up) & np.isfinite(down)
        centre = centre + axis * np.nan_to_num((down - up) / 2)[:, None]
        directions, dist, length, ok = _walls(s, centre, axis, np.nan_to_num(up + down), ids, reach)
        good &= ok
        if attempt == _REFINE:
            break
        # Each wall's direction counts by its length squared: a staircase's slope errs by ~1 px over its length.
        # The current axis stays in as a one-pixel prior, for walls too short to show a direction.
        weighted = axis * float(scale.max()) ** 2 + np.nan_to_num(directions * length[..., None] ** 2).sum(axis=1)
        axis = weighted / np.maximum(np.linalg.norm(weighted, axis=1, keepdims=True), 1e-12)
    v = _perpendicular(axis)
    left, right = dist[:, 0], dist[:, 1]
    depth = left + right
    stations = np.concatenate([centre - v * (left - WALL_INSET * depth)[:, None],
                               centre + v * ((right - left) / 2)[:, None],
                               centre + v * (right - WALL_INSET * depth)[:, None]])
    axis3, ids3 = np.tile(axis, (3, 1)), np.tile(ids, 3)
    starts = s.run_middle(stations, axis3, ids3, reach)
    good &= np.isfinite(starts).all(axis=1).reshape(3, n).all(axis=0)
    starts = np.nan_to_num(starts)
    ends = s.crossings(np.concatenate([starts, starts]), np.concatenate([-axis3, axis3]), np.tile(ids3, 2), reach)
    good &= np.isfinite(ends).reshape(6, n).all(axis=0)
    up, down = ends[: 3 * n], ends[3 * n:]
    out: list[BodyGeometry | None] = []
    for i in range(n):
        if not good[i]:
            out.append(None)
            continue
        points, heights = {}, {}
        for k, name in enumerate(("left", "middle", "right")):
            j = k * n + i
            points[f"superior_{name}"] = (starts[j] - up[j] * axis[i]) / scale
            points[f"inferior_{name}"] = (starts[j] + down[j] * axis[i]) / scale
            heights[name] = float(up[j] + down[j])
        out.append(BodyGeometry(centre[i] / scale, axis[i], points, heights, float(depth[i])))
    return out
