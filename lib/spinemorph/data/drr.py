"""Lateral digitally reconstructed radiographs (DRRs) of a real CT, with projected vertebral-body labels.

The CT (``spinemorph.data.ct``: attenuation in RAS order, vertebral bodies from ``spinemorph.data.bodies``) is
posed in the simulator's world frame (``spinemorph.data.geometry``: x lateral towards the source, y posterior,
z caudal), turned about the centroid of its vertebral bodies by ``rotation("z", axial) @ rotation("y", tilt)``
as ``spinemorph.data.simulate`` poses its phantom. The source sits on the patient's right by default (a left
lateral: the image faces left); a source on the left is rendered as the mirrored patient seen from the right,
which gives the same line integrals, and the image faces right.

Rays are cast shear-warp style: the sagittal slice at x reaches the detector magnified by SDD / (SOD - x), so
each slice is one affine resampling of the CT onto the detector, summed along x, times the step and the ray's
obliquity. Two volumes are cast, the soft-tissue and the bone densities, into mass path lengths; a polychromatic
beam turns them into transmission and an effective line integral (``spinemorph.data.xray``), which goes through
``spinemorph.data.detector.expose``. The detector frames the whole patient, and sits ``_DETECTOR_GAP_MM`` beyond
the patient's detector-side skin. Each body is cast the same way as a path length (inside where its trilinearly
sampled mask is at least 0.5), and a pixel belongs to the level its ray crosses for longest: the simulator's
rule. The few pixels a level wins apart from its main region (where oblique rays make two bodies overlap) go to
the next longest path, so each level is one region. S1 is labelled when the mask holds it: it anchors level
names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from spinemorph.conventions import near_edge_codes
from spinemorph.data.ct import CtVolume, apply_affine, load_ct
from spinemorph.data.detector import Detector, expose
from spinemorph.data.geometry import Projection
from spinemorph.data.primitives import rotation
from spinemorph.data.studies import FORMATS, case_id, write_case
from spinemorph.data.xray import Exposure, effective_line
from spinemorph.levels import level_name

__all__ = ["DrrConfig", "Drr", "world_from_ras", "pose", "render_labels", "mass_paths", "render_drr", "render_drrs"]

log = logging.getLogger(__name__)

_DETECTOR_GAP_MM = 30.0
_SUPPORT_MM = 4.0  # a slice is sampled where the patient's points within this distance of it project ...
_SUPPORT_PX = 6  # ... plus this margin (the points are a few mm apart)


@dataclass(frozen=True)
class DrrConfig:
    """What to render.

    Args:
        rotations: axial rotations (degrees, about the craniocaudal axis through the spine).
        tilts: tilts (degrees, about the anteroposterior axis); every rotation is rendered at every tilt.
        spacing_mm: detector pixel pitch.
        sdd_mm: source-to-detector distance; ``None`` renders a parallel projection.
        step_mm: ray step (the CT is averaged to about this along its left-right axis).
        source: the patient's side the source is on: "right" (image facing left) or "left" (facing right).
        bits: 12 or 16 bits stored.
        margin_mm: where the body cut lies, anterior of the spinal canal's anterior wall.
        seed: seeds the detector noise.
        exposure: tube voltage, filtration, mAs and heel effect (``spinemorph.data.xray.Exposure``).
    """

    rotations: tuple[float, ...] = (-10.0, -5.0, 0.0, 5.0, 10.0)
    tilts: tuple[float, ...] = (0.0,)
    spacing_mm: float = 0.8
    sdd_mm: float | None = 1100.0
    step_mm: float = 1.4
    source: str = "right"
    bits: int = 12
    margin_mm: float = 1.0
    seed: int = 0
    exposure: Exposure = Exposure()

    def __post_init__(self) -> None:
        if not self.rotations or not self.tilts:
            raise ValueError("Give at least one rotation and one tilt.")
        if not 0.05 <= self.spacing_mm <= 5.0:
            raise ValueError(f"The pixel spacing should lie between 0.05 and 5 mm, not {self.spacing_mm}.")
        if self.sdd_mm is not None and self.sdd_mm < 500.0:
            raise ValueError(f"The source-detector distance must be at least 500 mm, not {self.sdd_mm}.")
        if not 0.1 <= self.step_mm <= 10.0:
            raise ValueError(f"The ray step should lie between 0.1 and 10 mm, not {self.step_mm}.")
        if self.source not in ("right", "left"):
            raise ValueError(f"source must be 'right' or 'left' (the patient's side), not {self.source!r}.")
        Detector(bits=self.bits)  # checks the bits


@dataclass
class Drr:
    """A DRR (uint16, H×W), its body labelmap (uint8 VerSe codes), its truth and its projection."""

    image: np.ndarray
    labels: np.ndarray
    truth: dict
    projection: Projection


def world_from_ras(ct: CtVolume, rotation_deg: float, tilt_deg: float, source: str = "right") -> np.ndarray:
    """Return the 4×4 affine from RAS mm to the world frame of one pose (isocentre at the origin)."""
    side = 1.0 if source == "right" else -1.0  # a source on the left sees the mirrored patient from the right
    turn = rotation("z", np.deg2rad(rotation_deg)) @ rotation("y", np.deg2rad(tilt_deg)) @ np.diag([side, -1.0, -1.0])
    out = np.eye(4)
    out[:3, :3] = turn
    out[:3, 3] = -turn @ ct.iso_ras
    return out


def _projection(points: np.ndarray, config: DrrConfig) -> Projection:
    """Return the detector that frames world ``points`` (3, N), its centre on the central ray."""
    facing = "left" if config.source == "right" else "right"
    if config.sdd_mm is None:
        sdd, sod, scale = None, 1.0, np.ones(points.shape[1])
    else:
        sdd = config.sdd_mm
        sod = sdd - (_DETECTOR_GAP_MM - points[0].min())
        if sod - points[0].max() < 0.2 * sdd:
            raise ValueError(f"The patient is too wide for a source-detector distance of {sdd:g} mm.")
        scale = sdd / (sod - points[0])
    centre, half = [], []
    for axis in (1, 2):
        c = 0.5 * (points[axis].min() + points[axis].max())
        for _ in range(4):  # centre the magnified footprint on the central ray
            d = (points[axis] - c) * scale
            c += 0.5 * (d.max() + d.min()) / scale.mean()
        centre.append(float(c))
        half.append(float(np.abs((points[axis] - c) * scale).max()))
    shape = tuple(int(np.ceil(2 * hh / config.spacing_mm)) + 2 for hh in (half[1], half[0]))
    return Projection(shape, config.spacing_mm, (centre[0], centre[1]), sdd, sod, facing)


def _slices(x: np.ndarray, step: float) -> np.ndarray:
    """Return the slice positions, ``step`` apart, that cover the x range of ``x``."""
    lo, hi = float(x.min()) - step, float(x.max()) + step
    return lo + step * (np.arange(max(int(np.ceil((hi - lo) / step)), 1)) + 0.5)


def _obliquity(proj: Projection) -> np.ndarray:
    """Return each pixel's ray length per unit of x (1 for parallel rays), (H, W) float32."""
    h, w = proj.shape
    if proj.parallel:
        return np.ones((h, w), np.float32)
    v = (np.arange(h) - (h - 1) / 2) * proj.pitch_mm
    u = (np.arange(w) - (w - 1) / 2) * proj.pitch_mm
    return np.sqrt(1.0 + (v[:, None] ** 2 + u[None, :] ** 2) / proj.sdd_mm**2).astype(np.float32)


