"""The second stage: RoIAlign on the proposals, the box and mask heads, their targets, losses and detections.

In training each image's proposals (plus its ground-truth boxes) are matched to the ground truth at IoU 0.5
(``IoUMatcher``). A region matched to a body takes that body's class: its fracture level, background for a
normal body, or "ignore" (-1) for a fracture the classes do not cover or the image edge cuts. Positives and
hard negatives are sampled with MONAI's ``HardNegativeSampler`` (normal bodies are the hard negatives); box
and mask losses use every sampled region that lies on a body.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.apps.detection.utils.box_coder import BoxCoder
from monai.apps.detection.utils.hard_negative_sampler import HardNegativeSampler
from torch import nn

from spinemorph.detection.boxes import IoUMatcher, clip_boxes, keep_large, nms
from spinemorph.detection.heads import BoxHead, MaskHead
from spinemorph.detection.roi_align import MultiScaleRoIAlign, roi_align

__all__ = ["RoIHeads"]

IGNORE = -1


class RoIHeads(nn.Module):
    """Box classification and regression, and masks, for the proposals of each image.

    Args:
        channels: pyramid channels.
        classes: foreground classes.
        strides: strides of the pyramid maps.
        box_pool, mask_pool: RoIAlign sides of the two heads (the mask comes out at twice ``mask_pool``).
        batch_per_image, positive_fraction: regions sampled per image for the classification loss.
        jitter: randomly shifted copies of each ground-truth box added to the regions in training, so that a
            fracture has positives before the RPN has learned to propose it.
        score_threshold, nms_threshold, detections_per_image: inference.
        box_hidden: width of the box head's fully connected layers.
    """

    def __init__(self, channels: int, classes: int, strides: Sequence[int], box_pool: int = 7, mask_pool: int = 14,
                 batch_per_image: int = 64, positive_fraction: float = 0.25, masks_per_image: int = 24, jitter: int = 4,
                 score_threshold: float = 0.05, nms_threshold: float = 0.5, detections_per_image: int = 50,
                 box_hidden: int = 256) -> None:
        super().__init__()
        self.classes = classes
        self.box_pool = MultiScaleRoIAlign(strides, box_pool)
        self.mask_pool = MultiScaleRoIAlign(strides, mask_pool)
        self.box_head = BoxHead(channels, box_pool, classes, box_hidden)
        self.mask_head = MaskHead(channels)
        self.matcher = IoUMatcher(0.5, 0.5)
        self.coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.sampler = HardNegativeSampler(batch_per_image, positive_fraction, min_neg=batch_per_image // 2,
                                           pool_size=8)
        self.masks_per_image, self.jitter = masks_per_image, jitter
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.detections_per_image = detections_per_image

    def forward(self, features: list[torch.Tensor], proposals: list[torch.Tensor], size: tuple[int, int],
                targets: list[dict] | None = None, masks: bool = True) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """Return the detections of each image (inference; ``masks=False``: boxes, scores and classes alone) or the
        second-stage losses (with ``targets``)."""
        if targets is not None:
            return [], self._losses(features, proposals, targets)
        return self._detect(features, proposals, size, masks), {}

    def _jittered(self, gt: torch.Tensor) -> torch.Tensor:
        """Return ``jitter`` copies of each box, shifted and scaled by up to 10 % of its size: early positives."""
        if self.jitter < 1 or gt.numel() == 0:
            return gt[:0]
        boxes = gt.repeat(self.jitter, 1)
        sides = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        return boxes + (torch.rand_like(boxes) - 0.5) * 0.2 * sides

    def _match(self, proposals: torch.Tensor, target: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the regions (proposals, ground truth, jittered ground truth), their body (-1: none), their class."""
        gt = target["boxes"]
        regions = torch.cat([proposals, gt, self._jittered(gt)])
        if gt.numel() == 0:
            body = torch.full((len(regions),), -1, dtype=torch.long, device=regions.device)
            return regions, body, torch.zeros_like(body)
        _, body = self.matcher(gt, regions, [len(regions)], 1)
        body = body.to(regions.device)
        labels = torch.where(body >= 0, target["classes"][body.clamp(min=0)], torch.zeros_like(body))
        return regions, body, labels

    def _losses(self, features: list[torch.Tensor], proposals: list[torch.Tensor],
                targets: list[dict]) -> dict[str, torch.Tensor]:
        matched = [self._match(p.detach(), t) for p, t in zip(proposals, targets, strict=True)]
        with torch.no_grad():  # hard negatives: score every region once, then learn from the sampled ones only
            scores, _ = self.box_head(self.box_pool(features, [m[0] for m in matched]))
            fg = (1.0 - torch.softmax(scores, dim=1)[:, 0]).split([len(m[0]) for m in matched])
        positive, negative = self.sampler.select_samples_img_list([m[2] for m in matched], list(fg))
        sampled = []
        for (regions, body, labels), p, n in zip(matched, positive, negative, strict=True):
            idx = torch.nonzero(p.bool() | n.bool()).flatten()
            sampled.append((regions[idx], body[idx], labels[idx]))
        regions = [s[0] for s in sampled]
        logits, deltas = self.box_head(self.box_pool(features, regions))
        labels, body = torch.cat([s[2] for s in sampled]), torch.cat([s[1] for s in sampled])
        count = max(len(labels), 1)
        cls = F.cross_entropy(logits, labels, ignore_index=IGNORE) if (labels != IGNORE).any() else logits.sum() * 0
        on_body = body >= 0
        if on_body.any():
            gt = torch.cat([t["boxes"][s[1].clamp(min=0)] if t["boxes"].numel() else s[0]
                            for t, s in zip(targets, sampled, strict=True)])
            target = self.coder.encode_single(gt[on_body], torch.cat(regions)[on_body])
            box = F.smooth_l1_loss(deltas[on_body], target, beta=1 / 9, reduction="sum") / count
        else:
            box = deltas.sum() * 0.0
        mask = self._mask_loss(features, sampled, targets)
        return {"roi_class": cls, "roi_box": box, "roi_mask": mask}

    def _mask_loss(self, features, sampled, targets) -> torch.Tensor:
        boxes, rois, masks = [], [], []
        offset = 0
        for (regions, body, _), target in zip(sampled, targets, strict=True):
            idx = torch.nonzero(body >= 0).flatten()[: self.masks_per_image]
            boxes.append(regions[idx])
            if idx.numel():
                rois.append(torch.cat([(body[idx] + offset)[:, None].to(regions), regions[idx]], dim=1))
                masks.append(target["masks"])
                offset += len(target["masks"])
        if not rois:
            return sum(f.sum() for f in features) * 0.0
        logits = self.mask_head(self.mask_pool(features, boxes))
        side = logits.shape[-1]
        truth = roi_align(torch.cat(masks)[:, None].float(), torch.cat(rois), side, 1.0, 2)[:, 0] >= 0.5
        return F.binary_cross_entropy_with_logits(logits, truth.float())

    @torch.no_grad()
    def _detect(self, features: list[torch.Tensor], proposals: list[torch.Tensor], size, masks: bool = True
                ) -> list[dict]:
        logits, deltas = self.box_head(self.box_pool(features, proposals))
        probs = torch.softmax(logits, dim=1)
        boxes = clip_boxes(self.coder.decode_single(deltas, torch.cat(proposals)), size) if len(probs) else deltas
        out = []
        for p, b in zip(probs.split([len(x) for x in proposals]), boxes.split([len(x) for x in proposals]),
                        strict=True):
            scores = p[:, 1:].reshape(-1)
            classes = torch.arange(1, self.classes + 1, device=p.device).repeat(len(p))
            b = b.repeat_interleave(self.classes, dim=0)
            keep = torch.nonzero(scores > self.score_threshold).flatten()
            keep = keep[keep_large(b[keep], 1.0)]
            keep = keep[nms(b[keep], scores[keep], classes[keep], self.nms_threshold)]
            keep = keep[scores[keep].argsort(descending=True)][: self.detections_per_image]
            out.append({"boxes": b[keep], "scores": scores[keep], "classes": classes[keep]})
        if not masks:
            return out
        masks = self.mask_head(self.mask_pool(features, [o["boxes"] for o in out])) if any(
            len(o["boxes"]) for o in out) else features[0].new_zeros((0, 1, 1))
        for o, m in zip(out, masks.sigmoid().split([len(o["boxes"]) for o in out]), strict=True):
            o["masks"] = m
        return out
