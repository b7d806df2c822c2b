"""The neighbour logic of VCR and crush, and its flags."""

from __future__ import annotations

import numpy as np
import pytest

from spinemorph.measure import measure


def stack(codes_and_heights, depth=60, gap=10, anterior_cut=None):
    """A column of rectangular bodies; each (code, height, anterior_height) from top to bottom, facing left."""
    total = sum(h for _, h, _ in codes_and_heights) + gap * (len(codes_and_heights) + 1)
    labels = np.zeros((total, depth + 40), np.uint8)
    top = gap
    for code, h, ha in codes_and_heights:
        labels[top:top + h, 20:20 + depth] = code
        if ha is not None and ha < h:
            labels[top:top + h - ha, 20:20 + depth // 2] = 0  # shorter anterior (left) half
        top += h + gap
    return labels


def test_vcr_uses_the_anterior_heights_of_both_neighbours():
    labels = stack([(19, 40, None), (20, 40, 30), (21, 48, None)])
    result = measure(labels, spacing=(1, 1), facing="left")
    rec = result.by_level()["L1"]
    expected = (1 - rec.Ha_mm / ((result.by_level()["T12"].Ha_mm + result.by_level()["L2"].Ha_mm) / 2)) * 100
    assert rec.vcr_percent == pytest.approx(expected)
    assert rec.Ha_mm == pytest.approx(30.0, abs=0.6)
    assert rec.vcr_percent == pytest.approx((1 - 30 / 44) * 100, abs=2.0)
    assert rec.crush == pytest.approx(40 / 44, abs=0.02)
    assert "no_upper_neighbour" not in rec.flags and "no_lower_neighbour" not in rec.flags


def test_one_missing_neighbour_uses_the_other_and_flags_it():
    labels = stack([(20, 40, None), (21, 40, None)])
    by = measure(labels, spacing=(1, 1), facing="left").by_level()
    assert "no_upper_neighbour" in by["L1"].flags and "one_neighbour" in by["L1"].flags
    assert by["L1"].vcr_percent == pytest.approx((1 - by["L1"].Ha_mm / by["L2"].Ha_mm) * 100)
    assert "no_lower_neighbour" in by["L2"].flags


def test_a_missing_level_breaks_the_chain():
    labels = stack([(20, 40, None), (22, 40, None)])  # L1 and L3, no L2
    by = measure(labels, spacing=(1, 1), facing="left").by_level()
    for level in ("L1", "L3"):
        assert by[level].vcr_percent is None and by[level].crush is None
        assert "vcr_unavailable" in by[level].flags


def test_a_truncated_neighbour_does_not_count():
    labels = stack([(19, 40, None), (20, 40, None), (21, 40, None)])
    labels = labels[30:]  # T12 now touches the top edge
    by = measure(labels, spacing=(1, 1), facing="left").by_level()
    assert "truncated" in by["T12"].flags and by["T12"].Ha_mm is None
    assert "no_upper_neighbour" in by["L1"].flags and by["L1"].vcr_percent is not None


def test_transitional_levels_are_neighbours_only_when_present():
    by = measure(stack([(19, 40, None), (28, 40, None), (20, 40, None)]), spacing=(1, 1), facing="left").by_level()
    assert not {"no_upper_neighbour", "no_lower_neighbour"} & set(by["T13"].flags)
    by = measure(stack([(19, 40, None), (20, 40, None)]), spacing=(1, 1), facing="left").by_level()
    assert "no_lower_neighbour" not in by["T12"].flags  # T12 -> L1 when there is no T13
