from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from spinemorph.inference import ModelSpec, load_model, segment
from spinemorph.io import read_radiograph
from spinemorph.training import TrainConfig, find_cases, split_cases, train
from spinemorph.training.trainer import _initial
from spinemorph.transforms import Preprocessing

TINY = {"features": (4, 8, 16, 32, 64), "dropout": 0.1}


def rows(path):
    return list(csv.DictReader(open(path)))


def test_cases_and_a_stable_split(studies):
    cases = find_cases(studies)
    assert len(cases) == 12 and all(c.truth is not None for c in cases)
    train_a, val_a = split_cases(cases, 0.25, seed=1)
    train_b, val_b = split_cases(cases[:8], 0.25, seed=1)
    assert val_a and set(val_b) <= set(val_a) and not set(train_a) & set(val_a)
    with pytest.raises(ValueError, match="validation fraction"):
        split_cases(cases, 1.5)
    with pytest.raises(FileNotFoundError):
        find_cases(studies / "missing")


def test_a_tiny_network_lowers_its_loss_and_saves_everything(studies, tmp_path):
    """The mechanics of training; what 20 epochs learn differs between CPUs, so no Dice is asserted."""
    torch.manual_seed(0)
    seen = []
    config = TrainConfig(out=str(tmp_path / "run"), network="unet", head="binary", loss="dice", kwargs=dict(TINY),
                         size=64, epochs=20, batch_size=3, val_fraction=0.25, seed=1)
    summary = train(config, find_cases(studies), progress=seen.append)
    log = rows(tmp_path / "run" / "log.csv")
    assert len(log) == 20 and [int(r["epoch"]) for r in log] == list(range(1, 21))
    losses = [float(r["train_loss"]) for r in log]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    assert all(0.0 <= float(r["val_body_dice"]) <= 1.0 for r in log)
    assert summary["best_val_body_dice"] == max(float(r["val_body_dice"]) for r in log)
    assert len(seen) == 20 and {"val_body_dice", "train_loss", "epoch", "epochs"} <= set(seen[-1])
    for name in ("model.pt", "last.pt"):
        assert (tmp_path / "run" / name).stat().st_size > 10_000
    net, spec = load_model(tmp_path / "run" / "model.pt")
    assert (spec.network, spec.head, spec.preprocessing.size) == ("unet", "binary", 64)


def test_resume_continues_from_the_last_epoch(studies, tmp_path):
    base = dict(out=str(tmp_path / "run"), network="unet", head="levels", loss="dicece", kwargs=dict(TINY), size=64,
                batch_size=4, val_fraction=0.25)
    train(TrainConfig(**base, epochs=2), find_cases(studies))
    first = rows(tmp_path / "run" / "log.csv")
    summary = train(TrainConfig(**base, epochs=3, resume=True), find_cases(studies))
    log = rows(tmp_path / "run" / "log.csv")
    assert [int(r["epoch"]) for r in log] == [1, 2, 3] and log[:2] == first
    assert summary["steps"] == int(first[-1]["step"]) * 3 // 2


def test_training_can_start_from_given_weights_of_the_same_kind_only(studies, tmp_path):
    base = dict(network="unet", head="levels", loss="dicece", kwargs=dict(TINY), size=64, batch_size=4, epochs=1)
    train(TrainConfig(out=str(tmp_path / "a"), **base), find_cases(studies))
    train(TrainConfig(out=str(tmp_path / "b"), init=str(tmp_path / "a" / "model.pt"), **base), find_cases(studies))
    assert (tmp_path / "b" / "model.pt").is_file()
    with pytest.raises(ValueError, match="Cannot start"):
        train(TrainConfig(out=str(tmp_path / "c"), init=str(tmp_path / "a" / "model.pt"),
                          **{**base, "network": "r2unet"}), find_cases(studies))


