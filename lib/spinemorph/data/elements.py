"""Skeleton around the vertebral bodies: discs, posterior elements, ribs, sternum, sacrum and iliac wings, and
the marks of degeneration: anterior osteophytes, Schmorl nodes and endplate undulation.

All of it shows in the image; none of it is in the body labels.
"""

from __future__ import annotations

import numpy as np

from spinemorph.data.primitives import Ellipsoid, Frame, Slab, rotation

__all__ = ["discs", "posterior", "ribs", "pelvis", "degenerative"]


def _local(body, xyz, rot=None) -> Frame:
    """Return a frame at local point ``xyz`` of ``body``, optionally rotated within the body's frame."""
    f = body.outer.frame
    centre = f.to_world(np.asarray(xyz, dtype=np.float64))[:, 0]
    return Frame(centre, f.rot if rot is None else f.rot @ rot)


def discs(bodies, mu: float, s: float) -> list:
    """Return one disc between each pair of neighbouring bodies, fitted to their endplates."""
    out = []
    for upper, lower in zip(bodies[:-1], bodies[1:], strict=True):
        fu, fl = upper.outer.frame, lower.outer.frame
        axis = fu.rot[:, 2] + fl.rot[:, 2]
        axis /= np.linalg.norm(axis)
        theta = np.arctan2(axis[1], axis[2])
        b = 0.97 * min(upper.outer.b, lower.outer.b)
        ys = np.linspace(-b, b, 9)
        up = fu.to_world(np.stack([np.zeros_like(ys), ys, np.polyval(upper.outer.bottom[::-1], ys)]))
        lo = fl.to_world(np.stack([np.zeros_like(ys), ys, np.polyval(lower.outer.top[::-1], ys)]))
        centre = (up.mean(axis=1) + lo.mean(axis=1)) / 2
        frame = Frame(centre, rotation("x", -theta))
        top = _fit(frame, up) + [0.25, 0, 0]
        bottom = _fit(frame, lo) - [0.25, 0, 0]
        a = 0.97 * min(upper.outer.a, lower.outer.a)
        out.append(Slab(frame, a, b, tuple(top), tuple(bottom), mu))
    return out


def _fit(frame: Frame, points: np.ndarray) -> np.ndarray:
    """Return (c0, c1, c2) of z = c0 + c1·y + c2·y² through world ``points`` seen in ``frame``."""
    local = frame.rot.T @ (points - frame.center[:, None])
    return np.polyfit(local[1], local[2], 2)[::-1]


def posterior(bodies, mu: float, s: float) -> list:
    """Return pedicles, laminae, spinous and transverse processes and facets for T1-L5."""
    out = []
    for body in bodies:
        if body.level == "S1":
            continue
        a, b, h = body.outer.a, body.outer.b, body.baseline.hp
        lumbar = body.level.startswith("L")
        canal = (16.0 if lumbar else 14.0) * s
        ped = canal * 0.9 + 2.0
        for side in (-1.0, 1.0):
            out.append(Ellipsoid(_local(body, [side * 0.62 * a, b + ped / 2 + 0.5, -0.18 * h]),
                                 (0.16 * a, ped / 2, 0.28 * h), mu))
            out.append(Ellipsoid(_local(body, [side * 0.45 * a, b + 0.75 * canal, -0.5 * h - 2.0]),
                                 (5.0 * s, 5.0 * s, 6.0 * s), mu))
            out.append(Ellipsoid(_local(body, [side * 0.45 * a, b + 0.85 * canal, 0.5 * h + 1.0]),
                                 (5.0 * s, 5.0 * s, 6.0 * s), mu))
            tp = (a + 12.0 * s, b + 0.45 * canal, -0.1 * h) if lumbar else (a + 8.0 * s, b + 0.8 * canal + 4, -0.1 * h)
            out.append(Ellipsoid(_local(body, [side * tp[0], tp[1], tp[2]]),
                                 ((14.0 if lumbar else 10.0) * s, (4.0 if lumbar else 5.0) * s, 5.0 * s), mu))
        lamina_y = b + canal + 3.0 * s
        out.append(Ellipsoid(_local(body, [0.0, lamina_y, 0.05 * h]), (0.55 * a, 3.5 * s, 0.45 * h), mu))
        slope = np.deg2rad(_spinous_slope(body.level))
        length = (28.0 if lumbar else 32.0) * s
        offset = np.array([0.0, np.cos(slope), np.sin(slope)]) * (length / 2 + 2.0)
        out.append(Ellipsoid(_local(body, np.array([0.0, lamina_y, 0.05 * h]) + offset, rotation("x", slope)),
                             (3.5 * s, length / 2, (9.0 if lumbar else 4.0) * s), mu))
    return out


