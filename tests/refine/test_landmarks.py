"""The six-point landmarks: crop geometry and back, the soft-argmax, the mirror image, the shipped network's points
on a real simulation (read from the committed weights), and the heights ``measure`` takes from landmarks while its
gates judge the outline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spinemorph.data.simulate import SimConfig, simulate
from spinemorph.hierarchical.boxes import Box
from spinemorph.inference.model import ModelSpec
from spinemorph.measure import measure
from spinemorph.measure.core import LANDMARK_WEIGHT
from spinemorph.refine.landmarks import (
    POINTS,
    build_landmark_net,
    find_landmarks,
    load_landmarks,
    mirrored,
    save_landmarks,
    soft_argmax,
    to_crop,
    to_film,
)
from spinemorph.transforms import Preprocessing
from tests.inference.test_shipped_bundle import BUNDLE
from tests.measure.test_gates import spine


def test_crop_coordinates_go_back_to_the_film():
    pts = np.array([[100.3, 250.7], [180.0, 260.2], [140.5, 199.9]])
    box = Box(150.2, 230.6, 123.4)
    np.testing.assert_allclose(to_film(to_crop(pts, box, 192), box, 192), pts, atol=1e-9)
    top, left, bottom, _ = box.bounds()  # a box's top-left pixel centre lands half a crop pixel in, scaled
    np.testing.assert_allclose(to_crop(np.array([[top, left]]), box, 192), [[0.5 * 192 / (bottom - top) - 0.5] * 2])


def test_soft_argmax_finds_a_peak_between_pixels():
    logits = torch.full((1, 6, 16, 16), -50.0)
    logits[0, :, 7, 9] = logits[0, :, 8, 9] = 0.0  # two equal pixels: the point between them
    _, pts = soft_argmax(logits)
    torch.testing.assert_close(pts[0], torch.tensor([[7.5, 9.0]] * 6), atol=1e-4, rtol=0)


def test_the_mirror_image_swaps_left_and_right_and_mirrors_the_columns():
    pts = torch.tensor([[[10.0, 1.0], [11.0, 2.0], [12.0, 3.0], [20.0, 1.5], [21.0, 2.5], [22.0, 3.5]]])
    flipped = mirrored(pts, 5)
    assert flipped[0, 0].tolist() == [12.0, 1.0]  # the upper right point, now on the left of a 5-wide crop
    assert flipped[0, 5].tolist() == [20.0, 2.5]  # the lower left point, now on the right
    torch.testing.assert_close(mirrored(flipped, 5), pts)  # twice is the crop again


def test_a_checkpoint_of_other_points_is_refused(tmp_path):
    spec = ModelSpec("unet", "landmarks", {"features": (4, 8, 8, 8, 8)}, Preprocessing(size=32))
    net = build_landmark_net(spec)
    path = save_landmarks(net, spec, tmp_path / "landmarks.pt")
    loaded, back = load_landmarks(path)
    assert back == spec and loaded(torch.zeros(1, 1, 32, 32)).shape == (1, len(POINTS), 32, 32)
    state = torch.load(path, weights_only=False)
    torch.save({**state, "points": list(POINTS[::-1])}, path)
    with pytest.raises(ValueError, match="not a six-point landmark network"):
        load_landmarks(path)
    assert load_landmarks(tmp_path / "nothing" / "model.pt") is None  # no landmarks beside a model: none


def test_spinemorph_bundle_ships_a_landmark_network_that_loads_back(tmp_path):
    from spinemorph.cli import main as cli

    spec = ModelSpec("unet", "landmarks", {"features": (4, 8, 8, 8, 8)}, Preprocessing(size=32))
    save_landmarks(build_landmark_net(spec), spec, tmp_path / "runs" / "landmarks.pt")
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_levels.pt"
    assert cli(["bundle", str(fixture), "--out", str(tmp_path / "bundle"), "--landmarks",
                str(tmp_path / "runs" / "landmarks.pt")]) == 0
    net, back = load_landmarks(tmp_path / "bundle")
    assert back == spec and net(torch.zeros(1, 1, 32, 32)).shape == (1, 6, 32, 32)
    meta = json.loads((tmp_path / "bundle" / "configs" / "metadata.json").read_text())
    assert "landmark" in meta["companions"]["landmarks.pt"]


def test_the_shipped_landmarks_land_on_a_simulations_endplates():
    """A full-size lumbar film (a series no training or calibration used), crops from the truth outlines: each
    height within 1 mm of the truth, and the median within 0.4 mm."""
    sim = simulate(4_343, 7, SimConfig(size="full", fov="lumbar", facing="left"))
    net, spec = load_landmarks(BUNDLE)
    found = find_landmarks(sim.image, sim.labels, net, spec)
    errors = []
    for v in sim.truth["vertebrae"]:
        if v["code"] not in found.points or v.get("truncated") or "Ha_mm" not in v:
            continue
        p = found.points[v["code"]]  # facing left: the anterior points are on the left
        for h, side in (("Ha", "left"), ("Hm", "middle"), ("Hp", "right")):
            height = np.linalg.norm((p[f"inferior_{side}"] - p[f"superior_{side}"]) * sim.spacing_mm)
            errors.append(abs(height - v[f"{h}_mm"]))
    assert len(errors) >= 12 and max(errors) < 1.0 and np.median(errors) < 0.4, errors


def _landmarks_of(labels: np.ndarray, shift: float = 0.0) -> dict[int, dict[str, np.ndarray]]:
    """Six points per body of ``spine()``: on its endplates where the outline's stations are (a tenth of the depth
    inside each wall), ``shift`` px lower."""
    out = {}
    for code in (19, 20, 21, 22, 23):
        rows, cols = np.nonzero(labels == code)
        top, bottom, left, right = rows.min() - 0.5, rows.max() + 0.5, cols.min() + 5.5, cols.max() - 5.5
        sides = {"left": left, "middle": (left + right) / 2, "right": right}
        out[code] = {f"{row}_{s}": np.array([(top if row == "superior" else bottom) + shift, c])
                     for row in ("superior", "inferior") for s, c in sides.items()}
    out[21]["superior_left"] = out[21]["superior_left"] - [3.0, 0.0]  # L2: its anterior upper point outside it,
    out[21]["inferior_left"] = out[21]["inferior_left"] - [9.0, 0.0]  # and its anterior height 6 px short
    return out


def test_landmarks_give_the_heights_and_the_points_and_the_outline_is_still_judged():
    labels = spine()
    outline = measure(labels, (0.5, 0.5), "left").by_level()
    marks = _landmarks_of(labels)
    result = measure(labels, (0.5, 0.5), "left", landmarks=marks, heights="landmarks").by_level()
    assert {r.heights_from for r in outline.values()} == {"outline"}
    l2 = result["L2"]
    assert l2.heights_from == "landmarks" and l2.Ha_px == pytest.approx(34.0) and l2.Hp_px == pytest.approx(40.0)
    assert l2.Ha_mm == pytest.approx(17.0) and l2.vcr_percent == pytest.approx(15.0)  # the landmarks' VCR
    assert outline["L2"].vcr_percent == pytest.approx(0.0)
    assert l2.points["inferior_anterior"] == pytest.approx(marks[21]["inferior_left"].tolist())  # where measured
    assert l2.points_mm["inferior_anterior"] == pytest.approx((marks[21]["inferior_left"] * 0.5).tolist())
    # 3 px outside the segment, past the gates' 1.5 px: graded all the same, as the gates judge the outline's points
    assert "points_outside" not in l2.flags and l2.genant_grade is not None
    facing_right = measure(labels, (0.5, 0.5), "right", landmarks=marks, heights="landmarks").by_level()["L2"]
    assert facing_right.Hp_px == pytest.approx(34.0)  # the same points, the other side anterior


def test_by_default_the_heights_are_those_of_the_mean_of_landmarks_and_outline():
    labels = spine()
    outline = measure(labels, (0.5, 0.5), "left").by_level()["L2"]
    marks = _landmarks_of(labels)
    l2 = measure(labels, (0.5, 0.5), "left", landmarks=marks).by_level()["L2"]
    w = LANDMARK_WEIGHT  # the landmark's share of each point (0.6), the outline's the rest
    assert l2.heights_from == "mean" and l2.Ha_px == pytest.approx(40.0 - 6.0 * w) and l2.Hp_px == pytest.approx(40.0)
    assert l2.vcr_percent == pytest.approx(15.0 * w)  # that share of the landmarks' 15 points
    assert l2.points["inferior_anterior"] == pytest.approx(  # the points the heights were measured between
        (w * marks[21]["inferior_left"] + (1 - w) * np.asarray(outline.points["inferior_anterior"])).tolist())
    assert l2.landmarks["inferior_anterior"] == pytest.approx(marks[21]["inferior_left"].tolist())  # the network's
    assert l2.landmarks["superior_posterior"] == pytest.approx(marks[21]["superior_right"].tolist())
    with pytest.raises(ValueError, match="heights"):
        measure(labels, (0.5, 0.5), "left", landmarks=marks, heights="median")


def test_landmarks_that_stray_from_the_outline_give_the_mean_heights_and_no_grade():
    labels = spine(L2=(130, 150, 30, 90))  # L2 crushed to half its height: the outline grades it 3
    marks = _landmarks_of(labels, shift=15.0)  # L2's landmarks also 6 px short in front
    outline = measure(labels, (0.5, 0.5), "left").by_level()
    assert outline["L2"].genant_grade == 3
    for heights in ("mean", "landmarks"):  # neither reading alone, whatever was asked
        result = measure(labels, (0.5, 0.5), "left", landmarks=marks, heights=heights).by_level()
        for level, rec in result.items():
            assert rec.heights_from == "mean" and "landmarks_disagree" in rec.flags, level
            assert rec.landmarks is not None  # reported, so a reader sees what disagreed
            mean = {k: (1 - LANDMARK_WEIGHT) * np.asarray(outline[level].points[k])
                    + LANDMARK_WEIGHT * np.asarray(rec.landmarks[k]) for k in rec.points}
            for k, point in mean.items():
                assert rec.points[k] == pytest.approx(point.tolist(), abs=2e-3), (level, k)
            for h, station in (("Ha", "anterior"), ("Hp", "posterior")):
                assert getattr(rec, f"{h}_px") == pytest.approx(
                    np.linalg.norm(mean[f"superior_{station}"] - mean[f"inferior_{station}"]), abs=1e-2), level
        assert result["L2"].Ha_px == pytest.approx(outline["L2"].Ha_px - 6.0 * LANDMARK_WEIGHT, abs=1.5)
    for level, rec in result.items():  # two readings disagree: no grade on their mean, normal or not
        assert rec.genant_grade is None and {"low_confidence", "landmarks_disagree"} <= set(rec.flags), level
    assert result["L1"].vcr_percent is not None  # still measured, and its neighbours' reference
