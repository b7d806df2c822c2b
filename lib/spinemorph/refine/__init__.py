"""Stage 2 at native resolution: every body stage 1 found, cut from the full-resolution film, segmented again in its
own crop (about 0.2-0.3 mm per pixel) and pasted back into the input's geometry, so that heights, VCR and grades come
from outlines as precise as the film allows."""

from __future__ import annotations

from spinemorph.refine.crops import MARGIN, body_boxes, crop_inputs, normalised
from spinemorph.refine.stage import REFINER_FILE, Refinement, refine

__all__ = ["MARGIN", "body_boxes", "crop_inputs", "normalised", "REFINER_FILE", "Refinement", "refine"]
