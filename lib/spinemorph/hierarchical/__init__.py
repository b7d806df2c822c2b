"""The hierarchical pipeline of Kim et al. 2019: Pose-net finds the vertebral centres, M-net segments a patch
around each, a level set refines each mask, and the masks go back into one labelmap in VerSe codes.

Stages, each usable on its own: ``targets`` (centres and confidence maps from labelmaps), ``centres`` (centres
from a confidence map, and their levels), ``boxes`` (equation (6), patches and back), ``levelset`` (ITK
refinement), ``pipeline`` (all of it on one radiograph), ``training`` (both stages' training).
"""

from __future__ import annotations
