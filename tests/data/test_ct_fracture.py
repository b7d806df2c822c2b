"""Compression fractures made in a CT: the deformation, the match on the detector, and random training cases."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from spinemorph.cli import main
from spinemorph.data.ct import body_frames, load_ct
from spinemorph.data.ct_anatomy import deform_parts
from spinemorph.data.ct_cases import CaseConfig, ct_drr_case, sample_lesions
from spinemorph.data.ct_fracture import CtLesion, fracture_warp, match_lesions, parse_lesion
from spinemorph.data.drr import DrrConfig, pose, render_labels
from spinemorph.levels import level_code
from spinemorph.measure import measure
from tests.data.test_ct_anatomy import CT, MASK, needs_ct, synthetic_ct


def test_lesions_are_checked_and_graded():
    assert CtLesion("t8", "wedge", 0.3).level == "T8"
    assert (CtLesion("T8", "wedge", 0.3).grade, CtLesion("T8", "crush", 0.45).grade) == (2, 3)
    assert CtLesion("T8", "biconcave", 0.3).top_share == 0.5 and CtLesion("T8", "wedge", 0.3).top_share == 1.0
    assert CtLesion("L1", "endplate", 0.1).deformity == "none"
    assert CtLesion("L1", "endplate", 0.22).deformity == "biconcave"
    with pytest.raises(ValueError, match="Unknown lesion 'burst'"):
        CtLesion("T8", "burst", 0.3)
    with pytest.raises(ValueError, match="less than 25%"):
        CtLesion("T8", "endplate", 0.3)
    with pytest.raises(ValueError, match="less than 80%"):
        CtLesion("T8", "crush", 0.85)
    assert parse_lesion("L1:Endplate:0.15:0") == CtLesion("L1", "endplate", 0.15, 0.0)
    with pytest.raises(ValueError, match="LEVEL:KIND:REDUCTION"):
        parse_lesion("T8:wedge")


@pytest.fixture(scope="module")
def toy():
    return synthetic_ct()


def _extent(part, frame, t: float) -> tuple[float, float]:
    """Return the (bottom, top) of a body along ``frame``'s axis on the line at AP position ``t``, lateral 0."""
    s = np.linspace(-40, 40, 3201)
    pts = frame.centre[:, None] + np.outer(frame.axis, s) + np.outer(frame.anterior, np.full(s.size, t))
    inside = ndimage.map_coordinates(part.mask, np.linalg.inv(part.to_ras)[:3] @ np.vstack([pts, np.ones(s.size)]),
                                     order=1) >= 0.5
    return float(s[inside].min()), float(s[inside].max())


@pytest.mark.parametrize("kind, anterior, middle, posterior", [
    ("wedge", 0.9, 0.5, 0.1),  # the loss at the six-point stations: u = 0.9, 0.5, 0.1 of the depth
    ("biconcave", 0.36, 1.0, 0.36),
    ("crush", 1.0, 1.0, 1.0),
])
def test_a_lesion_takes_its_height_profile_from_the_body(toy, kind, anterior, middle, posterior):
    frames = body_frames(toy)
    frame = frames[level_code("T9")]
    depth = 6.0
    moved = {p.code: p for p in deform_parts(toy, [fracture_warp(toy, frames, CtLesion("T9", kind, 0.3), depth)])}
    lo, hi = frame.depth
    for u, share in ((0.9, anterior), (0.5, middle), (0.1, posterior)):
        t = lo + u * (hi - lo)
        before = _extent(toy.parts[2], frame, t)
        after = _extent(moved[level_code("T9")], frame, t)
        loss = (before[1] - before[0]) - (after[1] - after[0])
        assert loss == pytest.approx(share * depth, abs=0.35), (u, loss)
    above = _extent(moved[level_code("T8")], frame, lo + 0.9 * (hi - lo))
    original = _extent(toy.parts[1], frame, lo + 0.9 * (hi - lo))
    if kind == "biconcave":  # the disc bulges into the concavity; the neighbour stays
        assert above == pytest.approx(original, abs=0.2)
    else:  # the vertebra above comes down by two thirds of the loss (three discs share it)
        assert original[0] - above[0] == pytest.approx(2 / 3 * anterior * depth, abs=0.35)


