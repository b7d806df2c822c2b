"""Refuse rather than invent: a segment that is no plausible vertebral body keeps its heights and loses its grade;
a network's segment that is no body at all (``no_body``) loses its heights too."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from spinemorph.measure import measure
from spinemorph.measure.gates import DEFAULT_GATES, TRUTH_GATES, _edge, _outside, gate_views, solidity, withhold
from spinemorph.measure.records import VertebraRecord

ROWS = {19: (20, 60), 20: (70, 110), 21: (120, 160), 22: (170, 210), 23: (220, 260)}  # T12-L4, 40 rows each


def spine(**changes) -> np.ndarray:
    """Five 40×60 bodies, T12-L4, in one column; ``changes`` maps a level name to a new (top, bottom, left, right)."""
    labels = np.zeros((290, 120), np.uint8)
    names = {"T12": 19, "L1": 20, "L2": 21, "L3": 22, "L4": 23}
    for name, code in names.items():
        top, bottom, left, right = changes.get(name, (*ROWS[code], 30, 90))
        labels[top:bottom, left:right] = code
    return labels


def merged_spine() -> np.ndarray:
    """``spine()`` with L2 and L3 drawn as one segment, L2's, twice a body's height."""
    merged = spine(L2=(120, 200, 30, 90), L3=(0, 0, 0, 0))
    merged[merged == 22] = 0
    return merged


def graded(result) -> dict[str, int | None]:
    return {r.level: r.genant_grade for r in result.vertebrae}


def test_plausible_bodies_are_graded_and_a_real_crush_fracture_too():
    result = measure(spine(L2=(130, 150, 30, 90)), (1.0, 1.0), "left")  # L2 crushed to half its height
    assert graded(result) == {"T12": 0, "L1": 0, "L2": 3, "L3": 0, "L4": 0}
    assert not any("low_confidence" in r.flags for r in result.vertebrae)


def test_an_implausible_blob_is_reported_low_confidence_and_not_graded():
    blob = spine(L2=(120, 160, 45, 75))  # half as deep as its neighbours: no vertebral body
    rec = measure(blob, (1.0, 1.0), "left").by_level()["L2"]
    assert rec.genant_grade is None and rec.deformity is None
    assert rec.flags[:2] == ["low_confidence", "implausible_size"] and rec.Ha_mm and rec.Hp_mm
    split = spine()
    split[125:150, 94:119] = 21  # L2 in two pieces: not one solid body
    rec = measure(split, (1.0, 1.0), "left").by_level()["L2"]
    assert rec.genant_grade is None and rec.flags == ["fragmented", "low_confidence", "not_solid"]


def test_low_model_confidence_withdraws_the_grade():
    confidence = {19: 0.98, 20: 0.97, 21: 0.55, 22: 0.96, 23: 0.99}
    result = measure(spine(), (1.0, 1.0), "left", confidence=confidence)
    assert graded(result) == {"T12": 0, "L1": 0, "L2": None, "L3": 0, "L4": 0}
    assert result.by_level()["L2"].flags[-2:] == ["low_confidence", "low_model_confidence"]


def test_an_unsure_facing_grades_nothing():
    result = measure(spine(), (1.0, 1.0), "left", facing_source="facing model", facing_confidence=0.6)
    assert set(graded(result).values()) == {None} and "facing_uncertain" in result.flags
    assert all("facing_uncertain" in r.flags and "low_confidence" not in r.flags for r in result.vertebrae)
    sure = measure(spine(), (1.0, 1.0), "left", facing_source="facing model", facing_confidence=0.97)
    assert set(graded(sure).values()) == {0} and sure.to_dict()["facing_confidence"] == 0.97


def test_solidity_of_shapes():
    square = np.zeros((20, 20), bool)
    square[5:15, 5:15] = True
    assert solidity(square) == 1.0
    ell = square.copy()
    ell[5:10, 10:15] = False  # an L: 75 pixels in a hull of 100 - 12.5 (the cut corner's triangle)
    assert solidity(ell) == 75 / 87.5


def test_stations_outside_a_segment_are_as_far_as_a_distance_transform_says():
    """The distance of the furthest station from the segment (points_outside) comes from the segment's edge pixels:
    the same values as the distance transform of its box grown by 2 px, infinite beyond that."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for _ in range(20):
        mask = ndimage.binary_fill_holes(ndimage.gaussian_filter(rng.random((40, 50)), 3) > 0.5)
        if not mask.any():
            continue
        origin = (int(rng.integers(0, 100)), int(rng.integers(0, 100)))
        distance = ndimage.distance_transform_edt(~np.pad(mask, 2))
        for _ in range(30):
            point = (origin[0] + rng.uniform(-4, 44), origin[1] + rng.uniform(-4, 54))
            rec = VertebraRecord(level="L1", code=20, points={"superior_anterior": list(point)})
            r, c = int(round(point[0])) - origin[0] + 2, int(round(point[1])) - origin[1] + 2
            inside = 0 <= r < distance.shape[0] and 0 <= c < distance.shape[1]
            assert _outside(rec, mask, origin, _edge(mask)) == (float(distance[r, c]) if inside else np.inf)


