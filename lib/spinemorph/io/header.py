"""What an image file declares about itself, read from its header alone: no pixel is decoded.

A server checks this before it decodes anything, so a 20000×20000 upload or a NIfTI that would inflate to
gigabytes is refused for the price of a header read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinemorph.io.radiograph import InvalidImageError, UnreadableImageError

__all__ = ["ImageHeader", "read_header", "image_format"]

_RASTER = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageHeader:
    """A file's declared size and spacing.

    Attributes:
        rows, cols: the declared plane size in pixels.
        planes: frames (DICOM), third and later dimensions (NIfTI) or pages (TIFF) multiplied together.
        bytes: the decoded pixel data's size in bytes as declared.
        bad_spacing: a sentence when the file declares a spacing that is not two positive numbers, else None.
    """

    rows: int
    cols: int
    planes: int
    bytes: int
    bad_spacing: str | None = None


def image_format(path: str | Path) -> str:
    """Return "nifti", "raster" or "dicom" for an existing file, by its name and, for DICOM, its preamble; raise
    FileNotFoundError if it is absent and UnreadableImageError if it is none of them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such image: {path}")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(_RASTER):
        return "raster"
    with open(path, "rb") as fh:
        head = fh.read(132)
    if name.endswith(".dcm") or head[128:132] == b"DICM":
        return "dicom"
    raise UnreadableImageError(f"{path.name}: unknown image format (use DICOM, NIfTI, PNG, JPEG or TIFF).")


def read_header(path: str | Path) -> ImageHeader:
    """Return what ``path`` declares (size, planes, spacing), reading its header only.

    Raises UnreadableImageError if the file is not an image SpineMorph reads, FileNotFoundError if it is absent.
    """
    readers = {"nifti": _nifti_header, "raster": _raster_header, "dicom": _dicom_header}
    return readers[image_format(path)](Path(path))


def _spacing_problem(values, source: str) -> str | None:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return f"{source} {list(values)!r} is not two numbers"
    if len(numbers) < 2 or not all(np.isfinite(numbers[:2])) or min(numbers[:2]) <= 0:
        return f"{source} {numbers!r} is not a positive spacing"
    return None


def _dicom_header(path: Path) -> ImageHeader:
    import pydicom

    try:  # large values (the pixel data) are skipped, not read
        ds = pydicom.dcmread(str(path), defer_size=1024)
        rows, cols = int(ds.Rows), int(ds.Columns)
    except AttributeError:
        raise UnreadableImageError(f"{path.name} is a DICOM file without Rows and Columns: not an image.") from None
    except Exception as err:  # pydicom raises many types for non-DICOM input
        raise UnreadableImageError(f"{path.name} is not a readable DICOM file: {err}") from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    bits = int(getattr(ds, "BitsAllocated", 16) or 16)
    problems = [p for tag in ("PixelSpacing", "ImagerPixelSpacing") if tag in ds and ds[tag].value is not None
                for p in [_spacing_problem(ds[tag].value, tag)] if p]
    return ImageHeader(rows, cols, frames, rows * cols * frames * samples * max(bits // 8, 1),
                       problems[0] if problems else None)


def _nifti_header(path: Path) -> ImageHeader:
    import nibabel as nib

    try:
        img = nib.load(str(path))  # reads (and for .nii.gz inflates) the header only
        shape = tuple(int(s) for s in img.shape)
        itemsize = np.dtype(img.get_data_dtype()).itemsize
        zooms = img.header.get_zooms()
    except Exception as err:
        raise UnreadableImageError(f"{path.name} is not a readable NIfTI file: {err}") from None
    if len(shape) < 2:
        raise InvalidImageError(f"{path.name} has shape {shape}: SpineMorph needs one 2D plane (H×W×1).")
    planes = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    problem = _spacing_problem(zooms[:2], "The NIfTI pixel spacing (pixdim)")
    return ImageHeader(shape[0], shape[1], planes, int(np.prod(shape, dtype=np.int64)) * itemsize, problem)


def _raster_header(path: Path) -> ImageHeader:
    from PIL import Image

    try:
        with Image.open(str(path)) as im:  # lazy: the size comes from the header
            cols, rows = im.size
            planes = int(getattr(im, "n_frames", 1))
            channels = len(im.getbands())
    except Image.DecompressionBombError:
        raise InvalidImageError(f"{path.name} declares more pixels than any radiograph has.") from None
    except Exception as err:
        raise UnreadableImageError(f"{path.name} is not an image file SpineMorph can read ({err}).") from None
    return ImageHeader(rows, cols, planes, rows * cols * planes * channels * 2)
