"""Compression fractures made in a CT, matched on the detector.

A fracture compresses the vertebral body along its own craniocaudal axis (``spinemorph.data.ct_anatomy.BodyFrame``)
with a height loss ΔH(u) across its depth, u running from the posterior (0) to the anterior wall (1): ``δ·u``
for a wedge, ``δ·4u(1-u)`` for a biconcave body, ``δ`` for a crush, and a narrow Gaussian of one endplate for
an endplate depression (grade 0-1). The superior endplate loses ``top_share`` of ΔH, the inferior one the rest.
Tissue moves along the axis only, in a piecewise-linear profile: the body shrinks linearly, and the loss is
handed to the neighbours across the discs, each of the next ``k`` discs taking 1/k of it (k = 3 for a wedge or
a crush, so the vertebrae above come down; k = 1 for a biconcave body or an endplate depression, whose discs
bulge into the concavity). The displacement fades over 20 mm beyond the body's depth and width, so ribs and
organs stay put. Being 1D and monotone along the axis, the profile inverts exactly (``FractureWarp.backward``).

As in ``spinemorph.data.simulate``, the reduction is matched on the detector: the labelmap is rendered, measured
with ``spinemorph.measure`` and the 3D depth corrected (secant steps, at most ``_MATCH_ITERATIONS``) until the
index the detector shows (1 - Ha/Hp, 1 - Hm/Hp, or 1 - Hp over the neighbours' mean Hp) meets the request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from spinemorph.conventions import genant_grade
from spinemorph.data.ct import BodyFrame, BodyPart, CtVolume, body_frames
from spinemorph.data.ct_anatomy import (
    Warp,
    box_corners,
    deform_parts,
    in_order,
    move_points,
    smoothstep,
)
from spinemorph.data.deformity import DEFORMITIES
from spinemorph.levels import level_code, level_name
from spinemorph.measure import measure
from spinemorph.measure.gates import TRUTH_GATES

__all__ = ["KINDS", "CtLesion", "parse_lesion", "FractureWarp", "fracture_warp", "Match", "match_lesions",
           "lesion_records"]

KINDS: tuple[str, ...] = (*DEFORMITIES, "endplate")
_DISCS = {"wedge": 3, "crush": 3, "biconcave": 1, "endplate": 1}
_TAPER_MM = 20.0
_MATCH_ITERATIONS = 5
_MATCH_TOLERANCE = 0.006
_MAX_LOSS = {"endplate": 0.4}  # of the body's height; 0.85 for the others


@dataclass(frozen=True)
class CtLesion:
    """A deformity to make in one vertebral body of a CT.

    Args:
        level: the level, e.g. "T8".
        kind: "wedge", "biconcave", "crush" or "endplate" (a depression of one endplate).
        reduction: the index the detector should show: 1 - Ha/Hp (wedge), 1 - Hm/Hp (biconcave, endplate), 1 - Hp
            over the neighbours' mean Hp (crush).
        top_share: the share of the height lost at the superior endplate (an endplate depression: 1 superior,
            0 inferior); None: 0.5 for a biconcave body, else 1.
        centre: for an endplate depression, where across the depth it is deepest (0 posterior, 1 anterior).
    """

    level: str
    kind: str
    reduction: float
    top_share: float | None = None
    centre: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", level_name(level_code(self.level)))
        if self.top_share is None:
            object.__setattr__(self, "top_share", 0.5 if self.kind == "biconcave" else 1.0)
        if self.kind not in KINDS:
            raise ValueError(f"Unknown lesion {self.kind!r}: use one of {', '.join(KINDS)}.")
        top = 0.25 if self.kind == "endplate" else 0.8
        if not 0.0 < self.reduction < top:
            raise ValueError(f"A {self.kind} lesion reduces height by more than 0 and less than {top:.0%}, "
                             f"not {self.reduction:.1%}.")
        if not (0.0 <= self.top_share <= 1.0 and 0.0 <= self.centre <= 1.0):
            raise ValueError("top_share and centre are fractions between 0 and 1.")

    @property
    def grade(self) -> int:
        """Return the Genant grade of the requested reduction."""
        return genant_grade(self.reduction)

    @property
    def deformity(self) -> str:
        """Return the Genant type: the kind, an endplate depression counting as biconcave (or none at grade 0)."""
        if self.kind != "endplate":
            return self.kind
        return "biconcave" if self.grade else "none"


def parse_lesion(text: str) -> CtLesion:
    """Return the lesion written "LEVEL:KIND:REDUCTION[:TOP_SHARE]", e.g. "T8:wedge:0.3" or "L1:endplate:0.15:0"."""
    parts = text.split(":")
    try:
        return CtLesion(parts[0], parts[1].lower(), *(float(v) for v in parts[2:4]))
    except (IndexError, ValueError, TypeError) as err:
        raise ValueError(f"Cannot read lesion {text!r} ({err}): write LEVEL:KIND:REDUCTION[:TOP_SHARE], "
                         "e.g. T8:wedge:0.3.") from None


class FractureWarp(Warp):
    """The deformation of one lesion at a 3D depth ``depth_mm`` (the largest height loss, δ).

    ``knots`` are the positions along the body's axis (mm from its centre, ascending) where the displacement
    profile bends, and ``top``/``bottom`` the share of the superior and inferior endplates' losses each knot
    carries (upwards positive).
    """

    exact_forward = True

    def __init__(self, frame: BodyFrame, lesion: CtLesion, depth_mm: float, knots: np.ndarray, top: np.ndarray,
                 bottom: np.ndarray) -> None:
        self.frame, self.lesion, self.depth_mm = frame, lesion, float(depth_mm)
        self.knots, self.top, self.bottom = knots, top, bottom
        self.reach_mm = self.depth_mm
        pad = 2 + _TAPER_MM
        lo = np.array([knots[0] - 1, frame.depth[0] - pad, -frame.half_width - pad])
        hi = np.array([knots[-1] + 1, frame.depth[1] + pad, frame.half_width + pad])
        corners = np.stack([frame.axis, frame.anterior, frame.lateral]).T @ box_corners(lo, hi)
        self._bounds = corners.min(axis=1) + frame.centre, corners.max(axis=1) + frame.centre

    def _loss(self, t: np.ndarray) -> np.ndarray:
        """Return ΔH at AP positions ``t`` (mm from the centre), constant beyond the walls."""
        lo, hi = self.frame.depth
        u = np.clip((t - lo) / (hi - lo), 0.0, 1.0)
        kind = self.lesion.kind
        if kind == "wedge":
            return self.depth_mm * u
        if kind == "biconcave":
            return self.depth_mm * 4 * u * (1 - u)
        if kind == "crush":
            return np.full_like(u, self.depth_mm)
        return self.depth_mm * np.exp(-0.5 * ((u - self.lesion.centre) / 0.18) ** 2)

    def _window(self, t: np.ndarray, r: np.ndarray) -> np.ndarray:
        lo, hi = self.frame.depth
        off_ap = np.maximum(lo - 2 - t, t - hi - 2)
        off_lr = np.abs(r) - self.frame.half_width - 2
        return smoothstep(1 - off_ap / _TAPER_MM) * smoothstep(1 - off_lr / _TAPER_MM)

    def _coefficients(self) -> np.ndarray:
        """Return each knot's displacement (upwards) per unit of height loss there."""
        share = self.lesion.top_share
        return self.bottom * (1 - share) - self.top * share

    def _map(self, pts: np.ndarray, inverse: bool) -> np.ndarray:
        s, t, r = self.frame.local(pts)
        loss = self._loss(t) * self._window(t, r)
        coef = self._coefficients()
        if inverse:  # the source of s on the displaced profile: find its segment, knot by knot
            seg = np.zeros(s.size, np.intp)
            for k in range(1, self.knots.size - 1):
                seg += self.knots[k] + loss * coef[k] <= s
            x0, x1 = self.knots[seg], self.knots[seg + 1]
            y0, y1 = x0 + loss * coef[seg], x1 + loss * coef[seg + 1]
            source = x0 + np.clip((s - y0) / (y1 - y0), 0.0, 1.0) * (x1 - x0)
            shift = np.where((s < self.knots[0]) | (s > self.knots[-1]), 0.0, source - s)
        else:
            shift = loss * np.interp(s, self.knots, coef, left=0.0, right=0.0)
        return pts + np.outer(self.frame.axis, shift)

    def describe(self) -> dict:
        return {"kind": "fracture", "level": self.lesion.level, "lesion": self.lesion.kind,
                "depth_mm": round(self.depth_mm, 4)}

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self._bounds


