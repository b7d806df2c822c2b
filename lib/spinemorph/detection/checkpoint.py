"""Saving and loading the detector: a checkpoint file (.pt, weights + spec) or a MONAI bundle folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from spinemorph.detection.model import DetectorSpec, VcfMaskRCNN
from spinemorph.store import atomic_write

__all__ = ["save_detector", "load_detector"]


def save_detector(net: nn.Module, spec: DetectorSpec, path: str | Path, extra: dict | None = None) -> Path:
    """Save ``net``'s weights with its spec to a checkpoint file, atomically. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # readers, and a kill at any moment, never see a half-written model
    return atomic_write(path, lambda fh: torch.save({"state_dict": net.state_dict(), "detector": spec.to_dict(),
                                                     **(extra or {})}, fh))


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> tuple[VcfMaskRCNN, DetectorSpec]:
    """Return the detector (eval mode, on ``device``) and its spec, from a checkpoint or a bundle folder.

    A bundle folder holds configs/inference.json (the spec under "spinemorph_detector") and models/model.pt.
    """
    path = Path(path)
    if path.is_dir():
        config = json.loads((path / "configs" / "inference.json").read_text())
        spec = DetectorSpec.from_dict(config["spinemorph_detector"])
        state = torch.load(path / "models" / "model.pt", map_location="cpu", weights_only=True)
    elif path.is_file():
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if "detector" not in ckpt:
            raise ValueError(f"{path} is not a detector checkpoint (no 'detector' spec): a segmentation model?")
        spec, state = DetectorSpec.from_dict(ckpt["detector"]), ckpt["state_dict"]
    else:
        raise FileNotFoundError(f"No detector at {path}.")
    net = spec.build()
    net.load_state_dict(state)
    return net.to(device).eval(), spec
