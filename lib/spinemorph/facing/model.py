"""The facing classifier: a small CNN made antisymmetric under a left-right flip, its spec and its checkpoint.

``FacingNet`` scores an image with a plain CNN ``g`` (strided convolutions, global average and max pooling, one
linear unit) and returns ``g(x) - g(flip(x))``: the logit that the patient's anterior is on the image's left. A
mirrored image therefore gets exactly the opposite logit, whatever the weights. It is not in
``spinemorph.networks.NETWORKS``: that factory builds dense segmentation networks (five feature levels, a head of
per-pixel channels, ``PadToMultiple``); this one returns one number per image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from monai.networks.blocks import Convolution
from torch import nn

from spinemorph.inference.model import save_model
from spinemorph.transforms import Preprocessing

__all__ = ["NETWORK", "FacingSpec", "FacingNet", "build_facing_net", "save_facing_model", "load_facing_model"]

NETWORK = "facingnet"  # the spec's network name; a checkpoint without it is not a facing model
_NORM = ("group", {"num_groups": 4})


def _conv(in_channels: int, out_channels: int, stride: int = 1, kernel: int = 3) -> Convolution:
    return Convolution(2, in_channels, out_channels, strides=stride, kernel_size=kernel, act="RELU", norm=_NORM)


class Down(nn.Sequential):
    """Halve the resolution: a strided 3×3 convolution, then a 3×3 one, each with group norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(_conv(in_channels, out_channels, 2), _conv(out_channels, out_channels))


class FacingNet(nn.Module):
    """Antisymmetric facing classifier: ``forward(x) = g(x) - g(flip_left_right(x))``.

    Args:
        features: channels of the 5×5 stride-2 stem, then of each ``Down`` stage (at least two numbers).
        in_channels: image channels (1 for a radiograph).

    Input (B, in_channels, H, W), any H and W; output (B,): the logit that the anterior is on the image's left.

    Example::

        net = FacingNet((16, 24, 32, 48, 64))
        p_left = torch.sigmoid(net(torch.rand(2, 1, 160, 160)))
    """

    def __init__(self, features: tuple[int, ...] = (16, 24, 32, 48, 64), in_channels: int = 1) -> None:
        super().__init__()
        features = tuple(int(f) for f in features)
        if len(features) < 2 or min(features) < 4 or any(f % 4 for f in features):
            raise ValueError(f"features needs at least two channel counts, each a multiple of 4 (group norm), "
                             f"not {features}.")
        self.stem = _conv(in_channels, features[0], 2, 5)
        self.downs = nn.Sequential(*(Down(a, b) for a, b in zip(features[:-1], features[1:], strict=True)))
        self.final = nn.Linear(2 * features[-1], 1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Return g(x), the unconstrained score (B,) of the anterior being on the left."""
        f = self.downs(self.stem(x))
        pooled = torch.cat([f.mean((-2, -1)), f.amax((-2, -1))], 1)
        return self.final(pooled)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.score(torch.cat([x, x.flip(-1)]))
        return both[: len(x)] - both[len(x):]


def build_facing_net(features: tuple[int, ...] = (16, 24, 32, 48, 64)) -> FacingNet:
    """Return a freshly initialised ``FacingNet`` (the one way the spec, trainer and tests build it)."""
    return FacingNet(features)


@dataclass(frozen=True)
class FacingSpec:
    """How to rebuild the facing network and feed it; stored with every checkpoint.

    Args:
        features: the network's channels (``FacingNet``).
        preprocessing: spinemorph's input pipeline (normalise, aspect-preserving pad, CLAHE + Gaussian); its size
            is the square the network sees.
    """

    features: tuple[int, ...] = (16, 24, 32, 48, 64)
    preprocessing: Preprocessing = field(default_factory=lambda: Preprocessing(size=160))

    def __post_init__(self) -> None:
        if self.preprocessing.size < 32:
            raise ValueError(f"The facing input size must be at least 32 px, not {self.preprocessing.size}.")

    def build(self) -> FacingNet:
        """Return a freshly initialised network of this spec."""
        return build_facing_net(self.features)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return {"network": NETWORK, "features": list(self.features), "preprocessing": asdict(self.preprocessing)}

    @classmethod
    def from_dict(cls, d: dict) -> FacingSpec:
        """Return the spec a ``to_dict`` wrote; raise ValueError for another kind of model's spec."""
        if d.get("network") != NETWORK:
            raise ValueError(f"Not a facing model: its spec names network {d.get('network')!r}, not {NETWORK!r}.")
        return cls(tuple(d["features"]), Preprocessing(**d.get("preprocessing", {})))


def save_facing_model(net: nn.Module, spec: FacingSpec, path: str | Path, extra: dict | None = None) -> Path:
    """Save ``net``'s weights with its spec to a checkpoint file, atomically; return the path.

    The file is spinemorph's checkpoint ({"state_dict", "spec", ...extra}), written by the segmentation models'
    own ``save_model``; the spec's network name tells a facing checkpoint from the others.
    """
    return save_model(net, spec, path, extra)


def load_facing_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[FacingNet, FacingSpec]:
    """Return the facing network (eval mode, on ``device``) and its spec from a checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No facing model at {path}.")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or not isinstance(ckpt.get("spec"), dict):
        raise ValueError(f"{path} is not a SpineMorph checkpoint (no state_dict and spec).")
    spec = FacingSpec.from_dict(ckpt["spec"])
    net = spec.build()
    net.load_state_dict(ckpt["state_dict"])
    return net.to(device).eval(), spec
