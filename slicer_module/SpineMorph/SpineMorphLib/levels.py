"""One click for an off count: shift every level name up or down the spine. No Slicer here.

The sacrum (S1) is the anchor the names were counted from, not a body the count may move: it stays S1.
"""

from __future__ import annotations

from spinemorph.levels import level_below, level_code, level_name

__all__ = ["shifted_codes"]

_S1 = level_code("S1")


def shifted_codes(codes: list[int], steps: int) -> dict[int, int]:
    """Return old code -> new code for the level codes ``codes`` moved ``steps`` levels down (negative: up).

    Raises ValueError, saying which, when a level would move past the ends of the spine or onto the sacrum.
    """
    mapping = {}
    for code in codes:
        if code == _S1:
            mapping[code] = code
            continue
        new = level_below(code, steps)
        if new is None or new == _S1:
            where = "below L5" if steps > 0 else "above C1"
            raise ValueError(f"Cannot shift {level_name(code)} by {steps:+d}: that would go {where}.")
        mapping[code] = new
    return mapping
