from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from spinemorph.data.anatomy import sample_irregularity
from spinemorph.data.deformity import Fracture, parse_fracture, sample_fractures
from spinemorph.data.render import render
from spinemorph.data.simulate import SimConfig, simulate


def test_same_seed_same_image_and_truth():
    a, b = simulate(7, 3), simulate(7, 3)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.truth == b.truth
    c = simulate(7, 4)
    assert not np.array_equal(a.image, c.image)


def test_image_and_label_types_and_geometry():
    sim = simulate(2, 0, SimConfig(fov="lumbar", size=300, bits=12))
    assert sim.image.dtype == np.uint16 and sim.image.max() <= 4095 and sim.image.shape[0] == 300
    assert sim.labels.dtype == np.uint8 and sim.labels.shape == sim.image.shape
    codes = set(np.unique(sim.labels)) - {0}
    assert codes <= set(range(8, 25)) and {20, 21, 22, 23} <= codes  # L1-L4 in a lumbar view, S1 unlabelled
    assert sim.truth["facing"] in ("left", "right")
    assert sim.truth["pixel_spacing_mm"][0] == pytest.approx(sim.truth["pixel_spacing_mm"][1])


def test_full_size_has_clinical_pixel_spacing():
    sim = simulate(0, 1, SimConfig(fov="lumbar", size="full"))
    assert 2000 <= sim.image.shape[0] <= 3000
    assert 0.1 <= sim.truth["pixel_spacing_mm"][0] <= 0.2


@pytest.mark.parametrize("index", range(3))
def test_body_labels_cover_bright_bone_and_their_edges_line_up(index):
    sim = simulate(11, index, SimConfig(size=320))
    image = sim.image.astype(float)
    bodies = sim.labels > 0
    soft = ~ndimage.binary_dilation(bodies, iterations=6)
    assert image[bodies].mean() > np.percentile(image[soft], 60)
    # The label outline lies on the image's edges: shifting it in any direction lowers the edge strength.
    grad = np.hypot(*np.gradient(ndimage.gaussian_filter(image, 1.0)))
    edge = bodies ^ ndimage.binary_erosion(bodies)

    def strength(dr, dc):
        return grad[np.roll(edge, (dr, dc), axis=(0, 1))].mean()

    base = strength(0, 0)
    assert all(strength(dr, dc) < base for dr, dc in [(3, 0), (-3, 0), (0, 3), (0, -3)])


def _mask_heights(labels: np.ndarray, rec: dict) -> dict[str, float]:
    """Walk the labelmap along the truth's axis from each station to where the interpolated label crosses 0.5."""
    axis = np.asarray(rec["axis"])
    mask = (labels == rec["code"]).astype(float)
    out = {}
    for key, station in (("Ha", "anterior"), ("Hm", "middle"), ("Hp", "posterior")):
        top, bottom = np.asarray(rec["points"][f"superior_{station}"]), np.asarray(rec["points"][f"inferior_{station}"])
        mid = (top + bottom) / 2
        steps = np.arange(0.0, 200.0, 0.01)
        ends = []
        for sign in (-1, 1):
            pts = mid[:, None] + sign * axis[:, None] * steps
            inside = ndimage.map_coordinates(mask, pts, order=1, cval=0.0) >= 0.5
            ends.append(steps[np.argmin(inside)])
        out[key] = sum(ends)
    return out