def test_a_fragment_a_few_millimetres_tall_is_not_graded_even_alone():
    """Tallest height 4 mm at 0.1 mm/px: no adult thoracolumbar body, however magnified."""
    labels = np.zeros((290, 120), np.uint8)
    labels[120:160, 30:90] = 22  # 40 rows, 60 columns: 4 × 6 mm at 0.1 mm
    rec = measure(labels, (0.1, 0.1), "left").by_level()["L3"]
    assert rec.genant_grade is None and rec.Ha_mm == pytest.approx(4.0, abs=0.2)
    assert {"low_confidence", "implausible_size", "no_neighbour"} <= set(rec.flags)
    in_pixels = measure(labels, None, "left").by_level()["L3"]  # without a spacing only the neighbours can tell
    assert in_pixels.genant_grade is None and "implausible_size" not in in_pixels.flags
    assert {"low_confidence", "no_neighbour"} <= set(in_pixels.flags)


def test_a_body_with_measured_neighbours_is_graded_at_a_real_scale():
    result = measure(spine(L2=(130, 150, 30, 90)), (0.7, 0.7), "left")  # 28 × 42 mm bodies, L2 crushed
    assert graded(result) == {"T12": 0, "L1": 0, "L2": 3, "L3": 0, "L4": 0}


def test_stages_that_disagree_on_an_outline_withdraw_its_grade():
    agreement = {19: 0.9, 20: 0.85, 21: 0.3, 22: 0.92, 23: 0.88}  # L2: stage 2 drew something else
    result = measure(spine(), (0.7, 0.7), "left", agreement=agreement)
    assert graded(result) == {"T12": 0, "L1": 0, "L2": None, "L3": 0, "L4": 0}
    assert result.by_level()["L2"].flags[-2:] == ["low_confidence", "stages_disagree"]
    assert set(graded(measure(spine(), (0.7, 0.7), "left")).values()) == {0}  # stage 1 alone: no such gate


def test_a_fracture_on_a_stage_1_outline_is_not_graded_and_normal_ones_are():
    crushed = spine(L2=(130, 150, 30, 90))  # L2 crushed to half its height
    fine = measure(crushed, (1.0, 1.0), "left", stages=dict.fromkeys(ROWS, 2)).by_level()
    coarse = measure(crushed, (1.0, 1.0), "left", stages=dict.fromkeys(ROWS, 1)).by_level()
    assert fine["L2"].genant_grade == 3 and "coarse_outline" not in fine["L2"].flags
    assert coarse["L2"].genant_grade is None and coarse["L2"].deformity is None
    assert coarse["L2"].flags[-2:] == ["low_confidence", "coarse_outline"] and coarse["L2"].stage == 1
    assert coarse["L2"].vcr_percent == pytest.approx(fine["L2"].vcr_percent)  # the heights and VCR stay
    for level in ("T12", "L1", "L3", "L4"):  # normal grades stand; L2 is still their neighbour
        assert coarse[level].genant_grade == 0 and coarse[level].vcr_percent == fine[level].vcr_percent
    opened = measure(crushed, (1.0, 1.0), "left", stages=dict.fromkeys(ROWS, 1),
                     gates=replace(DEFAULT_GATES, fine_fracture=False)).by_level()
    assert opened["L2"].genant_grade == 3
    assert measure(crushed, (1.0, 1.0), "left").by_level()["L2"].genant_grade == 3  # stage unknown: not judged


def test_a_refusal_made_elsewhere_withdraws_a_fracture_grade_and_keeps_a_normal_one():
    agreement = {19: 0.9, 20: 0.85, 21: 0.95, 22: 0.92, 23: 0.88}
    result = measure(spine(L2=(130, 150, 30, 90)), (1.0, 1.0), "left", agreement=agreement)
    assert [r.agreement for r in result.vertebrae] == list(agreement.values())  # carried into the JSON
    assert result.to_dict()["vertebrae"][2]["agreement"] == 0.95
    withhold(result.vertebrae, {21: ["views_disagree"], 22: ["views_disagree"]})
    by = result.by_level()
    assert by["L2"].genant_grade is None and by["L2"].flags[-2:] == ["low_confidence", "views_disagree"]
    assert by["L3"].genant_grade == 0 and "views_disagree" not in by["L3"].flags
    withhold(result.vertebrae, {22: ["landmarks_disagree"]}, normal=True)  # no grade at all on what disagrees
    assert by["L3"].genant_grade is None and by["L3"].flags[-2:] == ["low_confidence", "landmarks_disagree"]
    assert by["L4"].genant_grade == 0