def _cast(volume: np.ndarray, vox_from_world: np.ndarray, proj: Projection, box: tuple[int, int, int, int],
          xs: np.ndarray, threshold: float | None = None, support: np.ndarray | None = None) -> np.ndarray:
    """Return, over the ``box`` (r0, r1, c0, c1) of the detector, the sum of ``volume`` sampled on each slice x.

    With ``threshold``, count the samples at or above it instead. With ``support``, world points (3, N) that
    sample where ``volume`` is non-zero, each slice is sampled only over the pixels its nearby points reach.
    """
    h, w = proj.shape
    yc, zc = proj.center
    side = 1.0 if proj.facing == "left" else -1.0
    m, t = vox_from_world[:3, :3], vox_from_world[:3, 3]
    total = np.zeros((box[1] - box[0], box[3] - box[2]), np.float32)
    reach = _support_boxes(support, proj, box, xs) if support is not None else [box] * len(xs)
    for x, sub in zip(xs, reach, strict=True):
        if sub is None:
            continue
        r0, r1, c0, c1 = sub
        q = proj.pitch_mm if proj.parallel else proj.pitch_mm * (proj.sod_mm - x) / proj.sdd_mm  # mm per pixel
        matrix = np.column_stack([m[:, 0], m[:, 2] * q, m[:, 1] * side * q])
        offset = m @ np.array([x, yc + side * (c0 - (w - 1) / 2) * q, zc + (r0 - (h - 1) / 2) * q]) + t
        out = ndimage.affine_transform(volume, matrix, offset, output_shape=(1, r1 - r0, c1 - c0), order=1,
                                       output=np.float32, mode="constant", cval=0.0)[0]
        total[r0 - box[0]: r1 - box[0], c0 - box[2]: c1 - box[2]] += out if threshold is None else out >= threshold
    return total


