"""Training the segmentation networks on studies folders (simulated, CT-DRR, or annotated)."""

from __future__ import annotations

from spinemorph.training.data import Case, RadiographDataset, find_cases, split_cases
from spinemorph.training.losses import LOSSES, build_loss
from spinemorph.training.trainer import TrainConfig, train

__all__ = ["Case", "RadiographDataset", "find_cases", "split_cases", "LOSSES", "build_loss", "TrainConfig", "train"]
