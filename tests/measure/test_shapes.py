"""Exact values on hand-built bodies."""

from __future__ import annotations

import numpy as np
import pytest

from spinemorph.conventions import WALL_INSET, genant_grade
from spinemorph.measure import measure
from spinemorph.measure.gates import Gates

GEOMETRY = Gates.open()  # these bodies are shapes, not anatomy: a lone 100 mm box is graded here


def polygon(shape, corners) -> np.ndarray:
    """Rasterise a convex polygon (corners (row, col), clockwise or not) at pixel centres."""
    rr, cc = np.mgrid[: shape[0], : shape[1]].astype(float)
    corners = np.asarray(corners, float)
    inside = np.ones(shape, bool)
    signs = []
    for a, b in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        signs.append((b[0] - a[0]) * (cc - a[1]) - (b[1] - a[1]) * (rr - a[0]))
    signs = np.stack(signs)
    return np.all(signs >= 0, axis=0) | np.all(signs <= 0, axis=0) if inside.any() else inside


def rotated_box(centre, height, depth, angle_deg, height_front=None):
    """Corners of a body whose axis leans by ``angle_deg``: anterior (left) wall ``height_front`` tall."""
    t = np.deg2rad(angle_deg)
    axis, across = np.array([np.cos(t), np.sin(t)]), np.array([-np.sin(t), np.cos(t)])
    hf = height if height_front is None else height_front
    c = np.asarray(centre, float)
    # Posterior (right) wall full height; anterior (left) wall shortened from the top.
    return [c - across * depth / 2 + axis * (height / 2 - hf), c - across * depth / 2 + axis * height / 2,
            c + across * depth / 2 + axis * height / 2, c + across * depth / 2 - axis * height / 2]


def test_a_rectangle_gives_its_heights_exactly():
    labels = np.zeros((120, 100), np.uint8)
    labels[30:70, 20:80] = 20  # 40 rows tall, 60 columns deep
    result = measure(labels, spacing=(0.5, 0.25), facing="left")
    rec = result.by_level()["L1"]
    for h in ("Ha", "Hm", "Hp"):
        assert rec.height(h, "px") == pytest.approx(40.0, abs=0.02)
        assert rec.height(h, "mm") == pytest.approx(20.0, abs=0.01)
    assert rec.wedge == pytest.approx(1.0, abs=1e-3) and rec.biconcave == pytest.approx(1.0, abs=1e-3)
    # Anterior points sit WALL_INSET of the depth in from the left wall (facing left).
    assert rec.points["superior_anterior"][1] == pytest.approx(19.5 + WALL_INSET * 60, abs=0.05)
    assert rec.points["superior_posterior"][1] == pytest.approx(79.5 - WALL_INSET * 60, abs=0.05)
    assert rec.points["superior_anterior"][0] == pytest.approx(29.5, abs=0.02)
    assert rec.points_mm["inferior_middle"][0] == pytest.approx(69.5 * 0.5, abs=0.01)


def test_facing_decides_which_wall_is_anterior():
    labels = polygon((260, 260), rotated_box((130, 130), 160, 200, 0.0, height_front=120)).astype(np.uint8) * 20
    left = measure(labels, spacing=(1, 1), facing="left").by_level()["L1"]
    right = measure(labels, spacing=(1, 1), facing="right").by_level()["L1"]
    assert left.wedge < 0.85 < 1.15 < right.wedge
    assert left.Ha_mm == pytest.approx(right.Hp_mm) and left.Hp_mm == pytest.approx(right.Ha_mm)


@pytest.mark.parametrize("angle", [0.0, 8.0, -15.0])
def test_a_trapezoid_gives_its_wedge_index(angle):
    height, depth, front = 160.0, 200.0, 100.0  # wedge index ~0.69: grade 2, clear of any threshold
    labels = polygon((320, 320), rotated_box((160, 160), height, depth, angle, height_front=front)).astype(np.uint8)
    rec = measure(labels * 20, spacing=(0.2, 0.2), facing="left", gates=GEOMETRY).by_level()["L1"]
    # The sloping endplate makes heights linear across the body; the stations sit WALL_INSET in from each wall.
    ha = front + (height - front) * WALL_INSET
    hp = height - (height - front) * WALL_INSET
    # A sloping edge rasterised at pixel centres is off by up to half a pixel, plus its slope (0.3) times the
    # station's own half-pixel uncertainty: 1.5 px bounds it. The index is the real check.
    assert rec.height("Ha", "px") == pytest.approx(ha, abs=1.5)
    assert rec.height("Hp", "px") == pytest.approx(hp, abs=1.5)
    assert rec.wedge == pytest.approx(ha / hp, abs=0.01)
    assert rec.deformity == "wedge" and rec.genant_grade == genant_grade(1 - ha / hp)


@pytest.mark.parametrize("angle", [0.0, 10.0, 20.0, -25.0])
def test_a_rotated_body_gives_the_same_heights(angle):
    labels = polygon((300, 300), rotated_box((150, 150), 120, 150, angle)).astype(np.uint8) * 21
    rec = measure(labels, spacing=(0.3, 0.3), facing="right").by_level()["L2"]
    for h in ("Ha", "Hm", "Hp"):
        assert rec.height(h, "px") == pytest.approx(120.0, abs=1.0)


@pytest.mark.parametrize("reduction, grade", [(0.0, 0), (0.1999, 0), (0.20, 1), (0.2499, 1), (0.25, 2), (0.40, 2),
                                              (0.4001, 3), (0.9, 3)])
def test_genant_thresholds_at_their_edges(reduction, grade):
    assert genant_grade(reduction) == grade


def test_grades_from_measured_bodies_follow_the_thresholds():
    # Three stacked bodies; the middle one's anterior wall is cut so that its wedge index is about 0.78.
    labels = np.zeros((400, 240), np.uint8)
    for code, top in ((20, 20), (22, 260)):
        labels[top:top + 100, 40:200] = code
    labels[140:240, 40:200] = 21
    labels[140:162, 40:80] = 0  # anterior-superior corner collapsed: 22 of 100 rows lost at the anterior station
    rec = measure(labels, spacing=(1, 1), facing="left", gates=GEOMETRY).by_level()["L2"]
    assert rec.wedge == pytest.approx(0.78, abs=0.01)
    assert (rec.genant_grade, rec.deformity) == (1, "wedge")


def test_a_bulge_a_few_lines_reach_is_not_the_wall():
    """A real body's outline may bulge at one end of a wall (the lower half of a rotated body's double contour, an
    osteophyte): the wall stays where most of the side is, so the anterior height is the body's, not the bulge's
    (the wall through the bulge read 10 mm here, and the body was refused as implausibly small)."""
    from tests.measure.test_gates import spine

    labels = spine()
    labels[150:160, 10:30] = 21  # L2 (rows 120-160, columns 30-90) bulges 20 px anteriorly over its lowest 10 rows
    l2 = measure(labels, (1.0, 1.0), "left").by_level()["L2"]
    assert l2.Ha_mm == pytest.approx(40.0, abs=0.5) and l2.genant_grade == 0
    top, bottom = l2.points["superior_anterior"], l2.points["inferior_anterior"]
    assert top[1] == pytest.approx(bottom[1], abs=0.5)
    assert top[1] == pytest.approx(35.5, abs=1.0)  # 0.1 of its depth (60) in from its wall at column 30