@pytest.mark.parametrize("fov, projection, irregularity", [
    ("lumbar", "perspective", 1.0), ("chest", "perspective", 1.0), ("thoracolumbar", "parallel", 1.0),
    ("lumbar", "perspective", 2.0),
])
def test_truth_heights_agree_with_the_labelmap_within_one_pixel(fov, projection, irregularity):
    checked = 0
    for index in range(2):
        sim = simulate(5, index, SimConfig(fov=fov, size=384, projection=projection, fracture_rate=1.0,
                                           irregularity=irregularity))
        for rec in sim.truth["vertebrae"]:
            if rec["truncated"]:
                assert "Ha_mm" not in rec
                continue
            measured = _mask_heights(sim.labels, rec)
            for key in ("Ha", "Hm", "Hp"):
                assert abs(measured[key] - rec[f"{key}_px"]) <= 1.0, (rec["level"], key)
                assert rec[f"{key}_mm"] == pytest.approx(rec[f"{key}_px"] * sim.truth["pixel_spacing_mm"][0])
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize("kind", ["wedge", "biconcave", "crush"])
@pytest.mark.parametrize("grade, reduction", [(1, 0.22), (2, 0.33), (3, 0.5)])
def test_each_deformity_reduces_the_requested_height_by_the_requested_fraction(kind, grade, reduction):
    fracture = Fracture("L2", kind, grade, reduction)
    sim = simulate(3, 0, SimConfig(fov="lumbar", size=512, fractures=(fracture,)))
    by = {r["level"]: r for r in sim.truth["vertebrae"]}
    rec = by["L2"]
    assert (rec["deformity"], rec["genant_grade"], rec["reduction"]) == (kind, grade, reduction)
    # As a reader sees it, on the detector: the requested index, to within half a percentage point.
    if kind == "wedge":
        shown = rec["Ha_px"] / rec["Hp_px"]
    elif kind == "biconcave":
        shown = rec["Hm_px"] / rec["Hp_px"]
    else:
        shown = rec["Hp_px"] / ((by["L1"]["Hp_px"] + by["L3"]["Hp_px"]) / 2)
    assert shown == pytest.approx(1 - reduction, abs=0.005)
    assert rec["reduction_shown"] == pytest.approx(reduction, abs=0.002)
    assert rec["genant_grade_shown"] == grade
    # In 3D the body lost exactly the recorded 3D fraction: more than requested, since projection pulls
    # ratios toward 1, and never more than 0.2 beyond it.
    h, r3 = rec["heights_3d_mm"], rec["reduction_3d"]
    assert reduction <= r3 <= reduction + 0.2
    if kind == "wedge":
        assert h["Ha"] / h["Hp"] == pytest.approx(1 - r3, abs=1e-9)
    elif kind == "biconcave":
        assert h["Hm"] / h["Hp"] == pytest.approx(1 - r3, abs=1e-9)
    else:
        neighbours = (by["L1"]["baseline_3d_mm"]["Hp"] + by["L3"]["baseline_3d_mm"]["Hp"]) / 2
        assert h["Hp"] / neighbours == pytest.approx(1 - r3, abs=1e-9)
    for other in ("L1", "L3"):
        assert by[other]["deformity"] == "none" and by[other]["genant_grade"] == 0


