"""The annotation loop's numbers, with the module's Logic on real MRML nodes (slicer-core) against a real server.

    .venv-slicer/bin/python tests/slicer/annotation_in_slicer_python.py SERVER_URL OUT.json

Connect reports the progress; Next sample starts the annotation clock and Submit sends its seconds with the label;
the panel's table gets a Confidence column and the least sure vertebra first. OUT.json holds what the pytest side
(test_annotation_loop.py) checks.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import requests
import slicer
import vtk

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "slicer_module" / "SpineMorph"))
import SpineMorph  # noqa: E402

from SpineMorphLib.nodes import ATTR  # noqa: E402

MODEL = "spinemorph_levels"
WAIT_S = 1.5  # the annotator's time on the image, at least


def main(url: str, out: Path) -> int:
    """Run connect, next sample, infer, measure and submit; write what each gave to ``out``; return 0."""
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_ERROR)
    logic = SpineMorph.SpineMorphLogic(scene=slicer.vtkMRMLScene(), workdir=out.parent / "work")
    connected = logic.connect(url)
    volume = logic.nextSample("first")
    image = volume.GetAttribute(ATTR["image_id"])
    seg = logic.autoSegment(volume, MODEL)
    panel = []
    logic.measurement.onChange = lambda headers, rows, colours: panel.append({"headers": headers, "rows": rows})
    table = logic.measure(seg, volume)
    node_rows = [[table.GetCellText(i, j) for j in range(table.GetNumberOfColumns())]
                 for i in range(table.GetNumberOfRows())]
    records = [{"level": r.level, "confidence": r.confidence} for r in logic.measurement.result.vertebrae]
    time.sleep(max(WAIT_S - (time.time() - float(volume.GetAttribute(ATTR["started"]))), 0.0))
    logic.submitLabel(seg, volume)
    objects = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    info = requests.get(f"{url}/info/", timeout=30).json()
    out.write_text(json.dumps({
        "connected": connected, "image": image, "panel": panel[-1], "table_node": node_rows, "records": records,
        "submit": logic.lastSubmit, "label_info": objects[image]["labels"]["final"]["info"],
        "annotation": info["annotation"], "progress": info["progress"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
