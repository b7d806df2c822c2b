from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinemorph.postprocess import clean_binary, consistent_levels, name_levels


def column(codes, height=20, gap=6, width=30):
    labels = np.zeros((len(codes) * (height + gap) + gap, width + 10), np.uint8)
    for i, code in enumerate(codes):
        top = gap + i * (height + gap)
        labels[top:top + height, 5:5 + width] = code
    return labels


def test_clean_binary_drops_debris_and_fills_holes():
    mask = (column([1, 1, 1]) > 0).astype(np.uint8)
    mask[10:13, 15:18] = 0  # hole
    mask[0:2, 0:2] = 1  # debris
    out = clean_binary(mask)
    assert out[11, 16] == 1 and out[0, 0] == 0 and out.sum() == 3 * 20 * 30


def test_levels_become_consecutive_and_follow_the_majority():
    truth = column([19, 20, 21, 22, 23])
    said = truth.copy()
    said[truth == 21] = 23  # one body misnamed
    assert np.array_equal(consistent_levels(said), truth)
    shifted = column([20, 21, 22, 22, 24])  # off by one at the top, a duplicate in the middle
    assert np.unique(consistent_levels(shifted)).tolist() == [0, 20, 21, 22, 23, 24]


def test_one_component_per_level_and_a_missing_body_leaves_a_gap():
    truth = column([19, 20, 21, 22])
    split = truth.copy()
    split[6:26, 20] = 0  # T12 cut in two: it keeps its largest piece
    out = consistent_levels(split)
    from scipy import ndimage
    assert ndimage.label(out == 19)[1] == 1
    gap = truth.copy()
    gap[truth == 21] = 0
    assert np.unique(consistent_levels(gap)).tolist() == [0, 19, 20, 22]


def test_an_empty_prediction_stays_empty():
    assert not consistent_levels(np.zeros((20, 20), np.uint8)).any()


def test_specks_do_not_lower_the_median_body():
    """A large image's prediction has specks of stray levels: they go, and do not make gaps look like missing bodies."""
    truth = column([16, 17, 18, 19, 20, 21, 22, 23], height=40, gap=10)
    said = truth.copy()
    for i, code in enumerate([9, 10, 11, 12, 9, 10, 11, 12, 13, 10, 11, 12]):
        said[2 + 25 * (i % 12), 0] = code  # one-pixel specks down the left margin
    assert np.array_equal(consistent_levels(said), truth)


def test_bodies_cut_by_the_image_edge_keep_their_place():
    """A body cut by the top or bottom edge has its centroid too close to its neighbour: no level is skipped."""
    truth = column([14, 15, 16, 17, 18, 19], height=40, gap=10)[43:-45]  # first and last body: 7 and 5 rows
    out = consistent_levels(truth)
    assert np.unique(out).tolist() == [0, 14, 15, 16, 17, 18, 19]
    assert np.array_equal(out, truth)


def test_a_lumbar_view_with_a_sacrum_is_named_l1_to_l5_from_the_bottom():
    said = column([10, 11, 12, 13, 14, 26])  # the network called the five lumbar bodies T3-T7; S1 below them
    out, naming = name_levels(said)
    assert np.unique(out).tolist() == [0, 20, 21, 22, 23, 24, 26]
    assert [int(np.bincount(out[said == c]).argmax()) for c in (10, 14, 26)] == [20, 24, 26]
    assert naming.anchor == "S1" and not naming.level_uncertain and naming.network_shift == 10
    assert naming.to_dict()["alternatives"] == []


def test_without_an_anchor_the_names_are_flagged_uncertain_with_the_alternatives():
    said = column([19, 20, 21, 22])
    out, naming = name_levels(said)
    assert np.array_equal(out, said) and naming.anchor is None and naming.level_uncertain
    assert naming.alternatives == (("T11", "T12", "L1", "L2"), ("L1", "L2", "L3", "L4"))
    bottom = column([21, 22, 23, 24])  # L2-L5: no level below L5 to shift to
    assert name_levels(bottom)[1].alternatives == (("L1", "L2", "L3", "L4"),)


def test_a_sacrum_that_is_not_right_below_the_spine_anchors_nothing():
    said = column([20, 21, 22, 0, 26])  # a body's room between L3 and the "sacrum": it may hide L4
    out, naming = name_levels(said)
    assert naming.anchor is None and naming.level_uncertain and 26 not in np.unique(out)
    tiny = column([20, 21, 22, 23, 24, 0])
    tiny[-5:-3, 10:12] = 26  # a speck called S1
    assert name_levels(tiny)[1].anchor is None


