"""Stage 2's crops: one square per vertebral body, cut from the full-resolution radiograph, and the way back.

A crop is centred on the body stage 1 found and is ``MARGIN`` times the body's larger extent (height or AP depth)
on a side, so it holds the whole body, its endplates and a rim of its neighbours, at a scale tied to the body: a
30-45 mm body in a 224 px crop comes out at about 0.2-0.3 mm per pixel. Every crop gets the same preprocessing,
training and inference alike: the radiograph normalised as a whole, the crop resampled to the network's side, then
CLAHE + Gaussian on the crop itself (cheap at 224², where CLAHE of a 2048² film is not).
"""

from __future__ import annotations

import numpy as np
import torch

from spinemorph.hierarchical.boxes import Box, crop_patch
from spinemorph.levels import find_objects, level_code
from spinemorph.transforms import Preprocessing
from spinemorph.transforms.intensity import ClaheGaussian, NormalizeRadiograph

__all__ = ["MARGIN", "body_boxes", "normalised", "crop_inputs"]

MARGIN = 1.5
_S1 = level_code("S1")


def body_boxes(labels: np.ndarray, margin: float = MARGIN, objects: list | None = None) -> list[tuple[int, Box]]:
    """Return (code, box) for every vertebral body of a labelmap (the sacrum left out), top to bottom;
    ``objects``: ``spinemorph.levels.find_objects(labels)`` when the caller has it."""
    labels = np.asarray(labels)
    if objects is None:
        objects = find_objects(labels if np.issubdtype(labels.dtype, np.integer) else labels.astype(np.int64))
    out = []
    for code, sl in enumerate(objects, start=1):
        if sl is None or code == _S1:
            continue
        rows, cols = np.nonzero(labels[sl] == code)
        extent = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
        out.append((code, Box(float(rows.mean() + sl[0].start), float(cols.mean() + sl[1].start),
                              float(margin * extent))))
    return sorted(out, key=lambda cb: cb[1].row)


def normalised(pixels: np.ndarray) -> np.ndarray:
    """Return the radiograph normalised to [0, 1] as the networks see it (any bit depth), float32."""
    return NormalizeRadiograph()(torch.as_tensor(np.asarray(pixels, np.float32))[None])[0].numpy()


def crop_inputs(image: np.ndarray, boxes: list[Box], settings: Preprocessing) -> torch.Tensor:
    """Return the network input (N, 1, P, P) of ``boxes`` of a normalised image: resampled, then CLAHE + Gaussian."""
    size = settings.size
    if not boxes:
        return torch.zeros((0, 1, size, size))
    clahe = ClaheGaussian(settings.clip_limit, settings.tiles, settings.sigma)
    crops = [clahe(torch.as_tensor(crop_patch(image, b, size))[None]) for b in boxes]
    return torch.stack([torch.as_tensor(c, dtype=torch.float32) for c in crops])
