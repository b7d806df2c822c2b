"""The preprocessing every stage composes: normalise, pad to a square, CLAHE and Gaussian. Defined once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import Compose

from spinemorph.transforms.geometry import AspectPadd, PadGeometry
from spinemorph.transforms.intensity import ClaheGaussiand, NormalizeRadiographd

__all__ = ["Preprocessing", "preprocess"]


@dataclass(frozen=True)
class Preprocessing:
    """Preprocessing settings, stored with every trained model so inference repeats them exactly."""

    size: int = 512
    clip_limit: float = 0.01
    tiles: int = 8
    sigma: float = 1.0

    def transforms(self, keys=("image",), normalise: bool = True) -> Compose:
        """Return the dictionary transforms for ``keys`` (the first is the image; "label" resizes as nearest);
        ``normalise=False`` for an image normalised already (``NormalizeRadiograph``)."""
        modes = tuple("nearest" if k == "label" else "bilinear" for k in keys)
        return Compose([
            *([NormalizeRadiographd(keys[0])] if normalise else []),
            AspectPadd(list(keys), self.size, modes),
            ClaheGaussiand(keys[0], self.clip_limit, self.tiles, self.sigma),
        ])


def preprocess(pixels: np.ndarray, settings: Preprocessing = Preprocessing(),
               normalised: bool = False) -> tuple[torch.Tensor, PadGeometry]:
    """Return the network input (1, size, size) of an (H, W) radiograph and the geometry to invert; ``normalised``:
    ``pixels`` went through ``NormalizeRadiograph`` already (one normalisation of a film for all its networks)."""
    image = torch.as_tensor(np.asarray(pixels, np.float32))[None]
    data = settings.transforms(normalise=not normalised)({"image": image})
    return data["image"], PadGeometry(**{k: tuple(v) if isinstance(v, list) else v
                                         for k, v in data["pad_geometry"].items()})