def test_random_fractures_follow_the_rate_and_favour_the_thoracolumbar_junction():
    rng = np.random.default_rng(0)
    levels = [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
    draws = [sample_fractures(rng, levels, 0.3) for _ in range(2000)]
    assert 0.26 < np.mean([bool(d) for d in draws]) < 0.34
    counts = {}
    for d in draws:
        for f in d:
            counts[f.level] = counts.get(f.level, 0) + 1
            lo, hi = {1: (0.2, 0.25), 2: (0.25, 0.4), 3: (0.4, 0.8)}[f.grade]
            assert lo <= f.reduction < hi
    junction = sum(counts.get(n, 0) for n in ("T11", "T12", "L1", "L2"))
    assert junction > 0.45 * sum(counts.values())
    assert sum(1 for d in draws if d) == pytest.approx(600, rel=0.15)


@pytest.mark.parametrize("text, message", [("L7:wedge:2", "level"), ("L1:wedge:5", "grade"),
                                           ("L1:squash:2", "deformity"), ("L1:wedge:1:0.3", "reduces height"),
                                           ("C5:wedge:2", "T1-L5"), ("L1-wedge", "LEVEL:TYPE:GRADE")])
def test_bad_fractures_are_rejected_clearly(text, message):
    with pytest.raises(ValueError, match=message):
        parse_fracture(text)


@pytest.mark.parametrize("kwargs, message", [({"fov": "pelvis"}, "field of view"), ({"size": 8}, "32"),
                                             ({"fracture_rate": 1.5}, "probability"), ({"facing": "up"}, "facing"),
                                             ({"projection": "fisheye"}, "projection"),
                                             ({"irregularity": -0.5}, "irregularity")])
def test_bad_configs_are_rejected_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimConfig(**kwargs)


@pytest.mark.parametrize("facing", ["left", "right"])
def test_facing_puts_the_anterior_points_on_the_facing_side(facing):
    sim = simulate(1, 0, SimConfig(fov="lumbar", size=256, facing=facing))
    assert sim.truth["facing"] == facing
    assert sim.truth["patient_orientation"] == (["P", "F"] if facing == "left" else ["A", "F"])
    for rec in sim.truth["vertebrae"]:
        if rec["truncated"]:
            continue
        front, back = rec["points"]["superior_anterior"][1], rec["points"]["superior_posterior"][1]
        assert (front < back) == (facing == "left")


@pytest.mark.parametrize("seed, index", [(2, 0), (2, 1), (9, 2)])
def test_an_irregular_phantom_differs_from_the_smooth_one_but_shows_the_same_bodies(seed, index):
    rough = simulate(seed, index, SimConfig(size=256))
    smooth = simulate(seed, index, SimConfig(size=256, irregularity=0.0))
    assert rough.truth["fov"] == smooth.truth["fov"] and rough.truth["facing"] == smooth.truth["facing"]
    assert set(np.unique(rough.labels)) == set(np.unique(smooth.labels))
    assert np.abs(rough.image.astype(int) - smooth.image).mean() > 20
    assert "irregularity" in rough.truth and "irregularity" not in smooth.truth
    again = simulate(seed, index, SimConfig(size=256))
    np.testing.assert_array_equal(rough.image, again.image)
    assert rough.truth == again.truth


def test_trabecular_texture_and_degenerative_bone_stay_out_of_the_labels():
    sim = simulate(8, 3, SimConfig(fov="chest", size=256))
    phantom, proj = sim.extra["phantom"], sim.extra["projection"]
    assert any(b.texture for b in phantom.bodies) and sim.truth["irregularity"]["osteophytes"]
    bodies = dataclasses.replace(phantom, bone=(), ribs=(), context=())
    plain = dataclasses.replace(bodies, bodies=tuple(dataclasses.replace(b, texture=None) for b in phantom.bodies))
    textured, labels = render(bodies, proj)
    smooth, smooth_labels = render(plain, proj)
    np.testing.assert_array_equal(render(phantom, proj)[1], smooth_labels)  # bone, ribs, texture: no label moves
    np.testing.assert_array_equal(labels, smooth_labels)
    texture = textured - smooth
    assert np.abs(texture[labels == 0]).max() == 0 and np.abs(texture[labels > 0]).max() > 0.01


def test_degeneration_narrows_the_lower_lumbar_discs_most():
    draws = [sample_irregularity(np.random.default_rng([0, i, 1])) for i in range(300)]
    disc = {name: np.mean([d.disc[name] for d in draws]) for name in ("T4", "T10", "L2", "L4", "L5")}
    assert disc["L5"] < disc["L2"] < disc["T4"] and disc["L4"] < disc["T10"]
    assert min(min(d.disc.values()) for d in draws) >= 0.4
    spurs = {name: np.mean([max(d.spurs[name]) > 0 for d in draws]) for name in ("T3", "L4")}
    assert spurs["L4"] > 2 * spurs["T3"]
    assert sample_irregularity(np.random.default_rng(0), 0.0) is None
