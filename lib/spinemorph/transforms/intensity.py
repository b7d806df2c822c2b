"""Intensity: normalisation of 8-16-bit radiographs, and CLAHE with Gaussian smoothing (Kim et al. 2021)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.transforms import MapTransform, Transform
from scipy import ndimage
from skimage.exposure import equalize_adapthist

__all__ = ["NormalizeRadiograph", "NormalizeRadiographd", "ClaheGaussian", "ClaheGaussiand"]


def _numpy(img) -> np.ndarray:
    return img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)


class NormalizeRadiograph(Transform):
    """Map any bit depth to [0, 1] between the image's 0.5th and 99.5th percentiles (robust to 8, 12, 16 bits).

    Input and output: (C, H, W).
    """

    def __init__(self, lower: float = 0.5, upper: float = 99.5) -> None:
        if not 0 <= lower < upper <= 100:
            raise ValueError(f"Percentiles must satisfy 0 <= lower < upper <= 100, not {lower}, {upper}.")
        self.lower, self.upper = lower, upper

    def __call__(self, img):
        arr = _numpy(img).astype(np.float32)
        sample = arr[..., :: max(1, arr.shape[-2] // 512), :: max(1, arr.shape[-1] // 512)]
        lo, hi = np.percentile(sample, [self.lower, self.upper])
        arr -= lo  # in place, on astype's copy: the same float32 arithmetic without three more film-sized arrays
        arr /= max(float(hi - lo), 1e-6)
        return torch.as_tensor(np.clip(arr, 0.0, 1.0, out=arr))


class ClaheGaussian(Transform):
    """Contrast-limited adaptive histogram equalisation, then Gaussian smoothing, of a [0, 1] image (C, H, W).

    Args:
        clip_limit: CLAHE clip limit (skimage's convention, 0-1).
        tiles: tiles per side (the kernel is 1/tiles of the image).
        sigma: Gaussian sigma in pixels (0 skips smoothing).
    """

    def __init__(self, clip_limit: float = 0.01, tiles: int = 8, sigma: float = 1.0) -> None:
        if clip_limit <= 0 or tiles < 1 or sigma < 0:
            raise ValueError("clip_limit must be positive, tiles at least 1 and sigma non-negative.")
        self.clip_limit, self.tiles, self.sigma = clip_limit, tiles, sigma

    def __call__(self, img):
        arr = np.clip(_numpy(img).astype(np.float32), 0.0, 1.0)
        out = np.empty_like(arr)
        for c in range(arr.shape[0]):
            kernel = (max(arr.shape[1] // self.tiles, 8), max(arr.shape[2] // self.tiles, 8))
            eq = equalize_adapthist(arr[c], kernel_size=kernel, clip_limit=self.clip_limit).astype(np.float32)
            out[c] = ndimage.gaussian_filter(eq, self.sigma) if self.sigma > 0 else eq
        return torch.as_tensor(out)


class NormalizeRadiographd(MapTransform):
    """Dictionary version of ``NormalizeRadiograph``."""

    def __init__(self, keys, lower: float = 0.5, upper: float = 99.5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.op = NormalizeRadiograph(lower, upper)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


class ClaheGaussiand(MapTransform):
    """Dictionary version of ``ClaheGaussian``."""

    def __init__(self, keys, clip_limit: float = 0.01, tiles: int = 8, sigma: float = 1.0,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.op = ClaheGaussian(clip_limit, tiles, sigma)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d
