"""Bodies stage 1 merged into one segment are cut apart where the naming left their levels missing."""

from __future__ import annotations

import numpy as np

from spinemorph.postprocess.split import split_merged
from tests.postprocess.test_levels import column


def merged(codes, first, n):
    """Return the column of ``codes`` with ``n`` bodies from index ``first`` painted as one segment of its code."""
    truth = column(codes)
    said = truth.copy()
    rows = np.nonzero(np.isin(truth, codes[first:first + n]).any(axis=1))[0]
    said[rows.min():rows.max() + 1, 5:35] = codes[first]  # the discs between them too
    return truth, said


def test_two_merged_bodies_are_cut_into_their_own_levels_where_they_lie():
    codes = [15, 16, 17, 18, 19, 20]
    truth, said = merged(codes, 2, 2)
    assert 18 not in said
    out, parts = split_merged(said)
    assert parts == {17: 17, 18: 17}
    for code in (17, 18):
        rows = np.nonzero((out == code).any(axis=1))[0]
        want = np.nonzero((truth == code).any(axis=1))[0]
        assert abs(rows.mean() - want.mean()) <= 3
    assert np.array_equal(out[said != 17], said[said != 17])


def test_three_merged_bodies_take_the_three_levels_beside_them():
    codes = [12, 13, 14, 15, 16, 17, 18, 19]
    _, said = merged(codes, 3, 3)
    out, parts = split_merged(said)
    assert parts == {15: 15, 16: 15, 17: 15}
    centres = [np.nonzero((out == c).any(axis=1))[0].mean() for c in (15, 16, 17)]
    assert centres == sorted(centres)


def test_a_tall_body_with_its_neighbours_all_there_stays_whole():
    codes = [15, 16, 17, 18, 19, 20]
    _, said = merged(codes, 2, 2)
    said[said > 17] -= 1  # the levels below move up: no level is missing beside the tall segment
    out, parts = split_merged(said)
    assert parts == {} and out is said


def test_a_labelmap_without_tall_segments_is_returned_as_it_is():
    labels = column([19, 20, 21, 22, 23])
    out, parts = split_merged(labels)
    assert parts == {} and out is labels


def test_two_merged_segments_either_side_of_one_gap_share_its_levels():
    """Levels 14-15 drawn as one segment named 14 and 16-17 as one named 17: the levels between them (15, 16) are
    free to both, and each segment takes the one on its own side; neither is the other's reference."""
    codes = [12, 13, 14, 15, 16, 17, 18, 19]
    truth, said = merged(codes, 2, 2)
    rows = np.nonzero(np.isin(truth, (16, 17)).any(axis=1))[0]
    said[rows.min():rows.max() + 1, 5:35] = 17
    assert set(np.unique(said)) == {0, 12, 13, 14, 17, 18, 19}
    out, parts = split_merged(said)
    assert parts == {14: 14, 15: 14, 16: 17, 17: 17}
    for code in (14, 15, 16, 17):
        rows, want = (np.nonzero((x == code).any(axis=1))[0] for x in (out, truth))
        assert abs(rows.mean() - want.mean()) <= 3
