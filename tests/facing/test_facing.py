"""The facing classifier: antisymmetry, spec and checkpoint round trips, refusals and the training mechanics.

No test asserts what a trained model gets right: a model trained for seconds lands elsewhere on another CPU.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spinemorph.cli import main
from spinemorph.data.dataset import simulate_studies
from spinemorph.data.simulate import SimConfig
from spinemorph.facing import (
    FacingNet,
    FacingSpec,
    FacingTrainConfig,
    load_facing_model,
    predict_facing,
    save_facing_model,
    train_facing,
)
from spinemorph.facing.data import case_facing, thin
from spinemorph.io import write_dx
from spinemorph.networks import count_parameters
from spinemorph.training import Case, find_cases
from spinemorph.transforms import Preprocessing

SMALL = FacingSpec(features=(8, 8, 16), preprocessing=Preprocessing(size=64))
FIXTURES = Path(__file__).parents[1] / "fixtures"


def _net(spec: FacingSpec = SMALL, seed: int = 0) -> FacingNet:
    torch.manual_seed(seed)
    return spec.build().eval()


def _film(shape=(120, 90)) -> np.ndarray:
    """A 12-bit image that is not mirror-symmetric: a bright column band left of centre on a ramp, with noise."""
    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    img = 800 + 6 * cols + 300 * (np.abs(cols - shape[1] // 3) < 6) + rng.normal(0, 20, shape)
    return np.clip(img, 0, 4095).astype(np.uint16)


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("facing_studies")
    simulate_studies(6, 5, root, SimConfig(size=96, fov="lumbar"), fmt="nifti", progress=False)
    return root


def test_a_random_network_is_antisymmetric():
    net = _net()
    x = torch.rand(3, 1, 64, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, mirrored = net(x), net(x.flip(-1))
    assert logits.shape == (3,)
    assert torch.allclose(mirrored, -logits, atol=1e-6)
    assert torch.allclose(torch.sigmoid(logits), 1 - torch.sigmoid(mirrored), atol=1e-6)


def test_a_mirrored_radiograph_gets_the_mirrored_facing_with_the_same_confidence():
    net, pixels = _net(), _film()
    a, b = predict_facing(pixels, net, SMALL), predict_facing(pixels[:, ::-1], net, SMALL)
    assert abs(a.p_left - 0.5) > 1e-4  # a real decision, not a tie
    assert {a.facing, b.facing} == {"left", "right"}
    assert a.p_left + b.p_left == pytest.approx(1.0, abs=1e-12)
    assert a.confidence == pytest.approx(b.confidence, abs=1e-12)
    assert a.confidence == max(a.p_left, 1 - a.p_left)


def test_a_mirror_symmetric_image_is_a_tie():
    half = _film((80, 40))
    pred = predict_facing(np.concatenate([half, half[:, ::-1]], axis=1), _net(), SMALL)
    assert (pred.p_left, pred.confidence) == (0.5, 0.5)


def test_the_default_network_is_small():
    assert count_parameters(FacingSpec().build()) == 125425


def test_thinning_keeps_the_square_and_centres_its_grid():
    pixels = np.arange(2048 * 1000, dtype=np.uint16).reshape(2048, 1000)
    out = thin(pixels, 160)  # k = 12
    assert out.shape == (171, 84) and out.dtype == np.float32
    assert out[0, 0] == pixels[3, 1]  # 2047 % 12 = 7 rows and 999 % 12 = 3 columns left over, split evenly
    assert thin(pixels[:200, :150], 160).shape == (200, 150)


def test_spec_round_trip_and_refusals():
    spec = FacingSpec((8, 16, 24), Preprocessing(size=96, clip_limit=0.02, tiles=4, sigma=0.5))
    assert FacingSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="Not a facing model"):
        FacingSpec.from_dict({"network": "mdr2unet", "features": [8, 16]})
    with pytest.raises(ValueError, match="at least 32"):
        FacingSpec(preprocessing=Preprocessing(size=16))
    for features in ((8,), (8, 10)):
        with pytest.raises(ValueError, match="multiple of 4"):
            FacingNet(features)
    with pytest.raises(ValueError, match="budget"):
        FacingTrainConfig(out="x", max_steps=0, minutes=0)


def test_save_and_load_give_the_same_network(tmp_path):
    net = _net(seed=4)
    path = save_facing_model(net, SMALL, tmp_path / "m.pt", {"metrics": {"val_loss": 0.1}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary file left behind
    loaded, spec = load_facing_model(path)
    assert spec == SMALL and not loaded.training
    state = net.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert torch.load(path, weights_only=False)["metrics"] == {"val_loss": 0.1}
    with pytest.raises(ValueError, match="Not a facing model"):
        load_facing_model(FIXTURES / "tiny_levels.pt")  # a segmentation checkpoint
    with pytest.raises(FileNotFoundError):
        load_facing_model(tmp_path / "missing.pt")


@pytest.mark.parametrize("pixels", [np.zeros((4, 5, 6)), np.zeros((0, 5)), np.zeros(0), np.zeros((0, 0, 1)),
                                    np.full((8, 8), np.nan), np.array([["a", "b"]]), np.ones((8, 8), bool)],
                         ids=["3d", "no-rows", "1d-empty", "empty-plane", "nan", "text", "bool"])
def test_bad_input_is_refused(pixels):
    with pytest.raises(ValueError):
        predict_facing(pixels, _net(), SMALL)


def test_the_facing_comes_from_the_truth_json_else_the_file(tmp_path):
    image = tmp_path / "film.dcm"
    write_dx(image, _film(), (0.2, 0.2), "right")
    assert case_facing(Case("film", image, image)) == "right"  # PatientOrientation A\F
    truth = tmp_path / "film.truth.json"
    truth.write_text(json.dumps({"facing": "left"}))
    assert case_facing(Case("film", image, image, truth)) == "left"
    write_dx(tmp_path / "blank.dcm", _film(), (0.2, 0.2), None)
    assert case_facing(Case("blank", tmp_path / "blank.dcm", image)) is None


def _config(out: Path, **kw) -> FacingTrainConfig:
    base = {"size": 64, "features": (8, 8, 16), "batch_size": 4, "lr": 1e-2, "val_fraction": 0.3, "seed": 2}
    return FacingTrainConfig(out=str(out), **{**base, **kw})


def test_training_runs_its_budget_and_its_loss_falls(studies, tmp_path):
    rows = []
    summary = train_facing(_config(tmp_path / "run", max_steps=24, eval_every=6, augment=False),
                           find_cases(studies), rows.append)
    assert summary["steps"] == 24 and summary["train_cases"] + summary["val_cases"] == 6
    assert [r["step"] for r in rows] == [6, 12, 18, 24]
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in rows)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    with open(tmp_path / "run" / "log.csv") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [6, 12, 18, 24]
    net, spec = load_facing_model(tmp_path / "run" / "model.pt")
    assert spec == _config(tmp_path).spec()
    load_facing_model(tmp_path / "run" / "last.pt")


def test_a_seeded_run_repeats(studies, tmp_path):
    runs = [[], []]
    for i, rows in enumerate(runs):
        train_facing(_config(tmp_path / str(i), max_steps=3, eval_every=3), find_cases(studies), rows.append)
    assert runs[0][0]["train_loss"] == runs[1][0]["train_loss"]


def test_the_command_line_trains_and_answers(studies, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["facing-train", str(studies), "--out", str(out), "--size", "64", "--features", "8", "8", "16",
                 "--steps", "2", "--batch", "2", "--eval-every", "1", "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    image = sorted(studies.glob("*.nii.gz"))[0]
    assert main(["facing", str(image), "--model", str(out / "model.pt"), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["facing"] in ("left", "right") and answer["file_facing"] in ("left", "right")
    assert answer["confidence"] == max(answer["p_left"], 1 - answer["p_left"])
