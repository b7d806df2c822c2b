"""A workaround for trame-slicer 2.0.0: the paint and erase brushes do nothing when clicked.

The segment editor creates effect pipelines while the views are still being built, so ``pipeline.SetView`` gets
None and ``SegmentationPaintPipeline.SetActive`` later fails with ``'NoneType' object has no attribute
'paint_interaction_stopped'`` (segmentation_paint_pipeline.py:71). Here the view is looked up from the pipeline's
view node when the pipeline is first activated. Remove this file once trame-slicer does that itself.

This app creates its one view before any effect is used, and there the bug did not show (the browser test paints
with the lookup switched off too); the lookup stays for orders that do hit it, such as trame-slicer's own apps.
"""

from __future__ import annotations

import logging

from trame_slicer.segmentation.segmentation_paint_pipeline import SegmentationPaintPipeline

__all__ = ["look_up_paint_views"]

log = logging.getLogger(__name__)


def look_up_paint_views(view_manager) -> None:
    """Make every paint/erase pipeline find its view through ``view_manager`` when first activated (idempotent)."""
    original = SegmentationPaintPipeline.SetActive
    if getattr(original, "_spinemorph_fix", False):
        return

    def set_active(self, is_active: bool):
        if is_active and getattr(self, "_view", None) is None and self.GetViewNode() is not None:
            self.SetView(view_manager.get_view(self.GetViewNode()))
            log.debug("SpineMorph web: paint pipeline given its view %s", self.GetViewNode().GetName())
        if is_active and getattr(self, "_view", None) is None:
            return  # a pipeline of a view not shown in this page: nothing to paint on
        return original(self, is_active)

    set_active._spinemorph_fix = True
    SegmentationPaintPipeline.SetActive = set_active
