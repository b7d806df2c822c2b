"""The app's models, registered explicitly: the shipped per-level default and the papers' baselines."""

from __future__ import annotations

from lib.configs.segmentation import SegmentationConfig

__all__ = ["SegmentationConfig", "CONFIGS"]

#: name -> (network, head, bundle folder under sample-apps/ or None). Baselines serve only once weights exist; a level
#: model's head ("levels" or "anchored") is read from the weights it serves.
CONFIGS: dict[str, tuple[str, str, str | None]] = {
    "spinemorph_levels": ("r2unet", "levels", "spinemorph_levels"),
    "mdr2unet": ("mdr2unet", "binary", None),
    "r2unet": ("r2unet", "binary", None),
    "unet": ("unet", "binary", None),
}
