"""More anatomy from one CT: smooth deformations, bends at disc levels and vertebra sizes.

A deformation (``Warp``) is a map of RAS millimetres: ``backward`` takes output points to where their tissue
comes from, which is what resampling needs; ``forward`` (approximate where the map is not rigid) moves points
such as the patient outline and the canal line. ``deform_ct`` applies a list of warps to the densities and to
every body mask with one trilinear resampling each, so the labels follow the tissue; a body's 0/1 ramp keeps
its outline to a fraction of a voxel through the resampling.

Bends (``Bend``) act in the sagittal plane, alike for every left-right position: the volume above a disc turns
about a lateral axis through the disc centre, blended across the disc. Away from the spine the blend widens
like a fan (half-width ``|t| tan 10°`` at AP distance ``t``), so the map stays one-to-one however far the
tissue lies. They are resampled slab by slab in 2D over the whole volume, and always act after the local warps
(``Scale``, ``SmoothField``, the fractures of ``spinemorph.data.ct_fracture``), which are resampled in 3D only
inside their box.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from spinemorph.data.ct import BodyFrame, BodyPart, CtVolume, apply_affine, body_frames
from spinemorph.levels import level_name

__all__ = ["Warp", "Bend", "Scale", "SmoothField", "deform_ct", "deform_parts", "move_points", "in_order",
           "box_corners", "smoothstep", "AnatomyConfig", "sample_anatomy"]

_FAN = np.tan(np.deg2rad(10.0))
_REFINE = 3  # fixed-point steps that make ``forward`` invert ``backward``
_FIELD_STEP_MM = 4.0  # a smooth field is tabulated this finely


def smoothstep(x) -> np.ndarray:
    """Return the smoothstep 3x² - 2x³ of ``x`` clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Return the eight corners (3, 8) of the box from ``lo`` to ``hi``."""
    return np.array(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij")).reshape(3, -1).astype(float)


class Warp:
    """A deformation of RAS space, the identity outside ``bounds()`` (input and output alike).

    Subclasses define ``_map`` (called only on points inside the bounds), ``bounds`` and ``describe``.
    """

    sagittal = False  # True: acts in the y-z plane, alike for every x
    reach_mm = 0.0  # the largest displacement

    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Return the RAS box (lo, hi) outside which the warp is the identity, or None where it reaches everywhere."""
        return None

    def describe(self) -> dict:
        """Return what the warp does, for a truth record."""
        raise NotImplementedError

    def _map(self, pts: np.ndarray, inverse: bool) -> np.ndarray:
        raise NotImplementedError

    def _apply(self, pts: np.ndarray, inverse: bool) -> np.ndarray:
        out = np.array(pts, dtype=np.float64, copy=True)
        box = self.bounds()
        if box is None:
            return self._map(out, inverse)
        near = np.flatnonzero(np.all((out >= box[0][:, None]) & (out <= box[1][:, None]), axis=0))
        if near.size:
            out[:, near] = self._map(out[:, near], inverse)
        return out

    exact_forward = False  # True where ``_map(pts, False)`` inverts ``_map(pts, True)`` exactly

    def backward(self, pts: np.ndarray) -> np.ndarray:
        """Return where the tissue at output points (3, N) comes from."""
        return self._apply(pts, True)

    def forward(self, pts: np.ndarray) -> np.ndarray:
        """Return where input points (3, N) go: the inverse of ``backward``, refined by fixed-point steps."""
        out = self._apply(pts, False)
        for _ in range(0 if self.exact_forward else _REFINE):
            out += pts - self.backward(out)
        return out


