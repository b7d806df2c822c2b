"""Preprocessing shared by training, validation and inference: one definition of each transform.

``preprocess`` turns a radiograph into the network's input (normalise, aspect-preserving pad, CLAHE and
Gaussian); ``invert_pad`` takes a prediction back to the radiograph's grid.
"""

from __future__ import annotations

from spinemorph.transforms.augment import train_augmentation
from spinemorph.transforms.geometry import AspectPad, AspectPadd, PadGeometry, invert_pad
from spinemorph.transforms.intensity import ClaheGaussian, ClaheGaussiand, NormalizeRadiograph, NormalizeRadiographd
from spinemorph.transforms.pipeline import Preprocessing, preprocess

__all__ = [
    "AspectPad", "AspectPadd", "PadGeometry", "invert_pad", "ClaheGaussian", "ClaheGaussiand", "NormalizeRadiograph",
    "NormalizeRadiographd", "train_augmentation", "Preprocessing", "preprocess",
]
