"""A vertebra's flags in plain words: why it was not graded, and how it was measured."""

from __future__ import annotations

from spinemorph.measure import measure
from spinemorph.measure.flags import FLAG_TEXT, explain, why_not_graded
from spinemorph.measure.gates import GATE_FLAGS
from tests.measure.test_gates import spine


def test_a_refusal_says_which_check_refused_it():
    assert explain(["low_confidence", "stages_disagree"]) == FLAG_TEXT["stages_disagree"]
    assert explain(["low_confidence", "not_solid", "one_neighbour"]) == \
        f"{FLAG_TEXT['not_solid']}; {FLAG_TEXT['one_neighbour']}"
    assert explain(["low_confidence", "one_neighbour"]).startswith("not graded")  # no reason given: still says so
    assert explain(["some_new_flag", "split", "split"]) == f"some_new_flag; {FLAG_TEXT['split']}"  # as it is, once
    assert explain([]) == ""
    # why no grade: the checks that refused it, not how it was measured
    assert why_not_graded(["one_neighbour", "low_confidence", "not_solid"]) == FLAG_TEXT["not_solid"]
    assert why_not_graded(["truncated"]) == FLAG_TEXT["truncated"]
    assert why_not_graded(["one_neighbour"]) == FLAG_TEXT["one_neighbour"] and why_not_graded([]) == \
        "no reason recorded"


def test_every_flag_a_record_can_carry_has_its_words():
    assert set(GATE_FLAGS) <= set(FLAG_TEXT)
    agreement = {19: 0.9, 20: 0.85, 21: 0.3, 22: 0.92, 23: 0.88}  # L2: stage 2 drew something else
    refused = measure(spine(L2=(112, 168, 30, 90)), (1.0, 1.0), "left", agreement=agreement)
    cut = measure(spine(T12=(0, 60, 30, 90)), None, "left")  # T12 at the image's edge, no spacing
    flags = {f for result in (refused, cut) for r in result.vertebrae for f in r.flags}
    assert {"low_confidence", "stages_disagree", "one_neighbour", "truncated", "no_spacing"} <= flags
    assert flags <= set(FLAG_TEXT)
    assert "outlines disagree" in explain(refused.by_level()["L2"].flags)
    assert "not graded" not in explain(refused.by_level()["L2"].flags)  # the reason says it
