"""Both opinions on each vertebra and the combined call; a refused grade gets no measured or combined call."""

from __future__ import annotations

import pytest

from spinemorph.inference.fusion import fracture_calls, morph_probability, reduction
from spinemorph.measure.records import Morphometry, VertebraRecord


def record(level: str, code: int, wedge: float | None, grade: int | None) -> VertebraRecord:
    return VertebraRecord(level=level, code=code, wedge=wedge, biconcave=1.0 if wedge else None, crush=1.0 if wedge
                          else None, genant_grade=grade)


def test_the_morphometry_probability_is_a_half_at_the_grade_1_limit():
    assert morph_probability(0.20) == pytest.approx(0.5) and morph_probability(None) == 0.0
    assert morph_probability(0.30) > 0.99 and morph_probability(0.10) < 0.01
    assert reduction(record("L1", 20, 0.7, 2)) == pytest.approx(0.3) and reduction(record("L1", 20, None, None)) is None


def test_calls_report_both_opinions_and_the_soft_vote():
    morph = Morphometry([record("T12", 19, 0.95, 0), record("L1", 20, 0.78, 1), record("L2", 21, 0.98, 0),
                         record("L3", 22, 0.6, None), record("C7", 7, 0.9, 0)], "left", "argument", None)
    calls = {c["level"]: c for c in fracture_calls(morph, {20: 0.3, 21: 0.9, 22: 0.95}, {19, 20, 21, 22})}
    assert set(calls) == {"T12", "L1", "L2", "L3"}  # C7 is no level of the detector's
    assert calls["T12"] == {"level": "T12", "measured": False, "detector_score": 0.0, "detector": False,
                            "combined": False, "agree": True}
    assert calls["L1"]["measured"] and not calls["L1"]["detector"] and calls["L1"]["combined"]  # 0.3 + 0.88
    assert not calls["L2"]["measured"] and calls["L2"]["detector"] and not calls["L2"]["combined"]  # 0.9 + 0
    assert not calls["L2"]["agree"]
    assert calls["L3"]["measured"] is None and calls["L3"]["combined"] is None and calls["L3"]["detector"]