def test_the_sacrum_is_the_largest_s1_piece_as_labelled_over_the_whole_film():
    rng = np.random.default_rng(11)
    anchored = 0
    for _ in range(40):
        said = column([20, 21, 22, 23, 24, 0, 0])
        for _ in range(rng.integers(1, 4)):  # S1 pieces of random size, anywhere below mid-film
            r, c, h, w = rng.integers(90, 170), rng.integers(0, 35), rng.integers(2, 30), rng.integers(2, 30)
            said[r:r + h, c:c + w][said[r:r + h, c:c + w] == 0] = 26
        out, naming = name_levels(said)
        comps, n = ndimage.label(said == 26, structure=np.ones((3, 3), bool))
        if n == 0:  # every piece fell on a body
            assert naming.anchor is None
            continue
        largest = comps == 1 + int(np.argmax(np.bincount(comps.ravel())[1:]))
        if naming.anchor == "S1":
            anchored += 1
            assert np.array_equal(out == 26, largest)
    assert anchored >= 5


def test_fragments_of_one_body_called_two_levels_are_one_body_and_skip_nothing():
    """The back of a body called one level, or its lower half: the touching fragments are one body. Left apart, their
    tiny gap beside the normal ones read as missing bodies and pushed the lower bodies off the run; touching bodies
    one above the other stay apart, also on a steeply tilted spine."""
    truth = column([20, 21, 22, 23, 24], height=20, gap=6, width=30)
    said = truth.copy()
    fourth = truth == 23
    said[fourth & (np.arange(truth.shape[1]) < 15)[None, :]] = 16  # L4's back half called T9
    out = consistent_levels(said)
    assert np.array_equal(out > 0, truth > 0)
    assert np.unique(out).tolist() == [0, 20, 21, 22, 23, 24]
    stacked = column([20, 21, 22, 23, 24], height=20, gap=2, width=30)  # bodies one above the other stay apart
    assert np.unique(consistent_levels(stacked)).tolist() == [0, 20, 21, 22, 23, 24]
    lower = truth.copy()
    lower[fourth & (np.arange(truth.shape[0]) >= np.nonzero(fourth)[0].mean())[:, None]] = 24  # L4's lower half: L5
    assert np.array_equal(consistent_levels(lower), truth)  # no longer along the spine than one body: one body
    tilted = np.zeros((70, 130), np.uint8)  # a steeply tilted spine: touching bodies share most of their rows
    for i, code in enumerate([20, 21, 22, 23, 24]):
        tilted[5 + 10 * i:25 + 10 * i, 5 + 20 * i:25 + 20 * i] = code
    assert np.array_equal(consistent_levels(tilted), tilted)


def test_touch_looks_only_where_boxes_meet_and_agrees_with_a_dilation():
    from scipy import ndimage

    from spinemorph.postprocess import levels

    rng = np.random.default_rng(0)

    def piece():
        (r0, c0), (h, w) = rng.integers(0, 30, 2), rng.integers(1, 12, 2)
        mask = rng.random((h, w)) < 0.6
        mask[rng.integers(h), rng.integers(w)] = True
        return 0.0, float(mask.sum()), 1, (slice(r0, r0 + h), slice(c0, c0 + w)), mask

    for _ in range(2000):
        a, b = piece(), piece()
        box = levels._box_union((a, b))
        dilated = ndimage.binary_dilation(levels._window(a, box), np.ones((3, 3), bool)) & levels._window(b, box)
        assert levels._touch(a, b) == bool(dilated.any())


def test_an_s1_cut_by_the_edge_that_moves_the_networks_naming_leaves_the_count_uncertain():
    """Calibration film 4700 #18: its lowest body, cut by the film's bottom edge, was called S1 and moved every name
    one level up the network's own, right, naming. The anchor's names stand; the naming says it is unsure."""
    said = column([19, 20, 21, 22, 23, 26])[:-6]  # the network: T12-L4 and, at the cut edge, an "S1"
    out, naming = name_levels(said)
    assert naming.anchor == "S1" and naming.level_uncertain and naming.network_shift == 1
    assert naming.alternatives == (("T12", "L1", "L2", "L3", "L4"),)
    assert [int(np.bincount(out[said == c]).argmax()) for c in (19, 23)] == [20, 24]
    assert not name_levels(column([19, 20, 21, 22, 23, 26]))[1].level_uncertain  # the same "S1" whole
    assert not name_levels(column([20, 21, 22, 23, 24, 26])[:-6])[1].level_uncertain  # cut, but both count alike


def test_a_blank_borders_edge_cuts_the_s1_as_the_films_own_edge_does():
    """The same film padded below: the "S1" ends at the exposed field's edge, 6 rows above the image's."""
    said = column([19, 20, 21, 22, 23, 26])[:-6]
    padded = np.vstack([said, np.zeros((6, said.shape[1]), said.dtype)])
    assert not name_levels(padded)[1].level_uncertain  # the image's edge is 6 rows away
    bottom = said.shape[0] - 1
    naming = name_levels(padded, field=(0, 0, bottom, said.shape[1] - 1))[1]
    assert naming.level_uncertain and naming.alternatives == (("T12", "L1", "L2", "L3", "L4"),)
