"""The shipped default model: a complete MONAI bundle that segments and names levels on unseen simulated images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spinemorph.data.simulate import SimConfig, simulate
from spinemorph.inference import load_model, segment
from spinemorph.levels import level_name
from spinemorph.networks import LEVEL_CLASSES

BUNDLE = Path(__file__).resolve().parents[2] / "sample-apps" / "spinemorph_levels"


def test_bundle_files_and_metadata():
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert channels["0"] == "background"
    assert [channels[str(i)] for i in range(1, len(LEVEL_CLASSES))] == [level_name(c) for c in LEVEL_CLASSES[1:]]
    assert json.loads((BUNDLE / "configs" / "inference.json").read_text())["spinemorph"]["network"] == "r2unet"
    assert (BUNDLE / "models" / "model.pt").stat().st_size <= 30 * 2**20
    readme = (BUNDLE / "docs" / "README.md").read_text()
    assert "spinemorph train" in readme and "DSC" in readme


@pytest.mark.parametrize("index", [0, 1])
def test_bundle_segments_unseen_lumbar_views(index):
    """Seed 4242 is in neither the training (100) nor the test (999) series."""
    sim = simulate(4242, index, SimConfig(size=320, fov="lumbar"))
    net, spec = load_model(BUNDLE)
    result = segment(sim.image, net, spec)
    assert result.labels.shape == sim.image.shape
    pred, truth = result.labels > 0, sim.labels > 0
    dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert dice >= 0.9, dice
    # levels: most pixels of each true body carry its own code
    named = [np.mean(result.labels[sim.labels == code] == code) for code in np.unique(sim.labels[sim.labels > 0])]
    assert np.mean(np.array(named) > 0.5) >= 0.8, named
