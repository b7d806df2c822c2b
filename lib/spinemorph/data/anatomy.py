"""Nominal adult thoracolumbar anatomy, T1 to S1, and how a patient's spine is sampled from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "LevelAnatomy", "NOMINAL", "SIMULATED_LEVELS", "Patient", "sample_patient", "sagittal_angles", "Irregularity",
    "sample_irregularity",
]


@dataclass(frozen=True)
class LevelAnatomy:
    """Nominal size of one vertebra (mm) and of the disc below it, for a patient of scale 1."""

    hp: float  # posterior body height
    depth: float  # anteroposterior body depth
    width: float  # transverse body width
    disc: float  # height of the disc below
    wedge: float  # natural anterior/posterior height ratio Ha/Hp
    concave: float  # natural middle/posterior height ratio Hm/Hp


# Rounded from published adult morphometry (thoracic and lumbar series); heights and depths grow caudally.
NOMINAL: dict[str, LevelAnatomy] = {
    "T1": LevelAnatomy(14.5, 15.5, 25.0, 4.0, 0.95, 0.94),
    "T2": LevelAnatomy(15.5, 16.0, 26.0, 4.0, 0.94, 0.94),
    "T3": LevelAnatomy(16.0, 17.0, 27.0, 4.0, 0.93, 0.94),
    "T4": LevelAnatomy(16.5, 18.0, 28.0, 4.2, 0.92, 0.93),
    "T5": LevelAnatomy(17.0, 19.0, 29.0, 4.4, 0.91, 0.93),
    "T6": LevelAnatomy(17.6, 20.0, 30.0, 4.6, 0.90, 0.93),
    "T7": LevelAnatomy(18.2, 21.5, 31.0, 4.8, 0.89, 0.93),
    "T8": LevelAnatomy(18.9, 23.0, 32.5, 5.0, 0.90, 0.93),
    "T9": LevelAnatomy(19.6, 24.5, 34.0, 5.2, 0.91, 0.93),
    "T10": LevelAnatomy(20.5, 26.0, 36.0, 5.6, 0.92, 0.93),
    "T11": LevelAnatomy(21.6, 28.0, 38.5, 6.4, 0.93, 0.93),
    "T12": LevelAnatomy(23.0, 30.0, 41.5, 7.6, 0.94, 0.94),
    "L1": LevelAnatomy(24.5, 31.5, 44.0, 8.6, 0.95, 0.94),
    "L2": LevelAnatomy(25.5, 32.5, 46.0, 9.6, 0.97, 0.94),
    "L3": LevelAnatomy(26.0, 33.5, 48.5, 10.4, 1.00, 0.94),
    "L4": LevelAnatomy(25.8, 34.0, 50.5, 10.8, 1.03, 0.95),
    "L5": LevelAnatomy(24.5, 33.5, 51.5, 10.0, 1.12, 0.95),
    "S1": LevelAnatomy(28.0, 36.0, 50.0, 0.0, 1.00, 0.97),
}
SIMULATED_LEVELS: tuple[str, ...] = tuple(NOMINAL)


@dataclass(frozen=True)
class Patient:
    """The sampled shape of one patient: size, habitus, curvature and pose."""

    scale: float  # skeletal size
    habitus: float  # soft-tissue girth
    kyphosis_deg: float  # T1-T12 curvature
    lordosis_deg: float  # L1-S1 curvature
    axial_rotation_deg: float
    tilt_deg: float
    level_jitter: dict[str, float]  # per-level relative size variation


def sample_patient(rng: np.random.Generator) -> Patient:
    """Return a random adult patient."""
    return Patient(
        scale=float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15)),
        habitus=float(rng.uniform(0.85, 1.3)),
        kyphosis_deg=float(rng.uniform(25.0, 55.0)),
        lordosis_deg=float(rng.uniform(35.0, 65.0)),
        axial_rotation_deg=float(rng.uniform(-4.0, 4.0)),
        tilt_deg=float(rng.uniform(-2.5, 2.5)),
        level_jitter={name: float(rng.normal(1.0, 0.025)) for name in SIMULATED_LEVELS},
    )


def sagittal_angles(patient: Patient) -> dict[str, float]:
    """Return each body's axis angle (rad) from vertical in the sagittal plane; positive leans caudal-posterior."""
    k, lo = np.deg2rad(patient.kyphosis_deg), np.deg2rad(patient.lordosis_deg)
    thoracic = [n for n in SIMULATED_LEVELS if n.startswith("T")]
    lumbar = [n for n in SIMULATED_LEVELS if not n.startswith("T")]
    angles = {n: k / 2 - k * i / (len(thoracic) - 1) for i, n in enumerate(thoracic)}
    start = angles["T12"]
    # Lordosis is concentrated in the lower lumbar joints, as in real spines.
    weights = np.array([0.5, 0.8, 1.0, 1.3, 1.6, 2.2])
    steps = lo * np.cumsum(weights) / weights.sum()
    angles.update({n: start + s for n, s in zip(lumbar, steps, strict=True)})
    return angles



