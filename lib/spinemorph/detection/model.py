"""The compression-fracture instance model (Paik et al. 2024's Mask R-CNN, sized for CPU) and its spec.

``build_detector(levels="all")`` returns a ``VcfMaskRCNN``: ``ResNetFPN`` backbone, region proposal network,
RoIAlign, box and mask heads, plus a per-level segmentation head on P2 (the backbone's pretraining task, kept
as an auxiliary loss). Its classes are fractures by level: T4-L5 ("all", 14 classes) or the paper's T11, T12
and L1-L4 ("paper", 6 classes). It is not in ``spinemorph.networks.NETWORKS``: that factory builds dense
networks whose output is a tensor; this one returns losses in training and detections in inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from spinemorph.detection.backbone import STRIDES, ResNetFPN
from spinemorph.detection.heads import SemanticHead
from spinemorph.detection.roi_heads import RoIHeads
from spinemorph.detection.rpn import RegionProposalNetwork
from spinemorph.levels import level_code, level_name
from spinemorph.networks import LEVEL_CLASSES
from spinemorph.transforms import Preprocessing

__all__ = ["LEVEL_SETS", "DetectorSpec", "VcfMaskRCNN", "build_detector"]

#: The detector's classes: fractured vertebrae by level, as VerSe codes; class i + 1 is code LEVEL_SETS[...][i].
LEVEL_SETS: dict[str, tuple[int, ...]] = {
    "all": tuple(range(level_code("T4"), level_code("L5") + 1)),
    "paper": tuple(level_code(n) for n in ("T11", "T12", "L1", "L2", "L3", "L4")),
}


@dataclass(frozen=True)
class DetectorSpec:
    """How to rebuild the detector and feed it; stored with every checkpoint and bundle.

    Args:
        levels: "all" (T4-L5) or "paper" (T11-L4).
        channels, blocks, fpn_channels: backbone size.
        anchor_sizes, aspect_ratios: one anchor side per pyramid level; anchor width/height ratios.
        semantic: keep the per-level segmentation head (pretraining task and auxiliary loss).
        box_hidden: width of the box head's two fully connected layers.
        preprocessing: the input pipeline; its size must be a multiple of 32.
    """

    levels: str = "all"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    fpn_channels: int = 64
    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128)
    aspect_ratios: tuple[float, ...] = (0.7, 1.0, 1.4)
    semantic: bool = True
    box_hidden: int = 256
    preprocessing: Preprocessing = field(default_factory=lambda: Preprocessing(size=320))

    def __post_init__(self) -> None:
        if self.levels not in LEVEL_SETS:
            raise ValueError(f"Unknown level set {self.levels!r}: use one of {', '.join(LEVEL_SETS)}.")
        if self.preprocessing.size % 32:
            raise ValueError(f"The detector's input size must be a multiple of 32, not {self.preprocessing.size}.")

    @property
    def codes(self) -> tuple[int, ...]:
        """Return the VerSe code of each foreground class, in class order (class 1 first)."""
        return LEVEL_SETS[self.levels]

    @property
    def class_names(self) -> dict[str, str]:
        """Return the classes by index, for a bundle's channel_def: background, then "L1 fracture", ..."""
        return {"0": "background (no fracture)", **{str(i + 1): f"{level_name(c)} fracture"
                                                     for i, c in enumerate(self.codes)}}

    def build(self) -> VcfMaskRCNN:
        """Return a freshly initialised detector of this spec."""
        return VcfMaskRCNN(len(self.codes), self.channels, self.blocks, self.fpn_channels, self.anchor_sizes,
                           self.aspect_ratios, self.semantic, self.box_hidden)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> DetectorSpec:
        """Return the spec a ``to_dict`` wrote."""
        d = dict(d)
        pre = Preprocessing(**d.pop("preprocessing", {}))
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}, preprocessing=pre)


class VcfMaskRCNN(nn.Module):
    """Mask R-CNN for vertebral compression fractures: every class is a fracture at one level.

    Args:
        classes: foreground classes.
        channels, blocks, fpn_channels: backbone size (``ResNetFPN``).
        anchor_sizes, aspect_ratios: RPN anchors.
        semantic: add the per-level segmentation head on P2.
        box_hidden: width of the box head's fully connected layers.

    ``forward(images (B, 1, S, S), targets)`` returns a dict of losses; in eval mode ``forward(images)``
    returns one dict per image: boxes (N, 4, row0 col0 row1 col1), scores (N,), classes (N, 1-based),
    masks (N, 28, 28) probabilities over each box and, with the semantic head, semantic (H, W) level classes;
    ``forward(images, masks=False)``: boxes, scores and classes alone (the mask and semantic heads skipped).
    A target holds boxes (M, 4), classes (M,: class, 0 normal body, -1 ignore), masks (M, S, S) and, for the
    semantic head, semantic (S, S) level classes.

    Example::

        net = build_detector("all").eval()
        detections = net(torch.zeros(1, 1, 320, 320))[0]
    """

    def __init__(self, classes: int, channels=(16, 32, 64, 128), blocks=(2, 2, 2, 2), fpn_channels: int = 64,
                 anchor_sizes=(16, 32, 64, 128), aspect_ratios=(0.7, 1.0, 1.4), semantic: bool = True,
                 box_hidden: int = 256) -> None:
        super().__init__()
        if len(anchor_sizes) != len(STRIDES):
            raise ValueError(f"anchor_sizes needs one side per pyramid level ({len(STRIDES)}), not {anchor_sizes}.")
        self.backbone = ResNetFPN(1, channels, blocks, fpn_channels)
        self.rpn = RegionProposalNetwork(fpn_channels, anchor_sizes, aspect_ratios)
        self.roi_heads = RoIHeads(fpn_channels, classes, STRIDES, box_hidden=box_hidden)
        self.semantic = SemanticHead(fpn_channels, len(LEVEL_CLASSES)) if semantic else None

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None, masks: bool = True):
        if images.ndim != 4 or images.shape[-1] % 32 or images.shape[-2] % 32:
            raise ValueError(f"Images must be (B, 1, H, W) with H and W multiples of 32, not {tuple(images.shape)}.")
        if self.training and targets is None:
            raise ValueError("In training mode the detector needs targets; call .eval() to detect.")
        features = self.backbone(images)
        proposals, losses = self.rpn(images, features, targets)
        detections, roi_losses = self.roi_heads(features, proposals, tuple(images.shape[-2:]), targets, masks)
        if targets is None:
            # every body's level: the neighbours a detected mask is graded among
            if self.semantic is not None and masks:
                levels = self.semantic(features[0], tuple(images.shape[-2:])).argmax(1).to(torch.uint8)
                for detection, level in zip(detections, levels, strict=True):
                    detection["semantic"] = level
            return detections
        losses.update(roi_losses)
        if self.semantic is not None and all("semantic" in t for t in targets):
            losses["semantic"] = self.semantic_loss(features, targets)
        return losses

    def semantic_loss(self, features: list[torch.Tensor], targets: list[dict]) -> torch.Tensor:
        """Return the per-level segmentation cross-entropy of the P2 head against the targets' semantic maps."""
        if self.semantic is None:
            raise ValueError("This detector was built without the semantic head (semantic=False).")
        truth = torch.stack([t["semantic"] for t in targets]).long()
        return F.cross_entropy(self.semantic(features[0], tuple(truth.shape[-2:])), truth)


def build_detector(levels: str = "all", **kwargs) -> VcfMaskRCNN:
    """Return the fracture detector for level set ``levels`` ("all" or "paper"); kwargs go to ``DetectorSpec``."""
    return DetectorSpec(levels=levels, **kwargs).build()
