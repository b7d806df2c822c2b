"""A CT and its per-vertebra mask, read and made ready to project: materials, patient outline and bodies.

Both volumes are reoriented to RAS voxel order (axis 0 towards the patient's right, 1 anterior, 2 superior).
Hounsfield units become soft-tissue and bone densities (``spinemorph.data.xray.decompose``: air and soft
tissue mixed up to 0 HU, soft tissue and cortical bone above), which the DRR casts as two mass path lengths.
Everything outside the patient (the largest connected region above -500 HU: no table, no air) is zeroed. The
mask's vertebra labels become VerSe codes and then vertebral bodies (``spinemorph.data.bodies``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from spinemorph.data.bodies import Bodies, extract_bodies, vertebra_codes
from spinemorph.data.xray import decompose
from spinemorph.levels import anatomical_index

__all__ = ["BodyPart", "BodyFrame", "CtVolume", "load_ct", "apply_affine", "body_parts", "body_frames"]

log = logging.getLogger(__name__)

_PATIENT_HU = -500.0
_SLICE_MM = 1.25  # bodies are resampled to slices at most this far apart


@dataclass(frozen=True)
class BodyPart:
    """One vertebral body on its own grid: the CT's, cropped with a margin, with slices at most ``_SLICE_MM`` apart.

    Attributes:
        code: VerSe code.
        mask: float32, inside where at least 0.5; it ramps from 1 to 0 across a voxel at the body's surface.
        to_ras: 4×4 affine of the mask's voxel indices to RAS mm.
        center_ras: (3,) centroid in RAS mm.
        truncated: True when the body touches a face of the CT volume (cut off by the scan).
    """

    code: int
    mask: np.ndarray
    to_ras: np.ndarray
    center_ras: np.ndarray
    truncated: bool

    @property
    def corners_ras(self) -> np.ndarray:
        """Return the RAS corners (3, 8) of the grid's box, half a voxel beyond the outer voxel centres."""
        box = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in self.mask.shape], indexing="ij")).reshape(3, -1)
        return apply_affine(self.to_ras, box)

    def inside_ras(self) -> np.ndarray:
        """Return the RAS centres (3, N) of the voxels inside the body."""
        return apply_affine(self.to_ras, np.argwhere(self.mask >= 0.5).T.astype(float))


@dataclass(frozen=True)
class CtVolume:
    """A CT ready to project.

    Attributes:
        soft: (I', J, K) float32 soft-tissue density (g/cm³), averaged along I to about the ray step, zero outside
            the patient.
        bone: the same for cortical bone.
        grid_to_ras: 4×4 affine of ``soft``'s and ``bone``'s voxel indices to RAS mm.
        step_mm: their voxel size along I: the ray step.
        bodies: vertebral bodies (VerSe codes) and the canal line, on the CT's own grid, as read.
        to_ras: 4×4 affine of the CT's own grid.
        parts: the bodies one by one, from head to tail.
        iso_ras: (3,) the centroid of all bodies (RAS mm), about which the patient is turned.
        patient_ras: (3, N) RAS points sampling the patient, to frame the detector.
        names: the CT and mask file names.
        canal_ras: (3, K) RAS points of the spinal canal's centre line, slice by slice where it was found.
    """

    soft: np.ndarray
    bone: np.ndarray
    grid_to_ras: np.ndarray
    step_mm: float
    bodies: Bodies
    to_ras: np.ndarray
    parts: tuple[BodyPart, ...]
    iso_ras: np.ndarray
    patient_ras: np.ndarray
    names: tuple[str, str]
    canal_ras: np.ndarray


@dataclass(frozen=True)
class BodyFrame:
    """A body's own frame: centre, craniocaudal ``axis`` (superior), ``anterior`` and ``lateral`` unit vectors, and its
    extents along them in mm from the centre: ``height`` (bottom, top) in the central column, ``depth``
    (posterior wall, anterior wall), ``half_width``."""

    centre: np.ndarray
    axis: np.ndarray
    anterior: np.ndarray
    lateral: np.ndarray
    height: tuple[float, float]
    depth: tuple[float, float]
    half_width: float

    def local(self, pts: np.ndarray) -> np.ndarray:
        """Return points (3, N) as (s, t, r): along the axis, anterior, lateral, from the centre."""
        return np.stack([self.axis, self.anterior, self.lateral]) @ (pts - self.centre[:, None])

    def extent_of(self, part: BodyPart) -> tuple[float, float]:
        """Return the (bottom, top) of a body along this axis, in the central column of this body."""
        s, t, r = self.local(part.inside_ras())
        mid = 0.5 * (self.depth[0] + self.depth[1])
        near = (np.abs(t - mid) < 0.3 * (self.depth[1] - self.depth[0])) & (np.abs(r) < 0.4 * self.half_width)
        s = s[near] if near.sum() > 10 else s
        half = _half_voxel(part.to_ras, self.axis)
        return float(s.min() - half), float(s.max() + half)


