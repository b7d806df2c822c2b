"""The detector end to end: a tiny model overfits, outputs land in the input's geometry, specs and bundles."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from spinemorph.detection import LEVEL_SETS, DetectorSpec, build_detector, load_detector
from spinemorph.detection.bundle import write_detector_bundle
from spinemorph.detection.inference import _graded, detect, paste_mask, to_input_grid
from spinemorph.detection.targets import IGNORE, body_classes, instances, truth_grades
from spinemorph.evaluation.detection import box_iou_np
from spinemorph.io import read_labelmap, read_radiograph
from spinemorph.levels import level_code
from spinemorph.networks import LEVEL_CLASSES
from spinemorph.training import find_cases
from spinemorph.transforms import PadGeometry, Preprocessing
from tests.detection.tiny import train_tiny


def body_box(labels: np.ndarray, code: int) -> np.ndarray:
    rows, cols = np.nonzero(labels == code)
    return np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], float)


def _cases(tiny_detector):
    """Yield the tiny detector, its spec, and each case of its studies with the case's radiograph."""
    studies, model = tiny_detector
    net, spec = load_detector(model)
    for case in find_cases(studies):
        yield net, spec, case, read_radiograph(case.image)


def test_a_tiny_detector_finds_the_fractures_it_learned_and_none_on_the_normal_image(tiny_detector):
    seen = 0
    for net, spec, case, image in _cases(tiny_detector):
        labels, _ = read_labelmap(case.label)
        truth = [v for v in json.loads(case.truth.read_text())["vertebrae"] if v["genant_grade"] >= 1]
        result = detect(image.pixels, net, spec, image.spacing_mm, image.facing)
        assert result.labels.shape == image.shape
        if not truth:
            assert result.detections == [] and not result.verdict["fracture"], result.verdict
            assert not result.labels.any()
            continue
        seen += 1
        (fracture,) = truth
        assert [d.level for d in result.detections] == [fracture["level"]], result.verdict
        hit = result.detections[0]
        assert box_iou_np(hit.box, body_box(labels, fracture["code"]))[0, 0] >= 0.5
        assert result.verdict["fracture"] and result.verdict["levels"] == [fracture["level"]]
        assert set(np.unique(result.labels)) == {0, fracture["code"]}
        # the pasted mask was measured: graded, or refused with the gates' reason (the tiny model's semantic head
        # draws coarse neighbours, against which a mask may look out of proportion)
        assert hit.genant_grade is not None or {"low_confidence", "no_upper_neighbour"} <= set(hit.flags)
    assert seen == 2


def test_scores_only_gives_the_same_candidates_without_pasting_or_grading(tiny_detector):
    graded = 0
    for net, spec, _, image in _cases(tiny_detector):
        full = detect(image.pixels, net, spec, image.spacing_mm, image.facing, 0.05)
        lean = detect(image.pixels, net, spec, image.spacing_mm, image.facing, 0.05, scores_only=True)
        assert [(d.code, d.score, d.box) for d in lean.candidates] == [(d.code, d.score, d.box)
                                                                       for d in full.candidates]
        assert lean.verdict == full.verdict
        assert lean.morphometry is None and lean.labels.shape == image.shape and not lean.labels.any()
        assert all(d.genant_grade is None for d in lean.detections)
        graded += full.morphometry is not None
    assert graded >= 2  # the fractured images' candidates were pasted and graded by the full call
    x = torch.rand(1, 1, 320, 320)
    with torch.no_grad():
        heads, boxes = net.eval()(x)[0], net(x, masks=False)[0]
    assert set(heads) == {"boxes", "scores", "classes", "masks", "semantic"}  # scores_only skips the last two
    assert set(boxes) == {"boxes", "scores", "classes"} and all(torch.equal(boxes[k], heads[k]) for k in boxes)


def test_training_from_random_weights_lowers_the_loss_and_writes_loadable_checkpoints(tiny_detector, tmp_path):
    """The mechanics of detector training; what 40 steps learn differs between CPUs and is not asserted."""
    studies, _ = tiny_detector
    for case in find_cases(studies):  # a studies folder of its own: the run folder goes inside it
        for path in (case.image, case.label, case.truth):
            dest = tmp_path / path.relative_to(studies)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())
    last = train_tiny(tmp_path, steps=40, val_every=10)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    losses = [sum(float(v) for k, v in r.items() if k.startswith("train_")) for r in rows]
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    for path in (last, tmp_path / "run" / "model.pt"):
        net, spec = load_detector(path)
        assert spec.preprocessing.size == 160 and net(torch.zeros(1, 1, 64, 64))[0]["boxes"].shape[1] == 4


