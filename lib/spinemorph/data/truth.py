"""Ground-truth six points and heights, found on the continuous phantom, not on the pixels.

For each body the projected axis and anteroposterior direction come from its true 3D frame. The walls
are where the body stops owning the detector along the AP line through its centre; the six points are
where it stops owning it along the axis at ``WALL_INSET`` from each wall and at mid-depth. "Owning" is the
labelmap's rule: the ray crosses this body, and for longer than through either neighbour. Every search is
a bisection, run for all bodies at once, to better than a two-hundredth of a pixel.
"""

from __future__ import annotations

import numpy as np

from spinemorph.conventions import WALL_INSET
from spinemorph.data.geometry import Projection
from spinemorph.data.primitives import slab_chord

__all__ = ["POINT_NAMES", "six_points"]

POINT_NAMES: tuple[str, ...] = (
    "superior_anterior", "superior_middle", "superior_posterior",
    "inferior_anterior", "inferior_middle", "inferior_posterior",
)
_ITERATIONS = 16  # brackets are under 300 px: better than 1/200 px
_WALL_LINES = 9  # lines across a body, at different heights, on which its walls are searched


class _Owner:
    """Tells whether body ``idx`` owns detector positions, under the labelmap's longest-chord rule."""

    def __init__(self, bodies, proj: Projection) -> None:
        self.proj, self.n = proj, len(bodies)
        slabs = [b.outer for b in bodies]
        self.centre = np.stack([s.frame.center for s in slabs])
        self.rot = np.stack([s.frame.rot for s in slabs])
        self.a, self.b = np.array([s.a for s in slabs]), np.array([s.b for s in slabs])
        self.top, self.bottom = np.array([s.top for s in slabs]).T, np.array([s.bottom for s in slabs]).T

    def _chords(self, origin: np.ndarray, direction: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Return the chord (mm) of each ray through body k[i] (0 where k is off the spine)."""
        valid = (k >= 0) & (k < self.n)
        kk = np.clip(k, 0, self.n - 1)
        rel = np.broadcast_to(origin, direction.shape) - self.centre[kk].T
        o = np.einsum("nji,jn->in", self.rot[kk], rel)
        d = np.einsum("nji,jn->in", self.rot[kk], direction)
        chord = slab_chord(o, d, self.a[kk], self.b[kk], self.top[:, kk], self.bottom[:, kk])
        return np.where(valid, chord * np.linalg.norm(direction, axis=0), 0.0)

    def __call__(self, rc: np.ndarray, idx: np.ndarray) -> np.ndarray:
        origin, direction = self.proj.rays(rc[0], rc[1])
        own = self._chords(origin, direction, idx)
        rival = np.maximum(self._chords(origin, direction, idx - 1), self._chords(origin, direction, idx + 1))
        return (own > 0) & (own >= rival)


def _boundary(owner: _Owner, start: np.ndarray, step: np.ndarray, idx: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Return how far along unit ``step`` from ``start`` (2, N) body ``idx`` stops owning the detector, or NaN."""
    lo, hi = np.zeros_like(reach), reach.copy()
    found = owner(start, idx) & ~owner(start + step * hi, idx)
    for _ in range(_ITERATIONS):
        mid = (lo + hi) / 2
        inside = owner(start + step * mid, idx)
        lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
    return np.where(found, (lo + hi) / 2, np.nan)


def _run_middle(owner: _Owner, points: np.ndarray, axis: np.ndarray, idx: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Return, per query, the middle of body ``idx``'s run along ``axis`` through ``points`` (2, N), or NaN."""
    offsets = np.linspace(-0.5, 0.5, 41)
    samples = points[:, :, None] + axis[:, :, None] * (offsets[None, :] * reach[:, None])[None]
    n = points.shape[1]
    owned = owner(samples.reshape(2, -1), np.repeat(idx, offsets.size)).reshape(n, offsets.size)
    first = np.argmax(owned, axis=1)
    last = offsets.size - 1 - np.argmax(owned[:, ::-1], axis=1)
    mid = offsets[(first + last) // 2] * reach
    return np.where(owned.any(axis=1), points + axis * mid, np.nan)


def six_points(bodies, proj: Projection) -> list[dict | None]:
    """Return, per body, its projected centre, axis and six points in pixel (row, col), or None if unmeasurable.

    Walls are the body's furthest extents along the AP direction, searched on lines at several heights (on a
    wedged body the line through the centre can leave through a collapsed endplate); the stations sit
    ``WALL_INSET`` of the depth in from them, and each is searched from the middle of the body's run there.
    """
    n = len(bodies)
    idx = np.arange(n)
    centre = np.concatenate([proj.project(b.outer.frame.center[:, None]) for b in bodies], axis=1)
    down = np.concatenate([proj.project(b.outer.frame.to_world([0, 0, 5.0])) for b in bodies], axis=1) - centre
    front = np.concatenate([proj.project(b.outer.frame.to_world([0, -5.0, 0])) for b in bodies], axis=1) - centre
    axis = down / np.linalg.norm(down, axis=0)
    ap = np.stack([-axis[1], axis[0]])
    ap *= np.sign((ap * front).sum(axis=0))  # ap points anterior
    scale = proj.magnification / proj.pitch_mm
    reach_ap = np.array([2.0 * b.outer.b for b in bodies]) * scale * 1.5
    reach_ax = np.array([b.baseline.hp for b in bodies]) * scale * 1.5
    owner = _Owner(bodies, proj)

    heights = np.linspace(-0.45, 0.45, _WALL_LINES)
    k = heights.size
    starts = (centre[:, :, None] + axis[:, :, None] * (heights[None, :] * reach_ax[:, None] / 1.5)[None]).reshape(2, -1)
    starts = _run_middle(owner, starts, np.repeat(ap, k, axis=1), np.repeat(idx, k), np.repeat(reach_ap, k))
    both = _boundary(owner, np.concatenate([starts, starts], axis=1),
                     np.concatenate([np.repeat(ap, k, axis=1), -np.repeat(ap, k, axis=1)], axis=1),
                     np.tile(np.repeat(idx, k), 2), np.tile(np.repeat(reach_ap, k), 2))
    # Distance of each wall from the centre's axis line, along ap (front) and -ap (back): the furthest line.
    off = ((starts - np.repeat(centre, k, axis=1)) * np.repeat(ap, k, axis=1)).sum(axis=0)
    front_d = np.nanmax((off + both[: n * k]).reshape(n, k), axis=1)
    back_d = np.nanmax((-off + both[n * k:]).reshape(n, k), axis=1)
    depth = front_d + back_d
    offsets = [front_d - WALL_INSET * depth, (front_d - back_d) / 2, -(back_d - WALL_INSET * depth)]
    stations = np.concatenate([centre + ap * o for o in offsets], axis=1)  # anterior, middle, posterior
    ax3, idx3, reach3 = np.tile(axis, 3), np.tile(idx, 3), np.tile(reach_ax, 3)
    stations = _run_middle(owner, stations, ax3, idx3, reach3)
    ends = _boundary(owner, np.tile(stations, 2), np.concatenate([-ax3, ax3], axis=1), np.tile(idx3, 2),
                     np.tile(reach3, 2))
    up, dn = ends[: 3 * n], ends[3 * n:]
    sup, inf = stations - ax3 * up, stations + ax3 * dn

    out: list[dict | None] = []
    for i in range(n):
        cols = [i, n + i, 2 * n + i]
        pts = np.concatenate([sup[:, cols], inf[:, cols]], axis=1)
        if not np.isfinite(pts).all():
            out.append(None)
            continue
        out.append({
            "center": centre[:, i], "axis": axis[:, i], "anterior": ap[:, i], "depth_px": float(depth[i]),
            "points": dict(zip(POINT_NAMES, pts.T, strict=True)),
        })
    return out
