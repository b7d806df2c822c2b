"""A trained network and everything needed to use it, saved as a MONAI bundle or a training checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from spinemorph.networks import build_network
from spinemorph.networks.norms import group_instance_norms
from spinemorph.store import atomic_write
from spinemorph.transforms import Preprocessing

__all__ = ["ModelSpec", "save_model", "load_spec", "load_model"]


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a network and feed it: name, head, constructor arguments and preprocessing."""

    network: str
    head: str = "levels"
    kwargs: dict = field(default_factory=dict)
    preprocessing: Preprocessing = Preprocessing()

    def build(self) -> nn.Module:
        """Return a freshly initialised network of this spec."""
        return build_network(self.network, self.head, **self.kwargs)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return {"network": self.network, "head": self.head, "kwargs": self.kwargs,
                "preprocessing": asdict(self.preprocessing)}

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        """Return the spec a ``to_dict`` wrote."""
        kwargs = dict(d.get("kwargs", {}))
        if "features" in kwargs:
            kwargs["features"] = tuple(kwargs["features"])
        return cls(d["network"], d.get("head", "levels"), kwargs, Preprocessing(**d.get("preprocessing", {})))


def save_model(net: nn.Module, spec: ModelSpec, path: str | Path, extra: dict | None = None) -> Path:
    """Save ``net``'s weights with its spec: a checkpoint file (.pt) holding both. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = (net.module if hasattr(net, "module") else net).state_dict()
    # readers, and a kill at any moment, never see a half-written model
    return atomic_write(path, lambda fh: torch.save({"state_dict": state, "spec": spec.to_dict(), **(extra or {})}, fh))


def load_spec(path: str | Path) -> ModelSpec:
    """Return the spec of a checkpoint or a bundle folder without building its network (a bundle: JSON only)."""
    path = Path(path)
    if path.is_dir():
        return ModelSpec.from_dict(json.loads((path / "configs" / "inference.json").read_text())["spinemorph"])
    if not path.is_file():
        raise FileNotFoundError(f"No model at {path}.")
    return ModelSpec.from_dict(torch.load(path, map_location="cpu", weights_only=False)["spec"])


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Return the network (eval mode, on ``device``, its instance norms computed as group norms:
    ``spinemorph.networks.norms``) and its spec, from a checkpoint or a bundle folder.

    A bundle folder holds configs/inference.json (with the spec under "spinemorph") and models/model.pt.
    """
    path = Path(path)
    if path.is_dir():
        spec = load_spec(path)
        weights = torch.load(path / "models" / "model.pt", map_location="cpu", weights_only=True)
        state = weights.get("state_dict", weights)
    else:
        if not path.is_file():
            raise FileNotFoundError(f"No model at {path}.")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        spec, state = ModelSpec.from_dict(ckpt["spec"]), ckpt["state_dict"]
    net = spec.build()
    net.load_state_dict(state)
    return group_instance_norms(net).to(device).eval(), spec
