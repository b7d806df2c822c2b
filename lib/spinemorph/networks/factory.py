"""One way to build every network: ``build_network(name, **kwargs)``, from a registry the reader can see."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from torch import nn

from spinemorph.networks.heads import head_channels
from spinemorph.networks.mnet import MNet
from spinemorph.networks.posenet import PoseNet
from spinemorph.networks.r2unet import MDR2UNet, R2UNet

__all__ = ["NETWORKS", "build_network", "count_parameters", "mc_dropout", "PadToMultiple"]


class PadToMultiple(nn.Module):
    """Pads the input to a multiple of ``multiple`` (zeros, bottom and right) and crops the output back."""

    def __init__(self, net: nn.Module, multiple: int = 16) -> None:
        super().__init__()
        self.net, self.multiple = net, multiple

    def forward(self, x: torch.Tensor, **kwargs):
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        out = self.net(F.pad(x, (0, pw, 0, ph)) if ph or pw else x, **kwargs)
        return _crop(out, h, w)


def _crop(out, h: int, w: int):
    """Return ``out`` cropped to (h, w): a tensor, or the dict or list of tensors a multi-output network returns."""
    if isinstance(out, torch.Tensor):
        return out[..., :h, :w]
    if isinstance(out, dict):
        return {k: _crop(v, h, w) for k, v in out.items()}
    return type(out)(_crop(v, h, w) for v in out)


def _unet(in_channels: int, out_channels: int, features=(16, 32, 64, 128, 256), dropout: float = 0.0,
          num_res_units: int = 2) -> nn.Module:
    return UNet(2, in_channels, out_channels, channels=tuple(features), strides=(2, 2, 2, 2),
                num_res_units=num_res_units, dropout=dropout, norm="INSTANCE")


def _r2unet(in_channels: int, out_channels: int, features=(16, 32, 64, 128, 256), dropout: float = 0.0,
            t: int = 2) -> nn.Module:
    return R2UNet(in_channels, out_channels, features, t, dropout)


def _mdr2unet(in_channels: int, out_channels: int, features=(16, 32, 64, 128, 256), dropout: float = 0.0,
              t: int = 2) -> nn.Module:
    return MDR2UNet(in_channels, out_channels, features, t, dropout)


def _mnet(in_channels: int, out_channels: int, features=(16, 32, 64, 128, 256), dropout: float = 0.0) -> nn.Module:
    return MNet(in_channels, out_channels, features, dropout)


def _posenet(in_channels: int, out_channels: int, features=(16, 32, 64, 128, 256), dropout: float = 0.0) -> nn.Module:
    return PoseNet(in_channels, out_channels, features, dropout)


#: Name -> constructor(in_channels, out_channels, **kwargs). Register new networks here, explicitly.
#: ``mnet`` and ``posenet`` (Kim et al. 2019) return a dict of side outputs / stages in training mode.
NETWORKS: dict[str, Callable[..., nn.Module]] = {"mdr2unet": _mdr2unet, "r2unet": _r2unet, "unet": _unet,
                                                 "mnet": _mnet, "posenet": _posenet}


def build_network(name: str, head: str = "levels", in_channels: int = 1, **kwargs) -> nn.Module:
    """Return network ``name`` with a "binary" or "levels" head, accepting any input height and width.

    Keyword arguments go to the constructor: ``features`` (five channel counts), ``dropout`` (MC-dropout), and
    ``t`` (recurrence, R2U-Net family) or ``num_res_units`` (U-Net).

    Example::

        net = build_network("mdr2unet", head="levels", features=(8, 16, 32, 64, 128), dropout=0.1)
    """
    if name not in NETWORKS:
        raise ValueError(f"Unknown network {name!r}: choose one of {', '.join(sorted(NETWORKS))}.")
    features = kwargs.get("features")
    if features is not None and len(tuple(features)) != 5:
        raise ValueError(f"features needs five channel counts, one per level, not {len(tuple(features))}.")
    return PadToMultiple(NETWORKS[name](in_channels, head_channels(head), **kwargs))


def count_parameters(net: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@contextmanager
def mc_dropout(net: nn.Module, seed: int | None = None) -> Iterator[nn.Module]:
    """Put ``net`` in eval mode with its dropout layers sampling, for Monte Carlo dropout; restore afterwards.

    ``seed``: draw the block's dropout masks from it, leaving the process's random generators as they were: an
    input gets the same passes every time, and inputs of one size are compared under the same masks (common random
    numbers), so that a ranking of them is not the masks' noise.
    """
    was_training = net.training
    net.eval()
    drops = [m for m in net.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d, nn.Dropout3d))]
    for m in drops:
        m.train()
    try:
        if seed is None:
            yield net
        else:
            device = next(net.parameters()).device
            with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                yield net
    finally:
        net.train(was_training)
