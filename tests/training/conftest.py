from __future__ import annotations

import pytest

from spinemorph.data.dataset import simulate_studies
from spinemorph.data.simulate import SimConfig


@pytest.fixture(scope="session")
def studies(tmp_path_factory):
    """Twelve small simulated radiographs with labels and truth (NIfTI)."""
    out = tmp_path_factory.mktemp("studies")
    simulate_studies(12, 3, out, SimConfig(size=96, fracture_rate=0.5), fmt="nifti", progress=False)
    return out
