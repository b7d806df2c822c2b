"""Training data of the two stages, from labelled studies alone (labels/final): the centres come from the labelmaps.

``PoseDataset``: Pose-net's input frame and its two targets (the L5 map, the centre maps), rendered on the fly so
that augmentation moves image and maps together. ``PatchDataset``: one square patch per vertebra, boxed by
equation (6) around its true centre moved at random (the test-time centre errors the patch networks must bear),
with the vertebra's own mask as the target.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from monai.transforms import Compose, RandAdjustContrast, RandAffine, RandFlip
from torch.utils.data import Dataset
from tqdm import tqdm

from spinemorph.hierarchical.boxes import Box, box_sides, crop_patch
from spinemorph.hierarchical.inputs import full_resolution, pose_frame, pose_input
from spinemorph.hierarchical.targets import body_centres, pose_maps
from spinemorph.io import read_labelmap, read_radiograph
from spinemorph.transforms import Preprocessing

__all__ = ["PoseDataset", "PatchDataset"]

log = logging.getLogger(__name__)


def _read(case) -> tuple[np.ndarray, np.ndarray]:
    return read_radiograph(case.image).pixels, read_labelmap(case.label)[0]


class PoseDataset(Dataset):
    """(image (1, H, W), target (1 + C, H, W)) pairs: target channel 0 is the L5 map, the rest the centre maps."""

    def __init__(self, cases, settings: Preprocessing, n_channels: int = 1, augment: bool = False,
                 progress: bool = True) -> None:
        self.frame, self.n_channels = pose_frame(settings), n_channels
        self.images, self.bodies = [], []
        for case in tqdm(cases, desc="Pose-net inputs", unit="case", disable=not progress):
            pixels, labels = _read(case)
            x, g = pose_input(pixels, settings)
            bodies = body_centres(labels)
            points = g.to_frame([(b.row, b.col) for b in bodies]) if bodies else np.zeros((0, 2))
            self.images.append(x.half())
            self.bodies.append((points, np.array([b.height * g.scale for b in bodies]),
                                np.array([b.code for b in bodies], int)))
        self.warp = Compose([RandAffine(prob=0.8, rotate_range=(np.deg2rad(10),), scale_range=(0.15, 0.15),
                                        translate_range=(0.05 * self.frame[0], 0.05 * self.frame[1]),
                                        mode="bilinear", padding_mode="zeros"),
                             RandFlip(prob=0.5, spatial_axis=1)]) if augment else None
        self.contrast = RandAdjustContrast(prob=0.5, gamma=(0.7, 1.5)) if augment else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        l5, maps = pose_maps(*self.bodies[i], self.frame, self.n_channels)
        image, target = self.images[i].float(), torch.as_tensor(np.concatenate([l5, maps]))
        if self.warp is not None:
            both = torch.as_tensor(self.warp(torch.cat([image, target])))
            image, target = self.contrast(both[:1]), both[1:]
        return torch.as_tensor(image).float(), target.float()


class PatchDataset(Dataset):
    """(patch (1, P, P), mask (1, P, P)) pairs, one per whole vertebra of each labelled image.

    Args:
        cases: labelled cases (``spinemorph.training.Case``).
        settings: ``size`` is the patch side P; the rest is the image preprocessing.
        jitter: standard deviation of the centre's random move, as a fraction of the gap to the neighbours; the
            box side varies by ±10 % as well. Validation sets draw the same moves every time (``seed``).
    """

    def __init__(self, cases, settings: Preprocessing, jitter: float = 0.15, augment: bool = False,
                 seed: int | None = None, progress: bool = True) -> None:
        self.size, self.jitter, self.augment, self.seed = settings.size, jitter, augment, seed
        self.images, self.labels, self.items = [], [], []
        for case in tqdm(cases, desc="patch sources", unit="case", disable=not progress):
            pixels, labels = _read(case)
            bodies = body_centres(labels)
            if len(bodies) < 2:
                continue
            sides = box_sides([b.row for b in bodies])
            gaps = np.abs(np.diff([b.row for b in bodies]))
            near = np.minimum(np.r_[gaps[0], gaps], np.r_[gaps, gaps[-1]])
            index = len(self.images)
            self.images.append(torch.as_tensor(full_resolution(pixels, settings)).half())
            self.labels.append(labels.astype(np.uint8))
            self.items += [(index, b.code, b.row, b.col, s, g) for b, s, g in zip(bodies, sides, near, strict=True)
                           if not b.at_edge]
        self.contrast = RandAdjustContrast(prob=0.5, gamma=(0.7, 1.5)) if augment else None
        log.info("%d patches from %d images", len(self.items), len(self.images))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        index, code, row, col, side, gap = self.items[i]
        rng = np.random.default_rng(None if self.seed is None else [self.seed, i])
        if self.jitter > 0:
            row, col = row + rng.normal(0, self.jitter * gap), col + rng.normal(0, self.jitter * gap)
            side *= rng.uniform(0.9, 1.1)
        box = Box(row, col, side)
        image = crop_patch(self.images[index].float().numpy(), box, self.size)
        mask = crop_patch(self.labels[index] == code, box, self.size, labels=True)
        x, y = torch.as_tensor(image)[None], torch.as_tensor(mask.astype(np.int64))[None]
        if self.augment:
            if rng.random() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            x = torch.as_tensor(self.contrast(x)).float()
        return x, y