def test_segmentation_comes_back_on_the_input_grid(studies, tmp_path):
    config = TrainConfig(out=str(tmp_path / "run"), network="mdr2unet", head="levels", kwargs=dict(TINY), size=64,
                         epochs=1, batch_size=4)
    train(config, find_cases(studies))
    net, spec = load_model(tmp_path / "run" / "model.pt")
    image = read_radiograph(find_cases(studies)[0].image)
    seg = segment(image.pixels[:, :-7], net, spec)  # an odd shape
    assert seg.labels.shape == (image.shape[0], image.shape[1] - 7) and seg.labels.dtype == np.uint8
    assert seg.foreground.shape == seg.labels.shape and 0 <= seg.foreground.min() <= seg.foreground.max() <= 1
    assert set(np.unique(seg.labels).tolist()) <= {0, *range(8, 25)}
    assert {"preprocess_s", "network_s", "postprocess_s"} <= set(seg.timings)


def test_train_and_evaluate_commands(studies, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "spinemorph.cli", "train", str(studies), "--out", str(tmp_path / "run"),
           "--network", "unet", "--features", "4", "8", "16", "32", "64", "--size", "64", "--epochs", "1",
           "--batch", "4"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["epochs"] == 1
    done = subprocess.run([sys.executable, "-m", "spinemorph.cli", "evaluate", str(studies), "--model",
                           str(tmp_path / "run" / "model.pt"), "--split", "val", "--out", str(tmp_path / "e.json")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "e.json").read_text())
    for key in ("sensitivity", "specificity", "accuracy", "dsc", "iou", "roc_auc", "pr_auc", "level_identified"):
        assert 0.0 <= summary[key]["mean"] <= 1.0 or np.isnan(summary[key]["mean"])
    assert summary["images"] >= 1 and "level_dice" in summary
    image = sorted(studies.glob("*.nii.gz"))[0]
    done = subprocess.run([sys.executable, "-m", "spinemorph.cli", "segment", str(image), "--model",
                           str(tmp_path / "run" / "model.pt"), "--out", str(tmp_path / "seg"), "--device", "cpu"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "segment + measure" in done.stdout
    stem = image.name[:-len(".nii.gz")]
    written = read_radiograph(tmp_path / "seg" / f"{stem}.labels.nii.gz")
    source = read_radiograph(image)
    assert written.shape == source.shape and written.spacing_mm == source.spacing_mm
    for suffix in ("json", "csv", "png"):
        assert (tmp_path / "seg" / f"{stem}.morphometry.{suffix}").stat().st_size > 0


def test_two_processes_train_together_under_torchrun(studies, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "spinemorph.cli", "train", str(studies), "--out", str(tmp_path / "ddp"), "--network", "unet", "--features",
           "4", "8", "16", "32", "64", "--size", "64", "--epochs", "2", "--batch", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"best_val_level_dice"') == 1  # rank 0 alone reports
    log = rows(tmp_path / "ddp" / "log.csv")
    assert [int(r["epoch"]) for r in log] == [1, 2]  # one log, written by rank 0 only
    # Each rank sees half the training cases per epoch (the sampler pads to an even count), in full batches.
    n_train = len(split_cases(find_cases(studies), 0.2)[0])
    assert int(log[0]["step"]) == (-(-n_train // 2)) // 2


def test_a_per_level_model_can_start_an_anchored_one(studies, tmp_path):
    """Everything but the sacrum's output channel is copied; the anchored head's first 18 classes are T1..L5."""
    base = dict(network="unet", loss="dicece", kwargs=dict(TINY), size=64, batch_size=4, epochs=1)
    train(TrainConfig(out=str(tmp_path / "a"), head="levels", **base), find_cases(studies))
    train(TrainConfig(out=str(tmp_path / "b"), head="anchored", init=str(tmp_path / "a" / "model.pt"), **base,
                      ), find_cases(studies))
    source, _ = load_model(tmp_path / "a" / "model.pt")
    grown = _initial(ModelSpec("unet", "anchored", dict(TINY), Preprocessing(size=64)), str(tmp_path / "a" /
                                                                                              "model.pt"))
    grew = [name for name, a in source.state_dict().items() if a.shape != grown.state_dict()[name].shape]
    assert grew and all(grown.state_dict()[n].numel() > source.state_dict()[n].numel() for n in grew)
    for name, a in source.state_dict().items():
        torch.testing.assert_close(grown.state_dict()[name][tuple(slice(0, n) for n in a.shape)], a, msg=name)
    assert load_model(tmp_path / "b" / "model.pt")[1].head == "anchored"
