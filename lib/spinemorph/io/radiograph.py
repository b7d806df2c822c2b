"""The radiograph every SpineMorph stage reads: pixels, spacing, facing and the geometry to write labels in."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Radiograph", "InvalidImageError", "UnreadableImageError", "facing_from_orientation", "display_affine",
    "checked_spacing",
]


class InvalidImageError(ValueError):
    """Raised when a file is not a single-plane grayscale radiograph SpineMorph can read."""


class UnreadableImageError(InvalidImageError):
    """Raised when a file is not an image at all, or in a format SpineMorph does not read."""


@dataclass(frozen=True)
class Radiograph:
    """A single-plane radiograph.

    Attributes:
        pixels: (H, W) array as stored (uint8, uint16 or float), bone bright.
        spacing_mm: (row, column) pixel spacing for measurement, or None when the file gives none.
        spacing_source: where ``spacing_mm`` came from ("PixelSpacing", "ImagerPixelSpacing", "NIfTI", "none").
        facing: "left" or "right" (the image side the patient's anterior is on), or None when unknown.
        affine: 4×4 RAS affine of (row, column, 0) indices: the geometry viewers (ITK, Slicer) give the file,
            which a labelmap must share to overlay it without resampling.
        meta: everything else worth keeping (modality, bits, patient and study identifiers, warnings).
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None
    spacing_source: str
    facing: str | None
    affine: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """Return (H, W)."""
        return tuple(self.pixels.shape)


def facing_from_orientation(orientation) -> str | None:
    """Return the facing encoded by DICOM PatientOrientation (row direction first), or None if it says nothing.

    "P\\F": moving right along a row goes posterior, so the anterior is on the left: facing "left".
    """
    if orientation is None:
        return None
    parts = str(orientation).split("\\") if isinstance(orientation, (str, bytes)) else list(orientation)
    values = [str(v).strip().upper() for v in parts]
    if not values or not values[0]:
        return None
    row = values[0]
    if row.startswith("A"):
        return "right"
    if row.startswith("P"):
        return "left"
    return None


def display_affine(spacing: tuple[float, float], origin_lps=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Return the RAS affine ITK gives a (row, col) image with no orientation: columns along L, rows along P.

    This is what Slicer and MONAI's ITK reader assign to DICOM radiographs and PNGs.
    """
    sr, sc = spacing
    aff = np.zeros((4, 4))
    aff[:3, 0] = [0.0, -sr, 0.0]  # rows run along +y in LPS, that is -A in RAS
    aff[:3, 1] = [-sc, 0.0, 0.0]  # columns run along +x in LPS, that is -R in RAS
    aff[:3, 2] = [0.0, 0.0, 1.0]
    aff[:3, 3] = [-origin_lps[0], -origin_lps[1], origin_lps[2]]
    aff[3, 3] = 1.0
    return aff


def checked_spacing(values, source: str, warnings: list[str]) -> tuple[float, float] | None:
    """Return a (row, col) spacing if ``values`` holds two finite positive numbers; else None, with a warning."""
    if values is None:
        return None
    try:
        row, col = (float(v) for v in values)
    except (TypeError, ValueError):
        warnings.append(f"{source} {values!r} is not two numbers; ignored.")
        return None
    if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
        warnings.append(f"{source} {values!r} is not a positive spacing; ignored.")
        return None
    return row, col
