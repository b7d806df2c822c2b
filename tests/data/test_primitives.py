from __future__ import annotations

import numpy as np
import pytest

from spinemorph.data.geometry import Projection
from spinemorph.data.primitives import Carved, Ellipsoid, Frame, Slab, rotation


def _brute(inside, origin, direction, samples=100001):
    """Chord lengths by dense sampling along each ray from t=0 to t=1."""
    t = np.linspace(0.0, 1.0, samples)
    pts = origin[:, :, None] + direction[:, :, None] * t[None, None, :]
    return inside(pts).mean(axis=1) * np.linalg.norm(direction, axis=0)


def _rays(rng, n=300):
    origin = np.array([[300.0], [0.0], [0.0]])
    direction = np.stack([np.full(n, -600.0), rng.uniform(-35, 35, n), rng.uniform(-35, 35, n)])
    return origin, direction


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slab_chords_match_dense_sampling(seed):
    rng = np.random.default_rng(seed)
    frame = Frame(rng.uniform(-3, 3, 3), rotation("x", rng.uniform(-0.5, 0.5)) @ rotation("z", rng.uniform(-0.3, 0.3)))
    top = (-6.0, rng.uniform(-0.3, 0.3), rng.uniform(0, 0.04))  # wedged and concave
    bottom = (7.0, rng.uniform(-0.3, 0.3), -rng.uniform(0, 0.04))
    slab = Slab(frame, 12.0, 8.0, top, bottom)
    origin, direction = _rays(rng)

    def inside(pts):
        x, y, z = np.einsum("ji,jnt->int", frame.rot, pts - frame.center[:, None, None])
        in_cylinder = (x / 12) ** 2 + (y / 8) ** 2 <= 1
        return in_cylinder & (z >= np.polyval(top[::-1], y)) & (z <= np.polyval(bottom[::-1], y))

    exact = slab.chord(origin, direction) * np.linalg.norm(direction, axis=0)
    assert (exact > 0).sum() > 30
    np.testing.assert_allclose(exact, _brute(inside, origin, direction), atol=0.02)


def test_ellipsoid_and_carved_chords_match_dense_sampling():
    rng = np.random.default_rng(3)
    big = Ellipsoid(Frame(np.array([1.0, 2.0, 3.0]), rotation("y", 0.4)), (20.0, 14.0, 18.0))
    hole = Ellipsoid(Frame(np.array([3.0, 0.0, 8.0])), (6.0, 5.0, 7.0))
    origin, direction = _rays(rng)

    def in_ell(e, pts):
        loc = np.einsum("ji,jnt->int", e.frame.rot, pts - e.frame.center[:, None, None])
        return ((loc / np.asarray(e.radii)[:, None, None]) ** 2).sum(axis=0) <= 1

    norm = np.linalg.norm(direction, axis=0)
    np.testing.assert_allclose(big.chord(origin, direction) * norm, _brute(lambda p: in_ell(big, p), origin, direction),
                               atol=0.02)
    carved = Carved(big, (hole,))
    expected = _brute(lambda p: in_ell(big, p) & ~in_ell(hole, p), origin, direction)
    np.testing.assert_allclose(carved.chord(origin, direction) * norm, expected, atol=0.02)


def test_flat_capped_slab_matches_the_general_path():
    rng = np.random.default_rng(4)
    frame = Frame(np.zeros(3), rotation("y", 1.2) @ rotation("x", 0.3))
    flat = Slab(frame, 3.0, 5.0, (-20.0, 0.0, 0.0), (20.0, 0.0, 0.0))
    nudged = Slab(frame, 3.0, 5.0, (-20.0, 1e-13, 0.0), (20.0, 0.0, 0.0))  # forces the general path
    origin, direction = _rays(rng)
    np.testing.assert_allclose(flat.chord(origin, direction), nudged.chord(origin, direction), atol=1e-9)


@pytest.mark.parametrize("sdd", [1000.0, None])
def test_projection_rays_pass_through_the_points_they_project(sdd):
    proj = Projection((200, 150), 0.3, (10.0, -20.0), sdd, 800.0, "right")
    points = np.array([[20.0, -30.0, 0.0], [15.0, 5.0, -40.0], [-10.0, 0.0, 12.0]])
    rc = proj.project(points)
    origin, direction = proj.rays(rc[0], rc[1])
    for k in range(3):  # the ray through pixel rc[:, k] passes through point k
        o = origin[:, 0] if origin.shape[1] == 1 else origin[:, k]
        d = direction[:, k]
        t = (points[0, k] - o[0]) / d[0]
        np.testing.assert_allclose(o + t * d, points[:, k], atol=1e-9)


def test_box_rays_equal_rays_at_pixel_centres():
    proj = Projection((60, 50), 0.4, (3.0, 7.0), 1200.0, 900.0, "left")
    o1, d1, n1 = proj.box_rays((10, 20, 5, 9))
    rows, cols = np.meshgrid(np.arange(10, 20), np.arange(5, 9), indexing="ij")
    o2, d2 = proj.rays(rows.ravel(), cols.ravel())
    np.testing.assert_allclose(d1, d2)
    np.testing.assert_allclose(np.broadcast_to(o1, d1.shape), np.broadcast_to(o2, d2.shape))
    np.testing.assert_allclose(n1, np.linalg.norm(d2, axis=0))


def test_facing_mirrors_the_columns():
    left = Projection((100, 100), 0.5, (0.0, 0.0), 1000.0, 800.0, "left")
    right = Projection((100, 100), 0.5, (0.0, 0.0), 1000.0, 800.0, "right")
    anterior = np.array([[0.0], [-20.0], [0.0]])  # anterior is -y
    assert left.project(anterior)[1, 0] < 49.5 < right.project(anterior)[1, 0]
