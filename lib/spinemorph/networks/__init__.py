"""The papers' segmentation networks, built through one factory: ``build_network(name, **kwargs)``.

Registered: ``mdr2unet`` (Kim et al. 2021), ``r2unet`` (Alom et al. 2018) and ``unet`` (MONAI's UNet), each
with a binary body head (``out_channels=1``), a per-level head (background + T1..L5, ``heads.LEVEL_CLASSES``) or
an anchored one (the per-level classes + S1, ``heads.ANCHORED_CLASSES``).
"""

from __future__ import annotations

from spinemorph.networks.factory import NETWORKS, build_network, count_parameters, mc_dropout
from spinemorph.networks.heads import (
    ANCHORED_CLASSES,
    LEVEL_CLASSES,
    class_to_code,
    code_to_class,
    head_channels,
    head_classes,
    is_level_head,
)

__all__ = ["NETWORKS", "build_network", "count_parameters", "mc_dropout", "LEVEL_CLASSES", "ANCHORED_CLASSES",
           "class_to_code", "code_to_class", "head_channels", "head_classes", "is_level_head"]
