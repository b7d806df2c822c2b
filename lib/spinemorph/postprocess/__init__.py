"""Post-processing of predicted labelmaps: clean components and holes, one component per level, anatomical order,
and level names counted from the sacrum when it is in view."""

from __future__ import annotations

from spinemorph.postprocess.levels import LevelNaming, clean_binary, consistent_levels, level_positions, name_levels

__all__ = ["clean_binary", "consistent_levels", "level_positions", "name_levels", "LevelNaming"]
