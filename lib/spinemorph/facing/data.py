"""The facing classifier's input and training cases: one input path for training and inference, defined once.

``network_input`` is what the network sees: the radiograph thinned to the network's square or a little more (a
strided pick, so a 2048² film costs nothing to shrink), then spinemorph's preprocessing. Training keeps each image
thinned to twice the square (crops keep detail) and runs the same preprocessing after its augmentation.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from spinemorph.facing.augment import FacingAugmentation
from spinemorph.io import read_radiograph
from spinemorph.training import Case
from spinemorph.transforms import Preprocessing

__all__ = ["FACINGS", "checked_pixels", "thin", "network_input", "case_facing", "FacingDataset"]

log = logging.getLogger(__name__)

FACINGS = ("left", "right")  # the target is 1.0 for "left": the anterior on the image's left


def checked_pixels(pixels) -> np.ndarray:
    """Return ``pixels`` as an (H, W) real array (not copied); raise ValueError unless it is one finite, non-empty
    plane."""
    arr = np.asarray(pixels)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"A radiograph is one 2D plane (H, W); got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"The radiograph is empty (shape {arr.shape}).")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"A radiograph holds real numbers, not {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError("The radiograph holds NaN or infinite values.")
    return arr


def thin(pixels: np.ndarray, size: int) -> np.ndarray:
    """Return every k-th row and column of (H, W) ``pixels`` as float32, k keeping at least ``size`` px on the
    longer side (the preprocessing's antialiased resize does the rest)."""
    k = max(1, max(pixels.shape) // size)
    r0, c0 = (pixels.shape[0] - 1) % k // 2, (pixels.shape[1] - 1) % k // 2  # centre the sampling grid
    return np.ascontiguousarray(pixels[r0::k, c0::k], dtype=np.float32)


def network_input(pixels, settings: Preprocessing, thinned: bool = False) -> torch.Tensor:
    """Return the network input (1, size, size) of an (H, W) radiograph; ``thinned``: ``thin`` was already applied."""
    arr = checked_pixels(pixels)
    arr = arr.astype(np.float32, copy=False) if thinned else thin(arr, settings.size)
    return settings.transforms()({"image": torch.as_tensor(arr)[None]})["image"]


def case_facing(case: Case) -> str | None:
    """Return a case's facing: its truth JSON's "facing", else the image file's (DICOM PatientOrientation, NIfTI)."""
    if case.truth is not None:
        facing = json.loads(case.truth.read_text()).get("facing")
        if facing in FACINGS:
            return facing
    return read_radiograph(case.image).facing


class FacingDataset(Dataset):
    """(input (1, size, size), target) pairs: target 1.0 when the anterior is on the image's left.

    Images are read and thinned to twice the input square once, and kept in memory as float32 (a 256² simulated
    image takes 0.2 MB); with ``augment`` each draw is cropped, rotated, flipped (target too) and photometrically
    changed before the preprocessing. Cases without a known facing are skipped with a warning.

    Args:
        cases: labelled cases (``spinemorph.training.find_cases``).
        settings: the model's preprocessing.
        augment: draw random augmentations (training) or not (validation).
        seed: seeds the augmentation; a DataLoader worker reseeds it with its id (``worker_init``).
    """

    def __init__(self, cases: list[Case], settings: Preprocessing, augment: bool = False, seed: int = 0,
                 progress: bool = True) -> None:
        self.settings, self.seed = settings, seed
        self.augmentation = FacingAugmentation(seed) if augment else None
        self.cases, self.images, self.targets = [], [], []
        for case in tqdm(cases, desc="reading", unit="case", disable=not progress):
            facing = case_facing(case)
            if facing not in FACINGS:
                log.warning("%s: no facing in its truth JSON or image file; skipped.", case.id)
                continue
            self.cases.append(case)
            self.images.append(thin(checked_pixels(read_radiograph(case.image).pixels), 2 * settings.size))
            self.targets.append(1.0 if facing == "left" else 0.0)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.images[i], self.targets[i]
        if self.augmentation is not None:
            image, flipped = self.augmentation(image)
            target = 1.0 - target if flipped else target
        return network_input(image, self.settings, thinned=True), torch.tensor(target, dtype=torch.float32)

    @staticmethod
    def worker_init(worker_id: int) -> None:
        """Give each DataLoader worker its own augmentation stream (else every worker draws the same)."""
        info = torch.utils.data.get_worker_info()
        ds = info.dataset
        if ds.augmentation is not None:
            ds.augmentation.reseed(ds.seed, worker_id)
