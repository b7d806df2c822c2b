"""Training augmentation: rotation ±15°, crop and scale, contrast, and a flip of the facing side."""

from __future__ import annotations

from monai.transforms import Compose, RandAdjustContrastd, RandAffined, RandFlipd, RandScaleIntensityd

__all__ = ["train_augmentation"]


def train_augmentation(keys=("image", "label"), rotate_deg: float = 15.0, scale: float = 0.15) -> Compose:
    """Return the random transforms applied to (C, H, W) image/label pairs during training only."""
    image, label = keys
    return Compose([
        RandAffined(keys=list(keys), prob=0.8, rotate_range=(rotate_deg * 3.14159265 / 180,),
                    scale_range=((-scale, scale), (-scale, scale)), translate_range=(0.08, 0.08),
                    mode=("bilinear", "nearest"), padding_mode="zeros"),  # rotation, crop and scale
        RandFlipd(keys=list(keys), prob=0.5, spatial_axis=1),  # the other facing side
        RandAdjustContrastd(keys=[image], prob=0.5, gamma=(0.7, 1.5)),
        RandScaleIntensityd(keys=[image], prob=0.3, factors=0.15),
    ])
