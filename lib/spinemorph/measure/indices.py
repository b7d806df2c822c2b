"""Height indices, neighbours, VCR and the Genant grade, from each body's three heights."""

from __future__ import annotations

import numpy as np

from spinemorph.conventions import genant_grade
from spinemorph.levels import ANATOMICAL_ORDER, level_code
from spinemorph.measure.records import VertebraRecord

__all__ = ["neighbours", "grade_records", "missing_after", "NEIGHBOUR_FLAGS", "GRADED_FIELDS"]

#: The flags ``grade_records`` adds on how a record's VCR and crush index found their neighbours.
NEIGHBOUR_FLAGS = ("no_upper_neighbour", "no_lower_neighbour", "one_neighbour", "vcr_unavailable")
#: The record fields ``grade_records`` fills from the heights: indices, VCR, grade and type.
GRADED_FIELDS = ("wedge", "biconcave", "crush", "vcr_percent", "avh_pvh_percent", "genant_grade", "deformity")

_TRANSITIONAL = (level_code("T13"), level_code("L6"))
_GAP = 1.6  # a centroid gap this many times its neighbouring gaps means a body is missing


def missing_after(distances) -> np.ndarray:
    """Return, per gap between consecutive bodies, whether a body seems missing there.

    A gap is compared with its neighbouring gaps, not with a global median: spacing grows caudally (T1-T2 is
    about half of L4-L5), and with three bodies a median is itself one of the gaps.
    """
    d = np.asarray(distances, float)
    if d.size < 2:
        return np.zeros(d.size, bool)
    before = np.concatenate([[np.inf], d[:-1]])
    after = np.concatenate([d[1:], [np.inf]])
    return d > _GAP * np.minimum(before, after)


def neighbours(codes: list[int | None], centroids: list[np.ndarray]) -> list[tuple[int | None, int | None]]:
    """Return, per body (in top-to-bottom order), the indices of its upper and lower neighbours, or None.

    With level codes, a neighbour is the anatomically adjacent level (T13 and L6 count only when present).
    Without, it is the adjacent body unless the gap suggests one is missing.
    """
    n = len(codes)
    if all(c is not None for c in codes):
        present = {c: i for i, c in enumerate(codes)}
        order = [c for c in ANATOMICAL_ORDER if c not in _TRANSITIONAL or c in present]
        out = []
        for c in codes:
            k = order.index(c)
            up = present.get(order[k - 1]) if k > 0 else None
            down = present.get(order[k + 1]) if k + 1 < len(order) else None
            out.append((up, down))
        return out
    gaps = [float(np.linalg.norm(centroids[i + 1] - centroids[i])) for i in range(n - 1)]
    joined = list(~missing_after(gaps))
    return [(i - 1 if i > 0 and joined[i - 1] else None, i + 1 if i < n - 1 and joined[i] else None)
            for i in range(n)]


def _mean_of(values: list[float | None]) -> float | None:
    usable = [v for v in values if v is not None]
    return float(np.mean(usable)) if usable else None


def grade_records(records: list[VertebraRecord], pairs: list[tuple[int | None, int | None]], unit: str) -> None:
    """Fill each record's indices, VCR, Genant grade and deformity type in place, flagging missing neighbours."""
    for rec, (up, down) in zip(records, pairs, strict=True):
        ha, hm, hp = (rec.height(h, unit) for h in ("Ha", "Hm", "Hp"))
        if ha is None or hp is None or hp <= 0:
            continue
        rec.wedge, rec.biconcave = ha / hp, hm / hp
        rec.avh_pvh_percent = (1.0 - ha / hp) * 100.0
        near = [records[i] for i in (up, down) if i is not None and records[i].height("Hp", unit) is not None]
        if up is None or records[up].height("Hp", unit) is None:
            rec.flags.append("no_upper_neighbour")
        if down is None or records[down].height("Hp", unit) is None:
            rec.flags.append("no_lower_neighbour")
        if len(near) == 1:
            rec.flags.append("one_neighbour")
        hp_ref, ha_ref = _mean_of([r.height("Hp", unit) for r in near]), _mean_of([r.height("Ha", unit) for r in near])
        if hp_ref:
            rec.crush = hp / hp_ref
        if ha_ref:
            rec.vcr_percent = (1.0 - ha / ha_ref) * 100.0
        else:
            rec.flags.append("vcr_unavailable")
        losses = {"wedge": 1 - rec.wedge, "biconcave": 1 - rec.biconcave}
        if rec.crush is not None:
            losses["crush"] = 1 - rec.crush
        worst = max(losses, key=losses.get)
        rec.genant_grade = genant_grade(max(losses[worst], 0.0))
        rec.deformity = worst if rec.genant_grade else "none"
