"""Morphometry errors: a measured result against the simulator's truth JSON, pair by pair."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spinemorph.evaluation.stats import bland_altman, cohen_kappa, pearson_r
from spinemorph.measure.indices import grade_records, neighbours
from spinemorph.measure.records import Morphometry, VertebraRecord

__all__ = ["truth_records", "readable_truth", "Pairs", "compare", "by_body", "summarise"]


def truth_records(truth: dict) -> list[VertebraRecord]:
    """Return the truth's vertebrae as records, with VCR, indices and neighbours computed by measure's own rules.

    The Genant grade and deformity type stay the simulator's own (the requested ones).
    """
    records = []
    for v in sorted(truth["vertebrae"], key=lambda v: v.get("center_px", [0, 0])[0]):
        rec = VertebraRecord(level=v["level"], code=v["code"])
        if not v["truncated"] and "Ha_mm" in v:
            for h in ("Ha", "Hm", "Hp"):
                setattr(rec, f"{h}_mm", v[f"{h}_mm"])
        records.append(rec)
    grade_records(records, neighbours([r.code for r in records], [np.zeros(2)] * len(records)), "mm")
    grades = {v["level"]: (v["genant_grade"], v["deformity"]) for v in truth["vertebrae"]}
    for rec in records:
        rec.genant_grade, rec.deformity = grades[rec.level] if rec.Ha_mm is not None else (None, None)
    return records


@dataclass
class Pairs:
    """Truth and measured values, paired vertebra by vertebra across images."""

    heights: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: {"Ha": [], "Hm": [], "Hp": []})
    vcr: list[tuple[float, float]] = field(default_factory=list)
    grade: list[tuple[int, int]] = field(default_factory=list)
    kind: list[tuple[str, str]] = field(default_factory=list)
    missed: int = 0
    refused: int = 0  # measured, but not graded (low_confidence, facing_uncertain): heights count, grades do not
    # the same pairs for the graded vertebrae alone: what a reader who trusts only graded rows gets
    graded_heights: list[tuple[float, float]] = field(default_factory=list)
    graded_vcr: list[tuple[float, float]] = field(default_factory=list)
    graded_vcr_neighbours: list[int] = field(default_factory=list)  # per graded_vcr pair: neighbours it measured by
    misnamed: int = 0  # paired by body: truth bodies whose measured record has another level's name


def by_body(result: Morphometry, truth: dict) -> dict[str, VertebraRecord]:
    """Return, per truth level, the measured record of that body whatever its name: each measured record goes to
    the truth body whose centre is nearest its own, the nearer record where two go to one body. What the
    morphometry measured, apart from how the levels were named (``compare(..., by="body")``)."""
    centres = {v["level"]: np.asarray(v["center_px"], float) for v in truth["vertebrae"] if v.get("center_px")}
    out: dict[str, tuple[float, VertebraRecord]] = {}
    for rec in result.vertebrae:
        if not centres or rec.center_px is None:
            continue
        here = np.asarray(rec.center_px, float)
        level, distance = min(((k, float(np.linalg.norm(c - here))) for k, c in centres.items()), key=lambda x: x[1])
        if level not in out or distance < out[level][0]:
            out[level] = (distance, rec)
    return {level: rec for level, (_, rec) in out.items()}


def readable_truth(truth: dict) -> tuple[set[str], dict[str, int]]:
    """Return the levels whose truth heights a CT-DRR's own truth mask gives as the truth defines them, and counts.

    A CT-DRR's truth heights are ``spinemorph.measure`` on its projected truth labelmap (``lesion_records``), so on
    a real body's outline they are only as good as the measure's reading of it: a body in view it cannot read has
    none (``unreadable``), and a body with no lesion made in it that it reads as a fracture (``genant_grade_measured``
    >= 1 where ``genant_grade`` is 0) has heights that are not a normal body's (``fractured_unmade``). The readable
    levels are the rest of those measured. A simulation's truth is its own geometry: every measured level."""
    counts = {"in_view": 0, "measured": 0, "unreadable": 0, "no_lesion": 0, "fractured_unmade": 0}
    levels = set()
    for v in truth["vertebrae"]:
        if v.get("truncated"):
            continue
        counts["in_view"] += 1
        if "Ha_mm" not in v:
            counts["unreadable"] += 1
            continue
        counts["measured"] += 1
        unmade = v.get("genant_grade", 0) == 0 and (v.get("genant_grade_measured") or 0) >= 1
        counts["no_lesion"] += v.get("genant_grade", 0) == 0
        counts["fractured_unmade"] += unmade
        if not unmade:
            levels.add(v["level"])
    return levels, counts


