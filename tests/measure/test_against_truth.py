"""Morphometry of the simulator's ground-truth labelmaps against the simulator's truth."""

from __future__ import annotations

import numpy as np
import pytest

from spinemorph.data.simulate import SimConfig, simulate
from spinemorph.measure import measure
from spinemorph.measure.gates import TRUTH_GATES


@pytest.fixture(scope="module")
def sims():
    return [simulate(31, i, SimConfig(size=400, fracture_rate=1.0)) for i in range(12)]


def test_heights_agree_with_the_truth_within_a_pixel(sims):
    errors = []
    for sim in sims:  # a truth outline reaches the edge that cuts it: the simulator's own margin (TRUTH_GATES)
        by = measure(sim.labels, tuple(sim.truth["pixel_spacing_mm"]), sim.truth["facing"],
                     gates=TRUTH_GATES).by_level()
        for v in sim.truth["vertebrae"]:
            if v["truncated"]:
                assert "truncated" in by[v["level"]].flags
                continue
            for h in ("Ha", "Hm", "Hp"):
                errors.append(by[v["level"]].height(h, "px") - v[f"{h}_px"])
    errors = np.abs(errors)
    assert len(errors) > 150
    assert errors.max() <= 1.0 and errors.mean() < 0.35


def test_grades_and_types_match_the_truth(sims):
    pairs = []
    for sim in sims:
        by = measure(sim.labels, tuple(sim.truth["pixel_spacing_mm"]), sim.truth["facing"]).by_level()
        pairs += [((v["genant_grade"], v["deformity"]), (by[v["level"]].genant_grade, by[v["level"]].deformity))
                  for v in sim.truth["vertebrae"] if not v["truncated"]]
    fractured = [p for p in pairs if p[0][0] > 0]
    assert len(fractured) >= 8
    assert sum(a == b for a, b in pairs) >= 0.95 * len(pairs)


@pytest.mark.parametrize("binary", [False, True])
def test_facing_is_inferred_correctly(sims, binary):
    right = 0
    for sim in sims:
        labels = (sim.labels > 0).astype(np.uint8) if binary else sim.labels
        result = measure(labels, tuple(sim.truth["pixel_spacing_mm"]))
        assert result.facing_source == "inferred" and "facing_inferred" in result.flags
        right += result.facing == sim.truth["facing"]
    assert right >= len(sims) - (1 if binary else 0)
