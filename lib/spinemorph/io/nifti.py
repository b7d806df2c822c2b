"""NIfTI radiographs and labelmaps: a 2D image is stored H×W×1 with its spacing; facing rides along."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np

from spinemorph.io.radiograph import InvalidImageError, Radiograph, UnreadableImageError

__all__ = ["read_nifti", "write_nifti", "sagittal_affine"]

log = logging.getLogger(__name__)
_FACING = re.compile(rb"facing=(left|right)")


def sagittal_affine(spacing: tuple[float, float], facing: str | None) -> np.ndarray:
    """Return the RAS affine of a lateral image: rows run inferior, columns posterior (facing left) or anterior."""
    sr, sc = spacing
    aff = np.eye(4)
    aff[:3, 0] = [0.0, 0.0, -sr]
    aff[:3, 1] = [0.0, sc if facing == "right" else -sc, 0.0]
    aff[:3, 2] = [1.0, 0.0, 0.0]
    return aff


def _facing_from_affine(aff: np.ndarray) -> str | None:
    """Return the facing a sagittal image's affine encodes, or None when the image plane is not sagittal."""
    axes = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
    if abs(axes[0, 2]) < 0.9:  # the through-plane axis is not left-right: no lateral geometry declared
        return None
    col = axes[:, 1]
    if abs(col[1]) < 0.7:
        return None
    return "right" if col[1] > 0 else "left"


def read_nifti(path: str | Path) -> Radiograph:
    """Return the radiograph in a NIfTI file holding one plane (H×W or H×W×1); axis 0 is the image row."""
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as err:
        raise UnreadableImageError(f"{Path(path).name} is not a readable NIfTI file: {err}") from None
    if data.size == 0:
        raise InvalidImageError(f"{Path(path).name} is empty (shape {img.shape}).")
    while data.ndim > 2 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 2:
        raise InvalidImageError(f"{Path(path).name} has shape {img.shape}: SpineMorph needs one 2D plane (H×W×1).")
    if min(data.shape) < 1:
        raise InvalidImageError(f"{Path(path).name} is empty (shape {img.shape}).")
    zooms = img.header.get_zooms()[:2]
    spacing = (float(zooms[0]), float(zooms[1]))
    warnings = []
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        warnings.append(f"NIfTI spacing {spacing} is not a positive spacing; ignored.")
        spacing = None
    descrip = bytes(img.header.get("descrip", b"")).rstrip(b"\0")
    match = _FACING.search(descrip)
    affine = img.affine.copy()
    facing = match.group(1).decode() if match else _facing_from_affine(affine)
    for w in warnings:
        log.warning("%s: %s", Path(path).name, w)
    meta = {"format": "nifti", "warnings": warnings, "descrip": descrip.decode(errors="replace")}
    return Radiograph(data, spacing, "NIfTI" if spacing else "none", facing, affine, meta)


def write_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray, facing: str | None = None,
                description: str = "") -> None:
    """Write a 2D array as an H×W×1 NIfTI with ``affine``; the facing, when known, goes in the header."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"Expected a 2D array, got shape {array.shape}.")
    img = nib.Nifti1Image(array[:, :, None], affine)
    img.header.set_xyzt_units("mm")
    text = " ".join(t for t in (description, f"facing={facing}" if facing else "") if t)
    img.header["descrip"] = text.encode()[:79]
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
