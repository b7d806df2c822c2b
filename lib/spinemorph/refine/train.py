"""Training stage 2: jittered body crops from labelled studies folders, one binary network for every level.

Each whole body of each case gives ``per_body`` crops, their boxes moved and resized at random as stage 1's
outlines would move them (centre by ``jitter`` of the side, side by 0.85-1.2); the target is that body's mask in
the crop. Crops are made once (``spinemorph.refine.crops``, the inference's own preprocessing) and kept as float16.
The loop is the hierarchical stages' (``spinemorph.hierarchical.training.fit``): Adam, Dice + BCE, a step budget.

``defects`` gives that share of the training crops one defect of a real film before the preprocessing (see
``film_defect``): the body, and so the target, stays where it was, as it does under a time stamp on a film. Those
crops are kept before the preprocessing, as float32, and preprocessed each time one is drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from monai.transforms import RandAdjustContrast
from scipy import ndimage
from torch.utils.data import Dataset
from tqdm import tqdm

from spinemorph.conventions import near_edge_codes
from spinemorph.hierarchical.boxes import Box, crop_patch
from spinemorph.hierarchical.training import StageConfig, fit
from spinemorph.io import read_labelmap, read_radiograph
from spinemorph.refine.crops import body_boxes, crop_inputs, normalised
from spinemorph.training import build_loss, split_cases
from spinemorph.transforms import Preprocessing
from spinemorph.transforms.intensity import ClaheGaussian

__all__ = ["CropDataset", "film_defect", "train_refiner"]

log = logging.getLogger(__name__)


def film_defect(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return a normalised crop (P, P) in [0, 1] with one defect of a real film drawn at random: the noise of a low
    dose, a dark, noisy ramp (an under-exposed end of the film) or burned-in bars (text, a marker, a ruler)."""
    p = crop.shape[-1]
    out = np.array(crop, np.float32)
    kind = rng.integers(3)
    if kind == 0:
        noise = rng.normal(0.0, rng.uniform(0.02, 0.08), out.shape).astype(np.float32)
        out += ndimage.gaussian_filter(noise, rng.uniform(0.0, 1.0))
    elif kind == 1:
        angle = rng.uniform(0.0, 2 * np.pi)
        rows, cols = np.mgrid[:p, :p] / p - 0.5
        dark = np.clip(np.cos(angle) * rows + np.sin(angle) * cols + rng.uniform(0.0, 0.5), 0.0, 1.0)
        out *= 1.0 - (1.0 - rng.uniform(0.25, 0.7)) * dark
        out += (rng.normal(0.0, rng.uniform(0.01, 0.05), out.shape) * dark).astype(np.float32)
    else:
        for _ in range(rng.integers(1, 4)):
            h, w = max(2, int(p * rng.uniform(0.03, 0.1))), max(2, int(p * rng.uniform(0.2, 0.7)))
            r, c = rng.integers(0, p - h + 1), rng.integers(0, p - w + 1)
            bar = np.ones((h, w), bool)
            if rng.random() < 0.5:  # text: strokes a few pixels wide
                step = max(2, h // 2)
                bar = ((np.arange(w) // step) % 2 == 0)[None, :] & (rng.random((h, w)) < 0.8)
            value = rng.uniform(0.85, 1.0) if rng.random() < 0.7 else rng.uniform(0.0, 0.1)
            out[r:r + h, c:c + w][bar] = value
    return np.clip(out, 0.0, 1.0)


class CropDataset(Dataset):
    """(crop (1, P, P), mask (1, P, P)) pairs: ``per_body`` jittered crops of every whole body of every case;
    ``defects``: share of the crops given a ``film_defect`` before the preprocessing, each time one is drawn."""

    def __init__(self, cases, settings: Preprocessing, per_body: int = 2, jitter: float = 0.08,
                 augment: bool = False, seed: int = 0, progress: bool = True, defects: float = 0.0) -> None:
        self.augment, self.defects = augment, defects
        self.clahe = ClaheGaussian(settings.clip_limit, settings.tiles, settings.sigma)
        self.images, self.masks = [], []
        rng = np.random.default_rng(seed)
        self.rng = np.random.default_rng(seed + 1)
        for case in tqdm(cases, desc="stage-2 crops", unit="case", disable=not progress):
            labels, _ = read_labelmap(case.label)
            image = normalised(read_radiograph(case.image).pixels)
            edge = near_edge_codes(labels)
            boxes = [(code, Box(b.row + rng.normal(0, jitter * b.side), b.col + rng.normal(0, jitter * b.side),
                                b.side * rng.uniform(0.85, 1.2)))
                     for code, b in body_boxes(labels) if code not in edge for _ in range(per_body)]
            if not boxes:
                continue
            if defects:  # kept before the preprocessing, which runs when a crop is drawn; float32, as CLAHE's
                raw = np.stack([crop_patch(image, b, settings.size) for _, b in boxes])  # bins would move in float16
                self.images.append(torch.as_tensor(raw, dtype=torch.float32)[:, None])
            else:
                self.images.append(crop_inputs(image, [b for _, b in boxes], settings).half())
            self.masks.append(torch.as_tensor(np.stack([crop_patch(labels == code, b, settings.size, labels=True)
                                                        for code, b in boxes]).astype(np.uint8))[:, None])
        self.images = torch.cat(self.images) if self.images else torch.zeros((0, 1, settings.size, settings.size))
        self.masks = torch.cat(self.masks) if self.masks else torch.zeros_like(self.images, dtype=torch.uint8)
        self.contrast = RandAdjustContrast(prob=0.5, gamma=(0.7, 1.5)) if augment else None
        log.info("%d stage-2 crops from %d cases", len(self.images), len(cases))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.images[i].float(), self.masks[i].long()
        if self.defects:
            crop = x[0].numpy()
            if self.rng.random() < self.defects:
                crop = film_defect(crop, self.rng)
            x = torch.as_tensor(self.clahe(crop[None])).float()
        if self.augment:
            if torch.rand(()) < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            x = torch.as_tensor(self.contrast(x)).float()
        return x, y


def train_refiner(config: StageConfig, cases, progress: Callable[[dict], None] | None = None) -> dict:
    """Train the stage-2 network (binary head) on labelled cases and return the run's summary."""
    if config.head != "binary":
        raise ValueError("Stage 2 segments its crop's own body: use the binary head.")
    train_cases, val_cases = split_cases(list(cases), config.val_fraction, config.seed)
    if not train_cases:
        raise ValueError("No training cases: the studies folders hold no labelled images.")
    settings = Preprocessing(size=config.size)
    train_ds = CropDataset(train_cases, settings, jitter=config.jitter, augment=True, seed=config.seed,
                           defects=config.defects)
    val_ds = CropDataset(val_cases, settings, per_body=1, jitter=config.jitter, seed=config.seed + 1)
    return fit(config, train_ds, val_ds, build_loss("dicebce", "binary"), "val_dice", progress)
