from __future__ import annotations

import numpy as np
import pytest

from spinemorph.hierarchical.centres import find_centres, name_centres, naming_margin
from spinemorph.hierarchical.targets import gaussian_maps

CENTRES = [(60.0, 50.0), (95.0, 55.0), (130.0, 58.0), (165.0, 60.0), (200.0, 58.0)]


def _map(spike: bool = True) -> np.ndarray:
    m = gaussian_maps(CENTRES, [40.0] * 5, (256, 128))[0]  # σ² = 10
    if spike:
        m[20, 40] = 1.5  # sharp and high, but with no mass around it
    return m + np.random.default_rng(0).normal(0, 0.01, m.shape)


def test_the_known_maxima_are_found_in_order_and_the_spike_is_rejected():
    accepted, rejected = find_centres(_map(), window=31)
    np.testing.assert_allclose([(c.row, c.col) for c in accepted], CENTRES, atol=0.5)
    assert [(round(c.row), round(c.col)) for c in rejected] == [(20, 40)]
    assert rejected[0].peak > max(c.peak for c in accepted) and rejected[0].score < 0.5 * accepted[0].score


def test_sub_pixel_centres():
    shifted = [(r + 0.4, c - 0.3) for r, c in CENTRES]
    accepted, _ = find_centres(gaussian_maps(shifted, [40.0] * 5, (256, 128))[0])
    np.testing.assert_allclose([(c.row, c.col) for c in accepted], shifted, atol=0.15)


def test_empty_and_flat_maps_give_no_centres():
    assert find_centres(np.zeros((64, 32))) == ([], [])
    with pytest.raises(ValueError, match="2D"):
        find_centres(np.zeros((2, 64, 32)))


def test_lumbar_view_keeps_the_five_lowest_as_l1_to_l5():
    codes, flags = name_centres([10, 40, 70, 100, 130, 160, 190], view="lumbar")
    assert codes == [None, None, 20, 21, 22, 23, 24] and flags == []
    codes, flags = name_centres([10, 40, 70], view="lumbar")
    assert codes == [22, 23, 24] and "fewer_than_five_centres" in flags


def test_auto_view_names_every_centre_from_the_model_votes_or_an_anchor():
    rows = [10.0, 40.0, 70.0, 100.0]
    votes = np.zeros((4, 17))
    votes[np.arange(4), [8, 9, 10, 11]] = 0.8  # T9..T12
    votes[3, 16] = 0.3  # a weaker L5 opinion on the lowest
    codes, flags = name_centres(rows, votes)
    assert codes == [16, 17, 18, 19] and flags == []
    codes, flags = name_centres(rows, None, anchor="L3")
    assert codes == [19, 20, 21, 22] and "anchored" in flags
    codes, flags = name_centres(rows, np.zeros((4, 17)))
    assert codes[-1] == 24 and flags[-2:] == ["levels_assumed_lowest_l5", "level_uncertain"]


def test_a_naming_the_votes_hardly_prefer_is_flagged_level_uncertain():
    rows = [10.0, 40.0, 70.0, 100.0]
    votes = np.zeros((4, 17))
    votes[np.arange(4), [8, 9, 10, 11]] = 0.8  # T9..T12
    votes[np.arange(4), [9, 10, 11, 12]] = 0.7  # and almost as much for T10..L1: a margin of 0.4 / 3.2
    codes, flags = name_centres(rows, votes)
    assert codes == [16, 17, 18, 19] and flags == ["level_uncertain"]
    assert naming_margin([3.2, 2.8, 0.0]) == pytest.approx(0.125)
    assert naming_margin([1.0]) == 1.0 and naming_margin([0.0, 0.0]) == 0.0


def test_a_missing_body_skips_a_level():
    codes, _ = name_centres([10.0, 40.0, 70.0, 130.0, 160.0], anchor="L5")
    assert codes == [19, 20, 21, 23, 24]


def test_fewer_than_two_centres_are_returned_with_a_flag():
    assert name_centres([]) == ([], ["no_centres"])
    codes, flags = name_centres([50.0])
    assert codes == [24] and "fewer_than_two_centres" in flags