@dataclass(frozen=True)
class Bend(Warp):
    """Turn everything above a disc about a lateral axis through ``pivot``; positive ``angle_deg`` flexes (tilts the
    part above anteriorly), adding kyphosis or removing lordosis.

    Args:
        pivot: (3,) RAS of the disc centre (x is not used).
        axis: (2,) unit (y, z) direction of the spine there, superior.
        angle_deg: the turn.
        half_gap_mm: the blend's half-width along the spine near it: half the disc's height.
        name: the disc, e.g. "T7/T8", for the record.
    """

    pivot: np.ndarray
    axis: np.ndarray
    angle_deg: float
    half_gap_mm: float
    name: str = ""
    sagittal = True

    def describe(self) -> dict:
        return {"kind": "bend", "disc": self.name, "angle_deg": round(self.angle_deg, 4)}

    def _map(self, pts: np.ndarray, inverse: bool) -> np.ndarray:
        d = pts[1:3] - self.pivot[1:3, None]
        s = self.axis @ d
        t = np.array([self.axis[1], -self.axis[0]]) @ d
        half = np.maximum(self.half_gap_mm, np.abs(t) * _FAN)
        a = (-1.0 if inverse else 1.0) * np.deg2rad(self.angle_deg) * smoothstep(0.5 + s / (2 * half))
        c, n = np.cos(a), np.sin(a)
        pts[1] = self.pivot[1] + c * d[0] + n * d[1]
        pts[2] = self.pivot[2] - n * d[0] + c * d[1]
        return pts


@dataclass(frozen=True)
class Scale(Warp):
    """Scale one vertebra about its centre by ``factor``, blended to nothing across the discs and around it.

    Args:
        centre: (3,) RAS centre.
        axis: (3,) unit craniocaudal axis of the body.
        factor: the scale (0.85-1.15).
        half_height_mm: where the blend along the axis starts (the body's half-height).
        blend_mm: the blend's length along the axis (at most half the disc).
        radius_mm: where the blend across the axis starts; it ends ``2 * blend_mm + 12`` mm further.
        name: the level, for the record.
    """

    centre: np.ndarray
    axis: np.ndarray
    factor: float
    half_height_mm: float
    blend_mm: float
    radius_mm: float
    name: str = ""

    @property
    def _extent(self) -> tuple[float, float]:
        return self.half_height_mm + self.blend_mm, self.radius_mm + 2 * self.blend_mm + 12.0

    @property
    def reach_mm(self) -> float:
        return abs(self.factor - 1) * max(self._extent)

    def describe(self) -> dict:
        return {"kind": "scale", "level": self.name, "factor": round(self.factor, 5)}

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = float(np.hypot(*self._extent))
        return self.centre - r, self.centre + r

    def _map(self, pts: np.ndarray, inverse: bool) -> np.ndarray:
        d = pts - self.centre[:, None]
        s = self.axis @ d
        rho = np.sqrt(np.maximum((d * d).sum(axis=0) - s * s, 0.0))
        (along, across), blend = self._extent, self._extent[1] - self.radius_mm
        w = smoothstep((along - np.abs(s)) / self.blend_mm) * smoothstep((across - rho) / blend)
        k = 1 / self.factor if inverse else self.factor
        return self.centre[:, None] + d * (1 + (k - 1) * w)


