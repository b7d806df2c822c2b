"""A tiny detector overfitted on three small simulated radiographs: two with fractures, one normal."""

from __future__ import annotations

from pathlib import Path

import torch

from spinemorph.data.dataset import simulate_studies
from spinemorph.data.deformity import Fracture
from spinemorph.data.simulate import SimConfig
from spinemorph.detection.training import DetectorTrainConfig, train_detector
from spinemorph.training import find_cases

#: (fractures, seed) of each training image; the last is normal.
IMAGES = (((Fracture("L1", "wedge", 3, 0.5),), 31), ((Fracture("L3", "biconcave", 3, 0.5),), 32), ((), 33))


def make_studies(root: Path) -> Path:
    """Write the three radiographs (160 px lumbar NIfTI) into one studies folder and return it."""
    for fractures, seed in IMAGES:
        config = SimConfig(size=160, fov="lumbar", fracture_rate=0.0, fractures=fractures, facing="left")
        simulate_studies(1, seed, root, config, fmt="nifti", progress=False)
    return root


def train_tiny(root: Path, steps: int = 200) -> Path:
    """Train the tiny detector on ``root``'s three images until it has learned them; return its model.pt."""
    torch.manual_seed(0)
    config = DetectorTrainConfig(out=str(root / "run"), size=160, channels=(8, 16, 32, 64), blocks=(1, 1, 1, 1),
                                 fpn_channels=32, batch_size=3, lr=0.02, warmup_steps=20, max_steps=steps,
                                 val_every=steps, val_fraction=0.0, augment=False)
    train_detector(config, find_cases(root))
    return root / "run" / "last.pt"
