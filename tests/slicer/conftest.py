"""The Slicer module's tests: pure SpineMorphLib tests here, MRML ones in .venv-slicer's Python (slicer-core)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "slicer_module" / "SpineMorph"
SLICER_PYTHON = REPO / ".venv-slicer" / "bin" / "python"

sys.path.insert(0, str(MODULE))  # SpineMorphLib's Slicer-free helpers import in this Python too


def run_in_slicer_python(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a script in .venv-slicer's Python (one thread, as Slicer's), or skip when that venv is missing."""
    if not SLICER_PYTHON.exists():
        pytest.skip("needs .venv-slicer with slicer-core: run `make slicer-venv` (make test does)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(SLICER_PYTHON), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO)