def _spinous_slope(level: str) -> float:
    """Return how steeply (deg below horizontal) the spinous process of a level points caudally."""
    if level.startswith("L"):
        return 10.0
    n = int(level[1:])
    return 60.0 if 5 <= n <= 9 else 35.0


# Per thoracic level: rib-cage half-width and half-depth factors, how far round the chest the rib reaches
# (rad from the posterior midline) and how far it drops anteriorly (mm at scale 1).
_RIB_SHAPE = {
    1: (0.45, 0.55, 2.2, 25.0), 2: (0.60, 0.70, 2.5, 40.0), 3: (0.72, 0.80, 2.5, 50.0),
    4: (0.82, 0.88, 2.5, 58.0), 5: (0.90, 0.94, 2.5, 62.0), 6: (0.96, 0.98, 2.5, 64.0),
    7: (1.00, 1.00, 2.5, 64.0), 8: (1.00, 1.00, 2.4, 62.0), 9: (1.00, 1.00, 2.4, 58.0),
    10: (0.98, 0.98, 2.3, 52.0), 11: (0.94, 0.94, 1.6, 30.0), 12: (0.88, 0.90, 1.2, 18.0),
}


def ribs(bodies, mu: float, s: float, habitus: float, shift=((0.0, 0.0), (0.0, 0.0))) -> list:
    """Return both ribs of every thoracic level as chains of short elliptic cylinders, plus the sternum.

    ``shift`` moves the right and the left ribs (anterior mm, caudal mm, at scale 1; the head half as far
    forward), so that a lateral view shows them over the posterior bodies as often as real films do.
    """
    out = []
    half_width, half_depth = 135.0 * s * habitus**0.3, 95.0 * s
    for body in bodies:
        if not body.level.startswith("T"):
            continue
        wf, df, reach, drop = _RIB_SHAPE[int(body.level[1:])]
        wc, dc = half_width * wf, half_depth * df
        centre = body.outer.frame.center
        b, a, h = body.outer.b, body.outer.a, body.baseline.hp
        y_chest = centre[1] + b + 30.0 * s - dc
        for side, (forward, down) in zip((-1.0, 1.0), shift, strict=True):
            phi = np.linspace(0.35, reach, 8)
            frac = (phi - phi[0]) / (phi[-1] - phi[0])
            pts = np.stack([side * wc * np.sin(phi), y_chest + dc * np.cos(phi),
                            centre[2] - 0.3 * h + drop * s * frac**1.2])
            head = np.array([side * 0.9 * a, centre[1] + 0.7 * b, centre[2] - 0.3 * h])
            pts = np.concatenate([head[:, None], pts], axis=1)
            if forward or down:
                pts = pts + np.array([[0.0], [-forward * s], [down * s]])
                pts[1, 0] += forward * s / 2
            out.extend(_tube(pts[:, i], pts[:, i + 1], 2.8 * s, 5.5 * s, mu) for i in range(pts.shape[1] - 1))
    front = {}
    for body in bodies:
        if body.level in ("T3", "T9"):
            wf, df, reach, drop = _RIB_SHAPE[int(body.level[1:])]
            c, b = body.outer.frame.center, body.outer.b
            front[body.level] = np.array([0.0, c[1] + b + 30.0 * s - 2 * half_depth * df - 4.0, c[2] + drop * s])
    if len(front) == 2:  # the sternum joins the anterior ends of the ribs
        out.append(_tube(front["T3"] - [0, 0, 25.0 * s], front["T9"], 14.0 * s, 6.0 * s, mu))
    return out


def _tube(p0: np.ndarray, p1: np.ndarray, half_thickness: float, half_height: float, mu: float) -> Slab:
    """Return a straight elliptic cylinder from p0 to p1 whose taller cross-section axis leans toward world z."""
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    z = axis / length
    y = np.array([0.0, 0.0, 1.0]) - z[2] * z
    y = y / np.linalg.norm(y) if np.linalg.norm(y) > 1e-6 else np.array([0.0, 1.0, 0.0])
    x = np.cross(y, z)
    half = length / 2 * 1.02
    return Slab(Frame((p0 + p1) / 2, np.stack([x, y, z], axis=1)), half_thickness, half_height,
                (-half, 0.0, 0.0), (half, 0.0, 0.0), mu)


