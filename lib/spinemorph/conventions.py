"""Morphometry conventions shared by the simulator's ground truth and ``spinemorph.measure``."""

from __future__ import annotations

import numpy as np

__all__ = ["WALL_INSET", "EDGE_MARGIN_PX", "GRADE_LIMITS", "DEFORMITY_TYPES", "genant_grade", "near_edge_codes"]

#: The anterior and posterior six points sit this fraction of the body's depth in from its walls.
WALL_INSET = 0.1
#: A body with a pixel this close to the image edge may have been cut by it: it is flagged truncated and not
#: measured. A margin rather than contact, because a segmentation stopping a pixel short of the edge has still
#: lost what lies beyond it.
EDGE_MARGIN_PX = 3

#: Lower limits of the height reduction for grades 1, 2 and 3: < 20 % is grade 0, 20-25 % grade 1,
#: 25-40 % grade 2, over 40 % grade 3. A reduction of exactly 25 % is grade 2; exactly 40 % is still grade 2.
GRADE_LIMITS: tuple[float, float, float] = (0.20, 0.25, 0.40)
DEFORMITY_TYPES: tuple[str, ...] = ("wedge", "biconcave", "crush")


def genant_grade(reduction: float) -> int:
    """Return the Genant grade (0-3) of a height reduction given as a fraction."""
    one, two, three = GRADE_LIMITS
    if reduction > three:
        return 3
    if reduction >= two:
        return 2
    if reduction >= one:
        return 1
    return 0


def near_edge_codes(labels: np.ndarray, margin: float = EDGE_MARGIN_PX,
                    field: tuple[int, int, int, int] | None = None) -> set[int]:
    """Return the label values that come within ``margin`` pixels of the image edge, or of the edge of ``field``
    (row0, col0, row1, col1, inclusive: the exposed field, ``spinemorph.measure.exposed_field``) when given, values
    beyond that edge included."""
    r0, c0, r1, c1 = (0, 0, labels.shape[0] - 1, labels.shape[1] - 1) if field is None else field
    m = int(np.ceil(margin))  # a pixel index within a fractional margin is within its ceiling
    frame = np.concatenate([labels[:max(r0 + m, 0)].ravel(), labels[max(r1 - m + 1, 0):].ravel(),
                            labels[:, :max(c0 + m, 0)].ravel(), labels[:, max(c1 - m + 1, 0):].ravel()])
    return {int(v) for v in np.unique(frame) if v}