class SmoothField(Warp):
    """A smooth random displacement inside a box: cubic B-spline nodes ``spacing_mm`` apart, each component drawn
    with standard deviation ``amplitude_mm``, tapered to nothing over ``taper_mm`` at the box's faces. The field
    is tabulated every ``_FIELD_STEP_MM`` and interpolated linearly."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, amplitude_mm: float, rng: np.random.Generator,
                 spacing_mm: float = 50.0, taper_mm: float = 20.0) -> None:
        self.lo, self.hi = np.asarray(lo, float), np.asarray(hi, float)
        self.spacing, self.amplitude, self.reach_mm = spacing_mm, amplitude_mm, 3.0 * amplitude_mm
        coeffs = rng.normal(0.0, amplitude_mm, (3, *(np.ceil((self.hi - self.lo) / spacing_mm).astype(int) + 3)))
        axes = [np.arange(a, b + _FIELD_STEP_MM, _FIELD_STEP_MM) for a, b in zip(self.lo, self.hi, strict=True)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij")).reshape(3, -1)
        idx = (pts - self.lo[:, None]) / spacing_mm + 1.0
        edge = np.minimum(pts - self.lo[:, None], self.hi[:, None] - pts) / taper_mm
        u = np.stack([ndimage.map_coordinates(c, idx, order=3, prefilter=False, mode="nearest") for c in coeffs])
        self.table = (u * np.prod(smoothstep(edge), axis=0)).reshape(3, *(a.size for a in axes)).astype(np.float32)

    def describe(self) -> dict:
        return {"kind": "smooth", "amplitude_mm": round(self.amplitude, 4), "spacing_mm": self.spacing}

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lo, self.hi

    def _map(self, pts: np.ndarray, inverse: bool) -> np.ndarray:
        idx = (pts - self.lo[:, None]) / _FIELD_STEP_MM
        u = np.stack([ndimage.map_coordinates(c, idx, order=1, mode="nearest") for c in self.table])
        return pts - u if inverse else pts + u



def move_points(warps, pts: np.ndarray, backward: bool) -> np.ndarray:
    """Return RAS points (3, N) moved through the warps in order, or back through them in reverse order."""
    for w in (reversed(warps) if backward else warps):
        pts = w.backward(pts) if backward else w.forward(pts)
    return pts


def in_order(warps) -> list[Warp]:
    """Return the warps in the order they act: the local ones as given, then the bends."""
    return [w for w in warps if not w.sagittal] + [w for w in warps if w.sagittal]


def _index_box(to_ras: np.ndarray, pts: np.ndarray, margin_mm: float, shape=None) -> tuple[slice, ...]:
    """Return the grid slices covering RAS points (3, N) plus a margin, clipped to ``shape`` if given."""
    idx = apply_affine(np.linalg.inv(to_ras), pts)
    pad = margin_mm / np.linalg.norm(to_ras[:3, :3], axis=0)
    lo, hi = np.floor(idx.min(axis=1) - pad).astype(int), np.ceil(idx.max(axis=1) + pad).astype(int) + 1
    if shape is not None:
        lo, hi = np.maximum(lo, 0), np.minimum(hi, shape)
    return tuple(slice(a, max(a, b)) for a, b in zip(lo, hi, strict=True))


def _grid(box: tuple[slice, ...], to_ras: np.ndarray) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij")).reshape(3, -1)
    return apply_affine(to_ras, ijk.astype(float))


def _sample(volume: np.ndarray, to_ras: np.ndarray, pts: np.ndarray, cval: float | None = None) -> np.ndarray:
    """Return ``volume`` sampled trilinearly at RAS points (3, N); ``cval`` outside, else the nearest edge."""
    idx = apply_affine(np.linalg.inv(to_ras), pts)
    mode = "nearest" if cval is None else "constant"
    return ndimage.map_coordinates(volume, idx, order=1, mode=mode, cval=cval or 0.0, output=np.float32)


def _warp_volumes(volumes: list[np.ndarray], to_ras: np.ndarray, warps: list[Warp]) -> list[np.ndarray]:
    """Return volumes on the grid ``to_ras`` resampled through the warps: the bends slab by slab in 2D, the local
    warps in 3D inside their box (everything in 3D on an oblique grid)."""
    bends, shape = [w for w in warps if w.sagittal], volumes[0].shape
    m = to_ras[:3, :3]
    if bends and not (np.allclose(m[1:, 0], 0) and np.allclose(m[0, 1:], 0)):
        box = tuple(slice(0, n) for n in shape)
    else:
        box = None
        local = [w.bounds() for w in warps if not w.sagittal]
        if any(b is None for b in local):
            box = tuple(slice(0, n) for n in shape)
        elif local:
            lo, hi = np.min([b[0] for b in local], axis=0), np.max([b[1] for b in local], axis=0)
            box = _index_box(to_ras, move_points(bends, box_corners(lo, hi), backward=False), 10.0, shape)
    outs = [v.copy() for v in volumes]
    if bends and box != tuple(slice(0, n) for n in shape):
        jk = np.stack(np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij")).reshape(2, -1)
        pts = np.zeros((3, jk.shape[1]))
        pts[1:] = m[1:, 1:] @ jk + to_ras[1:3, 3:4]
        back = np.linalg.solve(m[1:, 1:], move_points(bends, pts, True)[1:] - to_ras[1:3, 3:4]).reshape(2, *shape[1:])
        for v, out in zip(volumes, outs, strict=True):
            for i in range(shape[0]):
                ndimage.map_coordinates(v[i], back, output=out[i], order=1, mode="nearest")
    if box is not None and all(s.stop > s.start for s in box):
        for i in range(box[0].start, box[0].stop, 16):  # slabs, to bound the memory
            sub = (slice(i, min(i + 16, box[0].stop)), *box[1:])
            idx = apply_affine(np.linalg.inv(to_ras), move_points(warps, _grid(sub, to_ras), True))
            for v, out in zip(volumes, outs, strict=True):
                out[sub] = ndimage.map_coordinates(v, idx, order=1, mode="nearest").reshape(out[sub].shape)
    return outs


def _warp_part(part: BodyPart, warps: list[Warp]) -> BodyPart:
    """Return a body's mask resampled through the warps, on a grid like its own, cropped to what it covers."""
    corners = part.corners_ras
    reach = [w.reach_mm for w in warps if not w.sagittal and _meets(w, corners)]
    if not reach and not any(w.sagittal for w in warps):
        return part
    # The corners move with the tissue; the margin covers what moves further (a growing vertebra, a bulge).
    box = _index_box(part.to_ras, move_points(warps, corners, backward=False), 2.0 + 0.3 * max(reach, default=0.0))
    grid_to_ras = part.to_ras.copy()
    grid_to_ras[:3, 3] += part.to_ras[:3, :3] @ [s.start for s in box]
    box = tuple(slice(0, s.stop - s.start) for s in box)
    mask = _sample(part.mask, part.to_ras, move_points(warps, _grid(box, grid_to_ras), True), cval=0.0)
    mask = mask.reshape(tuple(s.stop for s in box))
    keep = ndimage.find_objects((mask > 0.02).astype(np.uint8))
    if not keep:
        return replace(part, mask=np.zeros((1, 1, 1), np.float32), to_ras=grid_to_ras)
    sub = tuple(slice(max(k.start - 1, 0), k.stop + 1) for k in keep[0])
    grid_to_ras[:3, 3] += grid_to_ras[:3, :3] @ [s.start for s in sub]
    moved = replace(part, mask=np.ascontiguousarray(mask[sub]), to_ras=grid_to_ras)
    return replace(moved, center_ras=moved.inside_ras().mean(axis=1))


