"""How much N MC-dropout measurements of one radiograph disagree: per vertebra and as one score. Numpy only.

The score, for passes P_1..P_N (N >= 2; each the ``spinemorph.measure`` result of one dropout pass), keys each
vertebra by its level name; for a level ℓ found in n_ℓ >= 1 of the passes:

- presence   p_ℓ = 1 - n_ℓ / N                            (0 when every pass found it);
- heights    h_ℓ = mean over the stations H in {Ha, Hm, Hp} measured in at least two passes of sd(H) / B_ℓ, where
  sd is the population sd over the passes and B_ℓ, the body height, is the mean of every Ha, Hm and Hp measured
  for ℓ in any pass (heights in the result's unit: mm, or px without a spacing; the ratio has no unit);
- VCR        v_ℓ = sd(vcr_percent) over the passes that computed one, in percentage points (0 under two values);
- grade      g_ℓ = 1 - (passes giving the most common grade) / n_ℓ, where "no grade" (the gates withheld it) is a
  grade of its own: the fraction of the passes that found ℓ and disagree with the majority;
- vertebra   u_ℓ = h_ℓ + v_ℓ / 100 + g_ℓ + p_ℓ.

The image's score is the mean of u_ℓ over the levels found in any pass, or 1.0 when no pass found any (as if each
level the model should see were missing from every pass). 0 means every pass measured every vertebra the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from spinemorph.measure import Morphometry

__all__ = ["STATIONS", "vertebra_spread", "morphometry_spread", "NOTHING_FOUND"]

STATIONS = ("Ha", "Hm", "Hp")
NOTHING_FOUND = 1.0  # the score of an image no pass found a vertebra in


def _sd(values: list[float]) -> float:
    return float(np.std(values)) if len(values) >= 2 else 0.0


def vertebra_spread(level: str, records: Sequence, passes: int, unit: str) -> dict:
    """Return one level's spread over the ``passes`` MC passes, given its records in the passes that found it."""
    heights = {h: [v for v in (r.height(h, unit) for r in records) if v is not None] for h in STATIONS}
    every = [v for values in heights.values() for v in values]
    body = float(np.mean(every)) if every else 0.0
    relative = {h: _sd(v) / body if body > 0 else 0.0 for h, v in heights.items()}
    measured = [relative[h] for h in STATIONS if len(heights[h]) >= 2]
    h_term = float(np.mean(measured)) if measured else 0.0
    vcr_sd = _sd([r.vcr_percent for r in records if r.vcr_percent is not None])
    grades = [r.genant_grade for r in records]
    g_term = 1.0 - Counter(grades).most_common(1)[0][1] / len(records)
    p_term = 1.0 - len(records) / passes
    return {"level": level, "found": round(len(records) / passes, 4),
            **{f"{h}_sd_rel": round(relative[h], 4) for h in STATIONS},
            "vcr_sd": round(vcr_sd, 4), "grades": grades, "grade_disagreement": round(g_term, 4),
            "uncertainty": round(h_term + vcr_sd / 100 + g_term + p_term, 6)}


def morphometry_spread(results: Sequence[Morphometry]) -> tuple[float, list[dict]]:
    """Return the image's score and one spread record per level (in the order first found), for N >= 2 passes.

    Example::

        score, vertebrae = morphometry_spread([measure(labels_of_pass(i), spacing, "left") for i in range(4)])
    """
    if len(results) < 2:
        raise ValueError(f"A spread needs at least two MC-dropout passes, not {len(results)}.")
    found: dict[str, list] = {}
    for result in results:
        for rec in result.vertebrae:
            found.setdefault(rec.level, []).append(rec)
    unit = results[0].unit
    vertebrae = [vertebra_spread(level, recs, len(results), unit) for level, recs in found.items()]
    if not vertebrae:
        return NOTHING_FOUND, []
    return round(float(np.mean([v["uncertainty"] for v in vertebrae])), 6), vertebrae
