"""Agreement statistics: Cohen's kappa, Pearson r, Bland-Altman limits. Plain numpy."""

from __future__ import annotations

import numpy as np

__all__ = ["cohen_kappa", "pearson_r", "bland_altman"]


def cohen_kappa(a, b, categories=None) -> float:
    """Return Cohen's (unweighted) kappa between two raters' categorical labels."""
    a, b = np.asarray(a), np.asarray(b)
    if a.size == 0:
        return float("nan")
    cats = np.unique(np.concatenate([a, b])) if categories is None else np.asarray(categories)
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for x, y in zip(a, b, strict=True):
        table[index[x], index[y]] += 1
    n = table.sum()
    observed = np.trace(table) / n
    expected = float((table.sum(0) * table.sum(1)).sum()) / n**2
    return 1.0 if expected == 1.0 else float((observed - expected) / (1.0 - expected))


def pearson_r(x, y) -> float:
    """Return Pearson's correlation coefficient."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def bland_altman(measured, truth) -> dict[str, float]:
    """Return the mean difference (measured - truth) and its 95 % limits of agreement."""
    d = np.asarray(measured, float) - np.asarray(truth, float)
    mean, sd = float(d.mean()), float(d.std(ddof=1)) if d.size > 1 else 0.0
    return {"mean": mean, "sd": sd, "lower": mean - 1.96 * sd, "upper": mean + 1.96 * sd}
