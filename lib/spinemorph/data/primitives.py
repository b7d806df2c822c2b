"""Analytic ray casting through the phantom's shapes: exact chord lengths for Beer-Lambert line integrals.

Every shape is a quadric in its own frame, so the length of a ray inside it has a closed form and the
projection needs no voxel grid. Rays are (origin, direction) pairs in world mm with the direction running
from source (t = 0) to detector (t = 1); lengths come back in units of t, to be scaled by |direction|.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Frame", "Ellipsoid", "Slab", "Carved", "rotation", "interval_overlap", "slab_chord"]

_EPS = 1e-12
_FAR = 1e6  # t-extent standing in for "the whole ray"


def rotation(axis: str, angle_rad: float) -> np.ndarray:
    """Return the 3×3 rotation matrix about world axis "x", "y" or "z"."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    raise ValueError(f"axis must be 'x', 'y' or 'z', not {axis!r}.")


@dataclass(frozen=True)
class Frame:
    """A rigid local frame: ``rot`` holds the local axes as columns, in world coordinates."""

    center: np.ndarray
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))

    def to_local(self, origin: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return a ray set expressed in this frame."""
        return self.rot.T @ (origin - self.center[:, None]), self.rot.T @ direction

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """Return local points (3, N) in world coordinates."""
        return self.rot @ np.asarray(points, dtype=np.float64).reshape(3, -1) + self.center[:, None]

    def moved(self, rot: np.ndarray, pivot: np.ndarray) -> Frame:
        """Return this frame after a world rotation ``rot`` about ``pivot``."""
        return Frame(rot @ (self.center - pivot) + pivot, rot @ self.rot)


def _quadratic_interval(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the roots t1 <= t2 of a t² + b t + c (a > 0); where there are none, t1 = t2 = 0."""
    disc = b * b - 4.0 * a * c
    hit = disc > 0.0
    root = np.sqrt(np.where(hit, disc, 0.0))
    a2 = np.where(hit, 2.0 * a, 1.0)
    t1 = np.where(hit, (-b - root) / a2, 0.0)
    t2 = np.where(hit, (-b + root) / a2, 0.0)
    return t1, t2


def interval_overlap(i1: tuple[np.ndarray, np.ndarray], i2: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Return the length of the intersection of two t-intervals."""
    return np.clip(np.minimum(i1[1], i2[1]) - np.maximum(i1[0], i2[0]), 0.0, None)


@dataclass(frozen=True)
class Ellipsoid:
    """A solid ellipsoid with semi-axes ``radii`` along its frame's axes."""

    frame: Frame
    radii: tuple[float, float, float]
    mu: float = 0.0

    def interval(self, origin: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the t-interval (t1, t2) of each ray inside the ellipsoid (t1 = t2 where it misses)."""
        to_unit = self._to_unit
        o = to_unit @ (origin - self.frame.center[:, None])
        d = to_unit @ direction
        a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        b = 2.0 * (o[0] * d[0] + o[1] * d[1] + o[2] * d[2])
        c = o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - 1.0
        return _quadratic_interval(a, b, c)

    @property
    def _to_unit(self) -> np.ndarray:
        """Return the matrix taking world offsets into the frame where the ellipsoid is the unit sphere."""
        return self.frame.rot.T / np.asarray(self.radii, dtype=np.float64)[:, None]

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        """Return the centre and radius of a sphere holding the ellipsoid."""
        return self.frame.center, float(max(self.radii))

    def chord(self, origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Return the length of each ray inside the ellipsoid, in units of t."""
        t1, t2 = self.interval(origin, direction)
        return t2 - t1

    def corners(self) -> np.ndarray:
        """Return the 8 world corners (3, 8) of the ellipsoid's tight, world-aligned bounding box."""
        half = np.sqrt(np.square(self.frame.rot * np.asarray(self.radii)[None, :]).sum(axis=1))
        return _box(*half) + self.frame.center[:, None]


@dataclass(frozen=True)
class Slab:
    """An elliptic cylinder (semi-axes ``a`` along local x, ``b`` along local y) cut by two endplate surfaces.

    The cylinder runs along local z. The superior surface is z = top[0] + top[1]·y + top[2]·y² and the
    inferior one z = bottom[0] + bottom[1]·y + bottom[2]·y² (z caudal): a vertebral body whose endplates
    may be wedged (linear term) or concave (quadratic term) in the anteroposterior direction.
    """

    frame: Frame
    a: float
    b: float
    top: tuple[float, float, float]
    bottom: tuple[float, float, float]
    mu: float = 0.0

    def chord(self, origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Return the length of each ray inside the slab, in units of t."""
        o, d = self.frame.to_local(origin, direction)
        return slab_chord(np.broadcast_to(o, d.shape), d, self.a, self.b, np.array(self.top), np.array(self.bottom))

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        """Return the frame centre and the radius of a sphere about it that holds the slab."""
        reach = max(abs(c[0]) + abs(c[1]) * self.b + abs(c[2]) * self.b**2 for c in (self.top, self.bottom))
        return self.frame.center, float(np.sqrt(self.a**2 + self.b**2 + reach**2))

    def corners(self) -> np.ndarray:
        """Return the 8 world corners (3, 8) of the slab's bounding box."""
        ys = np.linspace(-self.b, self.b, 9)
        z_top = np.polyval(self.top[::-1], ys).min()
        z_bottom = np.polyval(self.bottom[::-1], ys).max()
        box = _box(self.a, self.b, (z_bottom - z_top) / 2.0)
        box[2] += (z_bottom + z_top) / 2.0
        return self.frame.to_world(box)


def slab_chord(o: np.ndarray, d: np.ndarray, a, b, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Return chord lengths (units of t) of local rays (3, N) through slabs; parameters are scalars or per ray.

    ``top`` and ``bottom`` are (3,) or (3, N) endplate coefficients (c0, c1, c2).
    """
    ia2, ib2 = 1.0 / np.square(a), 1.0 / np.square(b)
    qa = d[0] * d[0] * ia2 + d[1] * d[1] * ib2
    qb = 2.0 * (o[0] * d[0] * ia2 + o[1] * d[1] * ib2)
    qc = o[0] * o[0] * ia2 + o[1] * o[1] * ib2 - 1.0
    along = qa < _EPS  # a ray along the cylinder axis: inside everywhere or nowhere
    t1, t2 = _quadratic_interval(np.where(along, 1.0, qa), qb, qc)
    t1 = np.where(along, np.where(qc <= 0.0, -_FAR, 0.0), t1)
    t2 = np.where(along, np.where(qc <= 0.0, _FAR, 0.0), t2)
    out = np.zeros_like(t1)
    hit = np.flatnonzero(t2 > t1)
    if hit.size == 0:
        return out
    top, bottom = (np.asarray(c, dtype=np.float64) for c in (top, bottom))
    if top.ndim == 2:
        top, bottom = top[:, hit], bottom[:, hit]
    (oy, oz), (dy, dz), t1, t2 = o[1:, hit], d[1:, hit], t1[hit], t2[hit]
    if top.ndim == 1 and not (top[1:].any() or bottom[1:].any()):
        # Flat caps: the slab is the interval between two planes z = top and z = bottom.
        safe = np.where(np.abs(dz) > _EPS, dz, _EPS)
        ta, tb = (top[0] - oz) / safe, (bottom[0] - oz) / safe
        lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
        flat = np.abs(dz) <= _EPS
        inside = (oz >= top[0]) & (oz <= bottom[0])
        lo, hi = np.where(flat, np.where(inside, -_FAR, 0.0), lo), np.where(flat, np.where(inside, _FAR, 0.0), hi)
        out[hit] = np.clip(np.minimum(t2, hi) - np.maximum(t1, lo), 0.0, None)
        return out
    # g(t) = top(y(t)) - z(t) <= 0 below the top surface; h(t) = z(t) - bottom(y(t)) <= 0 above the bottom.
    g = _surface_minus_z(top, oy, dy, oz, dz, sign=1.0)
    h = _surface_minus_z(bottom, oy, dy, oz, dz, sign=-1.0)
    out[hit] = _length_where_both_nonpositive(t1, t2, g, h)
    return out


def _box(ax: float, ay: float, az: float) -> np.ndarray:
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1)
    return signs * np.array([[ax], [ay], [az]], dtype=np.float64)


def _surface_minus_z(coef: tuple[float, float, float], oy, dy, oz, dz, sign: float):
    """Return the coefficients (c2, c1, c0) of sign·(surface(y(t)) - z(t)) as a polynomial in t."""
    k0, k1, k2 = coef
    c2 = k2 * dy * dy
    c1 = 2.0 * k2 * oy * dy + k1 * dy - dz
    c0 = k2 * oy * oy + k1 * oy + k0 - oz
    return sign * c2, sign * c1, sign * c0


def _feasible(c2, c1, c0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return {t : c2 t² + c1 t + c0 <= 0} as two disjoint intervals (lo1, hi1), (lo2, hi2), empty where lo >= hi."""
    linear = np.abs(c2) < 1e-12 * (np.abs(c1) + np.abs(c0) + _EPS)
    disc = c1 * c1 - 4.0 * c2 * c0
    root = np.sqrt(np.maximum(disc, 0.0))
    # The numerically stable pair of roots: q = -(c1 + sign(c1)·root)/2, roots q/c2 and c0/q.
    q = -0.5 * (c1 + np.copysign(root, c1))
    ra = q / np.where(linear, 1.0, c2)
    rb = c0 / np.where(np.abs(q) > _EPS, q, _EPS)
    r_lo, r_hi = np.minimum(ra, rb), np.maximum(ra, rb)
    real = disc >= 0.0
    # Opening upward: between the roots. Opening downward: outside them, or everywhere without real roots.
    lo1 = np.where(c2 > 0, np.where(real, r_lo, _FAR), -_FAR)
    hi1 = np.where(c2 > 0, np.where(real, r_hi, -_FAR), np.where(real, r_lo, _FAR))
    lo2 = np.where((c2 < 0) & real, r_hi, _FAR)
    hi2 = np.full_like(lo2, _FAR)
    # Linear: a half-line, everything, or nothing.
    cut = -c0 / np.where(np.abs(c1) > _EPS, c1, 1.0)
    flat_ok = c0 <= 0.0
    lin_lo = np.where(c1 > _EPS, -_FAR, np.where(c1 < -_EPS, cut, np.where(flat_ok, -_FAR, _FAR)))
    lin_hi = np.where(c1 > _EPS, cut, np.where(c1 < -_EPS, _FAR, np.where(flat_ok, _FAR, -_FAR)))
    lo1, hi1 = np.where(linear, lin_lo, lo1), np.where(linear, lin_hi, hi1)
    lo2 = np.where(linear, _FAR, lo2)
    return lo1, hi1, lo2, hi2


def _length_where_both_nonpositive(t1, t2, g, h) -> np.ndarray:
    """Return the measure of {t in [t1, t2] : g(t) <= 0 and h(t) <= 0} for quadratics g and h."""
    ga1, gb1, ga2, gb2 = _feasible(*g)
    ha1, hb1, ha2, hb2 = _feasible(*h)
    total = np.zeros_like(t1)
    for glo, ghi in ((ga1, gb1), (ga2, gb2)):
        lo = np.maximum(glo, t1)
        hi = np.minimum(ghi, t2)
        for hlo, hhi in ((ha1, hb1), (ha2, hb2)):
            total += np.clip(np.minimum(hi, hhi) - np.maximum(lo, hlo), 0.0, None)
    return total


@dataclass(frozen=True)
class Carved:
    """An ellipsoid with disjoint ellipsoidal holes: a lung without the heart and the diaphragm dome."""

    base: Ellipsoid
    holes: tuple[Ellipsoid, ...]
    mu: float = 0.0

    def chord(self, origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Return the length of each ray inside the base and outside the holes, in units of t."""
        span = self.base.interval(origin, direction)
        length = span[1] - span[0]
        for hole in self.holes:
            length = length - interval_overlap(span, hole.interval(origin, direction))
        return np.clip(length, 0.0, None)

    def corners(self) -> np.ndarray:
        """Return the world corners of the base's bounding box."""
        return self.base.corners()

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        """Return the base's bounding sphere."""
        return self.base.bounding_sphere()
