"""Boxes: NMS against brute force, the IoU matcher and the RPN's ATSS anchor matching on hand-made boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinemorph.detection.boxes import IoUMatcher, clip_boxes, keep_large, masks_to_boxes, nms
from spinemorph.detection.rpn import RegionProposalNetwork
from spinemorph.evaluation.detection import box_iou_np


def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS written out: the best remaining box stays, every box of its group overlapping it more goes."""
    alive = list(np.argsort(-scores, kind="stable"))
    kept = []
    while alive:
        best = alive.pop(0)
        kept.append(int(best))
        alive = [i for i in alive
                 if groups[i] != groups[best] or box_iou_np(boxes[i], boxes[best])[0, 0] <= threshold]
    return kept


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 50, (60, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(4, 30, (60, 2))], axis=1).astype(np.float32)
    scores = rng.permutation(60).astype(np.float32) / 60  # distinct scores: one valid order
    groups = rng.integers(0, 3, 60)
    got = nms(torch.as_tensor(boxes), torch.as_tensor(scores), torch.as_tensor(groups), 0.4)
    want = brute_force_nms(boxes, scores, groups, 0.4)
    assert sorted(got.tolist()) == sorted(want)
    assert got.tolist() == want  # best first
    assert nms(torch.as_tensor(boxes), torch.as_tensor(scores), torch.as_tensor(groups), 0.4, 5).tolist() == want[:5]


def test_nms_of_nothing_is_nothing():
    assert nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).numel() == 0


def test_iou_matcher_on_hand_made_boxes():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 40.0]])
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],    # gt 0 exactly
        [0.0, 0.0, 10.0, 12.0],    # gt 0, IoU 0.83
        [22.0, 20.0, 30.0, 40.0],  # gt 1, IoU 0.8
        [0.0, 5.0, 10.0, 15.0],    # gt 0, IoU 1/3: between the thresholds
        [50.0, 50.0, 60.0, 60.0],  # nothing
    ])
    quality, matches = IoUMatcher(high=0.5, low=0.3)(gt, boxes, [len(boxes)], 1)
    assert quality.shape == (2, 5)
    assert matches.tolist() == [0, 0, 1, IoUMatcher.BETWEEN_THRESHOLDS, IoUMatcher.BELOW_LOW_THRESHOLD]
    _, matches = IoUMatcher(high=0.9, low=0.9, allow_low_quality=True)(gt, boxes, [len(boxes)], 1)
    assert matches.tolist() == [0, -1, 1, -1, -1]  # box 2 is gt 1's best: kept below the threshold
    _, none = IoUMatcher()(torch.zeros(0, 4), boxes, [len(boxes)], 1)
    assert none.tolist() == [-1] * 5
    with pytest.raises(ValueError, match="Thresholds"):
        IoUMatcher(high=0.3, low=0.5)


def test_atss_anchor_matching_on_hand_made_boxes():
    rpn = RegionProposalNetwork(8, anchor_sizes=(16, 32, 64, 128), aspect_ratios=(1.0,))
    image = torch.zeros(1, 1, 128, 128)
    features = [torch.zeros(1, 8, 128 // s, 128 // s) for s in (4, 8, 16, 32)]
    anchors = rpn.anchors(image, features)[0]
    locations = [f.shape[-2] * f.shape[-1] for f in features]
    assert anchors.shape == (sum(locations), 4)
    np.testing.assert_array_equal(anchors[0].numpy(), [-8, -8, 8, 8])  # the first P2 anchor, centred on (0, 0)
    gt = torch.tensor([[40.0, 40.0, 56.0, 56.0], [60.0, 4.0, 124.0, 68.0]])  # a 16 px and a 64 px body
    _, matches = rpn.matcher(gt, anchors, locations, 1)
    for g, side in enumerate((16, 64)):
        hit = torch.nonzero(matches == g).flatten()
        assert hit.numel() >= 1
        sides = anchors[hit, 2] - anchors[hit, 0]
        assert (sides == side).all(), f"box {g} matched anchors of sides {sides.tolist()}"
        centres = (anchors[hit, :2] + anchors[hit, 2:]) / 2
        assert ((centres >= gt[g, :2]) & (centres <= gt[g, 2:])).all()  # centres inside the box
    assert matches[12 * 32 + 12] == 0  # the P2 anchor centred on (48, 48), the small body's centre


def test_masks_to_boxes_clip_and_size_filter():
    masks = torch.zeros(3, 10, 12, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 9, 11] = True
    assert masks_to_boxes(masks).tolist() == [[2, 3, 5, 9], [9, 11, 10, 12], [0, 0, 0, 0]]
    clipped = clip_boxes(torch.tensor([[-5.0, 2.0, 20.0, 30.0]]), (10, 12))
    assert clipped.tolist() == [[0.0, 2.0, 10.0, 12.0]]
    assert keep_large(torch.tensor([[0.0, 0.0, 1.0, 5.0], [0.0, 0.0, 3.0, 3.0]]), 2.0).tolist() == [1]