# How prone each disc (named by the level above it) is to degenerative narrowing, and each body to anterior
# osteophytes: both rise toward the lower lumbar spine, with a smaller peak in the lower thoracic spine.
_WEAR: dict[str, float] = {
    **{f"T{i}": 0.25 for i in range(1, 7)}, "T7": 0.3, "T8": 0.35, "T9": 0.4, "T10": 0.45, "T11": 0.45, "T12": 0.45,
    "L1": 0.45, "L2": 0.5, "L3": 0.65, "L4": 0.9, "L5": 1.0, "S1": 0.8,
}


@dataclass(frozen=True)
class Irregularity:
    """How one patient's spine departs from the smooth nominal phantom (all 1 or empty for a regular one).

    Per level: ``disc`` scales the height of the disc below it (degenerative narrowing); ``spurs`` gives the
    size (0-1, 0 for none) of an anterior osteophyte at its superior and inferior corners; ``node`` a
    Schmorl node (endplate: -1 superior, +1 inferior, 0 none; AP position as a fraction of the half-depth;
    size 0-1); ``bump`` an endplate undulation the same way; ``texture`` the seed and contrast of the
    trabecular texture. ``density`` scales trabecular attenuation; ``ribs`` shifts each side's ribs
    (anterior mm, caudal mm) and ``iliac`` the iliac wings (anterior mm, cranial mm, size factor).
    """

    degeneration: float
    density: float
    disc: dict[str, float]
    spurs: dict[str, tuple[float, float]]
    node: dict[str, tuple[int, float, float]]
    bump: dict[str, tuple[int, float, float]]
    texture: dict[str, tuple[int, float]]
    ribs: tuple[tuple[float, float], tuple[float, float]]
    iliac: tuple[float, float, float]


def sample_irregularity(rng: np.random.Generator, strength: float = 1.0) -> Irregularity | None:
    """Return a random irregularity at ``strength`` (1 moderate, 0 none: then None, the regular phantom)."""
    if strength < 0:
        raise ValueError(f"The irregularity strength must be 0 or more, not {strength}.")
    if strength == 0:
        return None
    n = len(SIMULATED_LEVELS)
    degeneration = float(min(1.0, rng.beta(2.0, 3.0) * strength))
    wear = np.array([_WEAR[name] for name in SIMULATED_LEVELS])
    narrowing = np.minimum(0.55, degeneration * wear * rng.uniform(0.0, 1.2, n))
    disc = (1.0 - narrowing) * (1.0 + 0.08 * min(strength, 1.0) * rng.uniform(-1.0, 1.0, n))
    spur_p, spur_size = np.minimum(1.0, 1.3 * degeneration * wear), rng.uniform(0.3, 1.0, (n, 2)) * min(strength, 1.5)
    spurs = np.where(rng.random((n, 2)) < spur_p[:, None], spur_size, 0.0)

    def endplate_marks(p: float) -> list[tuple[int, float, float]]:
        present, side = rng.random(n) < min(1.0, p * strength), rng.choice([-1, 1], n)
        where, size = rng.uniform(-0.5, 0.5, n), rng.uniform(0.3, 1.0, n)
        return [(int(s) if k else 0, float(w), float(z)) for k, s, w, z in zip(present, side, where, size, strict=True)]

    node, bump = endplate_marks(0.08 + 0.15 * degeneration), endplate_marks(0.35)
    seeds, contrast = rng.integers(0, 2**31, n), rng.uniform(0.5, 1.0, n) * rng.uniform(0.06, 0.2) * strength
    ribs = tuple((float(rng.uniform(0.0, 25.0) * strength), float(rng.normal(0.0, 6.0) * strength)) for _ in range(2))
    iliac = (float(rng.uniform(-15.0, 20.0) * strength), float(rng.uniform(0.0, 35.0) * strength),
             float(1.0 + rng.uniform(-0.1, 0.15) * min(strength, 1.0)))
    density = float(np.clip(1.0 - rng.uniform(0.0, 0.3) * strength, 0.5, 1.0))
    names = SIMULATED_LEVELS
    return Irregularity(
        degeneration, density, {m: float(v) for m, v in zip(names, disc, strict=True)},
        {m: (float(a), float(b)) for m, (a, b) in zip(names, spurs, strict=True)},
        dict(zip(names, node, strict=True)), dict(zip(names, bump, strict=True)),
        {m: (int(k), float(c)) for m, k, c in zip(names, seeds, contrast, strict=True)}, ribs, iliac)
