"""Trained models: saving and loading (MONAI bundle layout), and segmenting a radiograph onto its own grid."""

from __future__ import annotations

from spinemorph.inference.model import ModelSpec, load_model, save_model
from spinemorph.inference.segment import Segmentation, segment

__all__ = ["ModelSpec", "load_model", "save_model", "Segmentation", "segment"]