def fracture_warp(ct: CtVolume, frames: dict[int, BodyFrame], lesion: CtLesion, depth_mm: float) -> FractureWarp:
    """Return the deformation of ``lesion`` at ``depth_mm`` in ``ct`` (bodies as the frames were taken from)."""
    codes = [p.code for p in ct.parts]
    if level_code(lesion.level) not in codes:
        raise ValueError(f"{lesion.level} is not among the CT's bodies ({', '.join(level_name(c) for c in codes)}).")
    i = codes.index(level_code(lesion.level))
    frame = frames[codes[i]]
    above, below = (_disc_knots(ct, frame, i, d, _DISCS[lesion.kind]) for d in (1, -1))
    knots = [(frame.height[0], 0.0, 1.0), (frame.height[1], 1.0, 0.0)]
    knots += [(s, left, 0.0) for s, left in above] + [(s, 0.0, left) for s, left in below]
    s, top, bottom = np.array(sorted(knots)).T
    return FractureWarp(frame, lesion, depth_mm, s, top, bottom)


def _disc_knots(ct: CtVolume, frame: BodyFrame, i: int, direction: int, k: int) -> list[tuple[float, float]]:
    """Return the knots (position, share of the endplate's loss) across the ``k`` discs above (``direction`` 1) or
    below (-1) body ``i``: each disc takes 1/k of the loss, each body between them moves as a whole."""
    edge, out = frame.height[1] if direction > 0 else frame.height[0], []
    for j in range(1, k + 1):
        idx = i - direction * j
        if 0 <= idx < len(ct.parts):  # the next body's near and far endplates, in this body's frame
            near, end = frame.extent_of(ct.parts[idx])[:: direction]
        else:  # beyond the scan: a 5 mm disc and a 20 mm body
            near, end = edge + direction * 5.0, edge + direction * 25.0
        near = edge + direction * max((near - edge) * direction, 1.0)
        out.append((near, 1.0 - j / k))
        if j < k:
            out.append((near + direction * max((end - near) * direction, 1.0), 1.0 - j / k))
        edge = out[-1][0]
    return out