def _meets(warp: Warp, corners: np.ndarray) -> bool:
    box = warp.bounds()
    return box is None or bool(np.all(corners.min(axis=1) <= box[1]) and np.all(corners.max(axis=1) >= box[0]))


def deform_parts(ct: CtVolume, warps, reuse: tuple[tuple[BodyPart, ...], list[Warp]] | None = None
                 ) -> tuple[BodyPart, ...]:
    """Return the bodies of ``ct`` moved by the warps (local ones first, then the bends).

    ``reuse`` = (bodies, extra): the bodies already moved by all the warps but the ``extra`` ones; a body no
    extra warp reaches is taken from them as it is.
    """
    warps = in_order(warps)
    if reuse is None:
        return tuple(_warp_part(p, warps) for p in ct.parts)
    done, extra = reuse
    return tuple(_warp_part(p, warps) if any(_meets(w, p.corners_ras) for w in extra) else moved
                 for p, moved in zip(ct.parts, done, strict=True))


def deform_ct(ct: CtVolume, warps, parts: tuple[BodyPart, ...] | None = None) -> CtVolume:
    """Return ``ct`` deformed by the warps: densities, bodies, patient outline and canal line alike.

    ``parts`` are the bodies already moved by these warps (``deform_parts``), when the caller has them.
    """
    warps = in_order(warps)
    if not warps:
        return ct
    soft, bone = _warp_volumes([ct.soft, ct.bone], ct.grid_to_ras, warps)
    parts = parts if parts is not None else deform_parts(ct, warps)
    return replace(ct, soft=soft, bone=bone, parts=parts, patient_ras=move_points(warps, ct.patient_ras, False),
                   canal_ras=move_points(warps, ct.canal_ras, False))


