"""The results as files, as the Logic's methods: a SpineMorph DICOM SR shown again; the table as CSV, a per-patient
text report and an overlay PNG written.

``ResultFiles`` is a part of ``SpineMorphLogic`` (the module file keeps the template's five parts). It uses the
Logic's ``scene``, ``measurement`` (the table and height lines as the annotator left them) and ``lastInfer``. MRML,
no Qt.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

__all__ = ["ResultFiles", "WorkFolder"]


class WorkFolder:
    """Where downloads, the server's labels and the labels sent go: ``given``, the caller's, which stays; else a new
    temporary ``SpineMorph-*`` folder of one Slicer session, copies of what the server holds, removed by ``close()``
    or at Python's exit."""

    def __init__(self, given: str | Path | None = None) -> None:
        self.path = Path(given or tempfile.mkdtemp(prefix="SpineMorph-"))
        self._remove = None if given else weakref.finalize(self, shutil.rmtree, self.path, True)

    def close(self) -> None:
        """Remove the folder when it is this object's own."""
        if self._remove is not None:
            self._remove()


class ResultFiles:
    """Read a report back; export what was measured (CSV, report, PNG), refusing when nothing was measured yet."""

    def loadReport(self, path: str | Path, volume):
        """Show a SpineMorph DICOM SR (TID 1500 measurement report) of ``volume``: its table and its six points as
        height lines, ready to review and drag; return the results table node."""
        from spinemorph.io.dicom_results import morphometry_from_sr
        from SpineMorphLib import nodes

        if volume is None:
            raise ValueError("Load the film the report measures first (Next sample, or File > Add Data).")
        grid = nodes.grid_of(volume)
        spacing, _, _ = nodes.measurement_geometry(volume, grid)
        return self.measurement.show(morphometry_from_sr(path, spacing), grid)

    def _measured(self):
        if self.measurement.result is None:
            raise ValueError("Measure first: there are no results to export.")
        return self.measurement.result

    def exportCsv(self, path: str | Path) -> Path:
        """Write the results table as CSV; return its path."""
        from SpineMorphLib.report import write_table_csv

        return write_table_csv(path, self._measured())

    def exportReport(self, path: str | Path, volume=None) -> Path:
        """Write a short per-patient text report; return its path."""
        from SpineMorphLib.nodes import ATTR
        from SpineMorphLib.report import answered_by, patient_report

        keys = ("patient_id", "study_uid", "image_id")
        context = {k: volume.GetAttribute(ATTR[k]) for k in keys} if volume is not None else {}
        Path(path).write_text(patient_report(self._measured(), {**context, "model": answered_by(self.lastInfer)}))
        return Path(path)

    def exportPng(self, path: str | Path, volume, labels=None, height: int = 768) -> Path:
        """Write a PNG of the image, its labels and the height lines as the nodes hold them now; return its path."""
        from spinemorph.measure.flags import finding_caveat
        from SpineMorphLib import nodes
        from SpineMorphLib.report import render_overlay

        result = self._measured()
        grid = nodes.grid_of(volume)
        array = nodes.labels_of(self.scene, labels, volume)[0] if labels is not None else None
        return render_overlay(path, nodes.pixels_of(volume), array, self.measurement.records(grid), height,
                              finding_caveat(result))
