"""The pure-torch RoIAlign against a brute-force transcription of torchvision's algorithm (aligned=True)."""

from __future__ import annotations

import math

import pytest
import torch

from spinemorph.detection.roi_align import MultiScaleRoIAlign, roi_align


def bilinear(fmap: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """torchvision's bilinear_interpolate: zero beyond one pixel outside, the edge value within it."""
    h, w = fmap.shape[-2:]
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return torch.zeros(fmap.shape[0], dtype=fmap.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * fmap[:, y0, x0] + (1 - ly) * lx * fmap[:, y0, x1] + ly * (1 - lx) * fmap[:, y1, x0]
            + ly * lx * fmap[:, y1, x1])


def reference(features: torch.Tensor, rois: torch.Tensor, size: int, scale: float, ratio: int) -> torch.Tensor:
    """Brute force: every bin of every RoI, every sample, one at a time."""
    out = torch.zeros(len(rois), features.shape[1], size, size, dtype=features.dtype)
    for k, (b, r0, c0, r1, c1) in enumerate(rois.tolist()):
        r0, c0, r1, c1 = r0 * scale - 0.5, c0 * scale - 0.5, r1 * scale - 0.5, c1 * scale - 0.5
        bin_h, bin_w = (r1 - r0) / size, (c1 - c0) / size
        for i in range(size):
            for j in range(size):
                acc = torch.zeros(features.shape[1], dtype=features.dtype)
                for iy in range(ratio):
                    for ix in range(ratio):
                        y = r0 + i * bin_h + (iy + 0.5) * bin_h / ratio
                        x = c0 + j * bin_w + (ix + 0.5) * bin_w / ratio
                        acc += bilinear(features[int(b)], y, x)
                out[k, :, i, j] = acc / ratio**2
    return out


@pytest.mark.parametrize(("scale", "ratio"), [(1.0, 2), (0.25, 2), (0.5, 1), (0.125, 3)])
def test_roi_align_matches_the_brute_force_reference(scale, ratio):
    torch.manual_seed(0)
    features = torch.randn(2, 3, 13, 17, dtype=torch.float64)
    size = 1 / scale
    rois = torch.tensor([
        [0, 2.0, 3.0, 9.5, 12.0],        # inside
        [1, 0.0, 0.0, 13 * size, 17 * size],  # the whole map
        [0, -3 * size, -2 * size, 4.0, 5.0],  # hanging off the top left: zeros and edge values
        [1, 10 * size, 14 * size, 16 * size, 21 * size],  # off the bottom right
        [0, 5.0, 5.0, 5.2, 5.3],        # smaller than a pixel
    ], dtype=torch.float64)
    got = roi_align(features, rois, 4, spatial_scale=scale, sampling_ratio=ratio)
    torch.testing.assert_close(got, reference(features, rois, 4, scale, ratio), atol=1e-10, rtol=1e-10)


def test_roi_align_of_a_ramp_is_each_bins_centre():
    rows = torch.arange(32, dtype=torch.float64)[:, None].expand(32, 32)
    features = torch.stack([rows, rows.T])[None]  # channel 0 = row index, channel 1 = column index
    got = roi_align(features, torch.tensor([[0, 8.0, 4.0, 24.0, 12.0]], dtype=torch.float64), (4, 2))
    centres_r = 8 + (torch.arange(4) + 0.5) * 4 - 0.5  # pixel i's centre is at i + 0.5 in box coordinates
    centres_c = 4 + (torch.arange(2) + 0.5) * 4 - 0.5
    torch.testing.assert_close(got[0, 0, :, 0], centres_r.double())
    torch.testing.assert_close(got[0, 1, 0, :], centres_c.double())


def test_roi_align_passes_gradients_and_handles_no_rois():
    features = torch.randn(1, 2, 8, 8, requires_grad=True)
    roi_align(features, torch.tensor([[0, 1.0, 1.0, 6.0, 7.0]]), 3).sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert roi_align(features, torch.zeros(0, 5), 3).shape == (0, 2, 3, 3)
    with pytest.raises(ValueError, match="rois must be"):
        roi_align(features, torch.zeros(3, 4), 3)


def test_multiscale_roi_align_picks_the_level_by_box_size():
    pool = MultiScaleRoIAlign((4, 8, 16, 32), 7, canonical_size=48, canonical_level=3)
    boxes = torch.tensor([[0, 0, 20, 20], [0, 0, 48, 48], [0, 0, 100, 100], [0, 0, 400, 400]], dtype=torch.float32)
    assert pool.assign(boxes).tolist() == [0, 1, 2, 3]  # P2, P3, P4, P5 (clamped)
    features = [torch.full((1, 1, 64 // s, 64 // s), float(s)) for s in (4, 8, 16, 32)]
    out = pool(features, [boxes[:2] / 2])
    assert out[0].unique().tolist() == [4.0] and out[1].unique().tolist() == [4.0]  # both small: P2
    assert math.isclose(float(pool(features, [boxes[2:3] / 1.5])[0].mean()), 8.0)