def _half_voxel(to_ras: np.ndarray, direction: np.ndarray) -> float:
    """Return half a voxel's extent along a RAS direction."""
    return 0.5 * float(np.abs(to_ras[:3, :3].T @ direction).sum())


def body_frames(ct: CtVolume) -> dict[int, BodyFrame]:
    """Return each body's frame, keyed by VerSe code; the axis runs from the body below to the body above."""
    centres = [p.center_ras for p in ct.parts]
    out = {}
    for i, part in enumerate(ct.parts):
        up, down = centres[max(i - 1, 0)], centres[min(i + 1, len(centres) - 1)]
        axis = up - down if np.linalg.norm(up - down) > 0 else np.array([0.0, 0.0, 1.0])
        axis = axis / np.linalg.norm(axis) * np.sign(axis[2] or 1.0)
        anterior = np.array([0.0, 1.0, 0.0]) - axis[1] * axis
        anterior /= np.linalg.norm(anterior)
        frame = BodyFrame(part.center_ras, axis, anterior, np.cross(axis, anterior), (0.0, 0.0), (0.0, 0.0), 0.0)
        _, t, r = frame.local(part.inside_ras())
        pad = _half_voxel(part.to_ras, anterior)
        depth = (float(np.percentile(t, 1)) - pad, float(np.percentile(t, 99)) + pad)
        frame = replace(frame, depth=depth, half_width=float(np.percentile(np.abs(r), 99)) + pad)
        out[part.code] = replace(frame, height=frame.extent_of(part))
    return out


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Return the points (3, N) mapped through a 4×4 affine."""
    return affine[:3, :3] @ points + affine[:3, 3:4]


def _read(path: Path, what: str) -> nib.Nifti1Image:
    """Return the NIfTI image at ``path``, with errors that name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"No such {what} file: {path}")
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for non-NIfTI input
        raise ValueError(f"{path} is not a readable NIfTI {what}: {err}") from None
    if len(img.shape) != 3:
        raise ValueError(f"The {what} {path.name} has shape {img.shape}; expected a 3D volume.")
    return img


