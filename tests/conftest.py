"""Fixtures shared by the app and the Slicer tests: a tiny trained model and a small studies folder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from spinemorph.data.dataset import simulate_studies
from spinemorph.data.simulate import SimConfig
from spinemorph.inference import load_model
from spinemorph.io import read_radiograph
from spinemorph.training import TrainConfig, find_cases, train


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A small per-level MDR2-UNet (64² input), trained for a minute so that it finds bodies."""
    root = tmp_path_factory.mktemp("tiny")
    simulate_studies(24, 11, root / "train", SimConfig(size=128, fov="lumbar", fracture_rate=0.3), fmt="nifti",
                     progress=False)
    torch.manual_seed(0)
    config = TrainConfig(out=str(root / "run"), network="mdr2unet", head="levels", loss="dicece", size=64,
                         kwargs={"features": (8, 16, 32, 64, 128), "dropout": 0.2}, epochs=12, batch_size=4,
                         val_fraction=0.1, lr=3e-3)
    # One thread (and the trainer's seeded augmentation): the same model on every run and machine. A minute of
    # training is fragile: float sums in another order, or other augmentation draws, once gave a model that
    # found no measurable body on the 16-bit PNG.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config, find_cases(root / "train"))
    finally:
        torch.set_num_threads(threads)
    load_model(root / "run" / "model.pt")  # readable
    return root / "run" / "model.pt"


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
    """A tiny fracture detector overfitted on three 160 px radiographs (tests/detection/tiny.py): (studies, model)."""
    from tests.detection.tiny import make_studies, train_tiny

    root = make_studies(tmp_path_factory.mktemp("tiny_detector"))
    return root, train_tiny(root)
