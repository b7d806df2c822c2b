"""The two trained networks of the pipeline, loaded from a bundle folder or from two training checkpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from spinemorph.inference import ModelSpec, load_model

__all__ = ["HierarchicalModel", "load_hierarchical", "STAGES"]

#: Bundle weight files, by stage.
STAGES = {"posenet": "posenet.pt", "patches": "mnet.pt"}


@dataclass
class HierarchicalModel:
    """Pose-net and the patch segmenter (M-net, or U-Net), each with its spec, on one device."""

    posenet: nn.Module
    pose_spec: ModelSpec
    patchnet: nn.Module
    patch_spec: ModelSpec
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.pose_spec.network != "posenet":
            raise ValueError(f"The first stage must be a Pose-net, not {self.pose_spec.network!r}.")
        if self.patch_spec.head != "binary":
            raise ValueError("The patch network must have the binary head (the patch's own vertebra).")

    def stage(self, name: str) -> tuple[nn.Module, ModelSpec]:
        """Return one stage's network and spec: "posenet" or "patches"."""
        if name not in STAGES:
            raise ValueError(f"Unknown stage {name!r}: use one of {', '.join(STAGES)}.")
        return (self.posenet, self.pose_spec) if name == "posenet" else (self.patchnet, self.patch_spec)


def _from_bundle(folder: Path, device: str) -> HierarchicalModel:
    config = json.loads((folder / "configs" / "inference.json").read_text())["spinemorph"]
    nets = []
    for stage, filename in STAGES.items():
        spec = ModelSpec.from_dict(config[stage])
        net = spec.build()
        state = torch.load(folder / "models" / filename, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("state_dict", state))
        nets += [net.to(device).eval(), spec]
    return HierarchicalModel(*nets, device=device)


def load_hierarchical(source, device: str = "cpu") -> HierarchicalModel:
    """Return the pipeline's networks from a bundle folder, or from (Pose-net, patch network) checkpoints."""
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not (folder / "configs" / "inference.json").is_file():
            raise FileNotFoundError(f"No hierarchical bundle at {folder} (configs/inference.json is missing).")
        return _from_bundle(folder, device)
    pose, patches = source
    posenet, pose_spec = load_model(pose, device)
    patchnet, patch_spec = load_model(patches, device)
    return HierarchicalModel(posenet, pose_spec, patchnet, patch_spec, device)