def test_random_lesions_fall_on_whole_bodies_with_both_neighbours(toy):
    rng = np.random.default_rng(0)
    for _ in range(20):
        lesions = sample_lesions(toy, rng, 1.0, 1.0)
        assert lesions and {les.level for les in lesions} <= {"T8", "T9", "T10"}
    assert sample_lesions(toy, np.random.default_rng(1), 0.0, 0.0) == []


@pytest.fixture(scope="module")
def ct():
    return load_ct(CT, MASK)


def _labels_at_neutral_pose(ct):
    def render(parts, patient_ras):
        posed = replace(ct, parts=parts, patient_ras=patient_ras)
        to_world, proj = pose(posed, 0.0, 0.0, DrrConfig())
        return render_labels(posed, to_world, proj), proj.pitch_mm, proj.facing
    return render


@needs_ct
@pytest.mark.parametrize("lesion", [CtLesion("T8", "wedge", 0.30), CtLesion("T9", "crush", 0.30),
                                    CtLesion("T9", "biconcave", 0.30)], ids=lambda les: f"{les.kind}-{les.level}")
def test_a_fracture_made_in_a_ct_projects_to_the_requested_reduction_within_5_percent(ct, lesion):
    render = _labels_at_neutral_pose(ct)
    match = match_lesions(ct, [], [lesion], render)
    labels, pitch, facing = render(match.parts, match.warps[0].forward(ct.patient_ras))
    record = measure(labels, (pitch, pitch), facing).by_level()[lesion.level]
    index = {"wedge": record.wedge, "biconcave": record.biconcave, "crush": record.crush}[lesion.kind]
    shown = 1 - index
    assert shown == pytest.approx(lesion.reduction, rel=0.05)
    assert shown == pytest.approx(match.levels[lesion.level]["reduction_shown"])
    assert 0.2 < match.levels[lesion.level]["reduction_3d"] < 0.6


@needs_ct
def test_a_random_case_carries_the_simulators_truth(ct):
    config = CaseConfig(lesions=(CtLesion("T9", "wedge", 0.3),))
    image, labels, truth = ct_drr_case(ct, np.random.default_rng(3), config)
    assert image.dtype == np.uint16 and labels.dtype == np.uint8 and image.shape == labels.shape
    assert truth["source"] == "ct-drr" and truth["facing"] in ("left", "right")
    assert abs(truth["patient"]["axial_rotation_deg"]) <= 15 and abs(truth["patient"]["tilt_deg"]) <= 8
    assert 60 <= truth["xray"]["kvp"] <= 120
    records = {v["level"]: v for v in truth["vertebrae"]}
    t9 = records["T9"]
    for key in ("level", "code", "deformity", "genant_grade", "reduction", "reduction_shown", "genant_grade_shown",
                "reduction_3d", "points", "points_mm", "Ha_px", "Hm_px", "Hp_px", "Ha_mm", "Hm_mm", "Hp_mm"):
        assert key in t9, key
    assert (t9["deformity"], t9["genant_grade"]) == ("wedge", 2)
    assert t9["reduction_shown"] == pytest.approx(1 - t9["Ha_px"] / t9["Hp_px"], abs=1e-4)
    assert records["T5"]["deformity"] == "none" and "reduction_shown" not in records["T5"]
    kinds = {w["kind"] for w in truth["anatomy"]}
    assert "fracture" in kinds
    json.dumps(truth)  # plain JSON


@needs_ct
def test_cli_writes_random_training_cases(tmp_path):
    out = tmp_path / "studies"
    assert main(["drr", str(CT), str(MASK), "--out", str(out), "--random", "1", "--fracture", "T10:crush:0.3",
                 "--spacing", "1.0", "--format", "nifti", "--seed", "2"]) == 0
    (image,) = sorted(out.glob("*.nii.gz"))
    truth = json.loads((out / "labels" / "final" / image.name.replace(".nii.gz", ".truth.json")).read_text())
    t10 = {v["level"]: v for v in truth["vertebrae"]}["T10"]
    assert t10["lesion"] == "crush" and (truth["seed"], truth["index"]) == (2, 0)
    assert truth["pixel_spacing_mm"] == [1.0, 1.0]
