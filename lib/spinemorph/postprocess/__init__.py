"""Post-processing of predicted labelmaps: clean components and holes, one component per level, anatomical order."""

from __future__ import annotations

from spinemorph.postprocess.levels import clean_binary, consistent_levels, level_positions

__all__ = ["clean_binary", "consistent_levels", "level_positions"]
