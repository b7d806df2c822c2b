"""Detector training data: studies-folder cases preprocessed once, augmented as Paik et al. 2024 did.

Each case is read, normalised, padded and equalised with the spec's ``Preprocessing`` (the one definition
inference repeats), and kept in memory with its labelmap. Augmentation is the paper's: a horizontal flip
(the other facing side) and a rotation within ±10°, applied to the image and the labelmap together; boxes and
masks are then derived from the augmented labelmap, so they always agree with the image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.transforms import Compose, RandAffined, RandFlipd
from torch.utils.data import Dataset
from tqdm import tqdm

from spinemorph.detection.targets import body_classes, instances, measured_grades, truth_grades
from spinemorph.io import read_labelmap, read_radiograph
from spinemorph.training.data import Case
from spinemorph.transforms import Preprocessing

__all__ = ["DetectionDataset", "paper_augmentation", "collate"]


def paper_augmentation(rotate_deg: float = 10.0, flip: float = 0.5) -> Compose:
    """Return the paper's augmentation of (C, H, W) image/label pairs: horizontal flip and rotation ±rotate_deg."""
    return Compose([
        RandFlipd(keys=["image", "label"], prob=flip, spatial_axis=1),
        RandAffined(keys=["image", "label"], prob=1.0, rotate_range=(math.radians(rotate_deg),),
                    mode=("bilinear", "nearest"), padding_mode="zeros"),
    ])


def _plain(x) -> torch.Tensor:
    """Return a MONAI MetaTensor as a plain tensor, so later arithmetic carries no metadata."""
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, list[dict]]:
    """Return images stacked (B, 1, S, S) and the list of their targets."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


class DetectionDataset(Dataset):
    """(image (1, S, S), target) pairs for ``VcfMaskRCNN``; augmented on the fly when ``augment`` is True.

    Args:
        cases: labelled cases; a case's truth JSON gives each body's Genant grade (no truth: measured).
        settings: the detector's preprocessing.
        classes: the detector's level codes (``DetectorSpec.codes``).
        augment: apply ``paper_augmentation``.
    """

    def __init__(self, cases: list[Case], settings: Preprocessing, classes: tuple[int, ...], augment: bool = False,
                 progress: bool = True) -> None:
        self.classes, self.augment = classes, paper_augmentation() if augment else None
        pre = settings.transforms(("image", "label"))
        self.images, self.labels, self.grades, self.ids = [], [], [], []
        for case in tqdm(cases, desc="preprocessing", unit="case", disable=not progress):
            image = read_radiograph(case.image)
            labels, _ = read_labelmap(case.label)
            d = pre({"image": torch.as_tensor(np.asarray(image.pixels, np.float32))[None],
                     "label": torch.as_tensor(labels.astype(np.float32))[None]})
            self.images.append(d["image"].half())
            self.labels.append(d["label"].round().to(torch.uint8))
            self.grades.append(truth_grades(case.truth) if case.truth else
                               measured_grades(labels, image.spacing_mm, image.facing))
            self.ids.append(case.id)

    def __len__(self) -> int:
        return len(self.images)

    def fractured(self, i: int) -> bool:
        """Return True when case ``i`` holds a fracture of the detector's classes (for the per-patient verdict)."""
        return any(g >= 1 and not t and c in self.classes for c, (g, t) in self.grades[i].items())

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        image, labels = self.images[i].float(), self.labels[i].float()
        if self.augment is not None:
            d = self.augment({"image": image, "label": labels})
            image, labels = _plain(d["image"]), _plain(d["label"])
        labels = labels[0].round().long()
        codes = [int(c) for c in torch.unique(labels) if c > 0]
        return image, instances(labels, body_classes(self.grades[i], codes, self.classes))
