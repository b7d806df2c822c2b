"""Pose-net of Kim et al. 2019: stage one maps the L5 centre, stage two maps every vertebral centre.

Both stages regress confidence maps (no activation); the targets are Gaussians whose variance is a quarter of
the vertebra's height (``spinemorph.hierarchical.targets``) and the loss is the sum of both stages' L2 losses
(equations (2)-(5); ``spinemorph.hierarchical.training.pose_loss``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
from torch import nn

__all__ = ["PoseNet", "NORM", "ACT", "checked"]

NORM = ("instance", {"affine": True})
ACT = ("relu", {"inplace": True})


def checked(out_channels: int, features: Sequence[int], dropout: float) -> tuple[int, ...]:
    """Return the five feature counts as a tuple, or raise ValueError saying which argument to fix."""
    if len(features) != 5:
        raise ValueError(f"features needs five channel counts (one per level), not {len(features)}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout is a probability in [0, 1), not {dropout}.")
    if out_channels < 1:
        raise ValueError(f"out_channels must be at least 1, not {out_channels}.")
    return tuple(features)


class PoseNet(nn.Module):
    """Two-stage confidence-map network for vertebral centres.

    Stage one is a U-shaped network on the image; its last decoder features feed a 1×1 layer that outputs the
    L5 centre map. Stage two takes those features plus the L5 map, runs a shallower U (three poolings) and
    outputs the centre maps.

    Args:
        in_channels: image channels (1 for a radiograph).
        out_channels: maps of stage two. 1 (the "binary" head) is the paper's map of all centres; with 18 (the
            "levels" head) channel 0 is that map and channels 1-17 are one map per level T1..L5
            (``spinemorph.networks.LEVEL_CLASSES``), which names the levels of views without L5.
        features: channels per level of stage one, shallow to deep (five levels); stage two uses the first four.
        dropout: dropout in the two deepest blocks of stage one, for MC-dropout (0 disables).

    Output: in training mode (or with ``all_outputs=True``) a dict ``{"l5": (B, 1, H, W), "centres":
    (B, out_channels, H, W)}``, everything the loss needs; in eval mode the centre maps (B, out_channels, H, W).
    H and W must be multiples of 16; ``spinemorph.networks.build_network`` pads any other size.

    Example::

        net = PoseNet(1, 1, features=(16, 32, 64, 128, 256))
        maps = net(torch.zeros(2, 1, 256, 128))  # {"l5": (2, 1, 256, 128), "centres": (2, 1, 256, 128)}
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, features: Sequence[int] = (16, 32, 64, 128, 256),
                 dropout: float = 0.0) -> None:
        super().__init__()
        f, blk = checked(out_channels, features, dropout), {"act": ACT, "norm": NORM, "bias": True}
        self.conv_0 = TwoConv(2, in_channels, f[0], **blk)
        self.down_1 = Down(2, f[0], f[1], **blk)
        self.down_2 = Down(2, f[1], f[2], **blk)
        self.down_3 = Down(2, f[2], f[3], **blk, dropout=dropout)
        self.down_4 = Down(2, f[3], f[4], **blk, dropout=dropout)
        self.upcat_4 = UpCat(2, f[4], f[3], f[3], **blk)
        self.upcat_3 = UpCat(2, f[3], f[2], f[2], **blk)
        self.upcat_2 = UpCat(2, f[2], f[1], f[1], **blk)
        self.upcat_1 = UpCat(2, f[1], f[0], f[0], **blk, halves=False)
        self.l5_head = nn.Conv2d(f[0], 1, 1)
        self.stage2_0 = TwoConv(2, f[0] + 1, f[0], **blk)
        self.stage2_down_1 = Down(2, f[0], f[1], **blk)
        self.stage2_down_2 = Down(2, f[1], f[2], **blk)
        self.stage2_down_3 = Down(2, f[2], f[3], **blk)
        self.stage2_up_3 = UpCat(2, f[3], f[2], f[2], **blk)
        self.stage2_up_2 = UpCat(2, f[2], f[1], f[1], **blk)
        self.stage2_up_1 = UpCat(2, f[1], f[0], f[0], **blk, halves=False)
        self.centres_head = nn.Conv2d(f[0], out_channels, 1)
        for head in (self.l5_head, self.centres_head):  # maps start near zero, as most of every target is
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor, all_outputs: bool | None = None):
        x0 = self.conv_0(x)
        x1 = self.down_1(x0)
        x2 = self.down_2(x1)
        x3 = self.down_3(x2)
        x4 = self.down_4(x3)
        u3 = self.upcat_4(x4, x3)
        u2 = self.upcat_3(u3, x2)
        u1 = self.upcat_2(u2, x1)
        features = self.upcat_1(u1, x0)
        l5 = self.l5_head(features)
        s0 = self.stage2_0(torch.cat([features, l5], dim=1))
        s1 = self.stage2_down_1(s0)
        s2 = self.stage2_down_2(s1)
        s3 = self.stage2_down_3(s2)
        v2 = self.stage2_up_3(s3, s2)
        v1 = self.stage2_up_2(v2, s1)
        centres = self.centres_head(self.stage2_up_1(v1, s0))
        if self.training if all_outputs is None else all_outputs:
            return {"l5": l5, "centres": centres}
        return centres
