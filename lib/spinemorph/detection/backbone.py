"""A light ResNet with a feature pyramid (FPN), sized for CPU: the detector's backbone.

Four stages of basic residual blocks with group norm (small batches) at strides 4, 8, 16 and 32, then FPN's
lateral 1×1 convolutions, nearest-neighbour top-down pathway and 3×3 output convolutions (Lin et al. 2017).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "ResNetFPN", "STRIDES"]

#: The stride of each pyramid level P2..P5.
STRIDES: tuple[int, ...] = (4, 8, 16, 32)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4) or 1, channels)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with group norm and a shortcut (1×1 when the shape changes): ResNet-18's unit."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm_1 = _norm(out_channels)
        self.conv_2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm_2 = _norm(out_channels)
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), _norm(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm_1(self.conv_1(x)), inplace=True)
        out = self.norm_2(self.conv_2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_channels, out_channels, stride)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNetFPN(nn.Module):
    """ResNet stages C2..C5 and their feature pyramid P2..P5, all with ``fpn_channels`` channels.

    Args:
        in_channels: image channels (1 for a radiograph).
        channels: channels of C2..C5.
        blocks: basic blocks per stage.
        fpn_channels: channels of every pyramid level.

    The input's height and width must be multiples of 32. Output: a list of four maps (B, fpn_channels,
    H / s, W / s) for s in ``STRIDES``.

    Example::

        p2, p3, p4, p5 = ResNetFPN(1, (16, 32, 64, 128))(torch.zeros(1, 1, 256, 256))  # p2: (1, 64, 64, 64)
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64, 128),
                 blocks: Sequence[int] = (2, 2, 2, 2), fpn_channels: int = 64) -> None:
        super().__init__()
        if len(channels) != 4 or len(blocks) != 4:
            raise ValueError(f"channels and blocks need four entries (C2..C5), not {len(channels)} and {len(blocks)}.")
        if min(blocks) < 1 or min(channels) < 4:
            raise ValueError("Every stage needs at least one block and four channels.")
        c = tuple(int(v) for v in channels)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c[0], 3, 2, 1, bias=False), _norm(c[0]), nn.ReLU(inplace=True),
                                  nn.Conv2d(c[0], c[0], 3, 2, 1, bias=False), _norm(c[0]), nn.ReLU(inplace=True))
        self.stage_2 = _stage(c[0], c[0], blocks[0], 1)
        self.stage_3 = _stage(c[0], c[1], blocks[1], 2)
        self.stage_4 = _stage(c[1], c[2], blocks[2], 2)
        self.stage_5 = _stage(c[2], c[3], blocks[3], 2)
        self.lateral = nn.ModuleList(nn.Conv2d(ch, fpn_channels, 1) for ch in c)
        self.output = nn.ModuleList(nn.Conv2d(fpn_channels, fpn_channels, 3, padding=1) for _ in c)
        self.out_channels = fpn_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c2 = self.stage_2(self.stem(x))
        c3 = self.stage_3(c2)
        c4 = self.stage_4(c3)
        c5 = self.stage_5(c4)
        top = self.lateral[3](c5)
        merged = [top]
        for lateral, c in zip((self.lateral[2], self.lateral[1], self.lateral[0]), (c4, c3, c2), strict=True):
            top = lateral(c) + F.interpolate(top, size=c.shape[-2:], mode="nearest")
            merged.insert(0, top)
        return [conv(p) for conv, p in zip(self.output, merged, strict=True)]