def test_a_segment_that_fails_a_gate_on_its_own_is_no_reference_for_its_neighbours():
    tall = spine(L2=(112, 168, 30, 90))  # L2 drawn 56 rows tall, 40 % taller than its neighbours
    trusted = measure(tall, (1.0, 1.0), "left").by_level()
    assert trusted["L1"].vcr_percent == pytest.approx(100 * (1 - 40 / 48), abs=1.0)  # against T12 and L2
    agreement = {19: 0.9, 20: 0.85, 21: 0.3, 22: 0.92, 23: 0.88}  # L2: stage 2 drew something else
    refused = measure(tall, (1.0, 1.0), "left", agreement=agreement).by_level()
    assert refused["L2"].genant_grade is None and "stages_disagree" in refused["L2"].flags
    for level in ("L1", "L3"):  # each measured against its other neighbour alone
        rec = refused[level]
        assert rec.vcr_percent == pytest.approx(0.0, abs=1.0) and rec.crush == pytest.approx(1.0, abs=0.01)
        assert rec.genant_grade == 0 and "one_neighbour" in rec.flags


def test_two_bodies_drawn_as_one_segment_are_no_reference_for_their_neighbours():
    """L2 and L3 drawn as one segment, twice a body's height: refused (``implausible_size``), and L1 is measured
    against T12 alone, not made to look crushed against a neighbour twice its height (a false grade 2)."""
    merged = merged_spine()
    by = measure(merged, (0.4, 0.4), "left").by_level()  # 32 mm: a size one body may have, so only its neighbours tell
    assert by["L2"].genant_grade is None and "implausible_size" in by["L2"].flags
    assert "one_neighbour" in by["L1"].flags and by["L1"].vcr_percent == pytest.approx(0.0, abs=1.0)
    assert by["L1"].genant_grade == 0


def test_a_networks_segment_that_is_no_body_has_no_heights_and_a_hand_drawn_one_keeps_them():
    """The same merged L2 and L3, drawn by a network (its stage known): two bodies' height, so no body on its own.
    It has no heights, indices or VCR (``heights_withheld``) and keeps its six points; its neighbours are measured
    as before. Drawn by hand (no stage) it keeps its heights; a body out of proportion only by its depth (a gate
    that also fires beside a neighbour drawn wrong) keeps them too."""
    merged = merged_spine()
    net = measure(merged, (0.4, 0.4), "left", stages={19: 2, 20: 2, 21: 2, 23: 2}).by_level()
    hand = measure(merged, (0.4, 0.4), "left").by_level()
    rec = net["L2"]
    assert rec.flags == ["low_confidence", "implausible_size", "heights_withheld"]
    assert [rec.Ha_mm, rec.Hm_px, rec.Hp_mm, rec.wedge, rec.crush, rec.vcr_percent, rec.genant_grade] == [None] * 7
    assert rec.heights_from is None and rec.points == hand["L2"].points and len(rec.points) == 6
    assert hand["L2"].Ha_mm == pytest.approx(32.0, abs=0.5) and "heights_withheld" not in hand["L2"].flags
    for level in ("T12", "L1", "L4"):
        assert (net[level].vcr_percent, net[level].genant_grade) == (hand[level].vcr_percent, hand[level].genant_grade)
    thin = measure(spine(L2=(120, 160, 45, 75)), (1.0, 1.0), "left", stages=dict.fromkeys(ROWS, 2)).by_level()["L2"]
    assert "implausible_size" in thin.flags and "heights_withheld" not in thin.flags and thin.Ha_mm