def _support_boxes(points: np.ndarray, proj: Projection, box: tuple[int, int, int, int],
                   xs: np.ndarray) -> list[tuple[int, int, int, int] | None]:
    """Return, per slice x, the part of ``box`` that the projections of ``points`` near x cover, or None."""
    order = np.argsort(points[0])
    x_sorted = points[0][order]
    rc = proj.project(points[:, order])
    lo = np.searchsorted(x_sorted, xs - _SUPPORT_MM)
    hi = np.searchsorted(x_sorted, xs + _SUPPORT_MM)
    out = []
    for a, b in zip(lo, hi, strict=True):
        if a == b:
            out.append(None)
            continue
        r, c = rc[0, a:b], rc[1, a:b]
        sub = (max(box[0], int(r.min()) - _SUPPORT_PX), min(box[1], int(r.max()) + _SUPPORT_PX + 1),
               max(box[2], int(c.min()) - _SUPPORT_PX), min(box[3], int(c.max()) + _SUPPORT_PX + 1))
        out.append(sub if sub[0] < sub[1] and sub[2] < sub[3] else None)
    return out


def _body_paths(ct: CtVolume, to_world: np.ndarray, proj: Projection,
                oblique: np.ndarray) -> list[tuple[int, tuple[int, int, int, int], np.ndarray]]:
    """Return, per body that reaches the detector, its code, pixel box and path length (mm) at each pixel of it."""
    out = []
    for part in ct.parts:
        crop_to_world = to_world @ part.to_ras
        corners = apply_affine(to_world, part.corners_ras)
        box = proj.bbox(corners)
        if box is None:
            continue
        path = _cast(part.mask, np.linalg.inv(crop_to_world), proj, box, _slices(corners[0], ct.step_mm), 0.5)
        out.append((part.code, box, path * oblique[box[0]: box[1], box[2]: box[3]] * np.float32(ct.step_mm)))
    return out


def _owners(paths: list, shape: tuple[int, int]) -> np.ndarray:
    """Return the labelmap (uint8): each pixel to the body with the longest path, one connected region per level.

    Where oblique rays make two bodies overlap, a level can win a few pixels apart from its region; those go to
    the body with the next longest path there.
    """
    labels, best = np.zeros(shape, np.uint8), np.zeros(shape, np.float32)
    for code, (r0, r1, c0, c1), path in paths:
        mine = path > best[r0:r1, c0:c1]
        best[r0:r1, c0:c1][mine] = path[mine]
        labels[r0:r1, c0:c1][mine] = code
    for code, (r0, r1, c0, c1), _ in paths:
        comp, n = ndimage.label(labels[r0:r1, c0:c1] == code, structure=np.ones((3, 3)))
        if n <= 1:
            continue
        rows, cols = np.nonzero((comp > 0) & (comp != 1 + int(np.argmax(np.bincount(comp.ravel())[1:]))))
        rows, cols = rows + r0, cols + c0
        runner_up, owner = np.zeros(rows.size, np.float32), np.zeros(rows.size, np.uint8)
        for other, (q0, q1, p0, p1), path in paths:
            inside = (other != code) & (rows >= q0) & (rows < q1) & (cols >= p0) & (cols < p1)
            length = np.zeros(rows.size, np.float32)
            length[inside] = path[rows[inside] - q0, cols[inside] - p0]
            wins = length > runner_up
            runner_up[wins], owner[wins] = length[wins], other
        labels[rows, cols] = owner
    return labels


def pose(ct: CtVolume, rotation_deg: float, tilt_deg: float, config: DrrConfig) -> tuple[np.ndarray, Projection]:
    """Return the RAS-to-world affine of a pose and the detector that frames the patient in it."""
    to_world = world_from_ras(ct, rotation_deg, tilt_deg, config.source)
    return to_world, _projection(apply_affine(to_world, ct.patient_ras), config)


def render_labels(ct: CtVolume, to_world: np.ndarray, proj: Projection) -> np.ndarray:
    """Return the body labelmap (uint8 VerSe codes) of ``ct`` posed by ``to_world`` on the detector ``proj``."""
    return _owners(_body_paths(ct, to_world, proj, _obliquity(proj)), proj.shape)


def mass_paths(ct: CtVolume, to_world: np.ndarray, proj: Projection) -> tuple[np.ndarray, np.ndarray]:
    """Return the soft-tissue and bone mass path lengths (g/cm²) at each detector pixel."""
    h, w = proj.shape
    patient = apply_affine(to_world, ct.patient_ras)
    xs, inverse = _slices(patient[0], ct.step_mm), np.linalg.inv(to_world @ ct.grid_to_ras)
    scale = _obliquity(proj) * np.float32(ct.step_mm / 10.0)  # g/cm³ · mm to g/cm²
    return tuple(_cast(v, inverse, proj, (0, h, 0, w), xs, support=patient) * scale for v in (ct.soft, ct.bone))