def _index_loss(rec, kind: str) -> float | None:
    """Return the reduction a measured record shows for a lesion of ``kind``, or None if it cannot."""
    if rec is None or rec.Ha_px is None:
        return None
    if kind == "wedge":
        return 1 - rec.wedge
    if kind == "crush":
        return None if rec.crush is None else 1 - rec.crush
    return 1 - rec.biconcave


def _shown(labels: np.ndarray, pitch: float, facing: str, lesions) -> dict[str, float]:
    """Return, per lesion level whose body is measured whole, the reduction the labelmap shows."""
    records = measure(labels, (pitch, pitch), facing, gates=TRUTH_GATES).by_level()
    shown = {les.level: _index_loss(records.get(les.level), les.kind) for les in lesions}
    return {k: v for k, v in shown.items() if v is not None}


@dataclass
class Match:
    """The deformation that makes the lesions show their reductions: the warps, the bodies they give, and per level
    ``depth_mm``, ``reduction_3d`` (depth over the body's central height) and ``reduction_shown`` (None where the
    body is not measured whole)."""

    warps: list[Warp]
    parts: tuple[BodyPart, ...] | None
    levels: dict[str, dict]


def match_lesions(ct: CtVolume, anatomy: list[Warp], lesions, render) -> Match:
    """Return the deformation (the anatomy's warps and the lesions') under which each lesion shows its reduction.

    ``render(parts, patient_ras)`` returns the labelmap, the detector pitch and the facing of the deformed bodies:
    the pose is the caller's. Of the tries, the one closest to every request is kept.
    """
    local, bends = [w for w in anatomy if not w.sagittal], [w for w in anatomy if w.sagittal]
    base = replace(ct, parts=deform_parts(ct, local), patient_ras=move_points(local, ct.patient_ras, False))
    frames = body_frames(base)
    static = deform_parts(base, bends)  # the bodies no fracture reaches; the others are resampled a second time
    height = {les.level: float(np.diff(frames[level_code(les.level)].height)[0]) for les in lesions}
    depth = {les.level: min(les.reduction, _MAX_LOSS.get(les.kind, 0.85)) * height[les.level] for les in lesions}
    tried: dict[str, list[tuple[float, float]]] = {les.level: [] for les in lesions}
    best: tuple[float, Match] | None = None
    for _ in range(_MATCH_ITERATIONS + 1):
        fractures = [fracture_warp(base, frames, les, depth[les.level]) for les in lesions]
        parts = deform_parts(base, fractures + bends, reuse=(static, fractures))
        labels, pitch, facing = render(parts, move_points(in_order(fractures + bends), base.patient_ras, False))
        shown = _shown(labels, pitch, facing, lesions)
        for les in lesions:
            if les.level in shown:
                tried[les.level].append((depth[les.level], shown[les.level]))
        off = max([abs(shown[les.level] - les.reduction) for les in lesions if les.level in shown], default=0.0)
        if best is None or off < best[0]:
            levels = {les.level: {"depth_mm": depth[les.level], "reduction_3d": depth[les.level] / height[les.level],
                                  "reduction_shown": shown.get(les.level)} for les in lesions}
            best = (off, Match(in_order(local + fractures + bends), parts, levels))
        if off < _MATCH_TOLERANCE:
            break
        for les in lesions:
            if les.level in shown:
                top = _MAX_LOSS.get(les.kind, 0.85) * height[les.level]
                depth[les.level] = _next_depth(tried[les.level], les.reduction, height[les.level], top)
    return best[1]


