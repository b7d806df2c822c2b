"""Lateral projection geometry: where each detector pixel's ray starts and which way it runs.

World frame (mm): x is lateral (the ray axis; the source sits at +x), y is anteroposterior (posterior
positive) and z is craniocaudal (caudal positive). The detector plane is x = -(SDD - SOD); image rows run
with +z and image columns with +y when the patient faces left (anterior on the image's left), with -y when
the patient faces right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Projection"]

_PARALLEL_SOURCE_X = 400.0  # far enough beyond any patient for parallel rays


@dataclass(frozen=True)
class Projection:
    """A lateral projection onto a ``shape`` detector of square ``pitch_mm`` pixels.

    Args:
        shape: detector (rows, columns).
        pitch_mm: detector pixel pitch, in mm at the detector.
        center: (y, z) of the point in the patient's midplane (x = 0) the central ray passes through.
        sdd_mm: source-to-detector distance. ``None`` selects a parallel projection.
        sod_mm: source-to-object (isocentre, x = 0) distance.
        facing: "left" or "right": the image side the patient's anterior is on.
    """

    shape: tuple[int, int]
    pitch_mm: float
    center: tuple[float, float]
    sdd_mm: float | None = 1000.0
    sod_mm: float = 800.0
    facing: str = "left"

    def __post_init__(self) -> None:
        if self.facing not in ("left", "right"):
            raise ValueError(f"facing must be 'left' or 'right', not {self.facing!r}.")
        if self.sdd_mm is not None and not 0 < self.sod_mm < self.sdd_mm:
            raise ValueError("The isocentre must lie between source and detector: need 0 < sod_mm < sdd_mm.")

    @property
    def parallel(self) -> bool:
        """Return True for a parallel projection."""
        return self.sdd_mm is None

    @property
    def magnification(self) -> float:
        """Return the magnification of the midplane (x = 0) onto the detector."""
        return 1.0 if self.sdd_mm is None else self.sdd_mm / self.sod_mm

    @property
    def _side(self) -> float:
        return 1.0 if self.facing == "left" else -1.0

    @property
    def detector_x(self) -> float:
        """Return the x of the detector plane."""
        return -_PARALLEL_SOURCE_X if self.sdd_mm is None else -(self.sdd_mm - self.sod_mm)

    def detector_points(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Return the world points (3, N) of detector positions given in (fractional) pixel indices."""
        rows = np.asarray(rows, dtype=np.float64).ravel()
        cols = np.asarray(cols, dtype=np.float64).ravel()
        h, w = self.shape
        v = (rows - (h - 1) / 2.0) * self.pitch_mm
        u = (cols - (w - 1) / 2.0) * self.pitch_mm
        yc, zc = self.center
        return np.stack([np.full_like(u, self.detector_x), yc + self._side * u, zc + v])

    def rays(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ray origins (3, 1) or (3, N) and directions (3, N); a ray runs from t=0 to t=1.

        The perspective source sits on the central ray, which passes through (0, yc, zc) and the image centre.
        """
        p = self.detector_points(rows, cols)
        if self.sdd_mm is None:
            origin = p.copy()
            origin[0] = _PARALLEL_SOURCE_X
        else:
            yc, zc = self.center
            origin = np.array([[self.sod_mm], [yc], [zc]])
        return origin, p - origin

    def box_rays(self, box: tuple[int, int, int, int], step: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return origins, directions (3, N) and direction norms (N,) for a box of the ``step`` grid.

        The ``step`` grid samples the centres of step×step pixel blocks. Directions are separable (x is constant,
        y depends on the column and z on the row), so a box's rays are built by broadcasting.
        """
        r0, r1, c0, c1 = box
        h, w = self.shape
        v = ((np.arange(r0, r1) * step + (step - 1) / 2) - (h - 1) / 2) * self.pitch_mm
        u = self._side * ((np.arange(c0, c1) * step + (step - 1) / 2) - (w - 1) / 2) * self.pitch_mm
        n = v.size * u.size
        yc, zc = self.center
        if self.sdd_mm is None:
            direction = np.zeros((3, n))
            direction[0] = -2 * _PARALLEL_SOURCE_X
            origin = np.empty((3, n))
            origin[0] = _PARALLEL_SOURCE_X
            origin[1] = np.broadcast_to(yc + u[None, :], (v.size, u.size)).ravel()
            origin[2] = np.broadcast_to(zc + v[:, None], (v.size, u.size)).ravel()
            return origin, direction, np.full(n, 2 * _PARALLEL_SOURCE_X)
        direction = np.empty((3, v.size, u.size))
        direction[0] = self.detector_x - self.sod_mm
        direction[1] = u[None, :]
        direction[2] = v[:, None]
        direction = direction.reshape(3, n)
        norm = np.sqrt(np.square(direction).sum(axis=0))
        return np.array([[self.sod_mm], [yc], [zc]]), direction, norm

    def project(self, points: np.ndarray) -> np.ndarray:
        """Return the (row, col) pixel positions (2, N) of world points (3, N)."""
        points = np.asarray(points, dtype=np.float64).reshape(3, -1)
        yc, zc = self.center
        if self.sdd_mm is None:
            y, z = points[1], points[2]
            dy, dz = y - yc, z - zc
        else:
            scale = self.sdd_mm / (self.sod_mm - points[0])
            dy, dz = (points[1] - yc) * scale, (points[2] - zc) * scale
        h, w = self.shape
        rows = dz / self.pitch_mm + (h - 1) / 2.0
        cols = self._side * dy / self.pitch_mm + (w - 1) / 2.0
        return np.stack([rows, cols])

    def pixel_grid(self, bbox: tuple[int, int, int, int], step: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Return the pixel-centre (rows, cols) of a box (r0, r1, c0, c1), every ``step`` pixels, flattened."""
        r0, r1, c0, c1 = bbox
        rr, cc = np.meshgrid(np.arange(r0, r1, step, dtype=np.float64), np.arange(c0, c1, step, dtype=np.float64),
                             indexing="ij")
        return rr.ravel(), cc.ravel()

    def visible(self, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
        """Return which spheres (centres (3, N), radii (N,)) may project onto the detector: a cheap first cull."""
        rc = self.project(centres)
        if self.sdd_mm is None:
            scale = 1.0
        else:
            scale = self.sdd_mm / np.maximum(self.sod_mm - centres[0] - radii, 1.0)
        reach = radii * scale / self.pitch_mm + 2.0
        h, w = self.shape
        return (rc[0] + reach >= 0) & (rc[0] - reach < h) & (rc[1] + reach >= 0) & (rc[1] - reach < w)

    def bbox(self, corners: np.ndarray, margin: int = 2) -> tuple[int, int, int, int] | None:
        """Return the clipped pixel box (r0, r1, c0, c1) covering projected world ``corners`` (3, N), or None."""
        rc = self.project(corners)
        h, w = self.shape
        r0 = max(int(np.floor(rc[0].min())) - margin, 0)
        r1 = min(int(np.ceil(rc[0].max())) + margin + 1, h)
        c0 = max(int(np.floor(rc[1].min())) - margin, 0)
        c1 = min(int(np.ceil(rc[1].max())) + margin + 1, w)
        if r0 >= r1 or c0 >= c1:
            return None
        return r0, r1, c0, c1
