"""Vertebral deformities at a chosen Genant grade, and their realistic prevalence.

A deformity removes height ΔH(y) from the body, a polynomial of degree two in the anteroposterior
coordinate y, so the deformed body stays an exact ``Slab``. Its amplitude is solved so that the index a
reader measures at the six-point positions (``WALL_INSET`` in from each wall) shows exactly the requested
reduction: Ha/Hp for a wedge, Hm/Hp for a biconcave body, Hp against the neighbours' Hp for a crush.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinemorph.conventions import DEFORMITY_TYPES, GRADE_LIMITS, WALL_INSET, genant_grade
from spinemorph.levels import level_code, level_name

__all__ = [
    "DEFORMITIES",
    "GENANT_BANDS",
    "Fracture",
    "parse_fracture",
    "sample_fractures",
    "Heights",
    "deform",
    "deformed_heights",
    "profile",
]

DEFORMITIES: tuple[str, ...] = DEFORMITY_TYPES
#: Height reduction a requested deformity of each Genant grade may have (grade 3 stops at 80 %).
GENANT_BANDS: dict[int, tuple[float, float]] = {1: GRADE_LIMITS[:2], 2: GRADE_LIMITS[1:], 3: (GRADE_LIMITS[2], 0.80)}
# Sampled reductions stay clear of the band edges so that the ground-truth grade is unambiguous.
_SAMPLING_BANDS: dict[int, tuple[float, float]] = {1: (0.21, 0.24), 2: (0.27, 0.38), 3: (0.42, 0.55)}
_FRACTURABLE: tuple[str, ...] = tuple(f"T{i}" for i in range(1, 13)) + tuple(f"L{i}" for i in range(1, 6))
# Relative prevalence by level: most fractures at T11-L2, a second peak at T7-T8.
_LEVEL_WEIGHT = dict(zip(_FRACTURABLE, [0.1, 0.1, 0.2, 0.4, 0.6, 0.9, 1.4, 1.4, 1.0, 1.0, 1.8, 3.0,
                                        3.0, 1.8, 1.0, 0.7, 0.3], strict=True))
_TYPE_WEIGHT = {"wedge": 0.6, "biconcave": 0.25, "crush": 0.15}
_GRADE_WEIGHT = {1: 0.45, 2: 0.35, 3: 0.20}


@dataclass(frozen=True)
class Fracture:
    """A deformity of one vertebra: its level, type, Genant grade and height reduction (a fraction)."""

    level: str
    kind: str
    grade: int
    reduction: float

    def __post_init__(self) -> None:
        name = level_name(level_code(self.level))
        if name not in _FRACTURABLE:
            raise ValueError(f"Cannot deform {name}: the simulator deforms T1-L5.")
        object.__setattr__(self, "level", name)
        if self.kind not in DEFORMITIES:
            raise ValueError(f"Unknown deformity {self.kind!r}: use one of {', '.join(DEFORMITIES)}.")
        if self.grade not in GENANT_BANDS:
            raise ValueError(f"Genant grade must be 1, 2 or 3 for a deformity, not {self.grade}.")
        lo, hi = GENANT_BANDS[self.grade]
        if genant_grade(self.reduction) != self.grade or self.reduction >= 0.80:
            raise ValueError(f"A grade {self.grade} deformity reduces height by {lo:.0%} to {hi:.0%}, "
                             f"not {self.reduction:.1%}.")


def parse_fracture(text: str, rng: np.random.Generator | None = None) -> Fracture:
    """Return the Fracture described by "LEVEL:TYPE:GRADE[:REDUCTION]", e.g. "L1:wedge:2" or "T12:crush:3:0.45"."""
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise ValueError(f"Cannot read fracture {text!r}: write LEVEL:TYPE:GRADE[:REDUCTION], e.g. L1:wedge:2.")
    try:
        grade = int(parts[2])
    except ValueError:
        raise ValueError(f"Cannot read fracture {text!r}: the grade must be 1, 2 or 3.") from None
    if grade not in GENANT_BANDS:
        raise ValueError(f"Genant grade must be 1, 2 or 3 for a deformity, not {grade}.")
    if len(parts) == 4:
        reduction = float(parts[3])
    else:
        lo, hi = _SAMPLING_BANDS[grade]
        reduction = (lo + hi) / 2 if rng is None else float(rng.uniform(lo, hi))
    return Fracture(parts[0], parts[1].lower(), grade, reduction)


def sample_fractures(rng: np.random.Generator, levels: list[str], rate: float) -> list[Fracture]:
    """Return random fractures for one image: with probability ``rate`` one to three, at realistic levels."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"The fracture rate is a probability between 0 and 1, not {rate}.")
    candidates = [n for n in levels if n in _LEVEL_WEIGHT]
    if not candidates or rng.random() >= rate:
        return []
    count = min(int(rng.choice([1, 2, 3], p=[0.65, 0.25, 0.10])), len(candidates))
    weights = np.array([_LEVEL_WEIGHT[n] for n in candidates])
    chosen = rng.choice(candidates, size=count, replace=False, p=weights / weights.sum())
    fractures = []
    for name in sorted(chosen, key=level_code):
        kind = str(rng.choice(list(_TYPE_WEIGHT), p=list(_TYPE_WEIGHT.values())))
        grade = int(rng.choice(list(_GRADE_WEIGHT), p=list(_GRADE_WEIGHT.values())))
        fractures.append(Fracture(str(name), kind, grade, float(rng.uniform(*_SAMPLING_BANDS[grade]))))
    return fractures


