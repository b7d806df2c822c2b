"""The annotator's one-click corrections, as the Logic's methods: flip the facing, rename every level one up or down.

``Corrections`` is a part of ``SpineMorphLogic`` (the module file keeps the template's five parts). It uses the
Logic's ``scene`` and ``measurement``. MRML, no Qt.
"""

from __future__ import annotations

import json

__all__ = ["Corrections"]


class Corrections:
    """Flip the facing of an image; shift the level names of a segmentation or labelmap."""

    def flipFacing(self, volume) -> str:
        """Set ``volume``'s facing to the other side (the annotator's call, recorded as such); return it."""
        from SpineMorphLib import nodes

        result = self.measurement.result
        return nodes.flip_facing(volume, result.facing if result is not None else None)

    def shiftLevels(self, labels, steps: int) -> dict:
        """Move every level of a segmentation or labelmap node ``steps`` down the spine (negative: up); return
        old code -> new code. S1, the anchor, stays."""
        from SpineMorphLib import nodes

        if labels is None:
            raise ValueError("Choose the segmentation whose levels to shift.")
        mapping = nodes.shift_levels(self.scene, labels, steps)
        labels.SetAttribute(nodes.ATTR["naming"], json.dumps({"anchor": "annotator", "level_uncertain": False}))
        return mapping
