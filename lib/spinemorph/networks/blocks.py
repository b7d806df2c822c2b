"""Building blocks of the papers' networks: recurrent residual units (R2U-Net), the multi-dilated stem (MDR2-UNet)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvNormAct", "RecurrentConv", "RRCNNBlock", "MultiDilatedResidualBlock", "Down", "UpCat"]


class ConvNormAct(nn.Sequential):
    """3×3 (or ``kernel``) convolution, instance norm, ReLU; ``dropout`` after the activation when > 0."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, dilation: int = 1,
                 dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel, padding=dilation * (kernel // 2), dilation=dilation),
            nn.InstanceNorm2d(out_channels, affine=True),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class RecurrentConv(nn.Module):
    """R2U-Net's recurrent convolution: x₁ = f(x), then x_{k+1} = f(x + x_k) for t steps, sharing f's weights.

    Args:
        channels: input and output channels.
        t: recurrence steps (2 in R2U-Net and MDR2-UNet).
    """

    def __init__(self, channels: int, t: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if t < 1:
            raise ValueError(f"The recurrence t must be at least 1, not {t}.")
        self.t = t
        self.conv = ConvNormAct(channels, channels, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        for _ in range(self.t):
            out = self.conv(x + out)
        return out


class RRCNNBlock(nn.Module):
    """Recurrent residual convolutional unit: 1×1 to ``out_channels``, two recurrent convolutions, plus the shortcut."""

    def __init__(self, in_channels: int, out_channels: int, t: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.project = nn.Conv2d(in_channels, out_channels, 1)
        self.recurrent = nn.Sequential(RecurrentConv(out_channels, t, dropout), RecurrentConv(out_channels, t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        return x + self.recurrent(x)


class MultiDilatedResidualBlock(nn.Module):
    """The MDR block of Kim et al. 2021: dilated convolutions (rates 2, 4, 8, 16) in parallel, concatenated,
    a 1×1 bottleneck, and a residual shortcut. It sees wide context at full resolution, at the input.
    """

    def __init__(self, in_channels: int, out_channels: int, rates: tuple[int, ...] = (2, 4, 8, 16)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(ConvNormAct(in_channels, out_channels, dilation=r) for r in rates)
        self.bottleneck = nn.Sequential(nn.Conv2d(out_channels * len(rates), out_channels, 1),
                                        nn.InstanceNorm2d(out_channels, affine=True))
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.bottleneck(torch.cat([branch(x) for branch in self.branches], dim=1))
        return self.act(fused + self.shortcut(x))


class Down(nn.Sequential):
    """Max-pool by 2, then a recurrent residual unit."""

    def __init__(self, in_channels: int, out_channels: int, t: int = 2, dropout: float = 0.0) -> None:
        super().__init__(nn.MaxPool2d(2), RRCNNBlock(in_channels, out_channels, t, dropout))


class UpCat(nn.Module):
    """Upsample by 2 (transposed convolution), concatenate the encoder's skip, then a recurrent residual unit."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, t: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.block = RRCNNBlock(out_channels + skip_channels, out_channels, t, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))
