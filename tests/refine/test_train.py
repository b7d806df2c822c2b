"""Training stage 2: its crops, the film defects given to some of them, and the mechanics of a short run (never the
quality of a model trained inside the test run, which differs between CPUs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spinemorph.cli import main as cli
from spinemorph.data.dataset import simulate_studies
from spinemorph.data.simulate import SimConfig
from spinemorph.inference import load_model
from spinemorph.refine.train import CropDataset, film_defect
from spinemorph.training import find_cases
from spinemorph.transforms import Preprocessing


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine-studies")
    simulate_studies(2, 31, root, SimConfig(size=256, fov="lumbar", fracture_rate=0.5), fmt="nifti", progress=False)
    return root


def test_a_film_defect_keeps_the_crop_in_range_and_changes_it():
    crop = np.random.default_rng(0).uniform(0.2, 0.8, (64, 64)).astype(np.float32)
    changed = []
    for seed in range(30):
        out = film_defect(crop, np.random.default_rng(seed))
        assert out.shape == crop.shape and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1
        assert np.array_equal(out, film_defect(crop, np.random.default_rng(seed)))  # drawn from the generator alone
        changed.append(float(np.abs(out - crop).mean()))
    assert min(changed) > 0 and crop.min() >= 0.2  # every draw changes the crop, never the caller's array


def test_defects_change_the_networks_input_not_the_target(studies):
    cases, settings = find_cases(studies), Preprocessing(size=64)
    plain = CropDataset(cases, settings, seed=4, progress=False)
    defects = CropDataset(cases, settings, seed=4, progress=False, defects=1.0)
    assert len(plain) == len(defects) > 4
    differ = 0
    for i in range(len(plain)):
        (x, y), (xd, yd) = plain[i], defects[i]
        assert xd.shape == x.shape == (1, 64, 64) and xd.dtype == torch.float32 and 0 <= xd.min() <= xd.max() <= 1
        assert torch.equal(y, yd) and y.sum() > 0  # the body stays where it was
        differ += not torch.allclose(x, xd, atol=1e-3)
    assert differ == len(plain)
    unchanged = CropDataset(cases, settings, seed=4, progress=False, defects=1e-9)  # the raw path, no defect drawn
    assert all(torch.allclose(plain[i][0], unchanged[i][0], atol=1e-3) for i in range(len(plain)))


def test_refine_train_with_defects_writes_a_model_that_loads(studies, tmp_path, capsys):
    cli(["refine-train", str(studies), "--out", str(tmp_path / "run"), "--size", "64", "--features", "4", "8", "16",
         "32", "64", "--batch", "4", "--steps", "2", "--eval-every", "1", "--val-fraction", "0.5", "--defects", "0.5",
         "--threads", "1"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["train"] > 0 and summary["val"] > 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["config"]["defects"] == 0.5
    net, spec = load_model(tmp_path / "run" / "model.pt")
    assert spec.head == "binary" and net(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)