def render_drr(ct: CtVolume, rotation_deg: float = 0.0, tilt_deg: float = 0.0, config: DrrConfig = DrrConfig(),
               detector: Detector | None = None, rng: np.random.Generator | None = None) -> Drr:
    """Return one DRR of ``ct`` at a pose, with its body labels and truth.

    ``detector`` defaults to the configured bits with the exposure's quanta; ``rng`` draws the noise, by default
    seeded by the seed and the pose, so that the same pose always gives the same image.
    """
    to_world, proj = pose(ct, rotation_deg, tilt_deg, config)
    labels = render_labels(ct, to_world, proj)
    line = effective_line(*mass_paths(ct, to_world, proj), config.exposure)
    detector = detector or Detector(bits=config.bits, photons=config.exposure.photons(proj.sdd_mm))
    if rng is None:
        rng = np.random.default_rng([config.seed, *(int(round(a * 1000)) % 2**32 for a in (rotation_deg, tilt_deg))])
    image = expose(line, proj.pitch_mm, detector, rng)
    truth = _truth(ct, to_world, proj, labels, config, (rotation_deg, tilt_deg), detector)
    return Drr(image, labels, truth, proj)


def _truth(ct: CtVolume, to_world: np.ndarray, proj: Projection, labels: np.ndarray, config: DrrConfig,
           angles: tuple[float, float], detector: Detector) -> dict:
    """Return the truth of one DRR, in the simulator's keys where they apply."""
    h, w = proj.shape
    border = near_edge_codes(labels)
    area = np.bincount(labels.ravel(), minlength=256)
    vertebrae = []
    for part in ct.parts:
        if area[part.code] == 0:
            continue
        centre = proj.project(apply_affine(to_world, part.center_ras[:, None]))[:, 0]
        vertebrae.append({"level": level_name(part.code), "code": part.code,
                          "truncated": bool(part.truncated or part.code in border),
                          "center_px": centre.round(4).tolist(), "area_px": int(area[part.code])})
    canal_px = proj.project(apply_affine(to_world, ct.canal_ras))
    ex = config.exposure
    return {
        "source": "ct-drr", "ct": ct.names[0], "mask": ct.names[1], "facing": proj.facing,
        "patient_orientation": ["P", "F"] if proj.facing == "left" else ["A", "F"],
        "shape": [h, w], "pixel_spacing_mm": [proj.pitch_mm, proj.pitch_mm],
        "spacing_note": "detector mm: divide by magnification for the isocentre plane through the spine",
        "projection": "parallel" if proj.parallel else "perspective",
        "sdd_mm": proj.sdd_mm, "sod_mm": None if proj.parallel else proj.sod_mm,
        "magnification": proj.magnification, "bits_stored": detector.bits, "source_side": config.source,
        "patient": {"axial_rotation_deg": float(angles[0]), "tilt_deg": float(angles[1])},
        "xray": {"kvp": ex.kvp, "filtration_mm_al": ex.filtration_mm_al, "mas": ex.mas, "heel": ex.heel,
                 "heel_angle_deg": ex.heel_angle_deg, "mean_energy_kev": round(ex.spectrum.mean_kev, 3),
                 "photons_per_0.15mm_pixel": detector.photons, "scatter_to_primary": detector.scatter_to_primary,
                 "blur_mm": detector.blur_mm, "bone_boost": ex.bone_boost},
        "ray_step_mm": ct.step_mm,
        "body_extraction": {"method": "canal-wall cut, spinemorph.data.bodies", "margin_mm": config.margin_mm},
        "vertebrae": vertebrae,
        "landmarks": {"canal_center_px": canal_px.T.round(2).tolist()},
    }


def render_drrs(ct_path: str | Path, mask_path: str | Path, out: str | Path, config: DrrConfig = DrrConfig(),
                labels: str = "auto", fmt: str = "dicom", preview: bool = False, progress: bool = True) -> list[Path]:
    """Write a DRR of the CT for every rotation and tilt to the studies folder ``out``; return the image paths."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}: use one of {', '.join(FORMATS)}.")
    ct = load_ct(ct_path, mask_path, labels, config.step_mm, config.margin_mm)
    poses = [(r, t) for t in config.tilts for r in config.rotations]
    paths = []
    for r, t in tqdm(poses, desc="rendering DRRs", unit="DRR", disable=not progress):
        drr = render_drr(ct, r, t, config)
        cid = case_id("drr", ct.names[0], r, t, config.source, config.spacing_mm, config.sdd_mm, config.seed)
        paths.append(write_case(Path(out), cid, drr.image, drr.labels, drr.truth, fmt, preview))
    log.info("Wrote %d DRRs of %s to %s", len(paths), ct.names[0], out)
    return paths
