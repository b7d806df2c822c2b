"""Post-processing of predicted labelmaps: clean components and holes, one component per level, anatomical order,
level names counted from the sacrum when it is in view, and bodies stage 1 merged cut apart for stage 2."""

from __future__ import annotations

from spinemorph.postprocess.levels import LevelNaming, clean_binary, consistent_levels, level_positions, name_levels
from spinemorph.postprocess.split import split_merged

__all__ = ["clean_binary", "consistent_levels", "level_positions", "name_levels", "LevelNaming", "split_merged"]