def load_ct(ct_path: str | Path, mask_path: str | Path, labels: str = "auto", step_mm: float = 1.4,
            margin_mm: float = 1.0) -> CtVolume:
    """Return a CT (Hounsfield units) and its per-vertebra mask (VerSe or TotalSegmentator v2 ids), ready to project.

    Args:
        ct_path: the CT, NIfTI.
        mask_path: its vertebra labels on the same voxel grid, NIfTI.
        labels: "auto", "verse" or "totalsegmentator" (see ``spinemorph.data.bodies.vertebra_codes``).
        step_mm: the ray step the densities are averaged to along the left-right axis.
        margin_mm: the body cut's distance anterior of the spinal canal.
    """
    ct_path, mask_path = Path(ct_path), Path(mask_path)
    ct, mask = _read(ct_path, "CT"), _read(mask_path, "vertebra mask")
    if ct.shape != mask.shape:
        raise ValueError(f"The vertebra mask's shape {mask.shape} differs from the CT's {ct.shape}: "
                         "the mask must be on the CT's voxel grid.")
    if not np.allclose(ct.affine, mask.affine, atol=1e-2):
        log.warning("%s: its affine differs from the CT's; the CT's is used.", mask_path.name)
    ornt = nib.orientations.io_orientation(ct.affine)
    to_ras = ct.affine @ nib.orientations.inv_ornt_aff(ornt, ct.shape)
    zooms = tuple(float(z) for z in np.linalg.norm(to_ras[:3, :3], axis=0))
    codes = vertebra_codes(nib.orientations.apply_orientation(np.asanyarray(mask.dataobj), ornt), labels)
    if not codes.any():
        raise ValueError(f"{mask_path.name} holds no vertebra labels (VerSe codes or TotalSegmentator v2 ids).")
    bodies = extract_bodies(codes, zooms, margin_mm)
    if not bodies.labels.any():
        raise ValueError(f"No vertebral body could be cut from {mask_path.name}: no spinal canal was found.")
    hu = nib.orientations.apply_orientation(ct.get_fdata(dtype=np.float32), ornt)
    inside, cloud = _patient(hu)
    f = max(int(round(step_mm / zooms[0])), 1)
    soft, bone = (_average(v * inside, f) for v in decompose(hu))
    del hu
    grid_to_ras = to_ras @ np.array([[f, 0, 0, (f - 1) / 2], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    iso = apply_affine(to_ras, np.array(ndimage.center_of_mass(bodies.labels > 0))[:, None])[:, 0]
    parts = body_parts(bodies.labels, to_ras)
    log.info("%s: %d vertebral bodies, ray step %.2f mm.", ct_path.name, len(parts), f * zooms[0])
    return CtVolume(soft, bone, grid_to_ras, f * zooms[0], bodies, to_ras, parts, iso, apply_affine(to_ras, cloud),
                    (ct_path.name, mask_path.name), _canal_ras(bodies, to_ras))


def _average(volume: np.ndarray, f: int) -> np.ndarray:
    """Return ``volume`` averaged over blocks of ``f`` voxels along axis 0 (float32, C-contiguous)."""
    n = volume.shape[0] // f
    return np.ascontiguousarray(volume[: n * f].reshape(n, f, *volume.shape[1:]).mean(axis=1, dtype=np.float32))


def _canal_ras(bodies: Bodies, to_ras: np.ndarray) -> np.ndarray:
    """Return the canal's centre line (3, K) in RAS mm, over the slices between the first and last found."""
    canal = bodies.canal
    seen = np.flatnonzero(canal.found)
    if seen.size == 0:
        return np.zeros((3, 0))
    ks = np.arange(seen.min(), seen.max() + 1)
    return apply_affine(to_ras, np.stack([*canal.center[ks].T, ks]).astype(float))


def body_parts(bodies: np.ndarray, to_ras: np.ndarray) -> tuple[BodyPart, ...]:
    """Return each level of a body labelmap (VerSe codes, grid ``to_ras``) as a body, cropped with a one-voxel
    margin and refined (``_refined``), from head to tail."""
    out = []
    for code, box in enumerate(ndimage.find_objects(bodies), start=1):
        if box is None:
            continue
        lo = np.array([max(b.start - 1, 0) for b in box])
        hi = np.array([min(b.stop + 1, n) for b, n in zip(box, bodies.shape, strict=True)])
        crop = bodies[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] == code
        centre = apply_affine(to_ras, (np.argwhere(crop).mean(axis=0) + lo)[:, None])[:, 0]
        edge = any(b.start == 0 or b.stop == n for b, n in zip(box, bodies.shape, strict=True))
        crop_to_ras = to_ras.copy()
        crop_to_ras[:3, 3] += to_ras[:3, :3] @ lo
        out.append(BodyPart(code, *_refined(crop, crop_to_ras), centre, edge))
    return tuple(sorted(out, key=lambda p: anatomical_index(p.code)))


def _refined(crop: np.ndarray, to_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return a binary body mask resampled to voxels at most ``_SLICE_MM`` long, and its affine.

    Shape-based interpolation: the signed distance to the body's surface (anisotropic, in mm) is interpolated
    linearly between the CT's voxels, so an endplate becomes a smooth surface instead of steps one slice high.
    The mask ramps from 1 to 0 across one in-plane voxel about the surface, so its 0.5 level is the surface.
    """
    zooms = np.linalg.norm(to_ras[:3, :3], axis=0)
    crop = np.pad(crop, 1)
    sdf = (ndimage.distance_transform_edt(~crop, sampling=zooms)
           - ndimage.distance_transform_edt(crop, sampling=zooms)).astype(np.float32)
    f = np.maximum(np.ceil(zooms / _SLICE_MM - 1e-6), 1).astype(int)
    axes = [(np.arange(n * k) + 0.5) / k - 0.5 for n, k in zip(crop.shape, f, strict=True)]
    sdf = ndimage.map_coordinates(sdf, np.meshgrid(*axes, indexing="ij"), order=1, mode="nearest")
    mask = np.clip(0.5 - sdf / np.float32(zooms.min()), 0.0, 1.0).astype(np.float32)
    fine = np.diag([*(1.0 / f), 1.0])
    fine[:3, 3] = 0.5 / f - 0.5 - 1.0  # fine voxel centres, less the padding
    return mask, to_ras @ fine


def _patient(hu: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Return the patient's mask (I, J, K) and the voxel indices (3, N) of a coarse cloud of its voxels.

    The patient is the largest connected region above -500 HU on a grid ``k`` times coarser in-plane, which
    leaves out the table and anything else apart from the body.
    """
    comp, n = ndimage.label(hu[::k, ::k] > _PATIENT_HU)
    if n == 0:
        raise ValueError("The CT holds nothing denser than air: is it in Hounsfield units?")
    keep = ndimage.binary_dilation(comp == 1 + int(np.argmax(np.bincount(comp.ravel())[1:])), iterations=2)
    slices = np.unique(np.r_[0: keep.shape[2]: 4, keep.shape[2] - 1])
    i, j, s = np.nonzero(keep[..., slices])
    cloud = np.stack([i * k, j * k, slices[s]]).astype(np.float64)
    return np.repeat(np.repeat(keep, k, axis=0), k, axis=1)[: hu.shape[0], : hu.shape[1]], cloud
