"""Aspect-preserving resize with zero padding to a square (512² in Kim et al. 2021), and its exact inverse.

The forward transform scales the longer side to ``size``, keeps the aspect ratio and pads the rest with zeros,
centred. ``PadGeometry`` records the mapping; ``invert_pad`` takes a prediction (C, size, size) back to the
input's exact pixel grid: the padding is cropped and the rest resized to the input's (H, W).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from monai.transforms import MapTransform, Transform

__all__ = ["PadGeometry", "AspectPad", "AspectPadd", "invert_pad"]


@dataclass(frozen=True)
class PadGeometry:
    """Where an (H, W) input went in the padded square: resized to (h, w), placed at (top, left)."""

    shape: tuple[int, int]
    size: int
    resized: tuple[int, int]
    top: int
    left: int

    @classmethod
    def of(cls, shape: tuple[int, int], size: int) -> PadGeometry:
        """Return the geometry that fits ``shape`` into ``size``²."""
        h, w = int(shape[0]), int(shape[1])
        if h < 1 or w < 1:
            raise ValueError(f"Cannot resize an image of shape {shape}.")
        scale = size / max(h, w)
        rh, rw = max(1, min(size, round(h * scale))), max(1, min(size, round(w * scale)))
        return cls((h, w), size, (rh, rw), (size - rh) // 2, (size - rw) // 2)


def _resize(x: torch.Tensor, shape: tuple[int, int], mode: str) -> torch.Tensor:
    x = x.float()[None]
    if mode == "nearest":
        return F.interpolate(x, size=shape, mode="nearest-exact")[0]
    return F.interpolate(x, size=shape, mode=mode, align_corners=False, antialias=mode == "bilinear")[0]


class AspectPad(Transform):
    """Resize (C, H, W) so that the longer side is ``size``, keeping the aspect ratio, and zero-pad to size².

    ``mode`` is "bilinear" for images and "nearest" for labels. Returns the padded tensor; ``geometry()``
    gives the mapping for ``invert_pad``.
    """

    def __init__(self, size: int = 512, mode: str = "bilinear") -> None:
        if size < 16:
            raise ValueError(f"The padded size must be at least 16, not {size}.")
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"mode must be 'bilinear' or 'nearest', not {mode!r}.")
        self.size, self.mode = size, mode

    def __call__(self, img, geometry: PadGeometry | None = None):
        x = torch.as_tensor(img)
        g = geometry or PadGeometry.of(tuple(x.shape[-2:]), self.size)
        out = torch.zeros((x.shape[0], self.size, self.size), dtype=torch.float32)
        out[:, g.top:g.top + g.resized[0], g.left:g.left + g.resized[1]] = _resize(x, g.resized, self.mode)
        return out


def invert_pad(pred: torch.Tensor, geometry: PadGeometry | dict, mode: str = "bilinear") -> torch.Tensor:
    """Return a padded-square prediction (C, size, size) on the original (C, H, W) grid."""
    g = geometry if isinstance(geometry, PadGeometry) else PadGeometry(**{k: tuple(v) if isinstance(v, list) else v
                                                                          for k, v in geometry.items()})
    crop = pred[:, g.top:g.top + g.resized[0], g.left:g.left + g.resized[1]]
    return _resize(crop, g.shape, mode)


class AspectPadd(MapTransform):
    """Dictionary version of ``AspectPad``: the same geometry for every key, recorded under ``pad_geometry``."""

    def __init__(self, keys, size: int = 512, mode=("bilinear", "nearest"), allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        modes = (mode,) * len(self.keys) if isinstance(mode, str) else tuple(mode)
        self.ops = {k: AspectPad(size, m) for k, m in zip(self.keys, modes, strict=True)}
        self.size = size

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        first = next(self.key_iterator(d))
        g = PadGeometry.of(tuple(torch.as_tensor(d[first]).shape[-2:]), self.size)
        for key in self.key_iterator(d):
            d[key] = self.ops[key](d[key], g)
        d["pad_geometry"] = asdict(g)
        return d