@dataclass(frozen=True)
class AnatomyConfig:
    """How much anatomy ``sample_anatomy`` changes.

    Args:
        smooth_mm: largest standard deviation of the smooth displacement (drawn uniformly up to it).
        bends: largest number of discs bent (drawn from 0 to it).
        bend_deg: largest bend at one disc.
        scale_rate: probability that a vertebra changes size.
        scale: largest relative change of size.
    """

    smooth_mm: float = 2.0
    bends: int = 3
    bend_deg: float = 5.0
    scale_rate: float = 0.3
    scale: float = 0.1

    def __post_init__(self) -> None:
        if not (0 <= self.smooth_mm <= 10 and 0 <= self.bend_deg <= 15 and 0 <= self.scale <= 0.15):
            raise ValueError("Keep smooth_mm within 0-10 mm, bend_deg within 0-15° and scale within 0-0.15.")
        if self.bends < 0 or not 0 <= self.scale_rate <= 1:
            raise ValueError("bends must be non-negative and scale_rate a probability.")


def sample_anatomy(ct: CtVolume, rng: np.random.Generator, config: AnatomyConfig = AnatomyConfig()) -> list[Warp]:
    """Return random anatomy changes for ``ct``: vertebra sizes, a smooth field around the spine, bends at discs."""
    frames, parts = body_frames(ct), ct.parts
    warps: list[Warp] = []
    for i, part in enumerate(parts):
        if part.truncated or rng.random() >= config.scale_rate:
            continue
        f = frames[part.code]
        gaps = [_gap(frames, parts[j], parts[j + 1]) for j in (i - 1, i) if 0 <= j < len(parts) - 1]
        blend = max(0.5 * min(gaps, default=4.0), 1.5)
        half = 0.5 * (f.height[1] - f.height[0])
        factor = 1 + rng.uniform(-1, 1) * min(config.scale, 0.6 * blend / half)
        warps.append(Scale(f.centre, f.axis, float(factor), half, blend, f.half_width, level_name(part.code)))
    if config.smooth_mm > 0:
        pts = np.concatenate([p.inside_ras() for p in parts], axis=1)
        warps.append(SmoothField(pts.min(axis=1) - 30, pts.max(axis=1) + 30, rng.uniform(0, config.smooth_mm), rng))
    pairs = list(range(len(parts) - 1))
    for j in rng.choice(pairs, size=min(int(rng.integers(0, config.bends + 1)), len(pairs)), replace=False):
        warps.append(_disc_bend(frames, parts[j], parts[j + 1], float(rng.uniform(-1, 1) * config.bend_deg)))
    return warps


def _gap(frames: dict[int, BodyFrame], upper: BodyPart, lower: BodyPart) -> float:
    """Return the disc height between two neighbouring bodies, along the lower body's axis (at least 1 mm)."""
    f = frames[lower.code]
    return max(f.extent_of(upper)[0] - f.height[1], 1.0)


def _disc_bend(frames: dict[int, BodyFrame], upper: BodyPart, lower: BodyPart, angle: float) -> Bend:
    """Return a bend of ``angle`` degrees at the disc between two neighbouring bodies."""
    f = frames[lower.code]
    gap = _gap(frames, upper, lower)
    pivot = f.centre + f.axis * (f.height[1] + gap / 2) + f.anterior * 0.5 * (f.depth[0] + f.depth[1])
    axis = f.axis[1:] / np.linalg.norm(f.axis[1:])
    return Bend(pivot, axis, angle, max(gap / 2, 1.0), f"{level_name(upper.code)}/{level_name(lower.code)}")
