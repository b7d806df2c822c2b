"""Bodies stage 1 drew as one: a segment as long along the spine as two or three bodies, where the naming left as
many levels missing beside it, is cut across the spine into that many parts, each named one of the missing levels,
for stage 2 to redraw each in its own crop (``spinemorph.inference.analyse``).

Stage 1 sees a 2048² film at 256², where a disc is two or three pixels tall; on an odd contrast it misses one and
paints two bodies as one segment. Left whole, the segment is refused (``implausible_size``, ``stages_disagree``),
it keeps a height no body has, and its neighbours lose a VCR reference. Cut where the bodies should be, each part
is a crop centred near one body, which stage 2 outlines as it outlines any other; a part stage 2 does not redraw
undoes its segment's cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinemorph.levels import TRAINED_LEVELS, find_objects
from spinemorph.postprocess.levels import spine_axis

__all__ = ["split_merged", "TALL"]

#: A segment at least this many times as long along the spine as the bodies near it may be bodies merged.
TALL = 1.6
_NEAR = 4  # bodies nearest in level whose median length and spacing are the reference


@dataclass
class _Segment:
    """One level's segment of a named labelmap: its code, place in ``levels``, box, centre and area,
    and each of its rows' first and last pixel (whatever the direction, a segment's extreme along it is one)."""

    code: int
    place: int
    box: tuple[slice, slice]
    centre: np.ndarray
    area: float
    rims: np.ndarray  # (2 per row, 2): (row, column) of each row's first and last pixel

    def length(self, axis: np.ndarray) -> float:
        """Return the segment's length along ``axis`` (pixels)."""
        along = self.rims @ axis
        return float(along.max() - along.min() + 1)


def _segments(labels: np.ndarray, levels: tuple[int, ...]) -> list[_Segment]:
    """Return the segments of the levels of ``levels`` in ``labels``, top to bottom."""
    place = {c: k for k, c in enumerate(levels)}
    out = []
    for code, box in enumerate(find_objects(labels), start=1):
        if box is None or code not in place:
            continue
        mask = labels[box] == code
        rows, cols = np.nonzero(mask)
        filled = mask.any(axis=1)
        first = np.argmax(mask, axis=1)[filled]
        last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)[filled]
        r = np.nonzero(filled)[0] + box[0].start
        rims = np.concatenate([np.stack([r, first + box[1].start], 1), np.stack([r, last + box[1].start], 1)])
        out.append(_Segment(code, place[code], box, np.array([rows.mean() + box[0].start, cols.mean() + box[1].start]),
                            float(rows.size), rims.astype(float)))
    return sorted(out, key=lambda s: s.centre[0])


def _axis(segments: list[_Segment], i: int) -> np.ndarray:
    """Return the spine's direction at segment ``i``, pointing down the film, from the segments nearest to it."""
    centres = np.array([s.centre for s in segments])
    axis = spine_axis(centres, np.array([s.area for s in segments]), centres[i], (i,))
    return axis if axis[0] >= 0 else -axis


def _nearest(segments: list[_Segment], i: int, keep) -> list[int]:
    """Return the indices of the ``_NEAR`` segments nearest in level to segment ``i`` among those ``keep`` keeps."""
    me = segments[i]
    return sorted((j for j in range(len(segments)) if j != i and keep(j)),
                  key=lambda j: abs(segments[j].place - me.place))[:_NEAR]


def _tall(segments: list[_Segment], axes: list[np.ndarray]) -> list[bool]:
    """Return, per segment, whether it is at least ``TALL`` times as long along the spine as the bodies nearest it."""
    out = []
    for i, (me, axis) in enumerate(zip(segments, axes, strict=True)):
        others = _nearest(segments, i, lambda j: True)
        out.append(len(others) >= 3 and
                   me.length(axis) >= TALL * float(np.median([segments[j].length(axis) for j in others])))
    return out


def _plan(segments: list[_Segment], i: int, axis: np.ndarray, tall: list[bool], levels: tuple[int, ...],
          taken: set[int]) -> list[int] | None:
    """Return the level codes, top to bottom, of the parts tall segment ``i`` should be cut into, or None to leave
    it whole; the lengths and spacing it is judged by are those of the segments that are not tall; ``taken``: the
    places parts of other segments took."""
    me = segments[i]
    others = _nearest(segments, i, lambda j: not tall[j])
    if len(others) < 3:
        return None
    length = float(np.median([segments[j].length(axis) for j in others]))
    extent = me.length(axis)
    if extent < TALL * length:
        return None
    # The bodies' spacing, per level, between bodies on the same side of the segment.
    steps = [abs(float((segments[k].centre - segments[j].centre) @ axis)) / (segments[k].place - segments[j].place)
             for j in others for k in others
             if segments[k].place > segments[j].place and not segments[j].place < me.place < segments[k].place]
    if not steps:
        return None
    pitch = float(np.median(steps))
    disc = max(pitch - length, 0.0)
    places = {s.place for s in segments} | taken
    above = max((p for p in places if p < me.place), default=None)
    below = min((p for p in places if p > me.place), default=None)
    lo = me.place if above is None else above + 1  # the levels free for the parts: the gaps beside the segment
    hi = me.place if below is None else below - 1
    n = min(int(round((extent + disc) / pitch)), hi - lo + 1)
    if n < 2:
        return None
    # Part k's centre lies (k + 0.5) / n of the way along the segment; where the other bodies' places and spacing
    # put it, in levels, decides which of the free levels the parts take.
    along = me.rims @ axis
    centres = along.min() + (np.arange(n) + 0.5) * extent / n
    expected = np.median([s.place + (centres - float(s.centre @ axis)) / pitch
                          for s, t in zip(segments, tall, strict=True) if not t], axis=0)
    start = min(range(lo, hi - n + 2), key=lambda s: float(((expected - (s + np.arange(n))) ** 2).sum()))
    return [levels[start + k] for k in range(n)]


def split_merged(labels: np.ndarray, levels: tuple[int, ...] = TRAINED_LEVELS) -> tuple[np.ndarray, dict[int, int]]:
    """Return a named labelmap (one segment per level, ``spinemorph.postprocess.name_levels``) with every segment
    that holds bodies merged cut across the spine into one part per body, and a map from each part's level code to
    the code of the segment it was cut from (empty, and ``labels`` itself, when nothing was cut)."""
    segments = _segments(labels, levels)
    if len(segments) < 4:
        return labels, {}
    axes = [_axis(segments, i) for i in range(len(segments))]
    tall = _tall(segments, axes)
    out, parts, taken = labels, {}, set()
    for i, me in enumerate(segments):
        codes = _plan(segments, i, axes[i], tall, levels, taken) if tall[i] else None
        if codes is None:
            continue
        axis = axes[i]
        out = labels.copy() if out is labels else out
        window = out[me.box]
        rows, cols = np.nonzero(labels[me.box] == me.code)
        along = (rows + me.box[0].start) * axis[0] + (cols + me.box[1].start) * axis[1]
        k = ((along - along.min()) * len(codes) / (along.max() - along.min() + 1)).astype(int)
        window[rows, cols] = np.array(codes, out.dtype)[np.clip(k, 0, len(codes) - 1)]
        parts.update(dict.fromkeys(codes, me.code))
        taken |= {levels.index(c) for c in codes}
    return out, parts
