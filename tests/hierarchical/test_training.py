"""Training each stage of the hierarchical model: the mechanics (finite loss that falls, checkpoints that load),
never the quality of a model trained inside the test run, which differs between CPUs."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from spinemorph.data.dataset import simulate_studies
from spinemorph.data.simulate import SimConfig
from spinemorph.hierarchical.training import StageConfig, train_patches, train_posenet
from spinemorph.inference import load_model
from spinemorph.training import find_cases

TINY = {"features": (4, 8, 16, 32, 64)}


@pytest.fixture(scope="module")
def lumbar(tmp_path_factory):
    root = tmp_path_factory.mktemp("lumbar")
    simulate_studies(6, 41, root, SimConfig(size=128, fov="lumbar"), fmt="nifti", progress=False)
    return find_cases(root)


@pytest.mark.parametrize("stage,network,size", [(train_posenet, "posenet", 64), (train_patches, "mnet", 32)])
def test_a_stage_from_random_weights_lowers_its_loss_and_writes_loadable_checkpoints(lumbar, tmp_path, stage,
                                                                                      network, size):
    torch.manual_seed(0)
    config = StageConfig(out=str(tmp_path / network), network=network, kwargs=dict(TINY), size=size, batch_size=4,
                         lr=3e-3, max_steps=24, eval_every=6, val_fraction=0.2)
    seen = []
    summary = stage(config, lumbar, progress=seen.append)
    rows = list(csv.DictReader(open(tmp_path / network / "log.csv")))
    losses = [float(r["train_loss"]) for r in rows]
    assert [int(r["step"]) for r in rows] == [6, 12, 18, 24] and len(seen) == 4
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    assert summary["steps"] == 24
    for name in ("model.pt", "last.pt"):
        _, spec = load_model(tmp_path / network / name)
        assert (spec.network, spec.preprocessing.size) == (network, size)
