"""Stage 2 at native resolution: every body stage 1 found, cut from the full-resolution film, segmented again in its
own crop (about 0.2-0.3 mm per pixel) and pasted back into the input's geometry (and, as an option, its six points
placed by a landmark network on the same crop), so that heights, VCR and grades are as precise as the film allows.
The names load on first use (``spinemorph.lazy``)."""

from __future__ import annotations

from spinemorph.lazy import lazy_names

__all__, __getattr__, __dir__ = lazy_names(__name__, {
    "crops": ["MARGIN", "body_boxes", "crop_inputs", "normalised"],
    "stage": ["REFINER_FILE", "Refinement", "refine"],
    "landmarks": ["LANDMARKS_FILE", "POINTS", "Landmarks", "find_landmarks", "load_landmarks", "save_landmarks"],
})