def _next_depth(tried: list[tuple[float, float]], target: float, height: float, top: float) -> float:
    """Return the next depth to try: inside a bracket of the target, regula falsi (bisection if it stalls); else a
    secant step through the last two tries, or a step of one body height per unit of reduction; at most ``top``."""
    under = [p for p in tried if p[1] < target]
    over = [p for p in tried if p[1] >= target]
    if under and over:
        (d0, s0), (d1, s1) = max(under, key=lambda p: p[1]), min(over, key=lambda p: p[1])
        d = d0 + (target - s0) * (d1 - d0) / (s1 - s0) if s1 > s0 else 0.5 * (d0 + d1)
        if min(abs(d - p[0]) for p in tried) < 0.05 * abs(d1 - d0) + 1e-3:
            d = 0.5 * (d0 + d1)
        return float(np.clip(d, 0.0, top))
    d, s = tried[-1]
    slope = 1.0 / height
    if len(tried) >= 2:
        (d0, s0), (d1, s1) = tried[-2], tried[-1]
        if abs(d1 - d0) > 1e-6 and (s1 - s0) / (d1 - d0) > 0.2 / height:
            slope = (s1 - s0) / (d1 - d0)
    return float(np.clip(d + (target - s) / slope, 0.0, top))


def lesion_records(truth: dict, labels: np.ndarray, lesions, matches: dict[str, dict]) -> None:
    """Add the projected six points and heights (``spinemorph.measure`` on the labelmap) and the lesions' truth to a
    DRR truth's vertebrae, in place, in the simulator's keys."""
    pitch = truth["pixel_spacing_mm"][0]
    measured = measure(labels, (pitch, pitch), truth["facing"], gates=TRUTH_GATES).by_level()
    by_level = {les.level: les for les in lesions}
    for rec in truth["vertebrae"]:
        les, m = by_level.get(rec["level"]), measured.get(rec["level"])
        rec.update({"deformity": les.deformity if les else "none", "genant_grade": les.grade if les else 0,
                    "reduction": round(les.reduction, 6) if les else 0.0})
        if les:
            match = matches[les.level]
            rec.update({"lesion": les.kind, "top_share": les.top_share, "depth_mm": round(match["depth_mm"], 4),
                        "reduction_3d": round(match["reduction_3d"], 6)})
            shown = None if rec["truncated"] else _index_loss(m, les.kind)
            if shown is not None:
                rec["reduction_shown"], rec["genant_grade_shown"] = round(shown, 6), genant_grade(shown)
        if rec["truncated"] or m is None or m.Ha_px is None:
            continue
        for h in ("Ha", "Hm", "Hp"):
            rec[f"{h}_px"] = round(getattr(m, f"{h}_px"), 5)
            rec[f"{h}_mm"] = round(getattr(m, f"{h}_px") * pitch, 5)
        rec["points"] = m.points
        rec["points_mm"] = {k: [round(v * pitch, 5) for v in p] for k, p in m.points.items()}
        rec["genant_grade_measured"], rec["deformity_measured"] = m.genant_grade, m.deformity
