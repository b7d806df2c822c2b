"""A measurement shown as MRML nodes: a table row and three draggable height lines per vertebra, kept in step.

Needs ``slicer`` (MRML only, no Qt), like ``nodes``: it runs in the application and with ``slicer-core``.
"""

from __future__ import annotations

import slicer
from slicer.util import VTKObservationMixin

from spinemorph.measure import Morphometry
from spinemorph.overlay import UNGRADED_COLOR
from SpineMorphLib import nodes
from SpineMorphLib.grid import PlaneGrid
from SpineMorphLib.markups import HeightLine, height_lines, move_line, records_with_points
from SpineMorphLib.records import review_order, row_colors, table_headers, table_rows

__all__ = ["MeasurementNodes"]


class MeasurementNodes(VTKObservationMixin):
    """Shows a Morphometry as a table node and line markups; moving a control point re-grades at once.

    Args:
        scene: the MRML scene to add the nodes to.
        onChange: called with (headers, rows, colours) whenever the values change (the widget's table), the rows
            in review order: the least sure vertebra first (``records.review_order``). The table node, the CSV and
            the report keep the spine's order.
    """

    def __init__(self, scene, onChange=None) -> None:
        super().__init__()
        self.scene, self.onChange = scene, onChange
        self.result: Morphometry | None = None
        self.grid: PlaneGrid | None = None
        self.table = None
        self.lines: list = []

    def show(self, result: Morphometry, grid: PlaneGrid):
        """Replace what is shown by ``result`` measured on ``grid``; return the table node."""
        self.clear()
        self.result, self.grid = result, grid
        if self.table is None or self.table.GetScene() is None:
            self.table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", "SpineMorph results")
        for line in height_lines(result, grid):
            node = nodes.add_height_line(self.scene, line, UNGRADED_COLOR)
            self.lines.append(node)
            self.addObserver(node, slicer.vtkMRMLMarkupsNode.PointModifiedEvent, self._onLineModified)
        self.refresh()
        return self.table

    def clear(self) -> None:
        """Remove the height lines (the table node stays, to be refilled)."""
        self.removeObservers(self._onLineModified)
        nodes.remove_nodes(self.scene, self.lines)
        self.lines = []

    def refresh(self) -> None:
        """Show the current records: table cells, line colours by grade, and the onChange callback."""
        headers, rows, colours = table_headers(self.result.unit), table_rows(self.result), row_colors(self.result)
        nodes.fill_table(self.table, headers, rows)
        by_level = {rec.level: colour for rec, colour in zip(self.result.vertebrae, colours, strict=True)}
        for node in self.lines:
            nodes.set_line_color(node, by_level[node.GetAttribute(nodes.ATTR["level"])])
        if self.onChange is not None:
            order = review_order(self.result)
            self.onChange(headers, [rows[i] for i in order], [colours[i] for i in order])

    def _onLineModified(self, caller, event) -> None:
        """A control point moved: recompute that height, re-grade every vertebra and show the new values."""
        level, station = caller.GetAttribute(nodes.ATTR["level"]), caller.GetAttribute(nodes.ATTR["station"])
        move_line(self.result, self.grid, level, station, *nodes.line_points(caller))
        self.refresh()

    def records(self, grid: PlaneGrid) -> list[dict]:
        """Return the records with their six points as the line nodes hold them now, in ``grid``'s pixels."""
        lines = [HeightLine(n.GetAttribute(nodes.ATTR["level"]), n.GetAttribute(nodes.ATTR["station"]),
                            *nodes.line_points(n)) for n in self.lines]
        return records_with_points(self.result, lines, grid)
