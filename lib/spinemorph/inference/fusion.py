"""Two opinions on each vertebra, and one call: the measured grade and the fracture detector's score.

Measure-then-grade finds most fractures a detector finds, but not all, and the other way round (bench/vcf_detection.py:
the detector finds more grade-1 fractures, the measurement is the more specific). Both are reported as they are, and
a combined call: the soft vote ``(detector score + p) / 2 >= 0.5``, with p = logistic((reduction - 0.20) / 0.02) the
morphometry's probability of a Genant grade >= 1. A vertebra whose grade the gates withdrew gets no measured call and
no combined one: the detector's opinion alone is reported, never turned into a grade.
"""

from __future__ import annotations

import math

from spinemorph.conventions import GRADE_LIMITS
from spinemorph.measure.records import Morphometry, VertebraRecord

__all__ = ["reduction", "morph_probability", "soft_vote", "fracture_calls"]

_GRADE_1 = GRADE_LIMITS[0]


def reduction(rec: VertebraRecord) -> float | None:
    """Return a measured body's worst height reduction (what the Genant grade thresholds), or None."""
    if rec.wedge is None:
        return None
    losses = [1 - rec.wedge, 1 - rec.biconcave] + ([1 - rec.crush] if rec.crush is not None else [])
    return max(0.0, *losses)


def morph_probability(r: float | None) -> float:
    """Return the morphometry's fracture probability: 0.5 at the Genant grade-1 limit of 20 % reduction."""
    return 0.0 if r is None else 1.0 / (1.0 + math.exp(-(r - _GRADE_1) / 0.02))


def soft_vote(score: float, r: float | None) -> float:
    """Return the combined fracture score: the mean of the detector's score and the morphometry's probability."""
    return (score + morph_probability(r)) / 2


def fracture_calls(morphometry: Morphometry, scores: dict[int, float], codes: set[int]) -> list[dict]:
    """Return, per vertebra at a level the detector covers (``codes``), both opinions and the combined call.

    ``scores`` maps a level code to the detector's best score for it (0 when it found nothing there).
    """
    calls = []
    for rec in morphometry.vertebrae:
        if rec.code not in codes:
            continue
        score = round(float(scores.get(rec.code, 0.0)), 4)
        graded = rec.genant_grade is not None
        measured = bool(rec.genant_grade >= 1) if graded else None
        combined = soft_vote(score, reduction(rec)) >= 0.5 if graded else None
        calls.append({"level": rec.level, "measured": measured, "detector_score": score, "detector": score >= 0.5,
                      "combined": combined, "agree": measured == (score >= 0.5) if graded else None})
    return calls