def test_a_detected_mask_is_graded_among_the_semantic_heads_neighbours():
    geometry = PadGeometry.of((128, 64), 128)  # 32 px of padding left and right
    semantic = torch.zeros(128, 128, dtype=torch.uint8)
    for name, row in (("T12", 24), ("L1", 40), ("L2", 56)):  # three normal 12-row bodies, as the head sees them
        semantic[row:row + 12, 52:76] = LEVEL_CLASSES.index(level_code(name))
    labels = np.zeros((128, 64), np.uint8)
    labels[43:51, 20:44] = level_code("L1")  # the detected mask: L1 crushed to 8 rows
    alone = _graded(labels, None, geometry, (1.0, 1.0), "left").by_level()["L1"]
    # alone, nothing to compare it with: measured, never graded (the gates' no_neighbour)
    assert alone.genant_grade is None and alone.crush is None and alone.wedge == pytest.approx(1.0)
    assert {"no_upper_neighbour", "low_confidence", "no_neighbour"} <= set(alone.flags)
    (among,) = _graded(labels, semantic, geometry, (1.0, 1.0), "left").vertebrae  # only the detected body
    assert among.level == "L1" and among.crush == pytest.approx(8 / 12)
    assert among.genant_grade == 2 and among.deformity == "crush"


def test_paste_mask_covers_exactly_its_box():
    rows, cols, mask = paste_mask(torch.ones(28, 28), [2.0, 3.0, 7.0, 9.0], (12, 12))
    canvas = np.zeros((12, 12), bool)
    canvas[rows, cols][mask] = True
    want = np.zeros((12, 12), bool)
    want[2:7, 3:9] = True
    np.testing.assert_array_equal(canvas, want)
    assert paste_mask(torch.ones(28, 28), [20.0, 20.0, 30.0, 30.0], (12, 12))[2].size == 0


def test_boxes_return_to_the_input_grid():
    g = PadGeometry.of((200, 100), 320)  # resized to 320×160, 80 px of padding left and right
    boxes = torch.tensor([[0.0, 80.0, 320.0, 240.0], [32.0, 96.0, 64.0, 112.0]])
    np.testing.assert_allclose(to_input_grid(boxes, g), [[0, 0, 200, 100], [20, 10, 40, 20]])


def test_targets_name_fractures_by_level_and_ignore_what_the_classes_miss():
    grades = {19: (0, False), 20: (2, False), 21: (1, True), 10: (3, False)}
    classes = body_classes(grades, [10, 19, 20, 21, 22], LEVEL_SETS["all"])
    assert classes == {10: IGNORE, 19: 0, 20: LEVEL_SETS["all"].index(20) + 1, 21: IGNORE, 22: 0}
    labels = torch.zeros(20, 20, dtype=torch.long)
    labels[2:6, 3:9], labels[10:15, 4:10], labels[18, 0] = 19, 20, 21  # L2 (21) has 1 pixel: dropped
    target = instances(labels, classes)
    assert target["codes"].tolist() == [19, 20] and target["classes"].tolist() == [0, classes[20]]
    assert target["boxes"].tolist() == [[2, 3, 6, 9], [10, 4, 15, 10]]
    assert target["semantic"][3, 4] == 12 and target["semantic"][0, 0] == 0  # T12 is the 12th level class
    assert truth_grades({"vertebrae": [{"code": 20, "genant_grade": 2, "genant_grade_shown": 1}]}) == {20: (1, False)}


def test_spec_round_trip_and_refusals(tmp_path):
    spec = DetectorSpec(levels="paper", channels=(8, 16, 32, 64), preprocessing=Preprocessing(size=128))
    assert DetectorSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert [level_code(n.split()[0]) for n in list(spec.class_names.values())[1:]] == [18, 19, 20, 21, 22, 23]
    with pytest.raises(ValueError, match="level set"):
        DetectorSpec(levels="cervical")
    with pytest.raises(ValueError, match="multiple of 32"):
        DetectorSpec(preprocessing=Preprocessing(size=300))
    net = build_detector("paper", channels=(8, 16, 32, 64), fpn_channels=16)
    with pytest.raises(ValueError, match="needs targets"):
        net.train()(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="multiples of 32"):
        net.eval()(torch.zeros(1, 1, 50, 64))
    assert net(torch.zeros(1, 1, 64, 64))[0]["boxes"].shape[1] == 4
    torch.save({"state_dict": {}, "spec": {"network": "unet"}}, tmp_path / "seg.pt")
    with pytest.raises(ValueError, match="not a detector"):
        load_detector(tmp_path / "seg.pt")
    with pytest.raises(FileNotFoundError):
        load_detector(tmp_path / "missing.pt")


def test_the_bundle_names_its_classes_and_loads_back(tiny_detector, tmp_path):
    _, model = tiny_detector
    out = write_detector_bundle(model, tmp_path / "spinemorph_vcf_detection", "0.1.0", "test", "# readme {date}", "d")
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert channels["0"].startswith("background") and channels["1"] == "T4 fracture" and channels["14"] == "L5 fracture"
    net, spec = load_detector(out)
    original, _ = load_detector(model)
    for a, b in zip(net.state_dict().values(), original.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert (out / "LICENSE").is_file() and "{date}" not in (out / "docs" / "README.md").read_text()
