"""What a vertebra's flags mean, in the words of a reader of the results table rather than the code's.

The flags stay the machine's record (JSON, CSV, DICOM SR); ``explain`` turns them into the sentence a report or a
tooltip shows, most of all to say why a vertebra was not graded.
"""

from __future__ import annotations

from collections.abc import Iterable

from spinemorph.levels import LEVELS, level_name
from spinemorph.measure.gates import GATE_FLAGS

__all__ = ["FLAG_TEXT", "explain", "why_not_graded", "levels_beside", "naming_caveat", "finding_caveat"]

#: One plain phrase per flag a vertebra record can carry (``spinemorph.measure``, its gates, stage 2, Slicer).
FLAG_TEXT: dict[str, str] = {
    # why a grade was refused (low_confidence and the gates' reasons)
    "low_confidence": "not graded: a check on its outline failed",
    "not_solid": "its outline is in pieces or far from solid",
    "fragmented": "its level's outline came in more than one piece",
    "implausible_size": "its size is out of proportion to the bodies beside it, or to any adult body",
    "implausible_shape": "its front or middle stands well over its back, which no fracture does",
    "no_neighbour": "no measured body within two levels to compare it with",
    "points_outside": "its height points fall outside its outline",
    "low_model_confidence": "the network was unsure it is a body",
    "stages_disagree": "the whole-film and the full-resolution outlines disagree",
    "views_disagree": "the fracture was not seen in both of stage 2's views (the crop and its mirror image)",
    "coarse_outline": "a fracture grade needs the full-resolution outline, and this one was drawn on the whole film",
    "landmarks_disagree": "the landmark network's six points and the outline's disagree: the heights are their mean",
    "facing_uncertain": "which side the patient faces is unsure, so nothing is graded",
    # why it was not measured
    "truncated": "the edge of the film (or of its exposed field) may cut it: not measured",
    "unmeasurable": "no six points could be placed on its outline",
    "heights_withheld": "its outline is no plausible body, so its heights would measure no vertebra: none given "
                        "(place its points to measure it)",
    # how it was measured
    "one_neighbour": "VCR against one neighbour only",
    "no_upper_neighbour": "no measured body above it",
    "no_lower_neighbour": "no measured body below it",
    "vcr_unavailable": "no neighbour to take VCR against",
    "no_spacing": "no pixel spacing: heights in pixels",
    "split": "cut from one segment that merged several bodies",
    "placed_by_annotator": "its points were placed by the annotator",
}

_REASONS = frozenset((*GATE_FLAGS, "facing_uncertain"))  # the flags that say which check refused a grade
_NOT_MEASURED = ("truncated", "unmeasurable", "heights_withheld")


def explain(flags: Iterable[str]) -> str:
    """Return a record's flags as one plain sentence ("; "-joined phrases), unknown flags as they are.

    ``low_confidence`` says only that a check failed, so it is left out where a flag says which one (a gate's, or
    ``facing_uncertain``).

    Example::

        explain(["low_confidence", "stages_disagree"])  # 'the whole-film and the full-resolution outlines disagree'
    """
    flags = list(dict.fromkeys(flags))
    if "low_confidence" in flags and any(f in _REASONS for f in flags):
        flags.remove("low_confidence")
    return "; ".join(FLAG_TEXT.get(f, f) for f in flags)


def why_not_graded(flags: Iterable[str]) -> str:
    """Return why a record has no grade, in words: the checks that refused it, or why it was not measured; the
    whole of ``explain`` when its flags name neither."""
    flags = list(flags)
    why = [f for f in flags if f in _REASONS or f in _NOT_MEASURED]
    return explain(why or flags) or "no reason recorded"


def levels_beside(level: str) -> list[str]:
    """Return the levels one above and one below a named level (C1 to L5, in that order), those that exist; none
    for a name that is no level, or for S1, L6 and T13, which no count from an anchor puts beside another."""
    code = LEVELS.get(str(level).upper())
    if code is None or not 1 <= code <= 24:
        return []
    return [level_name(c) for c in (code - 1, code + 1) if 1 <= c <= 24]


def naming_caveat(flags: Iterable[str], levels: Iterable[str] = ()) -> str | None:
    """Return the sentence a reader of a finding needs when the level names are uncertain (``level_uncertain``
    among a result's flags: not counted up from a sacrum wholly in view, but the network's or Pose-net's best
    guess), naming the levels each of ``levels`` (the fractured ones, say) may be instead; None when the names are
    sure.

    On the calibration simulations every film with bodies measured under another level's name carried this flag;
    on real films the names are wrong more often than not (README, "Real anatomy"). A grade stands whatever its
    body's name, so a reader told "L2, grade 3" must know when it may be L1 or L3.

    Example::

        naming_caveat(["level_uncertain"], ["L2"])
        # 'The level names are uncertain (not counted up from a sacrum wholly in view): L2 may be L1 or L3.'
    """
    if "level_uncertain" not in set(flags):
        return None
    others = [f"{level} may be {' or '.join(beside)}" for level in levels if (beside := levels_beside(level))]
    what = "; ".join(others) if others else "a named level may be the one above or below it"
    return f"The level names are uncertain (not counted up from a sacrum wholly in view): {what}."


def finding_caveat(result) -> str | None:
    """Return ``naming_caveat`` of a ``Morphometry``: its flags, and the levels its finding grades 1 or more."""
    return naming_caveat(result.flags, result.finding["graded_1_or_more"])
