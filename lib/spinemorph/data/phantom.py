"""The 3D thoracolumbar phantom: vertebral bodies T1-S1 stacked along a curved spine, with everything around them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from spinemorph.data import elements, soft
from spinemorph.data.anatomy import NOMINAL, SIMULATED_LEVELS, Irregularity, Patient, sagittal_angles
from spinemorph.data.deformity import Fracture, Heights, deform, deformed_heights, profile
from spinemorph.data.primitives import Frame, Slab, rotation
from spinemorph.levels import level_code

__all__ = ["MU", "Body", "Phantom", "build_phantom"]

_MIN_DISC_SHARE = 0.2  # the narrowest a degenerated disc gets at its thinnest point, as a share of its nominal height

#: Linear attenuation (1/mm) at an effective energy of about 60 keV.
MU: dict[str, float] = {
    "soft": 0.0200,
    "disc": 0.0215,
    "cortical": 0.0520,
    "trabecular": 0.0270,
    "posterior": 0.0400,
    "lung": 0.0040,
    "air": 0.0,
}


@dataclass(frozen=True)
class Body:
    """One vertebral body: its outer (cortical) and inner (trabecular) shapes and its true heights."""

    level: str
    outer: Slab
    inner: Slab
    heights: Heights  # 3D, at the six-point positions, after any deformity
    baseline: Heights  # 3D, before any deformity
    fracture: Fracture | None
    texture: tuple[int, float] | None = None  # seed and contrast of the trabecular texture, None for none

    @property
    def code(self) -> int:
        """Return the VerSe code of the level."""
        return level_code(self.level)

    @property
    def frame(self) -> Frame:
        """Return the body's frame: local z runs down its axis, local y toward posterior."""
        return self.outer.frame


@dataclass(frozen=True)
class Phantom:
    """A patient: vertebral bodies, the rest of the skeleton (``bone``, ``ribs``) and soft tissue (``context``)."""

    patient: Patient
    bodies: tuple[Body, ...]
    bone: tuple
    ribs: tuple
    context: tuple

    def body(self, level: str) -> Body:
        """Return the body of a level."""
        return next(b for b in self.bodies if b.level == level)

    def posed(self, rot: np.ndarray, pivot: np.ndarray) -> Phantom:
        """Return the phantom after a rigid rotation ``rot`` of the whole patient about ``pivot``."""
        def move(p):
            if hasattr(p, "base"):
                return dataclasses.replace(p, base=move(p.base), holes=tuple(move(h) for h in p.holes))
            return dataclasses.replace(p, frame=p.frame.moved(rot, pivot))

        bodies = tuple(dataclasses.replace(b, outer=move(b.outer), inner=move(b.inner)) for b in self.bodies)
        return Phantom(self.patient, bodies, tuple(map(move, self.bone)), tuple(map(move, self.ribs)),
                       tuple(map(move, self.context)))


def _axis(theta: float) -> np.ndarray:
    return np.array([0.0, np.sin(theta), np.cos(theta)])


