"""The region proposal network, from MONAI's detection blocks: anchors, ATSS matching, box coder, hard negatives.

Each pyramid level gets anchors of one size and three aspect ratios (``AnchorGenerator``, array order). In
training, anchors are matched to the ground-truth boxes with ATSS, a balanced set of positives and hard
negatives is sampled (``HardNegativeSampler``), and the loss is binary cross-entropy on objectness plus
smooth L1 on the encoded box deltas. Proposals are the top anchors per level, decoded, clipped, cleared of
tiny boxes and thinned by NMS within each level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.apps.detection.utils.anchor_utils import AnchorGenerator
from monai.apps.detection.utils.ATSS_matcher import ATSSMatcher
from monai.apps.detection.utils.box_coder import BoxCoder
from monai.apps.detection.utils.hard_negative_sampler import HardNegativeSampler
from torch import nn

from spinemorph.detection.boxes import clip_boxes, keep_large, nms

__all__ = ["RPNHead", "RegionProposalNetwork"]


class RPNHead(nn.Module):
    """A shared 3×3 convolution, then per anchor one objectness logit and four box deltas, at every level."""

    def __init__(self, channels: int, anchors_per_location: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness = nn.Conv2d(channels, anchors_per_location, 1)
        self.deltas = nn.Conv2d(channels, 4 * anchors_per_location, 1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        hidden = [F.relu(self.conv(f)) for f in features]
        return [self.objectness(h) for h in hidden], [self.deltas(h) for h in hidden]


def _flatten(logits: list[torch.Tensor], deltas: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (B, N) logits and (B, N, 4) deltas in the anchors' order: location-major, anchor shape inner."""
    b = logits[0].shape[0]
    flat_logits = torch.cat([x.permute(0, 2, 3, 1).reshape(b, -1) for x in logits], dim=1)
    flat_deltas = []
    for d in deltas:
        a, (h, w) = d.shape[1] // 4, d.shape[-2:]
        flat_deltas.append(d.view(b, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4))
    return flat_logits, torch.cat(flat_deltas, dim=1)


class RegionProposalNetwork(nn.Module):
    """Proposals from anchors at every pyramid level, and the RPN losses in training.

    Args:
        channels: channels of the pyramid maps.
        anchor_sizes: one anchor side (pixels) per level, finest first.
        aspect_ratios: width/height ratios (columns over rows) of the anchors at every location.
        pre_nms, post_nms: (training, inference) boxes kept per level before NMS, and per image after.
        nms_threshold: IoU above which a lower-scoring proposal of the same level is dropped.
        batch_per_image, positive_fraction: anchors sampled per image for the loss, and the share of positives.
    """

    def __init__(self, channels: int, anchor_sizes: Sequence[int] = (16, 32, 64, 128),
                 aspect_ratios: Sequence[float] = (0.7, 1.0, 1.4), pre_nms: tuple[int, int] = (300, 150),
                 post_nms: tuple[int, int] = (128, 64), nms_threshold: float = 0.7, batch_per_image: int = 256,
                 positive_fraction: float = 0.5, min_size: float = 2.0) -> None:
        super().__init__()
        ratios = tuple(float(r) for r in aspect_ratios)
        self.anchors = AnchorGenerator(sizes=tuple((int(s),) for s in anchor_sizes),
                                       aspect_ratios=(ratios,) * len(anchor_sizes), indexing="ij")
        self.head = RPNHead(channels, len(ratios))
        self.matcher = ATSSMatcher(num_candidates=4, center_in_gt=True)
        self.coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        # A pool far larger than the negatives makes the choice uniform (Faster R-CNN's balanced sampler): mining
        # the hardest anchors, the neighbours of the positives, stalls the RPN's learning.
        self.sampler = HardNegativeSampler(batch_per_image, positive_fraction, min_neg=batch_per_image // 2,
                                           pool_size=1e6)
        self.pre_nms, self.post_nms, self.nms_threshold, self.min_size = pre_nms, post_nms, nms_threshold, min_size

    def forward(self, images: torch.Tensor, features: list[torch.Tensor],
                targets: list[dict] | None = None) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Return the proposals (N_i, 4) of each image and, with ``targets``, the losses."""
        logits, deltas = _flatten(*self.head(features))
        anchors = self.anchors(images, features)[0]
        per_level = [f.shape[-2] * f.shape[-1] * self.head.objectness.out_channels for f in features]
        proposals = self._proposals(logits.detach(), deltas.detach(), anchors, per_level, images.shape[-2:])
        losses = {}
        if targets is not None:
            locations = [f.shape[-2] * f.shape[-1] for f in features]
            losses = self._losses(logits, deltas, anchors, locations, targets)
        return proposals, losses

    def _proposals(self, logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor, per_level: list[int],
                   size) -> list[torch.Tensor]:
        phase = 0 if self.training else 1
        pre, post = self.pre_nms[phase], self.post_nms[phase]
        out = []
        for b in range(logits.shape[0]):
            picked, levels = [], []
            for level, idx in enumerate(torch.arange(logits.shape[1], device=logits.device).split(per_level)):
                top = logits[b, idx].topk(min(pre, idx.numel())).indices
                picked.append(idx[top])
                levels.append(torch.full_like(top, level))
            sel, level = torch.cat(picked), torch.cat(levels)
            boxes = clip_boxes(self.coder.decode_single(deltas[b, sel], anchors[sel]), size)
            large = keep_large(boxes, self.min_size)
            boxes, scores, level = boxes[large], logits[b, sel][large], level[large]
            keep = nms(boxes, scores, level, self.nms_threshold, post)  # greedy: the first picks are the best
            out.append(boxes[keep])
        return out

    def _losses(self, logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor, locations: list[int],
                targets: list[dict]) -> dict[str, torch.Tensor]:
        labels, matched = [], []
        for target in targets:
            gt = target["boxes"]
            _, matches = self.matcher(gt, anchors, locations, self.head.objectness.out_channels)
            matches = matches.to(anchors.device)
            labels.append((matches >= 0).long() - (matches == ATSSMatcher.BETWEEN_THRESHOLDS).long())
            matched.append(gt[matches.clamp(min=0)] if gt.numel() else torch.zeros_like(anchors))
        positive, negative = self.sampler.select_samples_img_list(labels, list(torch.sigmoid(logits.detach())))
        pos, neg = torch.stack(positive).bool(), torch.stack(negative).bool()
        chosen = pos | neg
        sampled = max(int(chosen.sum()), 1)
        objectness = F.binary_cross_entropy_with_logits(logits[chosen], pos[chosen].float(), reduction="sum") / sampled
        if pos.any():
            encoded = torch.cat([self.coder.encode_single(m[p], anchors[p])
                                 for m, p in zip(matched, pos, strict=True) if p.any()])
            box = F.smooth_l1_loss(deltas[pos], encoded, beta=1 / 9, reduction="sum") / sampled
        else:
            box = deltas.sum() * 0.0
        return {"rpn_objectness": objectness, "rpn_box": box}
