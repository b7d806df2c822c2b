"""Mask R-CNN's second-stage heads: the box head (two fully connected layers) and the mask head (a small FCN).

Both are class-agnostic in their geometry: one box regression and one mask per region, whatever its class, so
the masks learn from every vertebral body and not only from the few fractured ones. The box head's classifier
names the class: background (no fracture) or a fracture at one level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BoxHead", "MaskHead", "SemanticHead"]


class BoxHead(nn.Module):
    """RoI features (K, C, s, s) to class logits (K, 1 + classes) and box deltas (K, 4).

    Args:
        channels: pyramid channels.
        pool: RoIAlign output side.
        classes: foreground classes (fracture levels); class 0 is background.
        hidden: width of the two fully connected layers.
    """

    def __init__(self, channels: int, pool: int, classes: int, hidden: int = 256) -> None:
        super().__init__()
        if classes < 1:
            raise ValueError(f"The box head needs at least one foreground class, not {classes}.")
        self.fc_6 = nn.Linear(channels * pool * pool, hidden)
        self.fc_7 = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, classes + 1)
        self.regressor = nn.Linear(hidden, 4)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.normal_(self.regressor.weight, std=0.001)
        for layer in (self.classifier, self.regressor):
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.fc_6(x.flatten(1)))
        x = F.relu(self.fc_7(x))
        return self.classifier(x), self.regressor(x)


class MaskHead(nn.Module):
    """RoI features (K, C, s, s) to one mask logit map (K, 2s, 2s): 3×3 convolutions, a 2× deconvolution, 1×1."""

    def __init__(self, channels: int, hidden: int = 32, convs: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(convs):
            layers += [nn.Conv2d(channels if i == 0 else hidden, hidden, 3, padding=1),
                       nn.GroupNorm(min(8, hidden // 4) or 1, hidden), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.upsample = nn.ConvTranspose2d(hidden, hidden, 2, stride=2)
        self.logits = nn.Conv2d(hidden, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(F.relu(self.upsample(self.convs(x))))[:, 0]


class SemanticHead(nn.Module):
    """Per-level segmentation from the finest pyramid map: the backbone's pretraining task and auxiliary loss.

    Output: (B, classes, H, W) logits at the input's resolution (bilinear from stride 4).
    """

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.logits = nn.Conv2d(channels, classes, 1)

    def forward(self, finest: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        out = self.logits(F.relu(self.conv(finest)))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)