def build_phantom(patient: Patient, fractures: list[Fracture], rng: np.random.Generator,
                  reductions: dict[str, float] | None = None, irregularity: Irregularity | None = None) -> Phantom:
    """Return the phantom of ``patient`` with ``fractures``; T1's centre sits at the origin.

    ``reductions`` optionally overrides the 3D height reduction of fractured levels. The random draws depend
    on which levels are fractured and how, never on the reductions, so a rebuild from the same generator
    state with other reductions gives the same patient. ``irregularity`` (drawn beforehand, from its own
    generator) narrows discs, thins the trabecular bone and adds texture, osteophytes and endplate marks;
    None gives the smooth phantom.
    """
    irr = irregularity
    by_level = {f.level: f for f in fractures}
    if len(by_level) != len(fractures):
        raise ValueError("Give at most one deformity per level.")
    s = patient.scale
    dims = {}
    for name in SIMULATED_LEVELS:
        nom, j = NOMINAL[name], patient.level_jitter[name]
        hp = nom.hp * s * j
        base = Heights(hp * nom.wedge * rng.normal(1.0, 0.015), hp * nom.concave, hp)
        dims[name] = (nom.width / 2 * s * j, nom.depth / 2 * s * j, base)
    angles = sagittal_angles(patient)
    losses, splits = {}, {}
    measured = [n for n in SIMULATED_LEVELS if n != "S1"]
    for i, name in enumerate(SIMULATED_LEVELS):
        a, b, base = dims[name]
        neighbours = [measured[k] for k in (i - 1, i + 1) if 0 <= k < len(measured) and name != "S1"]
        hp_ref = float(np.mean([dims[n][2].hp for n in neighbours])) if neighbours else base.hp
        fracture = by_level.get(name)
        losses[name] = deform(base, b, fracture, hp_ref, (reductions or {}).get(name))
        splits[name] = _superior_share(fracture, rng)
    _add_fracture_kyphosis(angles, losses, splits)

    bodies, centres = [], {}
    centre = np.zeros(3)
    prev = None
    for name in SIMULATED_LEVELS:
        a, b, base = dims[name]
        h0, loss, k = profile(base, b), losses[name], splits[name]
        top, bottom = -h0 / 2 + k * loss, h0 / 2 - (1 - k) * loss
        theta = angles[name]
        if prev is not None:
            p_name, p_bottom, p_theta, p_centre, p_b = prev
            mid = _axis(p_theta) + _axis(theta)
            narrow = irr.disc[p_name] if irr else 1.0
            centre = (centre + _axis(p_theta) * p_bottom[0] + mid / np.linalg.norm(mid) * NOMINAL[p_name].disc * s
                      * narrow - _axis(theta) * top[0])
            if irr:  # a narrowed disc still keeps its endplates apart, at the wedge's thin end too
                floor = max(_MIN_DISC_SHARE * NOMINAL[p_name].disc, 1.0) * s
                gap = _rim_gap((p_centre, p_theta, p_bottom), (centre, theta, top), min(p_b, b), mid)
                centre = centre + mid / np.linalg.norm(mid) * max(floor - gap, 0.0)
        frame = Frame(centre.copy(), rotation("x", -theta))
        wall, plate = (0.9 if name.startswith("L") or name == "S1" else 0.7) * s, 1.0 * s
        outer = Slab(frame, a, b, tuple(top), tuple(bottom), MU["cortical"])
        inner = Slab(frame, a - wall, b - wall, tuple(top + [plate, 0, 0]), tuple(bottom - [plate, 0, 0]),
                     MU["trabecular"] * (irr.density if irr else 1.0) - MU["cortical"])
        fracture = by_level.get(name)
        bodies.append(Body(name, outer, inner, deformed_heights(base, b, loss), base, fracture,
                           irr.texture[name] if irr else None))
        centres[name] = centre.copy()
        prev = (name, bottom, theta, centre.copy(), b)

    bone = elements.discs(bodies, MU["disc"] - MU["soft"], s) + elements.posterior(bodies, MU["posterior"], s)
    bone += elements.pelvis(bodies, MU["posterior"], s, irr.iliac if irr else (0.0, 0.0, 1.0))
    if irr:
        bone += elements.degenerative(bodies, irr, MU, s)
    ribs = elements.ribs(bodies, MU["posterior"], s, patient.habitus, irr.ribs if irr else ((0.0, 0.0),) * 2)
    context = soft.torso(bodies, MU, patient, rng)
    return Phantom(patient, tuple(bodies), tuple(bone), tuple(ribs), tuple(context))


def _rim_gap(upper: tuple, lower: tuple, b: float, mid: np.ndarray) -> float:
    """Return the narrowest gap (mm, along ``mid``) between the upper body's inferior endplate and the lower
    body's superior one; each body is (centre, axis angle, endplate coefficients)."""
    ys = np.linspace(-b, b, 9)
    ends = [c[:, None] + rotation("x", -theta) @ np.stack([np.zeros_like(ys), ys, np.polyval(plate[::-1], ys)])
            for c, theta, plate in (upper, lower)]
    return float(((mid / np.linalg.norm(mid)) @ (ends[1] - ends[0])).min())


def _superior_share(fracture: Fracture | None, rng: np.random.Generator) -> float:
    """Return the share of the height loss taken by the superior endplate."""
    if fracture is None or fracture.kind == "crush":
        return 0.5
    if fracture.kind == "wedge":
        return float(rng.uniform(0.6, 1.0))
    return float(rng.uniform(0.2, 0.8))


def _add_fracture_kyphosis(angles: dict[str, float], losses: dict[str, np.ndarray], splits: dict[str, float]) -> None:
    """Tilt the spine above and below a wedged body so that its neighbours' discs stay parallel to its endplates."""
    names = list(SIMULATED_LEVELS)
    for i, name in enumerate(names):
        slope = float(losses[name][1])  # dΔH/dy, nonzero for a wedge
        if slope == 0.0:
            continue
        k = splits[name]
        for j, other in enumerate(names):
            if j < i:
                angles[other] -= k * slope
            elif j > i:
                angles[other] += (1 - k) * slope
