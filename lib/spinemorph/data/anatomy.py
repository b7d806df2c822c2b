"""Nominal adult thoracolumbar anatomy, T1 to S1, and how a patient's spine is sampled from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "LevelAnatomy", "NOMINAL", "SIMULATED_LEVELS", "Patient", "sample_patient", "sagittal_angles",
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

