"""The studies folder as MONAI Label sees it, guarded: bad uploads and labels get a 4xx and a sentence.

Nothing is written until a file has been read and checked, so a refused request changes no existing label.
Labels are re-written in their image's exact geometry, with their level names recorded in the label info.
"""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.exception import ImageNotFoundException

from spinemorph.io import InvalidImageError, UnreadableImageError, read_labelmap, read_radiograph, write_labelmap
from spinemorph.levels import is_level_code, level_name

__all__ = ["SpineMorphDatastore", "checked_radiograph", "MAX_SIDE"]

log = logging.getLogger(__name__)
MAX_SIDE = 12_000  # pixels; a radiograph is at most about 4300 px tall
MAX_PIXELS = 64_000_000


def checked_radiograph(path: str, name: str | None = None):
    """Return the radiograph at ``path``, or raise a 4xx HTTPException that says what is wrong with it.

    ``name`` is how the user knows the file (an image id, "the uploaded image"); it replaces the server's
    temporary file name in messages.
    """
    shown = name or os.path.basename(path)
    try:
        image = read_radiograph(path)
    except FileNotFoundError:
        raise HTTPException(404, f"No image file for {shown}.") from None
    except UnreadableImageError as err:
        raise HTTPException(415, str(err).replace(os.path.basename(path), shown)) from None
    except InvalidImageError as err:
        raise HTTPException(422, str(err).replace(os.path.basename(path), shown)) from None
    h, w = image.shape
    if h == 0 or w == 0:
        raise HTTPException(422, "The image has no pixels.")
    if max(h, w) > MAX_SIDE or h * w > MAX_PIXELS:
        raise HTTPException(413, f"The image is {h}×{w} pixels; SpineMorph accepts up to {MAX_SIDE} pixels a side "
                                 f"and {MAX_PIXELS // 1_000_000} million pixels.")
    return image


class SpineMorphDatastore(LocalDatastore):
    """A local datastore that refuses what SpineMorph cannot use, with an HTTP status and a sentence."""

    def get_image_uri(self, image_id: str) -> str:
        """Return an image's path; 404 if the datastore has no such image."""
        if image_id not in self._datastore.objects:
            raise HTTPException(404, f"No image with id {image_id!r} in the datastore.")
        return super().get_image_uri(image_id)

    def add_image(self, image_id: str, image_filename: str, image_info: dict) -> str:
        """Add an uploaded radiograph after checking that it is one (2D, grayscale, sane size)."""
        checked_radiograph(image_filename, f"the upload for {image_id!r}")
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict) -> str:
        """Save a label after checking it against its image: same shape, VerSe codes only."""
        if image_id not in self._datastore.objects:
            raise HTTPException(404, f"Cannot save a label for {image_id!r}: the datastore has no such image.")
        image = checked_radiograph(super().get_image_uri(image_id), image_id)
        try:
            labels, _ = read_labelmap(label_filename)
        except (InvalidImageError, ValueError) as err:
            message = str(err).replace(os.path.basename(label_filename), f"the label for {image_id!r}")
            raise HTTPException(422, f"The label cannot be read: {message}") from None
        if labels.shape != image.shape:
            raise HTTPException(422, f"The label is {labels.shape[0]}×{labels.shape[1]} but image {image_id} is "
                                     f"{image.shape[0]}×{image.shape[1]}: a label must cover its image pixel for "
                                     "pixel.")
        values = [int(v) for v in np.unique(labels) if v]
        bad = [v for v in values if not is_level_code(v)]
        if bad:
            raise HTTPException(422, f"Label values {bad} are not VerSe level codes (T1-T12 = 8-19, L1-L5 = 20-24, "
                                     "S1 = 26; see docs/ARCHITECTURE.md).")
        with tempfile.TemporaryDirectory() as tmp:
            clean = os.path.join(tmp, f"{image_id}.nii.gz")
            write_labelmap(clean, labels, image)  # the image's exact geometry, whatever the upload carried
            info = {**(label_info or {}), "levels": {level_name(v): v for v in values}}
            return super().save_label(image_id, clean, label_tag, info)

    def update_image_info(self, image_id: str, info: dict) -> None:
        """Update an image's info; 404 if there is no such image."""
        try:
            super().update_image_info(image_id, info)
        except ImageNotFoundException:
            raise HTTPException(404, f"No image with id {image_id!r} in the datastore.") from None