def pelvis(bodies, mu: float, s: float, shift=(0.0, 0.0, 1.0)) -> list:
    """Return the sacrum below S1 and the two iliac wings, which overlap L5-S1 on a lateral view.

    ``shift`` moves the wings (anterior mm, cranial mm, at scale 1) and scales them, so that their crests
    reach up over L4 and L3 as they do in many patients.
    """
    s1 = next((b for b in bodies if b.level == "S1"), None)
    if s1 is None:
        return []
    h = s1.baseline.hp
    sacrum = _local(s1, [0.0, 8.0 * s, h / 2 + 38.0 * s], rotation("x", 0.5))
    crest = _local(s1, [0.0, s1.outer.b + 14.0 * s, 10.0 * s])
    out = [Ellipsoid(sacrum, (42.0 * s, 20.0 * s, 45.0 * s), mu), Ellipsoid(crest, (10.0 * s, 8.0 * s, 30.0 * s), mu)]
    centre = s1.outer.frame.center
    forward, up, size = shift
    for side in (-1.0, 1.0):
        wing = Frame(np.array([side * 105.0 * s, centre[1] + 5.0 * s - forward * s, centre[2] - 30.0 * s - up * s]),
                     rotation("z", side * 0.5))
        out.append(Ellipsoid(wing, (5.0 * s * size, 70.0 * s * size, 60.0 * s * size), mu))
    return out


_SPUR_ANGLE = 0.7  # rad between an osteophyte and the anterior-posterior direction
_NODE_RIM_MU = 0.03  # extra attenuation of a Schmorl node's sclerotic rim (1/mm)


def degenerative(bodies, irregularity, mu: dict[str, float], s: float) -> list:
    """Return the degenerative marks of ``irregularity``: osteophytes, Schmorl nodes, endplate bumps.

    None of them changes a body's own shape, so the labels and the six points stay those of the smooth body.
    Osteophytes and bumps are bone outside it (as on real films, not in the body labels); a Schmorl node is a
    lucent pocket with a sclerotic rim just inside an endplate, which does not move the projected outline
    (that is the endplate's rim, in front of and behind the node).
    """
    out = []
    for body in bodies:
        a, b = body.outer.a, body.outer.b
        plates = {-1: np.asarray(body.outer.top), 1: np.asarray(body.outer.bottom)}
        for end, size in zip((-1, 1), irregularity.spurs[body.level], strict=True):
            if size > 0:  # a beak from the anterior corner (local -y), pointing forward and toward the disc
                length, thick = (1.2 + 2.5 * size) * s, (0.6 + 0.6 * size) * s
                way = np.array([0.0, -np.cos(_SPUR_ANGLE), end * np.sin(_SPUR_ANGLE)])
                corner = np.array([0.0, -b, float(np.polyval(plates[end][::-1], -b))])
                out.append(Ellipsoid(_local(body, corner + 0.6 * length * way, rotation("x", -end * _SPUR_ANGLE)),
                                     ((0.2 + 0.1 * size) * a, length, thick), mu["cortical"] - mu["soft"]))
        end, where, size = irregularity.node[body.level]
        if end:
            core = np.array([3.0 + 4.0 * size, 2.0 + 3.0 * size, 1.5 + 2.0 * size]) * s
            core = np.minimum(core, [0.4 * a, 0.3 * b, 4.0 * s])
            y = where * 2 * (0.9 * b - core[1] - s)  # the rim stays inside the body's walls
            z = float(np.polyval(plates[end][::-1], y)) - end * (core[2] + 0.2 * s)
            trabecular = body.inner.mu + body.outer.mu
            # The sclerotic rim wraps the pocket on the inner side only, so nothing pokes into the disc.
            out.append(Ellipsoid(_local(body, [0.0, y, z - end * s]), tuple(core + s), _NODE_RIM_MU))
            out.append(Ellipsoid(_local(body, [0.0, y, z]), tuple(core), mu["disc"] - trabecular - _NODE_RIM_MU - 0.01))
        end, where, size = irregularity.bump[body.level]
        if end:
            radii = (min((4.0 + 6.0 * size) * s, 0.5 * a), min((2.0 + 4.0 * size) * s, 0.35 * b),
                     (0.25 + 0.35 * size) * s)
            y = where * 2 * (b - radii[1])
            z = float(np.polyval(plates[end][::-1], y))
            out.append(Ellipsoid(_local(body, [0.0, y, z]), radii, mu["cortical"] - mu["disc"]))
    return out
