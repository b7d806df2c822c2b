"""Six-point vertebral morphometry, VCR and Genant grade from 2D labelmaps: pure numpy/scipy.

This package imports no Slicer, Qt, torch or MONAI, so 3D Slicer's Python can use it as it is.
"""

from __future__ import annotations

from spinemorph.measure.core import LANDMARK_HEIGHTS, in_image_order, measure, measure_radiograph
from spinemorph.measure.field import exposed_field
from spinemorph.measure.records import TABLE_COLUMNS, Morphometry, VertebraRecord

__all__ = ["measure", "measure_radiograph", "in_image_order", "LANDMARK_HEIGHTS", "Morphometry", "VertebraRecord",
           "TABLE_COLUMNS", "exposed_field"]
