"""Soft tissue around the spine: torso, lungs carved by the heart and the diaphragm dome, and bowel gas."""

from __future__ import annotations

import numpy as np

from spinemorph.data.primitives import Carved, Ellipsoid, Frame, rotation

__all__ = ["torso"]


def torso(bodies, mu: dict[str, float], patient, rng: np.random.Generator) -> list:
    """Return the soft-tissue primitives of a patient, placed around the bodies' centres."""
    s, habitus = patient.scale, patient.habitus
    centre = {b.level: b.outer.frame.center for b in bodies}
    depth = {b.level: b.outer.b for b in bodies}
    z_top, z_bottom = centre["T1"][2], centre["S1"][2]

    # The chest wraps the rib cage and leans with the thoracic spine; the abdomen hangs in front of the lumbar
    # spine. The torso is their union: the abdomen is carved by the chest so that no ray counts the overlap twice.
    chest_w, chest_d = 135.0 * s * habitus**0.3, 95.0 * s
    y_chest = centre["T7"][1] + depth["T7"] + 30.0 * s - chest_d
    fat = 20.0 * s * habitus**2
    lean = centre["T10"] - centre["T2"]
    chest_frame = Frame(np.array([0.0, y_chest + 0.05 * chest_d, (z_top + centre["T12"][2]) / 2]),
                        rotation("x", -np.arctan2(lean[1], lean[2])))
    chest_radii = (chest_w + fat + 15.0, chest_d + fat + 12.0, (centre["T12"][2] - z_top) / 2 + 250.0 * s)
    chest = Ellipsoid(chest_frame, chest_radii, mu["soft"])
    half_width, half_depth = 160.0 * s * habitus, 118.0 * s * habitus
    back = centre["L3"][1] + depth["L3"] + 75.0 * s * habitus**1.5  # skin behind the lumbar spinous processes
    y_torso = back - half_depth
    abdomen = Ellipsoid(Frame(np.array([0.0, y_torso, (centre["L1"][2] + z_bottom) / 2 + 40.0 * s])),
                        (half_width, half_depth, (z_bottom - centre["L1"][2]) / 2 + 200.0 * s))
    out: list = [chest, Carved(abdomen, (chest,), mu["soft"])]

    z_dome = centre["T12"][2] + 40.0 * s
    dome = Ellipsoid(Frame(np.array([0.0, y_chest - 0.1 * chest_d, z_dome])), (1.05 * chest_w, 1.1 * chest_d, 95.0 * s))
    heart = Ellipsoid(Frame(np.array([20.0 * s, y_chest - 0.45 * chest_d, centre["T8"][2]])), (60 * s, 50 * s, 62 * s))
    z0, z1 = z_top - 25.0 * s, centre["T11"][2] + 20.0 * s
    for side in (-1.0, 1.0):
        lung = Ellipsoid(Frame(np.array([side * 0.5 * chest_w, y_chest, (z0 + z1) / 2])),
                         (0.45 * chest_w, 0.9 * chest_d, (z1 - z0) / 2))
        holes = (dome, heart) if side > 0 else (dome,)
        out.append(Carved(lung, holes, mu["lung"] - mu["soft"]))

    y_front = y_torso - 0.8 * half_depth
    y_back = centre["L3"][1] - depth["L3"] - 25.0 * s
    for _ in range(int(rng.integers(3, 13))):
        radii = tuple(float(r) for r in rng.uniform(6.0, 30.0, 3) * s)
        where = np.array([rng.uniform(-0.6, 0.6) * half_width, rng.uniform(y_front, max(y_back, y_front + 1.0)),
                          rng.uniform(centre["L1"][2], z_bottom + 30.0)])
        out.append(Ellipsoid(Frame(where), radii, mu["air"] - mu["soft"]))
    return out
