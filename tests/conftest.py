"""Fixtures shared by the app and the Slicer tests: small models read from tests/fixtures/ and a studies folder."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spinemorph.data.dataset import simulate_studies
from spinemorph.data.simulate import SimConfig
from spinemorph.inference import load_model
from spinemorph.io import read_radiograph

FIXTURES = Path(__file__).with_name("fixtures")


@pytest.fixture(scope="session", autouse=True)
def temporary_files_under_basetemp(tmp_path_factory):
    """Keep the temporary files of the test process and of every process it starts under pytest's own folder, which
    pytest prunes: MONAI Label's client writes every answer to a file there and leaves it to the caller (hundreds a
    run went into /tmp), and Chromium's profile and torchrun's folder were left behind too."""
    folder = str(tmp_path_factory.mktemp("tempfiles"))
    before, tempfile.tempdir = tempfile.tempdir, folder
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TMPDIR", folder)
        yield
    tempfile.tempdir = before


@pytest.fixture(scope="session")
def tiny_model():
    """A small per-level MDR2-UNet (128² input, 0.2 dropout) that finds the bodies of the studies below.

    Read from tests/fixtures/, never trained in the run: a model trained for a minute lands elsewhere on another
    CPU (other kernels sum floats in another order), a model read from a file does not. tests/fixtures/README.md
    gives the command that made it.
    """
    path = FIXTURES / "tiny_levels.pt"
    load_model(path)  # readable
    return path


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Six lumbar DICOM radiographs (labels for the first three), a 16-bit PNG and a NIfTI, all small."""
    root = tmp_path_factory.mktemp("studies")
    dcm = simulate_studies(6, 21, root, SimConfig(size=128, fov="lumbar", fracture_rate=0.5), progress=False)
    for path in dcm[3:]:
        (root / "labels" / "final" / f"{path.stem}.nii.gz").unlink()
    pixels = read_radiograph(dcm[4]).pixels
    Image.fromarray(pixels.astype(np.uint16)).save(root / "xray-sixteen-bit.png")
    nifti = simulate_studies(1, 22, root / "nii", SimConfig(size=128, fov="lumbar"), fmt="nifti", progress=False)
    shutil.copy(nifti[0], root / "xray-nifti.nii.gz")
    return root


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory):
    """A tiny fracture detector overfitted on three 160 px radiographs, read from tests/fixtures/ (made by
    tests/detection/tiny.py), and those three radiographs: (studies, model)."""
    from tests.detection.tiny import FIXTURE, make_studies

    return make_studies(tmp_path_factory.mktemp("tiny_detector")), FIXTURE