def test_a_body_refused_only_because_the_stages_disagree_is_a_reference_when_in_proportion():
    """Stage 2 redrew L2 unlike stage 1 (``stages_disagree``), but at its neighbours' size: its heights are right
    far more often than not, and a VCR against one neighbour carries the neighbours' natural difference."""
    short = spine(L1=(74, 110, 30, 90))  # L1 36 rows tall: a 10 % reduction against T12 and L2 (40 each)
    agreement = {19: 0.9, 20: 0.85, 21: 0.3, 22: 0.92, 23: 0.88}
    by = measure(short, (1.0, 1.0), "left", agreement=agreement).by_level()
    assert by["L2"].genant_grade is None and "stages_disagree" in by["L2"].flags  # still refused itself
    assert "one_neighbour" not in by["L1"].flags and "one_neighbour" not in by["L3"].flags
    assert by["L1"].vcr_percent == pytest.approx(10.0, abs=1.0) and by["L1"].genant_grade == 0
    strict = measure(short, (1.0, 1.0), "left", agreement=agreement,
                     gates=replace(DEFAULT_GATES, reference=1.05)).by_level()  # judged pair by pair
    assert "one_neighbour" in strict["L1"].flags and "one_neighbour" not in strict["L3"].flags  # 40/36 vs 40/40
    low = {**agreement, 21: 0.9}
    confidence = {19: 0.99, 20: 0.99, 21: 0.5, 22: 0.99, 23: 0.99}  # refused for another reason too: no reference
    by = measure(short, (1.0, 1.0), "left", agreement=low, confidence=confidence).by_level()
    assert "low_model_confidence" in by["L2"].flags and "one_neighbour" in by["L1"].flags


def _sloped(labels: np.ndarray, code: int, rows: tuple[int, int], front: int, back: int) -> np.ndarray:
    """Redraw body ``code`` in columns 30-89 (anterior on the left) with its inferior endplate at ``rows[1]`` and
    its superior endplate sloping, so that it is ``front`` rows tall in front and ``back`` behind."""
    labels[labels == code] = 0
    for col in range(30, 90):
        height = round(front + (back - front) * (col - 30) / 59)
        labels[rows[1] - height:rows[1], col] = code
    return labels


def test_a_posterior_wall_far_shorter_than_the_front_is_refused_and_no_reference():
    """No compression fracture leaves the front intact and the back a third lower: stations on a shadow."""
    odd = _sloped(spine(), 21, ROWS[21], 40, 26)  # L2: Ha 40, Hp 26, max(Ha, Hm) / Hp about 1.5
    result = measure(odd, (1.0, 1.0), "left").by_level()
    assert result["L2"].Ha_mm / result["L2"].Hp_mm > 1.4
    assert result["L2"].genant_grade is None and result["L2"].flags[-2:] == ["low_confidence", "implausible_shape"]
    for level in ("L1", "L3"):  # each measured against its other neighbour alone, not against L2's short back
        assert result[level].crush == pytest.approx(1.0, abs=0.02) and result[level].genant_grade == 0
    opened = measure(odd, (1.0, 1.0), "left", gates=TRUTH_GATES).by_level()  # a truth outline is measured, not judged
    assert opened["L2"].genant_grade is not None and opened["L2"].deformity == "crush"  # what the gate withholds


def test_a_physiological_lumbar_wedge_in_reverse_is_graded():
    """A lower lumbar body a fifth taller in front than behind (L5's lordotic wedge) passes."""
    wedge = _sloped(spine(), 23, ROWS[23], 40, 32)  # L4 here: Ha / Hp about 1.2
    rec = measure(wedge, (1.0, 1.0), "left").by_level()["L4"]
    assert 1.15 < rec.Ha_mm / rec.Hp_mm < 1.3 and rec.genant_grade is not None and "low_confidence" not in rec.flags


def test_a_fracture_each_view_alone_does_not_grade_is_not_called():
    """Stage 2 draws from the mean of the crop's and its mirror's probabilities; a fracture grade stands only when
    the morphometry of each view's own outlines grades that level a fracture too."""
    crushed, sound = spine(L2=(130, 150, 30, 90)), spine()
    view = {"crushed": measure(crushed, (1.0, 1.0), "left"), "sound": measure(sound, (1.0, 1.0), "left"),
            "missing": measure(np.where(crushed == 21, 0, crushed), (1.0, 1.0), "left")}

    def gated(*views):
        result = measure(crushed, (1.0, 1.0), "left")
        gate_views(result.vertebrae, [view[v] for v in views])
        return result.by_level()

    agreed = gated("crushed", "crushed")
    assert agreed["L2"].genant_grade == 3 and "views_disagree" not in agreed["L2"].flags
    for views in (("crushed", "sound"), ("missing", "crushed")):
        rec = gated(*views)
        assert rec["L2"].genant_grade is None and rec["L2"].deformity is None
        assert rec["L2"].flags[-2:] == ["low_confidence", "views_disagree"] and rec["L2"].Hp_mm
        assert rec["L1"].genant_grade == 0 and "views_disagree" not in rec["L1"].flags  # a normal grade stays
