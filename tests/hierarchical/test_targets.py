from __future__ import annotations

import numpy as np

from spinemorph.hierarchical.inputs import FitGeometry
from spinemorph.hierarchical.targets import body_centres, gaussian_maps, pose_maps


def test_centres_and_heights_come_from_the_labelmap():
    labels = np.zeros((120, 80), np.uint8)
    labels[20:40, 20:60] = 23  # L4: 20 rows tall
    labels[50:74, 22:62] = 24  # L5: 24 rows tall
    labels[0:10, 30:50] = 22  # L3, cut by the top edge
    bodies = body_centres(labels)
    assert [b.code for b in bodies] == [22, 23, 24]
    assert bodies[0].at_edge and not bodies[1].at_edge
    np.testing.assert_allclose([bodies[1].row, bodies[1].col, bodies[1].height], [29.5, 39.5, 20.0], atol=0.1)
    assert abs(bodies[2].height - 24.0) < 0.1


def test_maps_are_gaussians_with_a_quarter_height_variance_and_the_l5_map_holds_l5_only():
    m = gaussian_maps([(20.0, 10.0)], [16.0], (40, 30))[0]  # σ² = 4
    assert m[20, 10] == 1.0 and abs(m[22, 10] - np.exp(-0.5)) < 1e-6
    l5, maps = pose_maps([(10.0, 10.0), (30.0, 12.0)], [16.0, 16.0], [23, 24], (40, 30), n_channels=18)
    assert maps.shape == (18, 40, 30) and l5.shape == (1, 40, 30)
    assert l5[0, 30, 12] == 1.0 and l5[0, 10, 10] < 1e-6
    assert maps[0, 10, 10] == maps[0, 30, 12] == 1.0
    assert maps[16, 10, 10] == 1.0 and maps[17, 30, 12] == 1.0 and maps[16, 30, 12] < 1e-6


def test_the_pose_frame_round_trips_points():
    g = FitGeometry.of((320, 256), (256, 128))
    assert g.resized == (160, 128) and (g.top, g.left) == (48, 0)
    points = np.array([[0.0, 0.0], [319.0, 255.0], [100.5, 30.25]])
    np.testing.assert_allclose(g.to_image(g.to_frame(points)), points, atol=1e-9)


def test_the_sacrum_is_no_body_centre():
    labels = np.zeros((60, 30), np.uint8)
    labels[5:20, 5:25], labels[25:40, 5:25], labels[45:58, 5:25] = 23, 24, 26  # L4, L5 and S1, the anchor
    assert [c.code for c in body_centres(labels)] == [23, 24]
