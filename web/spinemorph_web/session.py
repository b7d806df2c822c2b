"""One annotator's session: the Slicer module's own Logic on trame-slicer's scene, views and segment editor.

No page code here: the trame app (``app``) calls these methods and shows what they return. The work itself (server
calls, segments named and coloured by level, measuring, submitting, training, exports) is ``SpineMorphLogic``, the
same class the Qt module uses; this file only adds what a browser needs: which node is shown and edited, the active
level, the brush, and undo.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
from trame_slicer.segmentation import SegmentationEffectErase, SegmentationEffectNoTool, SegmentationEffectPaint
from undo_stack import UndoStack

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "slicer_module" / "SpineMorph"))  # the module's Logic and SpineMorphLib
from SpineMorph import SpineMorphLogic  # noqa: E402

from spinemorph_web.paint_fix import look_up_paint_views  # noqa: E402

__all__ = ["WebSession", "TOOLS"]

log = logging.getLogger(__name__)

#: Brush names the page offers -> trame-slicer effect.
TOOLS = {"none": SegmentationEffectNoTool, "brush": SegmentationEffectPaint, "erase": SegmentationEffectErase}


class WebSession:
    """The annotation loop for one browser page, on a trame-slicer ``SlicerApp``.

    Args:
        slicer_app: trame-slicer's SlicerApp (scene, view manager, segmentation editor).
        workdir: where downloads, labels and exports go.
    """

    def __init__(self, slicer_app, workdir: str | Path) -> None:
        self.app = slicer_app
        self.logic = SpineMorphLogic(scene=slicer_app.scene, workdir=workdir)
        self.editor = slicer_app.segmentation_editor
        self.undo_stack = UndoStack(undo_limit=20)
        self.editor.set_undo_stack(self.undo_stack)
        look_up_paint_views(slicer_app.view_manager)
        self.volume = self.segmentation = None
        self.image_id, self.info = "", {}

    def connect(self, url: str, username: str = "", password: str = "") -> dict:
        """Return the server's name, models, strategies and trainers (see SpineMorphLogic.connect)."""
        self.info = self.logic.connect(url, username, password)
        return self.info

    def next_sample(self, strategy: str) -> str:
        """Show the next image the server picks by ``strategy``; return its image id."""
        return self._show(self.logic.nextSample(strategy))

    def load_sample(self, image_id: str) -> str:
        """Show the server's image ``image_id``; return it."""
        return self._show(self.logic.loadSample(image_id))

    def _show(self, volume) -> str:
        from SpineMorphLib.nodes import ATTR, remove_nodes

        self.editor.deactivate_effect()
        remove_nodes(self.app.scene, [self.volume, self.segmentation, *self.logic.measurement.lines])
        self.logic.measurement.clear()
        self.volume, self.segmentation = volume, None
        self.app.display_manager.show_volume_in_slice_background(volume)
        for view in self.app.view_manager.get_slice_views():  # a DICOM film lies in the axial plane, a NIfTI may not
            view.get_view_node().RotateToVolumePlane(volume)
        self.app.display_manager.reset_views()
        self.image_id = volume.GetAttribute(ATTR["image_id"])
        return self.image_id

    def auto_segment(self, model: str) -> list[str]:
        """Segment the shown image with the server's ``model``; return the level names, top to bottom."""
        if self.volume is None:
            raise ValueError("Fetch an image first: press Next sample.")
        self.segmentation = self.logic.autoSegment(self.volume, model, self.segmentation)
        self.editor.set_active_segmentation(self.segmentation, self.volume)
        return self.levels()

    def levels(self) -> list[str]:
        """Return the segment (level) names of the edited segmentation."""
        return self.editor.get_segment_names() if self.segmentation is not None else []

    def _segment_id(self, level: str) -> str:
        for segment_id, name in zip(self.editor.get_segment_ids(), self.editor.get_segment_names(), strict=True):
            if name == level:
                return segment_id
        raise ValueError(f"There is no segment {level!r}: choose one of {', '.join(self.levels()) or 'none'}.")

    def set_level(self, level: str) -> None:
        """Make ``level`` the segment the brush paints and the eraser clears."""
        self.editor.set_active_segment_id(self._segment_id(level))

    def set_tool(self, tool: str) -> None:
        """Choose the brush ("brush", "erase" or "none")."""
        if tool != "none" and self.segmentation is None:
            raise ValueError("Auto-segment first: there is no segmentation to edit.")
        if tool not in TOOLS:
            raise ValueError(f"Unknown tool {tool!r}: use one of {', '.join(TOOLS)}.")
        self.editor.set_active_effect_type(TOOLS[tool])

    def undo(self) -> bool:
        """Undo the last brush or eraser stroke; return whether one was undone."""
        if not self.undo_stack.can_undo():
            return False
        self.undo_stack.undo()
        return True

    def pixel_count(self, level: str) -> int:
        """Return how many pixels the segment ``level`` holds now."""
        mask = self.editor.get_segment_labelmap(self._segment_id(level), as_numpy_array=True)
        return int(np.count_nonzero(mask)) if mask is not None else 0

    def measure(self) -> tuple[list[str], list[list[str]], list[tuple[int, int, int]]]:
        """Measure the edited segmentation; return the table's (headers, rows, row colours) and draw the lines."""
        from SpineMorphLib.records import row_colors, table_headers, table_rows

        if self.segmentation is None:
            raise ValueError("Auto-segment first: there is nothing to measure.")
        self.logic.measure(self.segmentation, self.volume)
        result = self.logic.measurement.result
        return table_headers(result.unit), table_rows(result), row_colors(result)

    def flip_facing(self) -> str:
        """Set the shown film's facing to the other side (the annotator's call); return it."""
        if self.volume is None:
            raise ValueError("Fetch an image first: press Next sample.")
        return self.logic.flipFacing(self.volume)

    def shift_levels(self, steps: int) -> list[str]:
        """Rename every level ``steps`` down the spine (negative: up; S1 stays); return the new level names."""
        if self.segmentation is None:
            raise ValueError("Auto-segment first: there are no levels to shift.")
        self.logic.shiftLevels(self.segmentation, steps)
        return self.levels()

    def submit(self) -> str:
        """Send the edited segmentation as the image's final label; return the image id."""
        if self.segmentation is None:
            raise ValueError("Auto-segment first: there is no label to submit.")
        self.logic.submitLabel(self.segmentation, self.volume)
        return self.image_id

    def export(self, kind: str) -> Path:
        """Write the results as "csv" or the overlay as "png" into the work folder; return the file."""
        path = Path(self.logic.workdir) / "exports" / f"{self.image_id or 'results'}-morphometry.{kind}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "csv":
            return self.logic.exportCsv(path)
        if kind == "png":
            return self.logic.exportPng(path, self.volume, self.segmentation)
        raise ValueError(f"Unknown export {kind!r}: use csv or png.")
