"""Reading radiographs (DICOM DX/CR, NIfTI, PNG/JPEG) and writing labelmaps in their exact geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinemorph.io.dicom import read_dicom, write_dx
from spinemorph.io.header import ImageHeader, image_format, read_header
from spinemorph.io.nifti import read_nifti, sagittal_affine, write_nifti
from spinemorph.io.radiograph import (
    InvalidImageError,
    Radiograph,
    UnreadableImageError,
    display_affine,
    facing_from_orientation,
)
from spinemorph.io.raster import read_raster, write_png

__all__ = [
    "Radiograph", "InvalidImageError", "UnreadableImageError", "read_radiograph", "write_labelmap", "read_labelmap",
    "write_dx", "write_nifti", "write_png", "sagittal_affine", "display_affine", "facing_from_orientation", "image_id",
    "ImageHeader", "read_header",
]

_RASTER = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def image_id(path: str | Path) -> str:
    """Return a file's id as MONAI Label names it: the name without its (possibly double) extension."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".dcm", *_RASTER):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def read_radiograph(path: str | Path) -> Radiograph:
    """Return the radiograph in ``path``, whatever its format; raise InvalidImageError if it is not one."""
    readers = {"nifti": read_nifti, "raster": read_raster, "dicom": read_dicom}
    return readers[image_format(path)](Path(path))


def write_labelmap(path: str | Path, labels: np.ndarray, image: Radiograph) -> None:
    """Write a labelmap (H, W) as NIfTI in the exact geometry of ``image`` (shape and affine)."""
    labels = np.asarray(labels)
    if labels.shape != image.shape:
        raise ValueError(f"Labelmap shape {labels.shape} differs from the image's {image.shape}.")
    write_nifti(path, labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16), image.affine, image.facing,
                "spinemorph labels (VerSe codes)")


def read_labelmap(path: str | Path) -> tuple[np.ndarray, Radiograph]:
    """Return a labelmap's integer array (H, W) and its geometry, from NIfTI or any format read_radiograph reads."""
    lab = read_radiograph(path)
    data = np.asarray(lab.pixels)
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
            raise InvalidImageError(f"{Path(path).name} holds non-integer values; a labelmap holds level codes.")
    return data.astype(np.int32), lab
