from __future__ import annotations

import numpy as np
import pytest

from spinemorph.levels import (
    ANATOMICAL_ORDER,
    LEVELS,
    TRAINED_LEVELS,
    anatomical_index,
    codes_in,
    label_box,
    label_window,
    level_below,
    level_code,
    level_color,
    level_name,
)


def test_verse_codes_match_the_convention():
    assert [LEVELS[f"C{i}"] for i in range(1, 8)] == list(range(1, 8))
    assert [LEVELS[f"T{i}"] for i in range(1, 13)] == list(range(8, 20))
    assert [LEVELS[f"L{i}"] for i in range(1, 6)] == list(range(20, 25))
    assert (LEVELS["L6"], LEVELS["S1"], LEVELS["T13"]) == (25, 26, 28)
    assert TRAINED_LEVELS == tuple(range(8, 25))


def test_names_and_codes_round_trip():
    for name, code in LEVELS.items():
        assert level_code(name) == code
        assert level_code(code) == code
        assert level_name(code) == name
    assert level_code(" l1 ") == 20
    assert level_code("20") == 20


@pytest.mark.parametrize("bad", ["L7", "X1", 27, 0, 99])
def test_unknown_levels_are_rejected_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="level|VerSe"):
        level_code(bad)


def test_transitional_levels_sit_in_anatomical_order():
    assert anatomical_index(28) == anatomical_index(19) + 1  # T13 right after T12
    assert anatomical_index(20) == anatomical_index(28) + 1
    assert ANATOMICAL_ORDER[-2:] == (25, 26)  # L6 then S1


def test_level_below_steps_along_the_spine():
    assert level_below(19) == 20  # T12 -> L1, skipping T13 by default
    assert level_below(19, transitional=True) == 28
    assert level_below(20, -1) == 19
    assert level_below(26) is None


def test_every_level_has_its_own_fixed_colour():
    colours = [level_color(c) for c in TRAINED_LEVELS]
    assert len(set(colours)) == len(colours)
    for a, b in zip(TRAINED_LEVELS[:-1], TRAINED_LEVELS[1:], strict=True):  # neighbours contrast
        assert sum(abs(x - y) for x, y in zip(level_color(a), level_color(b), strict=True)) > 60


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64, np.uint16, np.uint64, np.float32, bool])
def test_codes_in_a_labelmap_are_what_unique_finds(dtype):
    rng = np.random.default_rng(7)
    for _ in range(20):
        labels = (rng.integers(0, 29, (40, 30)) * (rng.random((40, 30)) < 0.2)).astype(dtype)
        assert codes_in(labels) == [int(v) for v in np.unique(labels) if v]
    assert codes_in(np.array([[-3, 0, 5, 70000]])) == [-3, 5, 70000]  # counting would not do: np.unique's answer
    assert codes_in(np.zeros((0, 4), np.uint8)) == [] and codes_in(np.zeros((4, 4), np.uint8)) == []


def test_the_box_and_window_around_every_labelled_pixel():
    labels = np.zeros((6, 8), np.uint8)
    labels[1, 2], labels[4, 6] = 20, 26
    assert label_box(labels) == (1, 2, 5, 7)
    window = label_window(labels)
    assert window == (slice(1, 5), slice(2, 7)) and (labels[window] > 0).sum() == (labels > 0).sum()
    assert label_box(np.zeros((3, 3))) is None and label_window(np.zeros((3, 3))) is None


def test_find_objects_and_fill_holes_are_scipys_own_answers_faster():
    from scipy import ndimage

    from spinemorph.levels import fill_holes, find_objects

    rng = np.random.default_rng(0)
    for i in range(600):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = ndimage.gaussian_filter(rng.random((h, w)), 1.5) > 0.5 if i % 2 else rng.random((h, w)) < 0.6
        assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
        labels = ((rng.random((h, w)) < 0.05) * rng.integers(0, 28, (h, w))).astype(np.uint8)
        assert find_objects(labels) == ndimage.find_objects(labels)
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7], ring[4, 4] = True, False
    assert fill_holes(ring)[4, 4] and not fill_holes(ring[:, 4:])[4, 0]  # on the edge: no hole
