"""Compression-fracture detection: a Mask R-CNN-style instance model whose classes are fractures by level.

Built from MONAI's detection blocks (anchors, ATSS matching, box coder, hard-negative sampling, box_utils and
NMS) and a pure-PyTorch RoIAlign, so the same code runs on CPU and GPU without torchvision's compiled ops.
``build_detector`` is its factory (see docs/ARCHITECTURE.md); ``detect`` runs it on a radiograph.

The names below load on first use: ``spinemorph.cli`` imports ``spinemorph.detection.cli`` for every command,
and torch and MONAI's detection modules would otherwise cost every ``spinemorph`` call 4 s.
"""

from __future__ import annotations

import importlib

__all__ = ["LEVEL_SETS", "DetectorSpec", "VcfMaskRCNN", "build_detector", "load_detector", "save_detector"]

_HOMES = {"LEVEL_SETS": "model", "DetectorSpec": "model", "VcfMaskRCNN": "model", "build_detector": "model",
          "load_detector": "checkpoint", "save_detector": "checkpoint"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"spinemorph.detection.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