def compare(result: Morphometry, truth: dict, pairs: Pairs | None = None, by: str = "level",
            levels: set[str] | None = None) -> Pairs:
    """Add the pairs of one image to ``pairs`` (a new Pairs if None) and return it: each truth vertebra against the
    measured one of its level's name (``by="level"``, what a reader of the table gets), or against the measured
    record of the same body, named right or not (``by="body"``: ``by_body``); ``levels``: those truth levels alone
    (the truth's VCR stays the one of the whole truth)."""
    if by not in ("level", "body"):
        raise ValueError(f"by must be 'level' or 'body', not {by!r}.")
    pairs = pairs or Pairs()
    measured = result.by_level() if by == "level" else by_body(result, truth)
    for t in truth_records(truth):
        if t.Ha_mm is None or (levels is not None and t.level not in levels):
            continue
        m = measured.get(t.level)
        if m is None or m.Ha_mm is None:
            pairs.missed += 1
            continue
        pairs.misnamed += m.level != t.level
        heights = [(t.height(h, "mm"), m.height(h, "mm")) for h in pairs.heights]
        for h, pair in zip(pairs.heights, heights, strict=True):
            pairs.heights[h].append(pair)
        vcr = [(t.vcr_percent, m.vcr_percent)] if t.vcr_percent is not None and m.vcr_percent is not None else []
        pairs.vcr += vcr
        if m.genant_grade is None:
            pairs.refused += 1
            continue
        pairs.graded_heights += heights
        pairs.graded_vcr += vcr
        pairs.graded_vcr_neighbours += [1 if "one_neighbour" in m.flags else 2] * len(vcr)
        pairs.grade.append((t.genant_grade, m.genant_grade))
        pairs.kind.append((t.deformity, m.deformity))
    return pairs


def summarise(pairs: Pairs) -> dict[str, float]:
    """Return height MAE (mm), VCR MAE (points), VCR r (over every measured vertebra, ``*_graded`` over the graded
    ones alone, ``*_graded_both_neighbours`` over those graded against both neighbours), Bland-Altman limits, Genant
    kappa and type agreement (over the graded vertebrae), and how many were graded, missed and refused."""
    out = {}
    heights = [np.asarray(v, float) for v in pairs.heights.values() if v]
    all_h = np.concatenate(heights) if heights else np.zeros((0, 2))
    out["height_mae_mm"] = float(np.abs(all_h[:, 1] - all_h[:, 0]).mean()) if len(all_h) else float("nan")
    for h, v in pairs.heights.items():
        v = np.asarray(v, float)
        out[f"{h}_mae_mm"] = float(np.abs(v[:, 1] - v[:, 0]).mean()) if len(v) else float("nan")
    graded = np.asarray(pairs.graded_heights, float).reshape(-1, 2)
    out["height_mae_graded_mm"] = float(np.abs(graded[:, 1] - graded[:, 0]).mean()) if len(graded) else float("nan")
    graded = np.asarray(pairs.graded_vcr, float).reshape(-1, 2)
    out["vcr_mae_graded_points"] = float(np.abs(graded[:, 1] - graded[:, 0]).mean()) if len(graded) else float("nan")
    out["vcr_r_graded"] = pearson_r(graded[:, 0], graded[:, 1])
    # where a VCR error comes from: a vertebra measured against both neighbours, or against one (the other not
    # measured: out of view, cut by the edge, refused as no plausible body) while the truth may have had both
    both = graded[np.asarray(pairs.graded_vcr_neighbours, int) == 2] if len(graded) else graded
    out["vcr_mae_graded_both_neighbours"] = float(np.abs(both[:, 1] - both[:, 0]).mean()) if len(both) else \
        float("nan")
    out["vcr_r_graded_both_neighbours"] = pearson_r(both[:, 0], both[:, 1])
    out["graded_one_neighbour"] = float(len(graded) - len(both))
    vcr = np.asarray(pairs.vcr, float).reshape(-1, 2)
    out["vcr_mae_points"] = float(np.abs(vcr[:, 1] - vcr[:, 0]).mean()) if len(vcr) else float("nan")
    out["vcr_r"] = pearson_r(vcr[:, 0], vcr[:, 1])
    ba = bland_altman(vcr[:, 1], vcr[:, 0]) if len(vcr) > 1 else {"mean": float("nan"), "lower": float("nan"),
                                                                   "upper": float("nan")}
    out.update({"vcr_bias": ba["mean"], "vcr_loa_lower": ba["lower"], "vcr_loa_upper": ba["upper"]})
    g = np.asarray(pairs.grade).reshape(-1, 2)
    out["genant_kappa"] = cohen_kappa(g[:, 0], g[:, 1], categories=[0, 1, 2, 3]) if len(g) else float("nan")
    out["type_agreement"] = float(np.mean([a == b for a, b in pairs.kind])) if pairs.kind else float("nan")
    out["vertebrae"], out["missed"], out["refused"] = float(len(g)), float(pairs.missed), float(pairs.refused)
    out["misnamed"] = float(pairs.misnamed)
    return out