@dataclass(frozen=True)
class Heights:
    """Anterior, middle and posterior body heights (mm) at the six-point positions."""

    ha: float
    hm: float
    hp: float


def profile(h: Heights, b: float) -> np.ndarray:
    """Return the coefficients (c0, c1, c2) of the height H(y) through ``h`` at y = -ye, 0, +ye."""
    ye = (1.0 - 2.0 * WALL_INSET) * b
    return np.array([h.hm, (h.hp - h.ha) / (2.0 * ye), ((h.ha + h.hp) / 2.0 - h.hm) / ye**2])


def _at(coef: np.ndarray, y: float) -> float:
    return float(coef[0] + coef[1] * y + coef[2] * y * y)


def deform(baseline: Heights, b: float, fracture: Fracture | None, hp_reference: float,
           reduction: float | None = None) -> np.ndarray:
    """Return the height-loss polynomial ΔH(y) (c0, c1, c2) that gives ``fracture`` its reduction.

    ``reduction`` overrides the fracture's own, for the simulator's correction of projection effects.
    """
    if fracture is None:
        return np.zeros(3)
    ye = (1.0 - 2.0 * WALL_INSET) * b
    keep = 1.0 - (fracture.reduction if reduction is None else reduction)
    if fracture.kind == "wedge":  # Δ·(b - y)/(2b): zero at the posterior wall
        pa, pp = (b + ye) / (2 * b), (b - ye) / (2 * b)
        delta = (baseline.ha - keep * baseline.hp) / (pa - keep * pp)
        return np.array([delta / 2, -delta / (2 * b), 0.0])
    if fracture.kind == "biconcave":  # Δ·(1 - y²/b²): zero at both walls
        q = 1.0 - (ye / b) ** 2
        delta = (baseline.hm - keep * baseline.hp) / (1.0 - keep * q)
        return np.array([delta, 0.0, -delta / b**2])
    # crush: the whole body shrinks so that Hp = keep · (the neighbours' mean Hp)
    shrink = 1.0 - min(keep * hp_reference / baseline.hp, 1.0)
    return shrink * profile(baseline, b)


def deformed_heights(baseline: Heights, b: float, loss: np.ndarray) -> Heights:
    """Return the heights at the six-point positions after removing ``loss``."""
    ye = (1.0 - 2.0 * WALL_INSET) * b
    base = profile(baseline, b)
    return Heights(*(_at(base - loss, y) for y in (-ye, 0.0, ye)))

