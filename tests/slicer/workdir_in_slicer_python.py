"""The Logic's work folder in slicer-core's Python: one it makes is removed by close() or at the interpreter's exit;
one it is given stays. Prints the folders as JSON; the exit check is the caller's (tests/slicer/test_module_files)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import slicer

MODULE = Path(__file__).resolve().parents[2] / "slicer_module" / "SpineMorph"


def main() -> int:
    """Make three Logics: closed, given a folder and closed, left open until exit; print their folders."""
    sys.path.insert(0, str(MODULE))
    import SpineMorph

    scene = slicer.vtkMRMLScene()
    closed = SpineMorph.SpineMorphLogic(scene=scene)
    made = closed.workdir.is_dir()
    (closed.workdir / "images").mkdir()
    (closed.workdir / "images" / "film.dcm").write_bytes(b"a download")
    closed.close()
    given = Path(tempfile.mkdtemp(prefix="SpineMorphGiven-"))
    SpineMorph.SpineMorphLogic(scene=scene, workdir=given).close()
    left = SpineMorph.SpineMorphLogic(scene=scene)
    (left.workdir / "L1-final.nii.gz").write_bytes(b"a label sent")
    print(json.dumps({"made": made, "closed": str(closed.workdir), "closed_exists": closed.workdir.exists(),
                      "given": str(given), "given_exists": given.is_dir(), "left": str(left.workdir)}))
    return 0  # ``left`` is still referenced here: its folder goes at the interpreter's exit


if __name__ == "__main__":
    sys.exit(main())
