"""Run SpineMorph.py's own Test class in slicer-core's Python, as Slicer's self-test would (no Qt, a real scene)."""

from __future__ import annotations

import logging
import sys
import unittest
from pathlib import Path

import slicer
import vtk

MODULE = Path(__file__).resolve().parents[2] / "slicer_module" / "SpineMorph"


def main() -> int:
    """Run SpineMorphTest and return 0 when it passes."""
    logging.basicConfig(level=logging.INFO)
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_ERROR)
    slicer.mrmlScene = slicer.vtkMRMLScene()  # the application's scene, which slicer-core does not create
    sys.path.insert(0, str(MODULE))
    import SpineMorph

    suite = unittest.TestSuite([SpineMorph.SpineMorphTest("test_measure_labelmap_and_drag_a_point")])
    outcome = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if outcome.wasSuccessful() and outcome.testsRun == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
