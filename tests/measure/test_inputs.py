"""Bad input, binary masks and their clean-up, splitting and naming."""

from __future__ import annotations

import numpy as np
import pytest

from spinemorph.measure import measure


def column(n=4, height=30, depth=50, gap=8, value=1):
    labels = np.zeros((n * (height + gap) + gap, depth + 30), np.uint8)
    for i in range(n):
        top = gap + i * (height + gap)
        labels[top:top + height, 15:15 + depth] = value if value == 1 else value + i
    return labels


def test_an_empty_labelmap_gives_no_records_and_says_so():
    result = measure(np.zeros((50, 40), np.uint8), spacing=(1, 1))
    assert result.vertebrae == [] and "empty_labelmap" in result.flags


def test_a_single_vertebra_is_measured_but_has_no_vcr():
    labels = np.zeros((80, 80), np.uint8)
    labels[20:50, 15:65] = 22
    result = measure(labels, spacing=(1, 1), facing="left")
    (rec,) = result.vertebrae
    assert rec.Ha_mm == pytest.approx(30, abs=0.1) and rec.vcr_percent is None and rec.crush is None
    assert {"vcr_unavailable", "no_upper_neighbour", "no_lower_neighbour"} <= set(rec.flags)
    assert "single_vertebra" in result.flags


@pytest.mark.parametrize("labels, message", [
    (np.zeros((4, 5, 6), np.uint8), "2D labelmap"),
    (np.full((10, 10), 0.5), "non-integer"),
    (np.array([[0, 27], [0, 0]]), "not VerSe level codes"),
    (np.array([[0, 99], [20, 0]]), r"\[99\]"),
    (np.array([[-1, 0], [20, 0]]), "not VerSe"),
    (np.zeros((0, 4), np.uint8), "no pixels"),
])
def test_bad_labelmaps_raise_a_clear_error(labels, message):
    with pytest.raises(ValueError, match=message):
        measure(labels, spacing=(1, 1))


@pytest.mark.parametrize("spacing", [(float("nan"), 1.0), (0.0, 1.0), (-0.1, 0.1), ("a", "b"), (1.0,)])
def test_bad_spacing_raises_a_clear_error(spacing):
    with pytest.raises(ValueError, match="spacing"):
        measure(column(value=20), spacing=spacing)


def test_h_w_1_is_accepted():
    assert len(measure(column(value=20)[:, :, None], spacing=(1, 1), facing="left").vertebrae) == 4


def test_without_spacing_heights_stay_in_pixels_and_ratios_still_work():
    result = measure(column(value=20), spacing=None, facing="left")
    assert result.unit == "px" and "no_spacing" in result.flags
    rec = result.vertebrae[1]
    assert rec.Ha_mm is None and rec.Ha_px == pytest.approx(30, abs=0.1)
    assert rec.wedge == pytest.approx(1.0, abs=0.01) and rec.genant_grade == 0 and "no_spacing" in rec.flags


def test_a_body_cut_by_the_image_edge_is_flagged_truncated_without_heights():
    labels = column(value=20)[12:]  # the top body now touches row 0
    by = measure(labels, spacing=(1, 1), facing="left").by_level()
    assert "truncated" in by["L1"].flags and by["L1"].Ha_mm is None and by["L1"].genant_grade is None
    assert by["L2"].Ha_mm is not None


def test_a_binary_mask_is_cleaned_split_ordered_and_named():
    labels = column(n=4, value=1)
    labels[36:48, 26:32] = 1  # a thin bridge across the disc, between the six-point stations: bodies touch
    labels[100:104, 2:5] = 1  # debris, far smaller than a body
    labels[130:134, 30:34] = 0  # a hole inside body 4
    result = measure(labels, spacing=(1, 1), facing="left")
    names = [r.level for r in result.vertebrae]
    assert names == ["V1", "V2", "V3", "V4"]
    assert "touching_bodies_split" in result.flags and "levels_unknown" in result.flags
    assert all(r.Hm_mm == pytest.approx(30, abs=1.5) for r in result.vertebrae)
    centres = [r.center_px[0] for r in result.vertebrae]
    assert centres == sorted(centres)


def test_an_anchor_names_a_binary_mask_from_the_bottom():
    result = measure(column(n=3, value=1), spacing=(1, 1), facing="left", anchor="L5")
    assert [r.level for r in result.vertebrae] == ["L3", "L4", "L5"]
    assert [r.code for r in result.vertebrae] == [22, 23, 24]
    with pytest.raises(ValueError, match="Anchor"):
        measure(column(n=3, value=1), spacing=(1, 1), anchor="C2")  # no room for two bodies above C2


def test_value_1_alone_is_a_mask_but_with_other_codes_it_is_c1():
    labels = column(n=2, value=1)
    assert measure(labels, spacing=(1, 1), facing="left").vertebrae[0].level == "V1"
    labels[labels.shape[0] - 5:, :5] = 20  # another code present: 1 now means C1
    assert measure(labels, spacing=(1, 1), facing="left").vertebrae[0].level == "C1"


def test_s1_is_an_anchor_not_a_graded_body():
    labels = column(n=3, value=22)  # L3, L4, L5
    labels[labels == 24] = 26  # the bottom one is S1
    result = measure(labels, spacing=(1, 1), facing="left")
    assert [r.level for r in result.vertebrae] == ["L3", "L4"] and "ignored_S1" in result.flags


def test_a_fragmented_level_keeps_its_largest_piece_and_says_so():
    labels = column(n=2, value=20)
    labels[40:64, 66:80] = 20  # a second piece of L1, over a fifth of its area: not mere debris
    rec = measure(labels, spacing=(1, 1), facing="left").by_level()["L1"]
    assert "fragmented" in rec.flags and rec.Hm_mm == pytest.approx(30, abs=0.5)
