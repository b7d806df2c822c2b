"""Losses of the papers: Dice (Kim 2021), Dice + BCE (the chest-radiograph U-Net), multi-class Dice + CE."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.losses import DiceCELoss, DiceLoss

__all__ = ["LOSSES", "build_loss"]

LOSSES = ("dice", "dicebce", "dicece")


def build_loss(name: str, head: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Return loss(logits (B, C, H, W), target (B, 1, H, W) of class indices) for a head.

    A network with side outputs (M-net) returns a dict in training mode; its loss is the mean of the side
    outputs' losses (Kim et al. 2019, equations (7)-(8)).
    """
    return _mean_over_sides(_loss(name, head))


def _mean_over_sides(loss: Callable) -> Callable:
    def apply(logits, target):
        if isinstance(logits, dict):
            return torch.stack([loss(side, target) for side in logits["sides"]]).mean()
        return loss(logits, target)
    return apply


def _loss(name: str, head: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}: use one of {', '.join(LOSSES)}.")
    if head == "binary":
        if name == "dicece":
            raise ValueError("dicece is the multi-class loss; use dice or dicebce with the binary head.")
        loss = DiceLoss(sigmoid=True) if name == "dice" else DiceCELoss(sigmoid=True)
        return lambda logits, target: loss(logits, target.float())
    if name == "dicebce":
        raise ValueError("dicebce is the binary loss; use dice or dicece with the per-level head.")
    loss = DiceLoss(softmax=True, to_onehot_y=True) if name == "dice" else DiceCELoss(softmax=True, to_onehot_y=True)
    return lambda logits, target: loss(logits, target)
