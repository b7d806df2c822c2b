"""PNG, JPEG and TIFF radiographs, 8 or 16 bits, and PNG output for pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from spinemorph.io.radiograph import InvalidImageError, Radiograph, UnreadableImageError, display_affine

__all__ = ["read_raster", "write_png"]


def read_raster(path: str | Path) -> Radiograph:
    """Return the radiograph in a grayscale PNG/JPEG/TIFF; such files carry no spacing and no facing."""
    try:
        with Image.open(str(path)) as im:
            mode = im.mode
            if getattr(im, "n_frames", 1) > 1:
                raise InvalidImageError(f"{Path(path).name} has {im.n_frames} frames; SpineMorph needs one plane.")
            data = np.array(im)
    except Image.DecompressionBombError:
        raise InvalidImageError(f"{Path(path).name} declares more pixels than any radiograph has.") from None
    except UnidentifiedImageError:
        raise UnreadableImageError(f"{Path(path).name} is not an image file SpineMorph can read.") from None
    except OSError as err:
        raise UnreadableImageError(f"{Path(path).name} cannot be read: {err}") from None
    if data.ndim == 3:
        channels = data[..., :3]
        grey = np.array_equal(channels[..., 0], channels[..., 1]) and np.array_equal(channels[..., 0], channels[..., 2])
        if not grey:
            raise InvalidImageError(f"{Path(path).name} is a colour ({mode}) image; "
                                    "SpineMorph needs a grayscale radiograph.")
        data = channels[..., 0]
    if data.ndim != 2 or min(data.shape) < 1:
        raise InvalidImageError(f"{Path(path).name} has shape {data.shape}; expected one 2D plane.")
    if data.dtype == np.int32:  # PIL's "I" mode for 16-bit files
        data = data.astype(np.uint16)
    warnings = ["No pixel spacing in the file: measurements stay in pixels.", "No patient orientation in the file."]
    meta = {"format": Path(path).suffix.lower().lstrip("."), "bits_stored": 16 if data.dtype == np.uint16 else 8,
            "warnings": warnings}
    return Radiograph(data, None, "none", None, display_affine((1.0, 1.0)), meta)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an (H, W) uint8/uint16 or (H, W, 3) uint8 array as PNG."""
    image = np.asarray(image)
    Image.fromarray(image).save(str(path))  # uint16 arrays become 16-bit PNGs
