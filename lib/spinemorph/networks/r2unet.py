"""R2U-Net (Alom et al. 2018) and MDR2-UNet (Kim et al. 2021), for 2D lateral radiographs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spinemorph.networks.blocks import Down, MultiDilatedResidualBlock, RRCNNBlock, UpCat

__all__ = ["R2UNet", "MDR2UNet"]


class R2UNet(nn.Module):
    """U-Net of recurrent residual units, with skip concatenation and a 1×1 output layer.

    Args:
        in_channels: image channels (1 for a radiograph).
        out_channels: 1 for the binary body head, 18 for the per-level head (background + T1..L5).
        features: channels per level, shallow to deep (five levels: four poolings).
        t: recurrence steps of every unit.
        dropout: dropout in the deepest units, for MC-dropout uncertainty (0 disables).

    The input's height and width must be multiples of 16; ``spinemorph.networks.build_network`` wraps the
    network so that any size works. Output: (B, out_channels, H, W) logits.

    Example::

        net = R2UNet(1, 18, features=(16, 32, 64, 128, 256))
        logits = net(torch.zeros(2, 1, 256, 256))  # (2, 18, 256, 256)
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, features: Sequence[int] = (16, 32, 64, 128, 256),
                 t: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if len(features) != 5:
            raise ValueError(f"features needs five channel counts (one per level), not {len(features)}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout is a probability in [0, 1), not {dropout}.")
        f = tuple(features)
        self.stem = self._stem(in_channels, f[0], t)
        self.down_1 = Down(f[0], f[1], t)
        self.down_2 = Down(f[1], f[2], t)
        self.down_3 = Down(f[2], f[3], t, dropout)
        self.down_4 = Down(f[3], f[4], t, dropout)
        self.upcat_4 = UpCat(f[4], f[3], f[3], t, dropout)
        self.upcat_3 = UpCat(f[3], f[2], f[2], t)
        self.upcat_2 = UpCat(f[2], f[1], f[1], t)
        self.upcat_1 = UpCat(f[1], f[0], f[0], t)
        self.final_conv = nn.Conv2d(f[0], out_channels, 1)

    def _stem(self, in_channels: int, out_channels: int, t: int) -> nn.Module:
        return RRCNNBlock(in_channels, out_channels, t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.stem(x)
        x1 = self.down_1(x0)
        x2 = self.down_2(x1)
        x3 = self.down_3(x2)
        x4 = self.down_4(x3)
        u3 = self.upcat_4(x4, x3)
        u2 = self.upcat_3(u3, x2)
        u1 = self.upcat_2(u2, x1)
        u0 = self.upcat_1(u1, x0)
        return self.final_conv(u0)


class MDR2UNet(R2UNet):
    """MDR2-UNet: R2U-Net whose first unit is the multi-dilated residual block (rates 2, 4, 8, 16)."""

    def _stem(self, in_channels: int, out_channels: int, t: int) -> nn.Module:
        return nn.Sequential(MultiDilatedResidualBlock(in_channels, out_channels),
                             RRCNNBlock(out_channels, out_channels, t))
