"""M-net of Fu et al. 2018, as Kim et al. 2019 use it on vertebra patches: a multi-scale input pyramid, a
U-shaped body, four side outputs and their mean as the final output.

Training takes the mean of the side outputs' losses (equations (7)-(8); ``spinemorph.training.build_loss``
averages over ``"sides"`` when a network returns them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
from torch import nn

from spinemorph.networks.blocks import ConvNormAct
from spinemorph.networks.posenet import ACT, NORM, checked

__all__ = ["MNet", "mean_of_sides"]


def mean_of_sides(sides: Sequence[torch.Tensor]) -> torch.Tensor:
    """Return the logits whose probabilities are the mean of the side outputs' probabilities.

    One channel: logit(mean sigmoid); several: log(mean softmax), whose softmax is that mean.
    """
    if sides[0].shape[1] == 1:
        p = torch.stack([torch.sigmoid(s) for s in sides]).mean(0).clamp(1e-6, 1 - 1e-6)
        return torch.log(p) - torch.log1p(-p)
    return torch.stack([torch.softmax(s, dim=1) for s in sides]).mean(0).clamp_min(1e-8).log()


class MNet(nn.Module):
    """M-net: the image at 1, 1/2, 1/4 and 1/8 scale (average pooling) enters the encoder at each level.

    Args:
        in_channels: image channels (1 for a radiograph).
        out_channels: 1 for the binary head (the patch's central vertebra), 18 for the per-level head.
        features: channels per level, shallow to deep (five levels: four poolings).
        dropout: dropout in the two deepest blocks, for MC-dropout (0 disables).

    Output: in training mode (or with ``all_outputs=True``) a dict ``{"sides": [four (B, out_channels, H, W)
    logits, deep to shallow], "out": (B, out_channels, H, W)}``; in eval mode only ``out``, the logits of the
    mean of the side outputs' probabilities. H and W must be multiples of 16 (``build_network`` pads).

    Example::

        net = MNet(1, 1, features=(16, 32, 64, 128, 256))
        logits = net.eval()(torch.zeros(2, 1, 112, 112))  # (2, 1, 112, 112)
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, features: Sequence[int] = (16, 32, 64, 128, 256),
                 dropout: float = 0.0) -> None:
        super().__init__()
        f, blk = checked(out_channels, features, dropout), {"act": ACT, "norm": NORM, "bias": True}
        self.conv_0 = TwoConv(2, in_channels, f[0], **blk)
        self.scale_1 = ConvNormAct(in_channels, f[0])
        self.scale_2 = ConvNormAct(in_channels, f[1])
        self.scale_3 = ConvNormAct(in_channels, f[2])
        self.conv_1 = TwoConv(2, f[0] * 2, f[1], **blk)
        self.conv_2 = TwoConv(2, f[1] * 2, f[2], **blk)
        self.conv_3 = TwoConv(2, f[2] * 2, f[3], **blk, dropout=dropout)
        self.down_4 = Down(2, f[3], f[4], **blk, dropout=dropout)
        self.upcat_4 = UpCat(2, f[4], f[3], f[3], **blk)
        self.upcat_3 = UpCat(2, f[3], f[2], f[2], **blk)
        self.upcat_2 = UpCat(2, f[2], f[1], f[1], **blk)
        self.upcat_1 = UpCat(2, f[1], f[0], f[0], **blk, halves=False)
        self.side_4 = nn.Conv2d(f[3], out_channels, 1)
        self.side_3 = nn.Conv2d(f[2], out_channels, 1)
        self.side_2 = nn.Conv2d(f[1], out_channels, 1)
        self.side_1 = nn.Conv2d(f[0], out_channels, 1)

    def forward(self, x: torch.Tensor, all_outputs: bool | None = None):
        size = x.shape[-2:]
        x0 = self.conv_0(x)
        x1 = self.conv_1(torch.cat([F.max_pool2d(x0, 2), self.scale_1(F.avg_pool2d(x, 2))], dim=1))
        x2 = self.conv_2(torch.cat([F.max_pool2d(x1, 2), self.scale_2(F.avg_pool2d(x, 4))], dim=1))
        x3 = self.conv_3(torch.cat([F.max_pool2d(x2, 2), self.scale_3(F.avg_pool2d(x, 8))], dim=1))
        x4 = self.down_4(x3)
        u3 = self.upcat_4(x4, x3)
        u2 = self.upcat_3(u3, x2)
        u1 = self.upcat_2(u2, x1)
        u0 = self.upcat_1(u1, x0)
        sides = [F.interpolate(head(u), size=size, mode="bilinear", align_corners=False)
                 for head, u in ((self.side_4, u3), (self.side_3, u2), (self.side_2, u1), (self.side_1, u0))]
        out = mean_of_sides(sides)
        if self.training if all_outputs is None else all_outputs:
            return {"sides": sides, "out": out}
        return out
